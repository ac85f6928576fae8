"""`citywatch ingest` against SeaweedFS's S3 server through the real minio client."""

from __future__ import annotations

import http.server
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from pipeline.app.cli import app
from pipeline.frames.ingest import IngestError, ingest
from pipeline.frames.keys import InvalidCameraId, parse_frame_key
from pipeline.frames.store import FrameStore, decode_frame

START = datetime(2026, 11, 22, 23, 59, 59, tzinfo=UTC)


def level_image(level: int, size=(160, 120)) -> np.ndarray:
    return np.full((size[1], size[0], 3), level, np.uint8)


def write_video(path, frames: int = 30, fps: float = 10.0) -> str:
    """An mp4 whose frame i is uniformly grey at level 8*i, so a sampled frame tells its index."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (160, 120))
    assert writer.isOpened()
    for i in range(frames):
        writer.write(level_image(8 * i))
    writer.release()
    return str(path)


@pytest.fixture
def store(minio_client):
    return FrameStore(minio_client, f"ingest-{uuid.uuid4().hex[:12]}", retry_for_s=2)


def stored(store, camera):
    keys = store.list_new(camera, None, 1000).keys
    return keys, [decode_frame(store.get(k, 10**7), max_pixels=10**7) for k in keys]


def test_video_sampled_at_fps_with_media_timestamps(store, tmp_path):
    video = write_video(tmp_path / "clip.mp4")
    result = ingest(video, "cam-v", store, fps=2, start=START)
    keys, images = stored(store, "cam-v")
    assert result.frames == 6 == len(keys) and result.bytes > 0 and not result.skipped
    assert [parse_frame_key(k).time for k in keys] == [START + timedelta(seconds=0.5 * i) for i in range(6)]
    assert {k.split("/")[3] for k in keys} == {"22", "23"}  # crosses midnight UTC
    assert [round(float(img.mean()) / 8) for img in images] == [0, 5, 10, 15, 20, 25]
    assert (result.first_key, result.last_key) == (keys[0], keys[-1])


def test_fps_above_native_takes_each_frame_once(store, tmp_path):
    video = write_video(tmp_path / "clip.mp4", frames=12)
    assert ingest(video, "cam-v", store, fps=30, start=START).frames == 12


def test_folder_sorted_by_name_bad_files_skipped(store, tmp_path):
    for name, level in (("b.png", 100), ("a.jpg", 50), ("c.jpg", 150)):
        cv2.imwrite(str(tmp_path / name), level_image(level))
    (tmp_path / "broken.jpg").write_text("not an image")
    (tmp_path / "notes.txt").write_text("ignored")
    result = ingest(tmp_path, "cam-f", store, fps=4, start=START, test=True)
    keys, images = stored(store, "cam-f")
    assert result.frames == 3 and result.skipped == [("broken.jpg", "not a readable image")]
    assert [round(float(img.mean())) for img in images] == pytest.approx([50, 100, 150], abs=2)
    assert [parse_frame_key(k).time for k in keys] == [START + timedelta(seconds=0.25 * i) for i in range(3)]
    assert all(k.endswith(".test.jpg") and parse_frame_key(k).test for k in keys)


def test_single_image_once_or_as_static_scene(store, tmp_path):
    image = tmp_path / "scene.jpg"
    cv2.imwrite(str(image), level_image(80))
    assert ingest(image, "cam-i1", store, fps=2, start=START).frames == 1
    result = ingest(image, "cam-i2", store, fps=2, start=START, duration=3)
    keys, _ = stored(store, "cam-i2")
    assert result.frames == 6 == len(keys)
    assert parse_frame_key(keys[-1]).time == START + timedelta(seconds=2.5)


def test_speed_paces_uploads(store, tmp_path):
    image = tmp_path / "scene.jpg"
    cv2.imwrite(str(image), level_image(80))
    started = time.monotonic()
    ingest(image, "cam-p", store, fps=10, start=START, duration=2)  # as fast as possible
    fast = time.monotonic() - started
    result = ingest(image, "cam-p2", store, fps=10, start=START, duration=2, speed=4)
    assert result.elapsed_s >= 1.9 / 4 and result.elapsed_s > fast


class _MjpegCamera(http.server.BaseHTTPRequestHandler):
    """An IP camera's HTTP MJPEG stream: 20 frames/s, grey level rising, for 2 s."""

    def do_GET(self):  # noqa: N802 - http.server naming
        self.send_response(200)
        self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
        self.end_headers()
        try:
            for i in range(40):
                data = cv2.imencode(".jpg", level_image(5 * i))[1].tobytes()
                self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(data)
                                 + data + b"\r\n")
                time.sleep(0.05)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def log_message(self, *args):
        pass


def test_http_stream_sampled_by_wall_clock(store):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _MjpegCamera)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/video.mjpg"
        result = ingest(url, "cam-s", store, fps=4, start=START, duration=1.5)
    finally:
        server.shutdown()
        server.server_close()
    keys, images = stored(store, "cam-s")
    assert 4 <= result.frames <= 7 and len(keys) == result.frames
    levels = [float(img.mean()) for img in images]
    assert levels == sorted(levels) and levels[-1] > levels[0]


@pytest.mark.parametrize("kwargs,message", [
    ({"camera_id": "cam/../x"}, "not allowed"),
    ({"camera_id": "a+b"}, "not allowed"),
    ({"fps": 0}, "fps must be > 0"),
    ({"fps": 60}, "<= 30"),
    ({"speed": -1}, "speed must be > 0"),
    ({"start": datetime(2026, 1, 1)}, "timezone"),
    ({"source": "/nonexistent/clip.mp4"}, "does not exist"),
])
def test_bad_arguments_are_refused(store, tmp_path, kwargs, message):
    image = tmp_path / "scene.jpg"
    cv2.imwrite(str(image), level_image(80))
    args = {"source": image, "camera_id": "cam-ok", "store": store, "fps": 2} | kwargs
    with pytest.raises((IngestError, InvalidCameraId), match=message):
        ingest(**args)


def test_unreadable_sources_are_refused(store, tmp_path):
    fake_video = tmp_path / "clip.mp4"
    fake_video.write_text("this is not a video")
    with pytest.raises(IngestError, match="cannot open"):
        ingest(fake_video, "cam", store)
    (tmp_path / "empty").mkdir()
    with pytest.raises(IngestError, match="holds no images"):
        ingest(tmp_path / "empty", "cam", store)


# -- the CLI ----------------------------------------------------------------------------------

runner = CliRunner()


def test_cli_ingests_with_test_marker(s3_env, minio_client, tmp_path):
    image = tmp_path / "scene.png"
    cv2.imwrite(str(image), level_image(120))
    camera = f"cli-{uuid.uuid4().hex[:8]}"
    out = runner.invoke(app, ["ingest", str(image), "--camera", camera, "--test", "--fps", "2",
                              "--duration", "2", "--start", "2026-11-22T20:00:00"])
    assert out.exit_code == 0, out.output
    assert "put 4 frame(s)" in out.output and f"for camera {camera}" in out.output
    keys = FrameStore(minio_client, "frames").list_new(camera, None, 100).keys
    assert keys[0] == f"{camera}/2026/11/22/20261122T200000.000Z.test.jpg" and len(keys) == 4


def test_cli_uses_registered_camera_fps(s3_env, minio_client, tmp_path):
    video = write_video(tmp_path / "clip.mp4", frames=30)
    camera = f"reg-{uuid.uuid4().hex[:8]}"
    config = tmp_path / "citywatch.yaml"
    config.write_text(f"cameras:\n  - id: {camera}\n    name: Test street\n    fps: 1\n")
    out = runner.invoke(app, ["ingest", video, "--camera", camera, "--config", str(config)])
    assert out.exit_code == 0, out.output
    assert len(FrameStore(minio_client, "frames").list_new(camera, None, 100).keys) == 3


@pytest.mark.parametrize("args,message", [
    (["--camera", "cam/../x"], "camera id 'cam/../x' is not allowed"),
    (["--camera", "a+b"], "camera id 'a+b' is not allowed"),
    (["--camera", "ok", "--speed", "2", "--realtime"], "either --speed or --realtime"),
    (["--camera", "ok", "--start", "yesterday"], "not an ISO 8601 time"),
])
def test_cli_refuses_bad_options(s3_env, tmp_path, args, message):
    image = tmp_path / "scene.jpg"
    cv2.imwrite(str(image), level_image(80))
    out = runner.invoke(app, ["ingest", str(image), *args])
    assert out.exit_code == 2
    assert message in " ".join(out.output.split())


def test_unreachable_stream_refused_without_leaking_credentials(store):
    from pipeline.app.embedded import free_port

    url = f"rtsp://viewer:hunter2@127.0.0.1:{free_port()}/live"
    with pytest.raises(IngestError, match="cannot open") as info:
        ingest(url, "cam", store, duration=1)
    assert "hunter2" not in str(info.value) and "127.0.0.1" in str(info.value)


def test_cli_announces_each_frame_put_unless_told_not_to(s3_env, mqtt_broker, minio_client, tmp_path, monkeypatch):
    """Each frame put is announced on <prefix>/frames/new (MinIO's event record), so a worker takes
    it at once; --no-notify and an unreachable broker leave the frames to the workers' polling."""
    from pipeline.app.embedded import free_port
    from pipeline.config.settings import MqttSettings
    from pipeline.delivery.mqtt import Subscriber
    from pipeline.frames.notices import notice_keys

    prefix = f"cwing-{uuid.uuid4().hex[:8]}"
    config = tmp_path / "citywatch.yaml"
    config.write_text(f"mqtt:\n  topic_prefix: {prefix}\n")
    image = tmp_path / "scene.png"
    cv2.imwrite(str(image), level_image(90))
    heard: list[str] = []
    monkeypatch.setenv("CITYWATCH_MQTT_URL", mqtt_broker)
    settings = MqttSettings(url=mqtt_broker, topic_prefix=prefix)
    with Subscriber(settings, f"ioc-{prefix}", [f"{prefix}/frames/new"],
                    lambda topic, payload, retain: heard.extend(notice_keys(payload, "frames"))) as sub:
        assert sub.wait_subscribed(10)
        camera = f"note-{uuid.uuid4().hex[:8]}"
        args = ["ingest", str(image), "--camera", camera, "--fps", "2", "--duration", "2", "--config", str(config)]
        assert runner.invoke(app, args).exit_code == 0
        keys = FrameStore(minio_client, "frames").list_new(camera, None, 100).keys
        deadline = time.monotonic() + 5
        while len(heard) < len(keys) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(keys) == 4 and sorted(heard) == keys
        quiet = f"quiet-{uuid.uuid4().hex[:8]}"
        assert runner.invoke(app, [*args[:3], quiet, *args[4:], "--no-notify"]).exit_code == 0
        monkeypatch.setenv("CITYWATCH_MQTT_URL", f"mqtt://127.0.0.1:{free_port()}")  # nobody there
        lonely = f"lonely-{uuid.uuid4().hex[:8]}"
        out = runner.invoke(app, [*args[:3], lonely, *args[4:]])
        assert out.exit_code == 0, out.output
        time.sleep(0.3)
    assert not [k for k in heard if k.startswith((quiet, lonely))]
    for camera in (quiet, lonely):
        assert len(FrameStore(minio_client, "frames").list_new(camera, None, 100).keys) == 4

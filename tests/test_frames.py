"""The frame store against SeaweedFS's S3 server through the real minio client, and safe decoding."""

from __future__ import annotations

import http.server
import io
import logging
import socket
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import cv2
import numpy as np
import pytest

from pipeline.app.embedded import EmbeddedS3
from pipeline.config.settings import S3Settings
from pipeline.frames.store import (
    BadFrame,
    FrameMissing,
    FrameStore,
    FrameStoreUnavailable,
    FrameTooLarge,
    decode_frame,
    jpeg_dimensions,
    make_minio,
)

T0 = datetime(2026, 11, 21, 23, 59, 58, tzinfo=UTC)


def jpeg(width: int = 64, height: int = 48, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    return cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()


@pytest.fixture
def store(minio_client):
    s = FrameStore(minio_client, f"frames-{uuid.uuid4().hex[:12]}", retry_for_s=2)
    s.ensure_bucket()
    return s


# -- store ------------------------------------------------------------------------------------

def test_put_list_in_time_order_across_day_folders(store, minio_client):
    times = [T0 + timedelta(seconds=s) for s in (3, 0, 1.5, 2.25)]  # put out of order, across midnight
    keys = [store.put_frame("cam-1", t, jpeg()) for t in times]
    store.put_frame("cam-10", T0, jpeg())  # a camera whose id extends cam-1's must not leak in
    listed = store.list_new("cam-1", None, 100)
    assert listed.keys == sorted(keys) and listed.rejected == []
    assert {k.split("/")[3] for k in listed.keys} == {"21", "22"}
    stat = minio_client.stat_object(store.bucket, keys[0])
    assert stat.content_type == "image/jpeg"


def test_start_after_and_limit(store):
    keys = [store.put_frame("cam", T0 + timedelta(seconds=i), jpeg()) for i in range(5)]
    assert store.list_new("cam", keys[1], 100).keys == keys[2:]
    assert store.list_new("cam", keys[1], 2).keys == keys[2:4]
    assert store.list_new("cam", keys[-1], 100).keys == []


def test_keys_outside_contract_are_rejected_with_reason(store, minio_client):
    good = store.put_frame("cam", T0, jpeg())
    test_key = store.put_frame("cam", T0 + timedelta(seconds=1), jpeg(), test=True)
    bad = {
        "cam/2026/11/21/snapshot.jpg": "does not match",
        "cam/2026/11/20/20261121T235958.000Z.jpg": "folder date",
        "cam/notes.txt": "does not match",
    }
    for key in bad:
        minio_client.put_object(store.bucket, key, io.BytesIO(b"x"), 1)
    result = store.list_new("cam", None, 100)
    assert result.keys == [good, test_key]
    assert test_key.endswith(".test.jpg")
    reasons = dict(result.rejected)
    assert set(reasons) == set(bad)
    for key, fragment in bad.items():
        assert fragment in reasons[key]


def test_junk_keys_never_count_towards_the_limit_and_the_listing_ends_after_the_last_frame_key(store, minio_client):
    day = "cam/2026/11/21"
    for i in range(5):
        minio_client.put_object(store.bucket, f"{day}/junk-{i}.jpg", io.BytesIO(b"x"), 1)
        minio_client.put_object(store.bucket, f"cam/thumbs/{i}.jpg", io.BytesIO(b"x"), 1)
    first = store.put_frame("cam", T0, jpeg())  # sorts before the junk of its day
    later = [store.put_frame("cam", T0 + timedelta(days=1, seconds=i), jpeg()) for i in range(3)]
    listed = store.list_new("cam", None, 3)
    assert listed.keys == [first] + later[:2] and not listed.truncated
    assert [k for k, _ in listed.rejected] == [f"{day}/junk-{i}.jpg" for i in range(5)]
    rest = store.list_new("cam", later[1], 3)
    # "cam/thumbs/..." sorts after every frame key: the first one ends the listing.
    assert rest.keys == [later[2]] and [k for k, _ in rest.rejected] == ["cam/thumbs/0.jpg"]
    capped = store.list_new("cam", first, 3, max_rejected=2)
    assert capped.keys == [] and capped.truncated and len(capped.rejected) == 2


def test_get_refuses_large_and_missing_objects(store):
    data = jpeg(320, 240)
    key = store.put_frame("cam", T0, data)
    assert store.get(key, max_bytes=len(data)) == data
    with pytest.raises(FrameTooLarge, match=f"{len(data)} bytes, more than the {len(data) - 1}"):
        store.get(key, max_bytes=len(data) - 1)
    with pytest.raises(FrameMissing, match="no longer exists"):
        store.get(key.replace(".jpg", ".test.jpg"), max_bytes=10**6)


def test_invalid_camera_refused_before_any_request(store):
    with pytest.raises(ValueError, match="not allowed"):
        store.put_frame("cam/../x", T0, jpeg())
    with pytest.raises(ValueError, match="not allowed"):
        store.list_new("a+b", None, 10)


def test_outage_raises_unavailable_then_recovers(caplog):
    server = EmbeddedS3().start()
    try:
        settings = S3Settings(url=server.url, access_key=server.access_key, secret_key=server.secret_key)
        store = FrameStore(make_minio(settings), "outage-frames", retry_for_s=2.0, backoff_s=0.1)
        store.ensure_bucket()
        first = store.put_frame("cam", T0, jpeg())
        server.kill()  # the S3 server crashes
        caplog.set_level(logging.WARNING, logger="pipeline.frames.store")
        started = time.monotonic()
        with pytest.raises(FrameStoreUnavailable) as info:
            store.list_new("cam", None, 10)
        took = time.monotonic() - started
        assert 1.0 <= took < 6.0
        message = str(info.value)
        assert f"127.0.0.1:{server.port}" in message and "list outage-frames/cam/" in message
        assert "Connection refused" in message or "cannot connect" in message
        lines = [r.getMessage() for r in caplog.records if r.name == "pipeline.frames.store"]
        assert len(lines) >= 2 and all(f"127.0.0.1:{server.port}" in line for line in lines)
        assert not any(server.secret_key in line or server.access_key in line for line in caplog.text.splitlines())

        server.start()  # same port and data: the store works again
        second = store.put_frame("cam", T0 + timedelta(seconds=1), jpeg())
        assert store.list_new("cam", first, 10).keys == [second]
    finally:
        server.cleanup()


class _Always503(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - http.server naming
        self.send_response(503)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_HEAD = do_PUT = do_GET

    def log_message(self, *args):
        pass


@pytest.fixture
def failing_server():
    """A real HTTP endpoint answering 503 to everything (an overloaded MinIO or proxy)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Always503)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_http_503_is_retried_then_unavailable(failing_server):
    settings = S3Settings(url=f"http://127.0.0.1:{failing_server}", access_key="k", secret_key="s3cr3t-value")
    store = FrameStore(make_minio(settings), "frames", retry_for_s=1.0, backoff_s=0.05)
    with pytest.raises(FrameStoreUnavailable, match=r"list frames/cam/ .*HTTP 503"):
        store.list_new("cam", None, 10)


def test_silent_server_times_out_then_unavailable():
    with socket.socket() as listener:  # accepts connections (kernel backlog) but never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        settings = S3Settings(url=f"http://127.0.0.1:{listener.getsockname()[1]}", timeout_s=0.2)
        store = FrameStore(make_minio(settings), "frames", retry_for_s=0.5, backoff_s=0.05)
        started = time.monotonic()
        with pytest.raises(FrameStoreUnavailable, match="timed out"):
            store.put_frame("cam", T0, jpeg())
        assert time.monotonic() - started < 5


# -- decoding ---------------------------------------------------------------------------------

def _patch_sof_size(data: bytes, width: int, height: int) -> bytes:
    sof = data.index(b"\xff\xc0")
    return data[:sof + 5] + height.to_bytes(2, "big") + width.to_bytes(2, "big") + data[sof + 9:]


def _zero_huffman_tables(data: bytes) -> bytes:
    dht = data.index(b"\xff\xc4")
    length = int.from_bytes(data[dht + 2:dht + 4], "big")
    return data[:dht + 4] + b"\x00" * (length - 2) + data[dht + 2 + length:]


PNG = cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))[1].tobytes()


@pytest.mark.parametrize("data,reason", [
    (b"", "empty object"),
    (PNG, "not a JPEG: it is a PNG image"),
    (b"hello, this is not an image\n", "looks like text starting 'hello, this is "),
    (b"\x00\x01\x02\x03" * 10, "starts with bytes 00 01 02 03"),
    (jpeg()[: len(jpeg()) // 2], "truncated JPEG"),
    (jpeg()[:100], "truncated JPEG: no frame header"),
    (_patch_sof_size(jpeg(), 30000, 30000), "decompression bomb refused: header says 30000x30000 = 900.0 Mpx"),
    (_zero_huffman_tables(jpeg()), "corrupt JPEG: the decoder rejected"),
])
def test_bad_frames_name_the_reason(data, reason):
    with pytest.raises(BadFrame) as info:
        decode_frame(data, max_pixels=40_000_000)
    assert reason in info.value.reason


def test_bomb_refused_before_decoding_quickly():
    bomb = _patch_sof_size(jpeg(), 30000, 30000)
    assert jpeg_dimensions(bomb) == (30000, 30000)
    started = time.perf_counter()
    with pytest.raises(BadFrame):
        decode_frame(bomb, max_pixels=40_000_000)
    assert time.perf_counter() - started < 0.05


def test_full_decode_and_trailing_padding_accepted():
    data = jpeg(64, 48)
    image = decode_frame(data + b"\x00" * 16, max_pixels=10_000)
    assert image.shape == (48, 64, 3) and image.dtype == np.uint8
    with pytest.raises(BadFrame, match="64x48 = 0.0 Mpx, more than max_pixels=3000"):
        decode_frame(data, max_pixels=3000)


@pytest.mark.parametrize("max_width,expected", [
    (None, (1080, 1920)), (1920, (1080, 1920)), (1000, (1080, 1920)), (960, (540, 960)),
    (320, (270, 480)), (240, (135, 240)), (100, (135, 240)),
])
def test_reduced_decode_picks_smallest_scale_still_wide_enough(max_width, expected):
    data = jpeg(1920, 1080)
    image = decode_frame(data, max_pixels=40_000_000, max_width=max_width)
    assert image.shape[:2] == expected

"""`citywatch evaluate` beyond the headline scores: onsets read from the labels' descriptions and
time to alert, the traffic-level confusion, the first-alarm frame, ``--config`` detector settings,
and the HTML report. Fake analyzers over media written at test time; no footage needed except in
the one test marked ``footage``."""

from __future__ import annotations

import base64
import functools
import json
import re

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

import pipeline.app.cli.evaluate as cli
from pipeline.app.cli import app
from pipeline.app.evaluate.html import IMAGE_WIDTH, render_html
from pipeline.app.evaluate.run import (
    LabeledMedia,
    evaluate,
    parse_onset,
    read_labels,
    run_media,
    score,
    traffic_confusion,
)
from tests.evaluate_support import (  # noqa: F401
    BLACK,
    BLUE,
    BOX,
    GREEN,
    GREY,
    RED,
    ColourAnalyzer,
    TrafficAnalyzer,
    media,
    still,
    video,
)


@pytest.mark.parametrize("description, fps, onset", [
    ("small white wildfire smoke plume rises at left-centre horizon, first visible at frame 76 (~12.7 s), "
     "grows to end", 6.0, 12.7),
    ("queue builds from frame 82 (13.7 s)", 25.0, 13.7),  # seconds win over the frame number
    ("a fallen cyclist lies on the road from ~12 s; an ambulance arrives from ~17.5 s", 29.97, 12.0),
    ("Outdoor wood cooking fire; flames from ~0.3 s (first 9 frames black) to the end", 30.05, 0.3),
    ("orange flames and light smoke visible from frame 0 to the end", None, 0.0),
    ("Flooded from ~frame 50.", 20.0, 2.5),  # a frame number alone converts with the fps column
    ("first ~150 frames are a selfie with no flood", 25.0, 6.0),
    ("grey smoke starts pouring from under a parked electric van at ~2.6 s, flames from ~7.8 s", 30.0, 2.6),
    ("Synthetic street: a shop front catches fire at 5 s, flames grow", None, 5.0),
    ("Doll-house burning in a garden, static handheld-ish camera", 29.97, None),
    ("from frame 82", None, None),  # a frame number without an fps: unknown
])
def test_onset_from_the_description_forms(description, fps, onset):
    assert parse_onset(description, fps) == onset


def test_labels_without_description_or_fps_columns(tmp_path):
    (tmp_path / "labels.csv").write_text("path,fire,flood,traffic\nx/a.jpg,pos,neg,na\n")
    (row,) = read_labels(tmp_path / "labels.csv")
    assert (row.description, row.fps, row.onset_s, row.source) == ("", None, None, "x")
    (tmp_path / "labels.csv").write_text("path,fire,flood,traffic,fps,description,extra\n"
                                         "a.jpg,pos,neg,na,-,fire from frame 4,1\nb.mp4,pos,neg,na,8,fire from frame 4,2\n")
    a, b = read_labels(tmp_path / "labels.csv")
    assert (a.fps, a.onset_s, b.fps, b.onset_s, b.source) == (None, None, 8.0, 0.5, "b.mp4")


@pytest.mark.footage
def test_onsets_of_the_shared_footage(footage_dir):
    onsets = {r.path: r.onset_s for r in read_labels(footage_dir / "labels.csv")}
    assert onsets["deepankarvarma_forestfire_smoke/hpwren_lospinos_smoke.mp4"] == 12.7
    assert onsets["nguyentrung_home_security/test_fire.mp4"] == 2.6
    assert onsets["1der4k_DataAnalysis/flood2_houston_before_after.mp4"] == 2.5
    assert onsets["furg_fire/house6.mp4"] is None


def test_time_to_alert_counts_from_the_labelled_onset(media):
    (media / "tta.csv").write_text(
        "path,fire,flood,traffic,fps,description\n"
        "fire_pos.avi,pos,neg,na,10,flames from ~1.5 s\n"       # alarm 2.0 s -> TTA 0.5
        "fire_smoke.avi,pos,neg,na,10,smoke from frame 4\n"     # onset 0.4 s, alarm 1.0 s -> 0.6
        "flood_pos.jpg,neg,pos,na,-,water from frame 0\n"       # alarm 0.5 s -> 0.5
        "congested.avi,neg,neg,congested,10,queue from 2 s\n"   # alarm 0.5 s, before the onset -> -1.5
        "medium.avi,neg,neg,medium,10,\n"                        # no congestion positive: no TTA
        "neg_false.png,neg_tricky,neg,na,-,from 0.2 s\n")          # a false alarm has no TTA
    ev = evaluate(media / "tta.csv", fps=2.0, factory=ColourAnalyzer)
    tta = {r.media.path: {t: r.tta_s(t) for t in ("fire", "flood", "congestion")} for r in ev.results}
    assert tta["fire_pos.avi"]["fire"] == 0.5 and tta["fire_smoke.avi"]["fire"] == 0.6
    assert tta["flood_pos.jpg"] == {"fire": None, "flood": 0.5, "congestion": None}
    assert tta["congested.avi"]["congestion"] == -1.5 and tta["medium.avi"]["congestion"] is None
    assert tta["neg_false.png"]["fire"] is None and ev.results[-1].alarm_s("fire") == 0.5
    fire = score(ev.results, "fire")
    assert fire.ttd_s == (2.0, 1.0) and fire.tta_s == (0.5, 0.6)
    assert (fire.tta(50), fire.tta(90)) == (0.55, 0.59)
    assert ev.to_json()["fire"]["median_tta_s"] == 0.55 and ev.to_json()["fire"]["median_ttd_s"] == 1.5


def test_traffic_confusion_counts_the_highest_level(tmp_path):
    for name, colour in (("jam", GREEN), ("slow", BLUE), ("slow2", BLUE), ("open", GREY), ("open2", GREY),
                         ("na", GREEN)):
        video(tmp_path / f"{name}.avi", [(0, colour)])
    still(tmp_path / "dark.png", BLACK)
    (tmp_path / "labels.csv").write_text(
        "path,fire,flood,traffic\njam.avi,neg,neg,congested\nslow.avi,neg,neg,medium\nslow2.avi,neg,neg,congested\n"
        "open.avi,neg,neg,free\ndark.png,neg,neg,empty\nopen2.avi,neg,neg,empty\nna.avi,neg,neg,na\n")
    ev = evaluate(tmp_path / "labels.csv", fps=2.0, factory=TrafficAnalyzer)
    assert [r.predicted_traffic for r in ev.results] == ["heavy", "medium", "medium", "free", "not judged", "free",
                                                         "heavy"]
    none = {"heavy": 0, "medium": 0, "free": 0, "not judged": 0}
    expected = {"congested": {**none, "heavy": 1, "medium": 1}, "medium": {**none, "medium": 1},
                "free": {**none, "free": 1}, "empty": {**none, "free": 1, "not judged": 1}}
    assert traffic_confusion(ev.results) == expected and ev.to_json()["traffic_confusion"] == expected
    assert ev.results[0].max_confidence == {"congestion": 0.8}  # 8 frames, 0.1 more each
    html = render_html(ev)
    assert "labelled \\ predicted" in html and '<td class="hit">1</td>' in html


def test_only_the_first_alarm_frame_is_kept(media):
    row = LabeledMedia(path="fire_pos.avi", fire="pos", flood="neg", traffic="na")
    result = run_media(row, media, fps=2.0, index=0, factory=ColourAnalyzer)
    frame = result.alarm_frame
    assert frame is not None and frame.t_s == 2.0 == result.alarm_s("fire")
    assert frame.boxes == {"fire": (BOX,)} and frame.image.shape == (120, 160, 3)
    assert frame.image.mean(axis=(0, 1))[2] > 150  # the red frame that alarmed, not the grey before it
    quiet = run_media(row.model_copy(update={"path": "fire_missed.avi"}), media, 2.0, 1, ColourAnalyzer)
    assert quiet.alarm_frame is None


def _run(args, monkeypatch):
    monkeypatch.setattr(cli, "evaluate", functools.partial(evaluate, factory=ColourAnalyzer))
    result = CliRunner().invoke(app, ["evaluate", *map(str, args)])
    return result, " ".join(result.output.split())  # the console wraps long lines


def test_config_applies_the_cameras_detector_settings(media, tmp_path, monkeypatch):
    labels = media / "small.csv"
    labels.write_text("path,fire,flood,traffic\nfire_pos.avi,pos,neg,na\nflood_pos.jpg,neg,pos,na\n")
    one, two = tmp_path / "one.yaml", tmp_path / "two.yaml"
    one.write_text("cameras:\n  - id: cam-a\n    detectors: {fire: {enabled: false}, smoke: {enabled: false}}\n")
    two.write_text(one.read_text() + "  - id: cam-b\n    detectors: {flood: {enabled: false}}\n")
    out = tmp_path / "s.json"

    def alarmed(*args):
        result, text = _run([labels, "--json", out, *args], monkeypatch)
        assert result.exit_code == 0, result.output
        return text, [m["alarmed"] for m in json.loads(out.read_text())["media"]]

    assert alarmed()[1] == [["fire"], ["flood"]]
    text, got = alarmed("--config", one)  # the only camera's settings: fire off
    assert got == [[], ["flood"]] and "detector settings: camera cam-a" in text
    assert alarmed("--config", two, "--camera", "cam-b")[1] == [["fire"], []]
    text, got = alarmed("--config", two)  # several cameras and none picked: built-in detector settings
    assert got == [["fire"], ["flood"]] and "pick one with --camera" in text
    result, text = _run([labels, "--config", two, "--camera", "cam-x"], monkeypatch)
    assert result.exit_code == 2 and "no camera 'cam-x' (cameras: cam-a, cam-b)" in text
    (tmp_path / "bad.yaml").write_text("cameras:\n  - id: cam-a\n    detectors: {fire: {sensitivity: 3}}\n")
    result, text = _run([labels, "--config", tmp_path / "bad.yaml"], monkeypatch)
    assert result.exit_code == 2 and "cameras.0.detectors.fire.sensitivity" in text


def test_config_disables_a_real_detector_on_the_sample_fire_scene(tmp_path):
    import sample_media

    labels = tmp_path / "fire.csv"
    labels.write_text("path,fire,flood,traffic\nfire,pos,neg,na\n")
    (tmp_path / "off.yaml").write_text("cameras:\n  - id: cam-a\n    detectors: {fire: {enabled: false}, "
                                       "smoke: {enabled: false}}\n")
    base = ["evaluate", str(labels), "--root", str(sample_media.SCENES_DIR), "--json", str(tmp_path / "s.json")]
    for extra, tp in (([], 1), (["--config", str(tmp_path / "off.yaml")], 0)):
        result = CliRunner().invoke(app, base + extra)
        assert result.exit_code == 0, result.output
        assert json.loads((tmp_path / "s.json").read_text())["fire"]["tp"] == tp


def test_html_embeds_the_alarm_frame_and_escapes_labels_text(media):
    still(media / "fire<&>.png", RED)
    (media / "html.csv").write_text(
        'path,fire,flood,traffic,description\nfire<&>.png,neg,neg,na,"<script>alert(1)</script> & co"\n'
        "fire_pos.avi,pos,neg,na,flames\nfire_missed.avi,pos,neg,na,nothing\nneg_ok.jpg,neg,neg,na,grey\n")
    ev = evaluate(media / "html.csv", fps=2.0, factory=ColourAnalyzer)
    html = render_html(ev)
    assert "<script" not in html and "&lt;script&gt;alert(1)&lt;/script&gt; &amp; co" in html
    assert "fire&lt;&amp;&gt;.png" in html and "fire<&>" not in html
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", html) and "<link" not in html
    assert [c for c in re.findall(r'class="card ([a-z-]+)"', html)] == ["false-alarm", "correct", "missed", "correct"]
    images = re.findall(r'src="data:image/jpeg;base64,([A-Za-z0-9+/=]+)"', html)
    assert len(images) == 2  # the two media that alarmed
    image = cv2.imdecode(np.frombuffer(base64.b64decode(images[1]), np.uint8), cv2.IMREAD_COLOR)
    h, w = image.shape[:2]
    assert w == IMAGE_WIDTH and h == 300
    x0, y_mid = round(BOX[0] * w), h // 2
    assert image[y_mid, x0 - 3:x0 + 3].min() < 60  # the box's dark outline at x = 0.25
    assert image[y_mid, w // 2][2] > 150 and image[10, 10][2] > 150  # red scene inside and outside the box
    assert "fire at 2.0 s" in html and "in-sample: shipped models" in html and ">TTA p50 s<" in html

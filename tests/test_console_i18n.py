"""The vi/en catalogue: same keys in both, every key the page uses exists, plain measurement words with
units, local time with offset, the snapshot label in the configured zone and the page's strings route."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from starlette.testclient import TestClient

from pipeline.alerts.evidence import snapshot_label
from pipeline.alerts.incidents import IncidentEvent
from pipeline.app.console import create_app
from pipeline.common.i18n import MEASURE_KINDS, catalogue, local_time
from pipeline.config.settings import ConfigError, config_from_dict

ROOT = Path(__file__).resolve().parents[1]
STATIC = ROOT / "pipeline" / "app" / "console" / "static"
HCM = ZoneInfo("Asia/Ho_Chi_Minh")


def test_both_catalogues_hold_the_same_keys_and_placeholders():
    vi, en = catalogue("vi").strings, catalogue("en").strings
    assert set(vi) == set(en)
    for key in en:
        assert set(re.findall(r"{(\w+)}", vi[key])) == set(re.findall(r"{(\w+)}", en[key])), key
        assert vi[key].strip(), key
    assert sum(vi[k] == en[k] for k in en) < 15  # translated, not copied (units and "Camera" may match)


def test_every_key_the_page_uses_is_in_the_catalogue():
    used = set()
    for name in ("index.html", *[p.name for p in STATIC.glob("*.js")]):
        text = (STATIC / name).read_text(encoding="utf-8")
        used |= set(re.findall(r'data-i18n(?:-title|-placeholder|-aria)?="([\w.]+)"', text))
        used |= set(re.findall(r'\bt\("([\w.]+)"', text))
    assert len(used) > 40
    missing = sorted(used - set(catalogue("en").strings))
    assert not missing, missing


def test_page_has_no_untranslated_text():
    html = (STATIC / "index.html").read_text(encoding="utf-8")
    body = re.sub(r"<script.*?</script>|<svg.*?</svg>", "", html.split("<body>", 1)[1], flags=re.S)
    for text in re.findall(r">([^<>]+)<", body):
        words = text.replace("citywatch", "")  # the product's name is not translated
        assert not re.search(r"[A-Za-z]{3,}", words), f"text outside the catalogue: {text.strip()!r}"
    for attr, text in re.findall(r'\s(aria-label|title|placeholder|alt)="([^"]*)"', body):
        assert not re.search(r"[A-Za-z]{3,}", text), f"{attr} outside the catalogue: {text!r}"


def emitted_measurement_keys() -> set[str]:
    """Every key a detector, the verifier or the health monitor writes into a finding's measurements."""
    keys: set[str] = set()
    for path in [*(ROOT / "detectors").glob("*.py"), ROOT / "pipeline" / "state" / "health.py"]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.keyword) and node.arg == "measurements" and isinstance(node.value, ast.Dict):
                keys |= {k.value for k in node.value.keys if isinstance(k, ast.Constant)}
            elif (isinstance(node, ast.Assign) and isinstance(node.value, ast.Dict)
                  and any(isinstance(t, ast.Name) and "measurements" in t.id for t in node.targets)):
                keys |= {k.value for k in node.value.keys if isinstance(k, ast.Constant)}
            elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "fromkeys"
                  and node.args and isinstance(node.args[0], ast.Tuple)):
                keys |= {k.value for k in node.args[0].elts if isinstance(k, ast.Constant)}
            elif (isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant)
                  and isinstance(node.value, ast.Name) and node.value.id in ("measurements", "m")
                  and isinstance(node.ctx, ast.Store)):
                keys.add(node.slice.value)
    return keys


def test_every_measurement_a_detector_emits_reads_in_plain_words():
    keys = emitted_measurement_keys()
    assert {"flooded_pct_smoothed", "verified_p", "silent_s", "brightness"} <= keys, keys
    for lang in ("vi", "en"):
        missing = sorted(k for k in keys if f"measure.{k}" not in catalogue(lang).strings)
        assert not missing, f"{lang}: raw field names on the page: {missing}"
    assert catalogue("en").measurement("verified_p", 0.874) == ("verifier confidence", "87 %")


def test_measurements_read_in_plain_words_with_units():
    vi, en = catalogue("vi"), catalogue("en")
    assert en.measurement("flooded_pct_smoothed", 64.21) == ("road under water (smoothed)", "64 %")
    assert vi.measurement("water_level_index", 0.31) == ("mực nước", "31 %")
    assert vi.measurement("frozen_s", 12.0) == ("ảnh đứng yên trong", "12 giây")
    assert en.measurement("covered", 1.0) == ("lens covered", "yes") and en.value("growth", 2.14) == "x2.1"
    for key in MEASURE_KINDS:
        assert f"measure.{key}" in en.strings, key


def test_local_time_and_snapshot_label_in_the_configured_zone():
    assert local_time(1_764_700_000, HCM) == "2025-12-03 01:26:40 +07"
    assert local_time(1_764_700_000, ZoneInfo("Asia/Kolkata")).endswith("+05:30")
    event = IncidentEvent(incident_id="cam-1-fire-1", camera_id="cam-1", type="fire", state="start", seq=1,
                          severity="extreme", confidence=0.9, frame_ts=1_764_700_000, started_ts=1_764_700_000)
    assert snapshot_label(event, HCM) == "FIRE extreme start | cam-1 | 2025-12-03 01:26:40 +07"


def test_config_refuses_unknown_language_zone_and_bad_push_or_store():
    for bad, field in [({"language": "fr"}, "console.language"), ({"timezone": "Saigon/Nowhere"}, "console.timezone"),
                       ({"store": {"url": "mysql://x"}}, "console.store.url"),
                       ({"store": {"table_prefix": "Bad-Prefix"}}, "console.store.table_prefix"),
                       ({"alarm": {"repeat_s": 0.5}}, "console.alarm.repeat_s"),
                       ({"map": {"tile_url": "javascript:x"}}, "console.map.tile_url")]:
        with pytest.raises(ConfigError, match=re.escape(field)):
            config_from_dict({"console": bad}, env={})


def test_i18n_route_serves_the_configured_language_and_lang_override():
    cfg = config_from_dict({"mqtt": {"url": "mqtt://127.0.0.1:1", "topic_prefix": "cwi18n"}}, env={})
    with TestClient(create_app(cfg, client_id="console-i18n", extra_hosts=["testserver"], tick_s=60)) as client:
        body = client.get("/api/i18n").json()
        assert body["language"] == "vi" and body["strings"]["ack.button"] == "Xác nhận"
        assert client.get("/api/i18n?lang=en").json()["strings"]["ack.button"] == "Acknowledge"
        assert client.get("/api/i18n?lang=xx").status_code == 400
        meta = client.get("/api/state").json()["meta"]
        assert meta["timezone"] == "Asia/Ho_Chi_Minh" and meta["alarm"]["repeat_s"] == 20.0
        assert client.get("/static/vendor/leaflet.js").status_code == 200
        assert client.get("/static/vendor/images/marker-icon.png").headers["content-type"] == "image/png"
        assert client.get("/static/vendor/../server.py").status_code == 404


def test_sign_in_page_in_both_languages():
    from pipeline.app.console.login import login_page

    assert 'lang="vi"' in login_page("vi") and "Mở bảng điều khiển" in login_page("vi")
    assert "Open console" in login_page("en") and "access token" in login_page("en")

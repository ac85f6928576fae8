"""Control characters: refused where they are input (config names, acks), escaped where text is
displayed (the `citywatch alerts` terminal, log lines) and never written into CAP XML."""

from __future__ import annotations

import json
import logging
import xml.etree.ElementTree as ET

import pytest
from typer.testing import CliRunner

from pipeline.alerts.cap import cap_xml
from pipeline.app.cli import app
from pipeline.app.console import IncidentBoard
from pipeline.app.console_view import AlertConsole, format_alert_line
from pipeline.common.text import printable
from pipeline.config.settings import CameraConfig, CapSettings, ConfigError, config_from_dict
from pipeline.delivery.acks import AckError, AckRecorder, make_ack, parse_ack
from tests.test_cap import payload as cap_payload

NASTY = ["\x1b[31mred\x1b[0m", "a\x00b", "line\nbreak", "csi\x9b2J", "bell\x07", "del\x7f"]
UNSAFE = ("\x1b", "\x00", "\x9b", "\x07", "\x7f", "\n", "\r")
LOCATION = {"lat": 1.0, "lon": 2.0, "district": "D"}


@pytest.mark.parametrize("text", NASTY)
@pytest.mark.parametrize("field", ["name", "district"])
def test_config_refuses_control_characters_in_camera_names_and_districts(text, field):
    camera = {"id": "cam-1", "name": "Cam", "location": dict(LOCATION)}
    (camera if field == "name" else camera["location"])[field] = text
    where = "cameras.0.name" if field == "name" else "cameras.0.location.district"
    with pytest.raises(ConfigError, match=rf"{where}: .*control character"):
        config_from_dict({"cameras": [camera]}, env={})


def test_config_check_names_the_field_without_echoing_the_escape(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text('cameras:\n  - {id: cam-1, name: "\\e[2J\\e[Hgone", location: {lat: 1, lon: 2}}\n')
    result = CliRunner().invoke(app, ["config", "check", str(path)])
    assert result.exit_code == 2 and "cameras.0.name" in result.output
    assert "\x1b" not in result.output


@pytest.mark.parametrize("text", NASTY)
def test_acks_refuse_control_characters_in_operator_and_note(text):
    with pytest.raises(AckError, match="operator"):
        make_ack("inc-1", f"ana{text}")
    with pytest.raises(AckError, match="note"):
        make_ack("inc-1", "ana", note=f"sent {text}")
    raw = json.dumps({"incident_id": "inc-1", "operator": "ana", "note": text,
                      "time": "2026-01-01T00:00:00Z"}).encode()
    with pytest.raises(AckError, match="note"):
        parse_ack("citywatch/ack/inc-1", raw)


def _hostile_alert() -> bytes:
    doc = json.loads(cap_payload().to_json())
    doc["camera"]["name"] = "\x1b]0;pwned\x07\x1b[2J bridge\u202e"
    doc["incident_id"] = "inc\x1b[31m"
    doc["evidence"]["url"] = "http://s3/k.jpg\x1b[8m"
    return json.dumps(doc).encode()


def test_the_terminal_view_never_prints_control_characters():
    line = format_alert_line("citywatch/alerts/fire/cam-01\x1b[5m", _hostile_alert())
    assert not any(c in line for c in UNSAFE + ("\u202e",)), repr(line)
    assert "\\u001b]0;pwned" in line  # shown escaped, so the operator sees something is off
    lines: list[str] = []
    console = AlertConsole.__new__(AlertConsole)
    console._raw, console._on_line = True, lines.append
    console._handle("citywatch/alerts/fire/cam-01", _hostile_alert().replace(b"\\u001b", b"\x1b"), False)
    assert not any(c in lines[0] for c in UNSAFE), repr(lines[0])
    assert json.loads(lines[0])["camera"]["name"].startswith("\x1b]0;pwned")  # --json stays JSON


def test_printable_escapes_and_keeps_ordinary_text():
    assert printable("Ngã tư Bình Dương") == "Ngã tư Bình Dương"
    assert printable("a\x1b[31mb\nc\x00") == "a\\u001b[31mb c\\u0000"


def test_cap_xml_never_carries_characters_xml_cannot_hold():
    p = cap_payload()
    p.camera.name = "a\x00b\x1bc\ufffe"
    p.camera.location.district = "d\x0b"
    xml = cap_xml(p, CapSettings(enabled=True))
    ET.fromstring(xml.encode())  # well-formed
    assert "\x00" not in xml and "\x1b" not in xml


def test_log_lines_escape_hostile_topics_and_fields(caplog):
    caplog.set_level(logging.INFO)
    cfg = config_from_dict({"cameras": [CameraConfig(id="cam-01", name="C", location=LOCATION).model_dump()]}, env={})
    IncidentBoard(cfg).handle("citywatch/alerts/fire/cam-01\x1b[2J\nFAKE LOG LINE", b"{}")
    recorder = AckRecorder.__new__(AckRecorder)
    recorder._record = lambda ack, raw: True
    recorder._handle("citywatch/ack/x\x1b[2J\r\nFAKE", b"{}", False)
    assert caplog.records, "nothing was logged"
    for record in caplog.records:
        message = record.getMessage()
        assert not any(c in message for c in UNSAFE), repr(message)

"""Hostile messages on the console's topics: one bad alert must never break the board for every
operator (it is validated against the alert schema on receipt and dropped with a log line)."""

from __future__ import annotations

import json
import logging
import uuid

import pytest
from starlette.testclient import TestClient

from pipeline.app.console import IncidentBoard, create_app
from tests.test_console import alert_bytes, make_config


@pytest.fixture
def prefix():
    return f"cwhostile{uuid.uuid4().hex[:8]}"


def _mangled(start: bytes, **changes) -> bytes:
    doc = json.loads(start)
    doc.update(changes, incident_id=f"{doc['incident_id']}-{uuid.uuid4().hex[:6]}")
    return json.dumps(doc).encode()


MALFORMED = {
    "type_not_a_string": {"type": 123},
    "started_at_a_number": {"started_at": 5},
    "started_at_not_a_time": {"started_at": "yesterday"},
    "severity_unknown": {"severity": "apocalyptic"},
    "seq_zero": {"seq": 0},
}


@pytest.mark.parametrize("name", [*MALFORMED, "nan_confidence", "nan_measurement", "topic_camera_differs"])
def test_a_malformed_alert_is_dropped_with_a_log_line_and_the_board_stays_whole(prefix, name, caplog):
    cfg = make_config("mqtt://127.0.0.1:1", prefix)
    board = IncidentBoard(cfg)
    iid, topic, start = alert_bytes(cfg)
    assert board.handle(topic, start) is not None
    if name in MALFORMED:
        bad, bad_topic = _mangled(start, **MALFORMED[name]), topic
    elif name == "topic_camera_differs":
        bad, bad_topic = _mangled(start), topic.replace("cam-north", "cam-south")
    else:
        field = '"confidence": 0.9' if name == "nan_confidence" else '"burning_area_pct": 2.5'
        bad, bad_topic = _mangled(start).replace(field.encode(), field.split(":")[0].encode() + b": NaN"), topic
        assert b"NaN" in bad
    caplog.set_level(logging.WARNING, logger="pipeline.app.console")
    assert board.handle(bad_topic, bad) is None
    assert board.rejected == 1
    assert f"dropped an alert on {bad_topic}" in caplog.text
    snap = board.snapshot()
    assert [i["incident_id"] for i in snap["incidents"]] == [iid]
    json.dumps(snap, allow_nan=False)  # what the pages parse stays valid JSON


def test_api_state_keeps_serving_every_operator_after_malformed_alerts(prefix):
    cfg = make_config("mqtt://127.0.0.1:1", prefix)
    app = create_app(cfg, client_id=f"console-{prefix}", extra_hosts=["testserver"])
    board = app.state.board
    iid, topic, start = alert_bytes(cfg)
    board.handle(topic, start)
    for changes in MALFORMED.values():
        board.handle(topic, _mangled(start, **changes))
    board.handle(topic, _mangled(start).replace(b'"confidence": 0.9', b'"confidence": NaN'))
    with TestClient(app) as client:
        resp = client.get("/api/state")
        assert resp.status_code == 200
        assert [i["incident_id"] for i in json.loads(resp.text)["incidents"]] == [iid]

"""Alerts raised from test footage are counted apart and never alarm, push or escalate, unless
``console.alarm.include_test`` says so; a live severe incident next to them still does."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime

import pytest

from pipeline.alerts.incidents import IncidentEvent
from pipeline.alerts.payload import alert_topic, build_alert
from pipeline.app.console import IncidentBoard
from pipeline.config.settings import config_from_dict
from tests.test_console import make_config


def alert(cfg, camera_id: str, test: bool, detected_ts: float) -> tuple[str, str, bytes]:
    started = round(detected_ts - 30)
    event = IncidentEvent(incident_id=f"{camera_id}-fire-{started * 1000}", camera_id=camera_id, type="fire",
                          state="start", seq=1, severity="extreme", confidence=0.9, measurements={"area_pct": 8.0},
                          frame_ts=detected_ts - 1, started_ts=started)
    payload = build_alert(event, cfg.camera(camera_id), frame_bucket="frames", frame_key=None, evidence=None,
                          test=test, worker="edge-01", detected_at=datetime.fromtimestamp(detected_ts, UTC))
    return event.incident_id, alert_topic(cfg.mqtt.topic_prefix, "fire", camera_id), payload.to_json()


def config(include_test: bool):
    base = make_config("mqtt://127.0.0.1:1", f"cwtest{uuid.uuid4().hex[:6]}")
    return config_from_dict({**base.model_dump(mode="json", exclude={"s3"}),
                             "console": {"alarm": {"include_test": include_test, "escalate_after_s": 60}}}, env={})


@pytest.mark.parametrize("include_test", [False, True])
def test_a_test_alert_alarms_and_escalates_only_when_configured(include_test):
    cfg = config(include_test)
    board, now = IncidentBoard(cfg), time.time()
    live_id, live_topic, live = alert(cfg, "cam-north", test=False, detected_ts=now - 120)
    test_id, test_topic, drill = alert(cfg, "cam-south", test=True, detected_ts=now - 120)
    assert board.handle(live_topic, live).get("alarm") == "new"
    delta = board.handle(test_topic, drill)
    assert delta["incident"]["test"] is True
    assert delta.get("alarm") == ("new" if include_test else None)  # "new" is what triggers sound and push
    escalated = [d["incident"]["incident_id"] for d in board.escalate(now, 60)]
    assert escalated == ([live_id, test_id] if include_test else [live_id])
    assert board.escalate(now + 600, 60) == []  # each once

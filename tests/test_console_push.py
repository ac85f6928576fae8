"""Push and escalation for real: the console against Mosquitto, apprise posting ``json://`` to a tiny local
HTTP server. A new extreme fire is pushed at once, escalated (and pushed again) once it has waited
longer than ``console.alarm.escalate_after_s`` unacknowledged; a moderate flood is never pushed."""

from __future__ import annotations

import json
import threading
import uuid
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from zoneinfo import ZoneInfo

import pytest
from starlette.testclient import TestClient

from pipeline.alerts.incident_store import IncidentStore, store_url
from pipeline.alerts.incidents import IncidentEvent
from pipeline.alerts.payload import alert_topic, build_alert
from pipeline.alerts.push import IncidentPusher, PushError
from pipeline.app.console import create_app
from pipeline.common.i18n import catalogue
from pipeline.config.settings import config_from_dict
from tests.test_console import publish, wait_until


@pytest.fixture
def hook():
    """A local webhook: every POST body (JSON) lands in ``received``."""
    received: list[dict] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            received.append({"path": self.path, **json.loads(body)})
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"json://127.0.0.1:{server.server_port}/ioc-hook", received
    server.shutdown()


def _alert(cfg, camera_id, event_type, severity, detected_ago_s, started=1_764_700_000.0):
    event = IncidentEvent(incident_id=f"{camera_id}-{event_type}-{int(started)}", camera_id=camera_id, type=event_type,
                          state="start", seq=1, severity=severity, confidence=0.9, measurements={"area_pct": 6.0},
                          frame_ts=started + 1, started_ts=started)
    detected = datetime.now(UTC) - timedelta(seconds=detected_ago_s)
    payload = build_alert(event, cfg.camera(camera_id), frame_bucket="frames", frame_key=None, evidence=None,
                          test=False, worker="w1", detected_at=detected)
    return event.incident_id, alert_topic(cfg.mqtt.topic_prefix, event_type, camera_id), payload.to_json()


def test_severe_incident_pushed_then_escalated_once(mqtt_broker, hook, tmp_path):
    url, received = hook
    prefix = f"cwpush{uuid.uuid4().hex[:8]}"
    cfg = config_from_dict({
        "mqtt": {"url": mqtt_broker, "topic_prefix": prefix},
        "cameras": [{"id": "cam-north", "name": "Cầu Bắc", "location": {"lat": 10.99, "lon": 106.65, "district": "Phú Cường"}},
                    {"id": "cam-south", "name": "Chợ", "location": {"lat": 10.97, "lon": 106.66, "district": "Hiệp Thành"}}],
        "console": {"language": "vi", "alarm": {"escalate_after_s": 60}, "push": {"urls": [url]}},
    }, env={})
    store = IncidentStore(store_url(None, tmp_path), "console_")
    app = create_app(cfg, client_id=f"console-{prefix}", extra_hosts=["testserver"], store=store, tick_s=0.2)
    with TestClient(app) as client:
        assert wait_until(lambda: client.get("/api/state").json()["meta"]["broker_connected"])
        fire, topic, payload = _alert(cfg, "cam-north", "fire", "extreme", detected_ago_s=30)
        publish(cfg.mqtt, topic, payload)
        _, ftopic, flood = _alert(cfg, "cam-south", "flood", "moderate", detected_ago_s=3600, started=1_764_700_100.0)
        publish(cfg.mqtt, ftopic, flood)
        assert wait_until(lambda: len(client.get("/api/state").json()["incidents"]) == 2)
        assert wait_until(lambda: received), "no push reached the webhook"
        first = received[0]
        assert first["path"] == "/ioc-hook" and first["type"] == "warning"
        assert first["title"] == "cháy cực kỳ nghiêm trọng tại Cầu Bắc"
        assert "Phú Cường" in first["message"] and "2025-12-03 01:26:40 +07" in first["message"] and fire in first["message"]
        assert len(received) == 1  # not yet escalated (30 s of 60), the moderate flood is never pushed

        # the same incident, alarming for 90 s by now (its first severe message was detected then)
        late, ltopic, lpayload = _alert(cfg, "cam-north", "fire", "extreme", detected_ago_s=90, started=1_764_700_500.0)
        publish(cfg.mqtt, ltopic, lpayload)
        assert wait_until(lambda: len(received) == 3), received
        titles = sorted(r["title"] for r in received[1:])
        assert titles[0].startswith("BÁO CẤP TRÊN: cháy cực kỳ nghiêm trọng tại Cầu Bắc, chưa xác nhận 2 phút")
        assert titles[1] == "cháy cực kỳ nghiêm trọng tại Cầu Bắc"
        escalated = client.get("/api/incidents", params={"camera": "cam-north"}).json()["incidents"]
        assert [bool(i.get("escalated_at")) for i in escalated] == [True, False]
        assert store.get(late)["escalated_at"]
    store.close()
    assert len(received) == 3  # each incident escalates once


def test_unknown_push_url_is_refused_and_a_dead_target_is_only_logged(caplog):
    cat = catalogue("en")
    with pytest.raises(PushError, match="console.push.urls.1") as err:
        IncidentPusher(["json://127.0.0.1:1/ok", "nosuchscheme://ops:hunter2-secret@x"], cat, ZoneInfo("UTC"))
    assert "hunter2" not in str(err.value) and "hunter2" not in caplog.text
    pusher = IncidentPusher(["json://127.0.0.1:1/dead"], cat, ZoneInfo("UTC"), timeout_s=2)
    inc = {"incident_id": "cam-1-fire-1", "type": "fire", "severity": "severe", "camera_name": "Gate",
           "started_at": "2026-01-01T00:00:00Z"}
    assert pusher.push({**inc, "severity": "moderate"}, "new", 0) is None  # below min_severity
    assert pusher.push(inc, "new", 1_767_225_600).result(10) is False
    pusher.close()
    assert pusher.failed == 1 and "cam-1-fire-1" in caplog.text

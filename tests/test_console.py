"""The console server (Starlette TestClient) against a real Mosquitto: alert grouping, acks over MQTT,
auth, and the pipeline's ack recorder writing the state store."""

from __future__ import annotations

import json
import time
import uuid
from datetime import datetime

import pytest
from starlette.testclient import TestClient

from pipeline.alerts.incidents import IncidentEvent
from pipeline.alerts.payload import alert_topic, build_alert
from pipeline.app.console import ConsoleBindError, IncidentBoard, check_bind, create_app
from pipeline.config.settings import config_from_dict
from pipeline.delivery.acks import AckError, AckRecorder, make_ack, parse_ack
from pipeline.delivery.mqtt import Subscriber, make_client
from pipeline.state.store import StateStore

TOKEN = "s3cret-console-token-1234"
S3_SECRET = "never-shown-to-operators-42"


def make_config(mqtt_url: str, prefix: str):
    return config_from_dict({
        "s3": {"access_key": "AKIACONSOLETEST", "secret_key": S3_SECRET},
        "mqtt": {"url": mqtt_url, "topic_prefix": prefix},
        "cameras": [
            {"id": "cam-north", "name": "North Bridge", "location": {"lat": 10.99, "lon": 106.65, "district": "Phu Cuong"}},
            {"id": "cam-south", "name": "Market Square", "location": {"lat": 10.97, "lon": 106.66, "district": "Hiep Thanh"}},
        ],
    }, env={})


def alert_bytes(cfg, camera_id="cam-north", seq=1, state="start", severity="severe", started=1_700_000_000.0,
                event_type="fire", measurements=None):
    cam = cfg.camera(camera_id)
    event = IncidentEvent(incident_id=f"{camera_id}-{event_type}-{int(started)}", camera_id=camera_id, type=event_type,
                          state=state, seq=seq, severity=severity, confidence=0.9,
                          measurements=measurements or {"burning_area_pct": 2.5 * seq},
                          frame_ts=started + seq, started_ts=started, ended_ts=started + seq if state == "end" else None)
    payload = build_alert(event, cam, frame_bucket="frames", frame_key=None, evidence=None, test=False, worker="w1")
    return event.incident_id, alert_topic(cfg.mqtt.topic_prefix, event_type, camera_id), payload.to_json()


def publish(mqtt_cfg, topic: str, payload: bytes, retain: bool = False) -> None:
    client = make_client(mqtt_cfg, f"test-pub-{uuid.uuid4().hex[:8]}", clean_start=True, session_expiry_s=0)
    client.loop_start()
    try:
        deadline = time.monotonic() + 5
        while not client.is_connected() and time.monotonic() < deadline:
            time.sleep(0.02)
        client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)
    finally:
        client.disconnect()
        client.loop_stop()


def wait_until(predicate, timeout: float = 8.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    return predicate()


@pytest.fixture
def prefix():
    return f"cwtest{uuid.uuid4().hex[:8]}"


# -- the board, pure ------------------------------------------------------------------------------
def test_board_groups_start_updates_end_under_one_id_newest_first(prefix):
    cfg = make_config("mqtt://127.0.0.1:1", prefix)
    board = IncidentBoard(cfg)
    iid, topic, start = alert_bytes(cfg, seq=1, severity="moderate")
    _, _, update = alert_bytes(cfg, seq=2, state="update", severity="extreme")
    _, _, end = alert_bytes(cfg, seq=3, state="end", severity="severe")
    later_id, later_topic, later = alert_bytes(cfg, camera_id="cam-south", event_type="flood", started=1_700_000_500.0)
    assert board.handle(topic, end)["incident"]["state"] == "end"  # out of order: the end arrives first
    board.handle(topic, start)
    board.handle(topic, update)
    assert board.handle(topic, update) is None  # duplicate delivery (QoS 1) changes nothing
    board.handle(later_topic, later)
    snap = board.snapshot()
    assert [i["incident_id"] for i in snap["incidents"]] == [later_id, iid]
    inc = snap["incidents"][1]
    assert [m["seq"] for m in inc["messages"]] == [1, 2, 3]
    assert (inc["state"], inc["severity"], inc["peak_severity"]) == ("end", "severe", "extreme")
    assert inc["camera_name"] == "North Bridge" and inc["district"] == "Phu Cuong"
    assert inc["measurements"] == {"burning_area_pct": 7.5}
    assert board.handle(f"{prefix}/alerts/fire/cam-north", b"not json") is None and board.rejected == 1
    evil = json.loads(later)
    evil.update(incident_id="cam-south-flood-x", evidence={
        "bucket": "alerts", "key": "k.jpg", "sha256": "0" * 64, "url": "javascript:alert(1)",
        "expires_at": "2026-11-29T20:40:27Z"})
    assert "snapshot_url" not in board.handle(later_topic, json.dumps(evil).encode())["incident"]
    assert board.handle("other/alerts/fire/cam-north", start) is None  # not our prefix


def test_board_camera_status_and_unknown_camera(prefix):
    board = IncidentBoard(make_config("mqtt://127.0.0.1:1", prefix))
    delta = board.handle(f"{prefix}/cameras/cam-south/status", json.dumps({"state": "stale"}).encode())
    assert delta["camera"]["status"]["state"] == "stale" and delta["camera"]["district"] == "Hiep Thanh"
    other = board.handle(f"{prefix}/cameras/cam-x/status", b'{"state": "online"}')["camera"]
    assert other["in_registry"] is False and other["lat"] is None


def test_ack_message_checks_its_fields():
    with pytest.raises(AckError, match="incident id"):
        make_ack("a/b#", "ana")
    with pytest.raises(AckError, match="operator"):
        make_ack("cam-1-fire-1", "  ")
    ack = make_ack("cam-1-fire-1", "Ana")
    with pytest.raises(AckError, match="not the topic's"):
        parse_ack("p/ack/cam-2-fire-1", ack.to_json())
    assert parse_ack("p/ack/cam-1-fire-1", ack.to_json()).operator == "Ana"


def test_check_bind_refuses_public_address_without_token():
    check_bind("127.0.0.1", None)
    check_bind("localhost", None)
    with pytest.raises(ConsoleBindError, match="without an access token"):
        check_bind("0.0.0.0", None)
    with pytest.raises(ConsoleBindError, match="at least 16"):
        check_bind("0.0.0.0", "short")
    check_bind("0.0.0.0", TOKEN)


# -- the server against real Mosquitto ------------------------------------------------------------
def test_alerts_from_mqtt_are_grouped_and_acks_go_out_over_mqtt(mqtt_broker, prefix):
    cfg = make_config(mqtt_broker, prefix)
    app = create_app(cfg, client_id=f"console-{prefix}", extra_hosts=["testserver"])
    acks: list[tuple[str, bytes]] = []
    with TestClient(app) as client, Subscriber(cfg.mqtt, f"ackwatch-{prefix}", [f"{prefix}/ack/#"],
                                               lambda t, p, r: acks.append((t, p))) as watcher:
        assert watcher.wait_subscribed(5)
        assert wait_until(lambda: client.get("/api/state").json()["meta"]["broker_connected"])
        iid, topic, start = alert_bytes(cfg, seq=1)
        publish(cfg.mqtt, topic, start)
        publish(cfg.mqtt, topic, alert_bytes(cfg, seq=2, state="update")[2])
        publish(cfg.mqtt, f"{prefix}/cameras/cam-north/status", b'{"state": "online", "checked_at": "2026-01-01T00:00:00Z"}',
                retain=True)
        state = wait_until(lambda: (s := client.get("/api/state").json()) and len(s["incidents"]) == 1
                           and s["incidents"][0]["seq"] == 2 and s["cameras"][0]["status"] and s)
        assert state, client.get("/api/state").json()
        assert [m["state"] for m in state["incidents"][0]["messages"]] == ["start", "update"]

        bad = client.post(f"/api/incidents/{iid}/ack", content=b"operator=x",
                          headers={"content-type": "application/x-www-form-urlencoded"})
        assert bad.status_code == 415  # a cross-site form post cannot acknowledge
        assert client.post("/api/incidents/nope-1/ack", json={"operator": "Ana"}).status_code == 404
        assert client.post(f"/api/incidents/{iid}/ack", json={"operator": ""}).status_code == 400
        resp = client.post(f"/api/incidents/{iid}/ack", json={"operator": "Ana", "note": "crew sent"})
        assert resp.status_code == 202, resp.text
        assert wait_until(lambda: acks), "no ack reached the broker"
        topic, payload = acks[0]
        body = json.loads(payload)
        assert topic == f"{prefix}/ack/{iid}" and body["operator"] == "Ana" and body["incident_id"] == iid
        assert body["note"] == "crew sent" and datetime.fromisoformat(body["time"]).tzinfo is not None
        # every console learns the ack from the topic, not from its own POST
        acked = wait_until(lambda: client.get("/api/state").json()["incidents"][0]["ack"])
        assert acked["operator"] == "Ana"
    publish(cfg.mqtt, f"{prefix}/cameras/cam-north/status", b"", retain=True)  # clear the retained status


def test_ack_refused_with_503_when_broker_is_down(mosquitto_factory, prefix):
    broker = mosquitto_factory()
    cfg = make_config(broker.url, prefix)
    with TestClient(create_app(cfg, client_id=f"console-{prefix}", extra_hosts=["testserver"])) as client:
        assert wait_until(lambda: client.get("/api/state").json()["meta"]["broker_connected"])
        iid, topic, start = alert_bytes(cfg)
        publish(cfg.mqtt, topic, start)
        assert wait_until(lambda: client.get("/api/state").json()["incidents"])
        broker.stop()
        assert wait_until(lambda: not client.get("/healthz").json()["broker_connected"])
        resp = client.post(f"/api/incidents/{iid}/ack", json={"operator": "Ana"})
        assert resp.status_code == 503 and "not connected" in resp.json()["error"]


def test_console_survives_broker_restart_with_persistent_session(mosquitto_factory, prefix):
    broker = mosquitto_factory()
    cfg = make_config(broker.url, prefix)
    with TestClient(create_app(cfg, client_id=f"console-{prefix}", extra_hosts=["testserver"])) as client:
        assert wait_until(lambda: client.get("/api/state").json()["meta"]["broker_connected"])
        broker.stop()
        assert wait_until(lambda: not client.get("/healthz").json()["broker_connected"])
        broker.start()  # same port and data dir: the console's session (and subscription) is kept
        iid, topic, start = alert_bytes(cfg)
        publish(cfg.mqtt, topic, start)
        state = wait_until(lambda: client.get("/api/state").json()["incidents"], timeout=15)
        assert state and state[0]["incident_id"] == iid
        assert client.get("/healthz").json()["broker_connected"] is True


def test_auth_token_refuses_and_accepts(prefix):
    cfg = make_config("mqtt://127.0.0.1:1", prefix)  # nothing listens: the page still serves
    with TestClient(create_app(cfg, token=TOKEN, client_id=f"console-{prefix}")) as client:
        assert client.get("/api/state").status_code == 401
        assert client.get("/api/state", headers={"Authorization": "Bearer wrong-token-wrong-token"}).status_code == 401
        assert client.post("/api/incidents/x-1/ack", json={"operator": "Ana"}).status_code == 401
        assert client.get("/static/console.js").status_code == 401
        page = client.get("/")
        assert page.status_code == 401 and "mã truy cập" in page.text  # console.language: vi
        assert client.get("/api/state", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
        login = client.get(f"/?token={TOKEN}", follow_redirects=False)
        assert login.status_code == 303 and "httponly" in login.headers["set-cookie"].lower()
        assert client.get("/").status_code == 200  # cookie set by the redirect
        assert "text/javascript" in client.get("/static/console.js").headers["content-type"]
        assert client.get("/healthz").json()["ok"] is True


def test_without_token_only_loopback_host_names_are_answered(prefix):
    cfg = make_config("mqtt://127.0.0.1:1", prefix)
    with TestClient(create_app(cfg, client_id=f"console-{prefix}"), base_url="http://127.0.0.1:8090") as client:
        page = client.get("/")
        assert page.status_code == 200 and "default-src 'self'" in page.headers["content-security-policy"]
        assert client.get("/api/state", headers={"host": "evil.example.com"}).status_code == 403
        state = client.get("/api/state").text
        assert S3_SECRET not in state and "AKIACONSOLETEST" not in state and "never" not in page.text


def test_pipeline_records_acks_in_state_store(mqtt_broker, prefix, tmp_path):
    cfg = make_config(mqtt_broker, prefix)
    store = StateStore(tmp_path / "state.db")
    recorder = AckRecorder(cfg.mqtt, f"acks-{prefix}", store.record_ack).start()
    try:
        assert recorder.wait_subscribed(5)
        ack = make_ack("cam-north-fire-1700000000", "Ana")
        publish(cfg.mqtt, f"{prefix}/ack/cam-north-fire-1700000000", ack.to_json())
        publish(cfg.mqtt, f"{prefix}/ack/cam-north-fire-1700000000", ack.to_json())  # duplicate
        publish(cfg.mqtt, f"{prefix}/ack/cam-north-fire-1700000000", b"{}")  # malformed: dropped
        assert wait_until(lambda: store.acks())
        time.sleep(0.3)
        assert store.acks() == [("cam-north-fire-1700000000", "Ana", ack.time.isoformat())]
        assert store.counters()["acks_recorded"] == 1
    finally:
        recorder.stop()
        store.close()


def test_watch_session_records_acks_and_logs_them(mqtt_broker, s3_server, prefix, tmp_path, caplog):
    from pipeline.processing.runner import WatchSession

    cfg = config_from_dict({
        "s3": {"url": s3_server.url, "access_key": s3_server.access_key, "secret_key": s3_server.secret_key},
        "mqtt": {"url": mqtt_broker, "topic_prefix": prefix},
        "worker": {"name": f"w-{prefix}", "state_dir": str(tmp_path / "state")},
        "cameras": [{"id": "cam-north", "name": "North Bridge"}],
    }, env={})
    caplog.set_level("INFO", logger="pipeline.delivery.acks")
    with WatchSession(cfg) as session:
        assert session._acks is not None and session._acks.wait_subscribed(5)
        ack = make_ack("cam-north-fire-20260101T000000000", "Ana", note="crew sent")
        publish(cfg.mqtt, f"{prefix}/ack/{ack.incident_id}", ack.to_json())
        assert wait_until(lambda: session.worker.state.acks(ack.incident_id))
    assert "acknowledged by Ana" in caplog.text and "crew sent" in caplog.text


def test_cli_refuses_public_bind_without_token_and_bad_tile_url(monkeypatch):
    from typer.testing import CliRunner

    from pipeline.app.cli import app

    monkeypatch.delenv("CITYWATCH_CONSOLE_TOKEN", raising=False)
    result = CliRunner().invoke(app, ["console", "--host", "0.0.0.0"])
    assert result.exit_code == 2 and "without an access token" in result.output
    result = CliRunner().invoke(app, ["console", "--tile-url", "javascript:alert(1)"])
    assert result.exit_code == 2 and "--tile-url" in result.output

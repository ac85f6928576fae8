"""The console's incident store on both backends for real: SQLite in a temporary file and PostgreSQL at
127.0.0.1:5432 (database ``test``, tables under a unique prefix dropped afterwards); the board
writing through it and rebuilt from it; the REST search and CSV export."""

from __future__ import annotations

import csv
import io
import json
import uuid

import pytest
from starlette.testclient import TestClient

from pipeline.alerts.incident_store import IncidentStore, StoreError, store_url
from pipeline.app.console import IncidentBoard, create_app
from pipeline.app.embedded import port_open
from tests.test_console import alert_bytes, make_config

PG_URL = "postgresql://postgres@127.0.0.1:5432/test"


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    prefix = f"t{uuid.uuid4().hex[:10]}_"
    if request.param == "sqlite":
        url = store_url(None, tmp_path)
    else:
        if not port_open("127.0.0.1", 5432):
            pytest.skip("no PostgreSQL on 127.0.0.1:5432")
        url = store_url(PG_URL, tmp_path)
    st = IncidentStore(url, prefix)
    yield st
    st.drop()
    st.close()


def _ack(iid: str, operator: str = "Ana", time: str = "2023-11-14T22:20:00Z") -> dict:
    return {"incident_id": iid, "operator": operator, "time": time, "note": "", "console": "c1"}


def test_board_writes_through_and_a_new_board_rebuilds_from_the_store(store):
    cfg = make_config("mqtt://127.0.0.1:1", "cwstore")
    board = IncidentBoard(cfg, store=store)
    fire_id, topic, start = alert_bytes(cfg, seq=1, severity="extreme")
    board.handle(topic, start)
    board.handle(topic, alert_bytes(cfg, seq=2, state="update", severity="extreme")[2])
    flood_id, ftopic, flood = alert_bytes(cfg, camera_id="cam-south", event_type="flood", severity="moderate",
                                          started=1_700_000_100.0, measurements={"flooded_pct": 40.0})
    board.handle(ftopic, flood)
    board.handle(ftopic, alert_bytes(cfg, camera_id="cam-south", event_type="flood", seq=2, state="end",
                                     started=1_700_000_100.0)[2])
    board.add_ack(_ack(fire_id))
    assert store.count() == 2 and board.store_errors == 0
    assert [m["seq"] for m in store.messages(fire_id)] == [1, 2]
    assert [a["operator"] for a in store.ack_log(fire_id)] == ["Ana"]

    again = IncidentBoard(cfg, store=store)  # a console restarted: nothing from MQTT yet
    assert again.restore() == 2
    snap = again.snapshot()["incidents"]
    assert [i["incident_id"] for i in snap] == [flood_id, fire_id]
    fire = again.incident(fire_id)
    assert fire["ack"]["operator"] == "Ana" and fire["state"] == "update" and fire["severity"] == "extreme"
    assert again.handle(topic, start) is None  # the broker's replay of a known message changes nothing


def test_search_by_time_type_camera_district_state_and_test(store):
    cfg = make_config("mqtt://127.0.0.1:1", "cwsearch")
    board = IncidentBoard(cfg, store=store)
    ids = {}
    for i, (cam, kind, state) in enumerate([("cam-north", "fire", "start"), ("cam-south", "flood", "start"),
                                            ("cam-north", "smoke", "end")]):
        iid, topic, payload = alert_bytes(cfg, camera_id=cam, event_type=kind, started=1_700_000_000.0 + 1000 * i,
                                          state=state, seq=1 if state == "start" else 3)
        board.handle(topic, payload)
        ids[kind] = iid
    found = lambda **q: [i["incident_id"] for i in store.search(**q)]  # noqa: E731
    assert found() == [ids["smoke"], ids["flood"], ids["fire"]]  # newest first
    assert found(camera_id="cam-north") == [ids["smoke"], ids["fire"]]
    assert found(district="Hiep Thanh") == [ids["flood"]]
    assert found(type="fire") == [ids["fire"]]
    assert found(state="open") == [ids["flood"], ids["fire"]]
    assert found(state="end") == [ids["smoke"]]
    assert found(since=1_700_000_500.0, until=1_700_001_500.0) == [ids["flood"]]
    assert found(test=True) == []
    assert found(min_severity="severe", limit=1) == [ids["smoke"]]
    with pytest.raises(ValueError, match="cannot search incidents by 'operator'"):
        store.search(operator="x")


def test_unreachable_database_is_a_clear_error_without_the_password(tmp_path):
    with pytest.raises(StoreError) as err:
        IncidentStore(store_url("postgresql://citywatch:hunter2-secret@127.0.0.1:1/ioc", tmp_path), "x_")
    assert "127.0.0.1" in str(err.value) and "hunter2" not in str(err.value)


def test_rest_api_and_csv_export(store):
    cfg = make_config("mqtt://127.0.0.1:1", f"cwapi{uuid.uuid4().hex[:6]}")
    app = create_app(cfg, client_id="console-api-test", extra_hosts=["testserver"], store=store, tick_s=60)
    with TestClient(app) as client:
        board = app.state.board
        iid, topic, payload = alert_bytes(cfg, severity="extreme", measurements={"area_pct": 6.5})
        board.handle(topic, payload)
        evil_id, etopic, evil = alert_bytes(cfg, camera_id="cam-south", started=1_700_000_900.0)
        doc = json.loads(evil)
        doc["camera"]["name"] = "=HYPERLINK(\"http://x\")"
        board.handle(etopic, json.dumps(doc).encode())
        body = client.get("/api/incidents", params={"camera": "cam-north"}).json()
        assert body["count"] == 1 and body["incidents"][0]["incident_id"] == iid
        assert client.get("/api/incidents", params={"since": "2023-11-15T05:20:00+07:00"}).json()["count"] == 1
        bad = client.get("/api/incidents", params={"since": "yesterday"})
        assert bad.status_code == 400 and "since" in bad.json()["error"]
        assert client.get("/api/incidents", params={"colour": "red"}).status_code == 400
        assert client.get("/api/incidents", params={"state": "closed"}).status_code == 400
        one = client.get(f"/api/incidents/{iid}").json()
        assert one["incident"]["severity"] == "extreme" and [a["seq"] for a in one["alerts"]] == [1]
        assert client.get("/api/incidents/nope-1").status_code == 404
        resp = client.get("/api/incidents.csv")
        assert resp.headers["content-type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(resp.content.decode("utf-8-sig"))))
        assert [r["incident_id"] for r in rows] == [evil_id, iid]
        assert rows[1]["started"] == "2023-11-15 05:13:20 +07"  # Asia/Ho_Chi_Minh, offset shown
        assert rows[1]["measurements"] == "diện tích cháy 6.5 %"  # plain words and unit, console.language (vi)
        assert rows[0]["camera_name"].startswith("'=")  # no formula for a spreadsheet
        cams = client.get("/api/cameras").json()
        assert [c["id"] for c in cams["cameras"]] == ["cam-north", "cam-south"]


def test_a_database_error_loses_nothing_the_write_is_retried(store, caplog):
    cfg = make_config("mqtt://127.0.0.1:1", "cwretry")
    board = IncidentBoard(cfg, store=store)
    store.drop()  # the database loses its tables (or is unreachable): every write fails
    iid, topic, start = alert_bytes(cfg, seq=1)
    delta = board.handle(topic, start)
    assert delta["incident"]["incident_id"] == iid  # the board and the pages carry on
    board.handle(topic, alert_bytes(cfg, seq=2, state="update")[2])
    assert board.store_errors == 2 and "not saved" in caplog.text
    assert board.retry_unsaved() == 1  # still failing: kept
    store._md.create_all(store.engine)  # the database is back
    assert board.retry_unsaved() == 0
    assert [m["seq"] for m in store.messages(iid)] == [1, 2] and store.get(iid)["seq"] == 2

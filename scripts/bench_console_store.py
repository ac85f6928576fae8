"""Figures for the console's incident store: alerts written per second through the board, board
rebuild time after a restart, search time; SQLite (temporary file) and PostgreSQL (if reachable).

    .venv/bin/python scripts/bench_console_store.py [--incidents 2000] [--pg postgresql://postgres@127.0.0.1:5432/test]
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from pathlib import Path

from pipeline.alerts.incident_store import IncidentStore, store_url
from pipeline.alerts.incidents import IncidentEvent
from pipeline.alerts.payload import alert_topic, build_alert
from pipeline.app.console.board import IncidentBoard
from pipeline.app.embedded import port_open
from pipeline.config.settings import config_from_dict


def _alerts(cfg, n: int):
    cams = [c.id for c in cfg.cameras]
    for i in range(n):
        cam = cams[i % len(cams)]
        started = 1_764_700_000.0 + 60 * i
        for seq, state in ((1, "start"), (2, "update"), (3, "end")):
            event = IncidentEvent(incident_id=f"{cam}-fire-{int(started)}", camera_id=cam, type="fire", state=state,
                                  seq=seq, severity="severe", confidence=0.9, measurements={"area_pct": 2.0 * seq},
                                  frame_ts=started + seq, started_ts=started,
                                  ended_ts=started + seq if state == "end" else None)
            payload = build_alert(event, cfg.camera(cam), frame_bucket="frames", frame_key=None, evidence=None,
                                  test=False, worker="bench")
            yield alert_topic(cfg.mqtt.topic_prefix, "fire", cam), payload.to_json()


def bench(name: str, url: str, n: int) -> None:
    cfg = config_from_dict({"mqtt": {"topic_prefix": "bench"}, "cameras": [
        {"id": f"cam-{i}", "location": {"lat": 10.9 + i / 100, "lon": 106.6, "district": f"d{i % 5}"}} for i in range(20)]},
        env={})
    store = IncidentStore(url, f"b{uuid.uuid4().hex[:8]}_")
    try:
        messages = list(_alerts(cfg, n))
        board = IncidentBoard(cfg, max_incidents=n, store=store)
        t0 = time.perf_counter()
        for topic, payload in messages:
            board.handle(topic, payload)
        write_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        restored = IncidentBoard(cfg, max_incidents=500, store=store).restore()
        rebuild_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        found = store.search(camera_id="cam-3", since=1_764_700_000.0 + 60 * n / 2, limit=200)
        search_s = time.perf_counter() - t0
        print(f"{name:10s} {len(messages)} alerts in {write_s:.2f} s = {len(messages) / write_s:.0f} alerts/s written "
              f"through the board; rebuild of {restored} incidents {rebuild_s * 1000:.0f} ms; "
              f"search ({len(found)} hits of {store.count()}) {search_s * 1000:.1f} ms")
    finally:
        store.drop()
        store.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--incidents", type=int, default=2000)
    ap.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/test")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        bench("sqlite", store_url(None, Path(tmp)), args.incidents)
    if port_open("127.0.0.1", 5432):
        bench("postgresql", store_url(args.pg, Path(".")), args.incidents)


if __name__ == "__main__":
    main()

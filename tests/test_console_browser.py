"""The console page in a real headless Chromium (Debian's ``chromium`` driven by Playwright): alerts
published to Mosquitto appear live with their snapshot (annotated JPEG in moto S3 behind a presigned
URL), and clicking *Acknowledge* puts an ack message on the broker.

Set ``CITYWATCH_CONSOLE_SCREENSHOT=docs/console.png`` to refresh that screenshot (docs/console.md shows
the Vietnamese and 390 px ones, refreshed by tests/test_console_triage_browser.py).
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np
import pytest

from pipeline.alerts.evidence import EvidenceStore
from pipeline.alerts.incidents import IncidentEvent
from pipeline.alerts.payload import alert_topic, build_alert
from pipeline.app.console import create_app
from pipeline.app.embedded import free_port
from pipeline.config.settings import config_from_dict
from pipeline.delivery.mqtt import Subscriber
from sample_media import load_scene
from tests.test_console import publish, wait_until

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
if not Path(CHROMIUM).exists():
    pytest.skip("Debian's chromium is not installed (apt-get install -y chromium)", allow_module_level=True)
sync_playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed").sync_playwright
uvicorn = pytest.importorskip("uvicorn")

pytestmark = [pytest.mark.slow, pytest.mark.integration]
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
CAMERAS = [
    {"id": "cam-market", "name": "Market Street", "location": {"lat": 10.9805, "lon": 106.6519, "district": "Phu Cuong"}},
    {"id": "cam-river", "name": "Riverside Road", "location": {"lat": 10.9712, "lon": 106.6602, "district": "Hiep Thanh"}},
    {"id": "cam-ring", "name": "Ring Road Junction", "location": {"lat": 10.9921, "lon": 106.6705, "district": "Chanh Nghia"}},
    {"id": "cam-depot", "name": "Bus Depot", "location": {"lat": 10.9655, "lon": 106.6431, "district": "Phu Cuong"}},
]


def _frame(scene: str, index: int) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(load_scene(scene)[index][1], np.uint8), cv2.IMREAD_COLOR)


class ConsoleServer:
    """The console app served by uvicorn in a thread; ``restart()`` starts a fresh one on the same port."""

    def __init__(self, cfg, port: int, tile_url: str | None = None) -> None:
        self.cfg, self.port, self.tile_url = cfg, port, tile_url
        self.url = f"http://127.0.0.1:{port}/"
        self._server = self._thread = None

    def start(self) -> ConsoleServer:
        app = create_app(self.cfg, client_id=f"console-{self.cfg.mqtt.topic_prefix}",  # same id: same MQTT session
                         tile_url=self.tile_url)
        self._server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                                     timeout_graceful_shutdown=1))
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        assert wait_until(lambda: self._server.started, 10), "console server did not start"
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(10)


@pytest.fixture
def console(mqtt_broker, minio_client):
    """A config, the console served by uvicorn on a free port, and an evidence store in moto S3."""
    prefix = f"cwbrowser{uuid.uuid4().hex[:8]}"
    cfg = config_from_dict({"mqtt": {"url": mqtt_broker, "topic_prefix": prefix}, "cameras": CAMERAS}, env={})
    bucket = f"alerts-{prefix}"
    evidence = EvidenceStore(minio_client, bucket, 3600)
    evidence.ensure_bucket()
    server = ConsoleServer(cfg, free_port()).start()
    yield cfg, evidence, server
    server.stop()
    for cam in CAMERAS:  # leave no retained status behind on a shared broker
        publish(cfg.mqtt, f"{prefix}/cameras/{cam['id']}/status", b"", retain=True)


def _alert(cfg, evidence, camera_id, event_type, scene, index, box, seq=1, state="start", severity="severe",
           started_ago=60.0, measurements=None, base=None):
    now = time.time()
    started = round((base or now) - started_ago)  # same base -> same incident id
    event = IncidentEvent(incident_id=f"{camera_id}-{event_type}-{int(started * 1000)}", camera_id=camera_id,
                          type=event_type, state=state, seq=seq, severity=severity, confidence=0.87,
                          measurements=measurements or {}, boxes=(box,), frame_ts=now - 2, started_ts=started,
                          ended_ts=now - 2 if state == "end" else None)
    stored = evidence.store(event, _frame(scene, index), None)
    payload = build_alert(event, cfg.camera(camera_id), frame_bucket="frames", frame_key=None, evidence=stored,
                          test=False, worker="edge-01")
    return event.incident_id, alert_topic(cfg.mqtt.topic_prefix, event_type, camera_id), payload.to_json()


def _status(cfg, camera_id, state, silent_s, fps):
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    doc = {"camera_id": camera_id, "state": state, "last_frame_time": now, "last_seen": now, "silent_s": silent_s,
           "fps": fps, "incident_id": None, "checked_at": now}
    publish(cfg.mqtt, f"{cfg.mqtt.topic_prefix}/cameras/{camera_id}/status", json.dumps(doc).encode(), retain=True)


def test_alert_appears_with_snapshot_and_ack_reaches_mqtt(console, tmp_path):
    cfg, evidence, server = console
    url = server.url
    prefix = cfg.mqtt.topic_prefix
    acks: list[tuple[str, bytes]] = []
    with Subscriber(cfg.mqtt, f"ackwatch-{prefix}", [f"{prefix}/ack/#"], lambda t, p, r: acks.append((t, p))) as watcher, \
            sync_playwright() as pw:
        assert watcher.wait_subscribed(5)
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1440, "height": 1000})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(url)
        page.wait_for_selector("#link-status.ok", timeout=10_000)
        page.wait_for_selector("#broker-status.ok", timeout=10_000)

        for cam, state, silent, fps in [("cam-market", "online", 0.4, 2.0), ("cam-river", "online", 0.6, 2.0),
                                        ("cam-ring", "stale", 41.0, 1.0), ("cam-depot", "offline", 300.0, 0.0)]:
            _status(cfg, cam, state, silent, fps)
        t0 = time.time()
        jam_id, topic, jam = _alert(cfg, evidence, "cam-ring", "congestion", "traffic", 60, (0.2, 0.4, 0.6, 0.6),
                                    severity="moderate", started_ago=900, measurements={"occupancy_pct": 71.0, "speed": 0.04})
        publish(cfg.mqtt, topic, jam)
        flood_id, topic, flood = _alert(cfg, evidence, "cam-river", "flood", "flood", 50, (0.1, 0.4, 0.8, 0.6),
                                        severity="moderate", started_ago=300, base=t0,
                                        measurements={"flooded_pct": 64.2, "water_level_index": 0.31})
        publish(cfg.mqtt, topic, flood)
        publish(cfg.mqtt, topic, _alert(cfg, evidence, "cam-river", "flood", "flood", 55, (0.1, 0.4, 0.8, 0.6), seq=2,
                                        state="update", severity="severe", started_ago=300, base=t0,
                                        measurements={"flooded_pct": 78.9, "water_level_index": 0.44})[2])
        page.wait_for_selector(f'[data-incident="{flood_id}"] .timeline li:nth-child(2)', timeout=10_000)
        page.wait_for_function("document.getElementById('flash').classList.contains('on')", timeout=5_000)
        page.locator(f'[data-incident="{flood_id}"] button.ack').click()
        assert page.locator("#operator").evaluate("el => el.classList.contains('need')")  # asks for a name first

        fire_id, topic, fire = _alert(cfg, evidence, "cam-market", "fire", "fire", 40, (0.08, 0.53, 0.17, 0.28),
                                      severity="severe", started_ago=45,
                                      measurements={"area_pct": 3.41, "flicker": 0.62})
        publish(cfg.mqtt, topic, fire)
        card = page.locator(f'[data-incident="{fire_id}"]')
        card.wait_for(timeout=10_000)
        assert "Market Street" in card.inner_text() and "Phu Cuong" in card.inner_text()
        img = card.locator(".snapshot img")
        assert "X-Amz-Signature" in img.get_attribute("src")
        page.wait_for_function("(el) => el.complete && el.naturalWidth === 640", arg=img.element_handle(), timeout=10_000)
        assert page.locator(".incident").first.get_attribute("data-incident") == fire_id  # newest first

        page.fill("#operator", "A. Nguyen")
        page.locator(f'[data-incident="{flood_id}"] button.ack').click()
        assert wait_until(lambda: acks), "the ack click put no message on the broker"
        topic, payload = acks[0]
        body = json.loads(payload)
        assert topic == f"{prefix}/ack/{flood_id}" and body["incident_id"] == flood_id
        assert body["operator"] == "A. Nguyen"
        page.wait_for_selector(f'[data-incident="{flood_id}"] .ack-done', timeout=10_000)

        page.select_option("#filter-type", "fire")
        assert page.locator(".incident").count() == 1
        page.select_option("#filter-type", "")
        page.select_option("#filter-district", "Hiep Thanh")
        assert [page.locator(".incident").nth(i).get_attribute("data-incident")
                for i in range(page.locator(".incident").count())] == [flood_id]
        page.select_option("#filter-district", "")
        assert page.locator(".cam-dot.offline").count() == 1 and page.locator(".cam-dot.online").count() == 2
        assert not errors, errors

        shot = tmp_path / "console.png"
        page.wait_for_timeout(3000)  # let the new-incident animations settle
        page.screenshot(path=str(shot))
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        if os.environ.get("CITYWATCH_CONSOLE_SCREENSHOT"):
            shutil.copy(shot, os.environ["CITYWATCH_CONSOLE_SCREENSHOT"])

        # the console server restarts; meanwhile a new alert is published: the broker keeps it in the
        # console's persistent session, and the page reconnects by itself and shows it
        server.stop()
        page.wait_for_selector("#link-status.bad", timeout=10_000)
        smoke_id, topic, smoke = _alert(cfg, evidence, "cam-depot", "smoke", "fire", 50, (0.0, 0.0, 0.4, 0.5),
                                        severity="moderate", started_ago=20, measurements={"area_pct": 12.0})
        publish(cfg.mqtt, topic, smoke)
        server.start()
        page.wait_for_selector(f'[data-incident="{smoke_id}"]', timeout=20_000)
        page.wait_for_selector("#link-status.ok", timeout=10_000)
        page.wait_for_selector(".cam-dot.offline", timeout=5_000)  # retained statuses fetched again
        assert page.locator(".cam-dot.online").count() == 2 and page.locator(".cam-dot.unknown").count() == 0
        assert not errors, errors
        browser.close()
    assert jam_id


def test_map_draws_tiles_from_the_tile_url(mqtt_broker):
    """With a tile URL the Leaflet map loads Web Mercator tiles around the cameras (a local tile server here)."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    ok, tile = cv2.imencode(".png", np.full((256, 256, 3), (60, 50, 40), np.uint8))
    requested: list[str] = []

    class Tiles(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            requested.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.end_headers()
            self.wfile.write(tile.tobytes())

        def log_message(self, *args):
            pass

    tiles = ThreadingHTTPServer(("127.0.0.1", 0), Tiles)
    threading.Thread(target=tiles.serve_forever, daemon=True).start()
    cfg = config_from_dict({"mqtt": {"url": mqtt_broker, "topic_prefix": f"cwtiles{uuid.uuid4().hex[:8]}"},
                            "cameras": CAMERAS}, env={})
    server = ConsoleServer(cfg, free_port(), tile_url=f"http://127.0.0.1:{tiles.server_port}/{{z}}/{{x}}/{{y}}.png").start()
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page()
            page.goto(server.url)
            page.wait_for_selector("#map img.leaflet-tile", state="attached", timeout=10_000)
            assert wait_until(lambda: requested)
            z, x, y = (int(v) for v in requested[0].removesuffix(".png").strip("/").split("/"))
            # the cameras (lat ~10.98, lon ~106.65) span a few km: zoom 12-15 tiles around them
            assert 12 <= z <= 15
            n = 2 ** z
            assert abs(x - int((106.66 + 180) / 360 * n)) <= 2
            assert page.locator(".cam-dot").count() == len(CAMERAS)
            browser.close()
    finally:
        server.stop()
        tiles.shutdown()

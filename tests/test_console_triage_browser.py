"""The console in real headless Chromium, as an operator at 3 a.m. sees it: an EXTREME fire pinned above a
moderate flood, an alarm that repeats until acknowledged, Vietnamese strings and local time, the board
rebuilt from the incident store after a console restart (fresh MQTT session: nothing replayed), a
worker gone offline, and the page at 390 px.

Set ``CITYWATCH_CONSOLE_SCREENSHOTS=docs`` to refresh docs/console-vi.png and docs/console-390.png.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pipeline.alerts.incident_store import IncidentStore, store_url
from pipeline.alerts.incidents import IncidentEvent
from pipeline.alerts.payload import alert_topic, build_alert
from pipeline.app.console import create_app
from pipeline.app.embedded import free_port
from pipeline.config.settings import config_from_dict
from tests.test_console import publish, wait_until
from tests.test_console_browser import CAMERAS, CHROMIUM, CHROMIUM_ARGS, sync_playwright, uvicorn

pytestmark = [pytest.mark.slow, pytest.mark.integration]
SHOTS = os.environ.get("CITYWATCH_CONSOLE_SCREENSHOTS")


class Console:
    """The console app under uvicorn in a thread, with an SQLite incident store in ``db_dir``."""

    def __init__(self, cfg, db_dir: Path, prefix: str) -> None:
        self.cfg, self.db_dir, self.prefix = cfg, db_dir, prefix
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.store = None

    def start(self, client_id: str) -> Console:
        self.store = IncidentStore(store_url(None, self.db_dir), "console_")
        app = create_app(self.cfg, client_id=client_id, store=self.store)
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                                    timeout_graceful_shutdown=1))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        assert wait_until(lambda: self.server.started, 10), "console server did not start"
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.store.close()


@pytest.fixture
def console(mqtt_broker, tmp_path):
    prefix = f"cwtriage{uuid.uuid4().hex[:8]}"
    cfg = config_from_dict({"mqtt": {"url": mqtt_broker, "topic_prefix": prefix}, "cameras": CAMERAS,
                            "console": {"language": "vi", "timezone": "Asia/Ho_Chi_Minh",
                                        "alarm": {"repeat_s": 2, "escalate_after_s": 600}}}, env={})
    con = Console(cfg, tmp_path, prefix).start(f"console-{prefix}-a")
    yield con
    con.stop()
    for cam in CAMERAS:
        publish(cfg.mqtt, f"{prefix}/cameras/{cam['id']}/status", b"", retain=True)
    publish(cfg.mqtt, f"{prefix}/workers/edge-01/status", b"", retain=True)


def send(cfg, camera_id, event_type, severity, started_ago, measurements, seq=1, state="start", base=None,
         detected_ago=0.0):
    now = base or time.time()
    started = round(now - started_ago)
    event = IncidentEvent(incident_id=f"{camera_id}-{event_type}-{started * 1000}", camera_id=camera_id,
                          type=event_type, state=state, seq=seq, severity=severity, confidence=0.9,
                          measurements=measurements, frame_ts=now - 1, started_ts=started)
    payload = build_alert(event, cfg.camera(camera_id), frame_bucket="frames", frame_key=None, evidence=None,
                          test=False, worker="edge-01",
                          detected_at=datetime.fromtimestamp(now - detected_ago, UTC))
    publish(cfg.mqtt, alert_topic(cfg.mqtt.topic_prefix, event_type, camera_id), payload.to_json())
    return event.incident_id


def launch(pw, **context):
    browser = pw.chromium.launch(executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, "--autoplay-policy=no-user-gesture-required"])
    ctx = browser.new_context(**context)
    page = ctx.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    return browser, ctx, page, errors


def ids_in(page, group: str) -> list[str]:
    return page.eval_on_selector_all(f'[data-group="{group}"] .incident', "els => els.map(e => e.dataset.incident)")


def cues(page) -> int:
    return int(page.evaluate("Number(document.body.dataset.alarmCues || 0)"))


def test_extreme_fire_is_pinned_first_and_the_alarm_repeats_until_acknowledged(console):
    cfg = console.cfg
    with sync_playwright() as pw:
        browser, ctx, page, errors = launch(pw, viewport={"width": 1440, "height": 900})
        ctx.grant_permissions(["notifications"], origin=console.url.rstrip("/"))
        page.goto(console.url)
        page.wait_for_selector("#link-status.ok", timeout=10_000)
        # the fire started first, the flood and the jam later: time alone would put the fire last
        fire = send(cfg, "cam-market", "fire", "extreme", 600, {"area_pct": 6.2, "growth": 2.4})
        flood = send(cfg, "cam-river", "flood", "moderate", 120, {"flooded_pct_smoothed": 41.0, "water_level_index": 0.31})
        jam = send(cfg, "cam-ring", "congestion", "minor", 30, {"occupancy_pct": 55.0})
        page.wait_for_selector(f'[data-incident="{jam}"]', timeout=10_000)
        assert ids_in(page, "pinned") == [fire] and ids_in(page, "open") == [flood, jam]
        order = page.eval_on_selector_all(".incident", "els => els.map(e => e.dataset.incident)")
        assert order == [fire, flood, jam]
        box = page.locator(f'[data-incident="{fire}"]').bounding_box()
        assert box["y"] + 60 < 900, "the extreme fire is below the fold"

        # Vietnamese strings, plain measurements, local time
        assert page.evaluate("document.documentElement.lang") == "vi"
        card = page.locator(f'[data-incident="{flood}"]')
        assert card.locator("button.ack").inner_text() == "Xác nhận"
        text = card.inner_text().lower()  # CSS capitalises the first letter
        assert "mặt đường bị ngập (làm mượt)" in text and "41 %" in text and "mực nước" in text
        assert "flooded_pct" not in text and "Flooded Pct" not in text
        assert "ngập nước" in text and "trung bình" in text
        assert page.locator("#count-live").inner_text() == "3 đang mở"
        assert page.locator("#count-unacked").inner_text() == "3 chưa xác nhận"
        assert page.locator("#count-test").inner_text() == "0 thử nghiệm"
        assert "GMT+7" in page.locator("#clock").inner_text()
        started = datetime.fromisoformat(page.evaluate(f"state.incidents.get('{fire}').started_at").replace("Z", "+00:00"))
        local = started.astimezone(cfg.console.zone())
        assert f"{local:%H:%M:%S}" in page.locator(f'[data-incident="{fire}"] .when').inner_text()

        # the alarm repeats (every 2 s here): flash, title, sound, notification
        assert page.locator("#alarm-bar").is_visible() and "1 chưa xác nhận" in page.locator("#alarm-bar").inner_text()
        assert wait_until(lambda: cues(page) >= 3, 12), cues(page)
        page.wait_for_function("document.title.includes('chưa xác nhận')", timeout=5_000)
        assert page.evaluate("alarm.beeps") >= 2
        assert page.evaluate("Notification.permission") == "granted" and page.evaluate("alarm.notified") >= 2

        # a worker gone offline: its cameras stop being green at once
        now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        status = {"camera_id": "cam-market", "state": "online", "last_frame_time": now, "last_seen": now,
                  "silent_s": 0.5, "fps": 2.0, "incident_id": None, "checked_at": now}
        publish(cfg.mqtt, f"{cfg.mqtt.topic_prefix}/cameras/cam-market/status", json.dumps(status).encode(), retain=True)
        page.wait_for_selector('tr[data-camera="cam-market"][data-health="online"]', timeout=10_000)
        publish(cfg.mqtt, f"{cfg.mqtt.topic_prefix}/workers/edge-01/status", json.dumps(
            {"state": "offline", "worker": "edge-01", "reason": "connection lost", "ts": now}).encode(), retain=True)
        page.wait_for_selector('tr[data-camera="cam-market"][data-health="offline"]', timeout=10_000)
        assert "máy xử lý ngừng" in page.locator('tr[data-camera="cam-market"]').inner_text()
        assert page.locator('.cam-dot.offline[data-camera="cam-market"]').count() == 1
        if SHOTS:
            page.wait_for_timeout(1500)
            page.screenshot(path=str(Path(SHOTS) / "console-vi.png"))

        # acknowledging stops the alarm; the fire leaves the pinned group
        page.fill("#operator", "Nguyễn An")
        page.locator(f'[data-incident="{fire}"] button.ack').click()
        page.wait_for_selector(f'[data-incident="{fire}"] .ack-done', timeout=10_000)
        assert "Nguyễn An đã xác nhận" in page.locator(f'[data-incident="{fire}"] .ack-done').inner_text()
        assert ids_in(page, "pinned") == [] and ids_in(page, "open")[0] == fire
        assert not page.locator("#alarm-bar").is_visible()
        stopped = cues(page)
        page.wait_for_timeout(4500)
        assert cues(page) == stopped and page.title() == "citywatch · trung tâm điều hành"
        assert not errors, errors
        browser.close()
    assert console.store.ack_log(fire)[0]["operator"] == "Nguyễn An"


def test_board_rebuilt_from_the_store_after_a_restart(console):
    cfg = console.cfg
    fire = send(cfg, "cam-market", "fire", "severe", 900, {"area_pct": 3.1}, detected_ago=660)  # escalated at 600 s
    flood = send(cfg, "cam-river", "flood", "moderate", 200, {"flooded_pct": 30.0})
    assert wait_until(lambda: console.store.count() == 2 and console.store.get(fire).get("escalated_at"))
    console.stop()
    # a new MQTT client id: the broker has no session to replay, only the store knows the incidents
    console.start(f"console-{console.prefix}-b")
    with sync_playwright() as pw:
        browser, ctx, page, errors = launch(pw, viewport={"width": 1280, "height": 900})
        page.goto(console.url)
        page.wait_for_selector(f'[data-incident="{flood}"]', timeout=10_000)
        assert ids_in(page, "pinned") == [fire] and ids_in(page, "open") == [flood]
        assert page.locator("#alarm-bar").is_visible()  # still unacknowledged after the restart
        assert page.locator(f'[data-incident="{fire}"] .badge.escalated').inner_text().lower() == "đã báo cấp trên"
        assert "chưa xác nhận 11 phút" in page.locator(f'[data-incident="{fire}"] .when').inner_text()
        assert not errors, errors
        browser.close()


def test_phone_width_keeps_status_operator_and_sound_on_screen(console):
    cfg = console.cfg
    fire = send(cfg, "cam-market", "fire", "extreme", 90, {"area_pct": 7.5})
    send(cfg, "cam-river", "flood", "moderate", 60, {"flooded_pct": 35.0})
    with sync_playwright() as pw:
        browser, ctx, page, errors = launch(pw, viewport={"width": 390, "height": 844}, is_mobile=True,
                                            has_touch=True, device_scale_factor=2)
        page.goto(console.url)
        page.wait_for_selector(f'[data-incident="{fire}"]', timeout=10_000)
        for sel in ("#link-status", "#broker-status", "#operator", "#sound-toggle", f'[data-incident="{fire}"] button.ack'):
            box = page.locator(sel).bounding_box()
            assert box and box["x"] >= 0 and box["x"] + box["width"] <= 390, (sel, box)
            assert box["y"] + box["height"] <= 844, (sel, box)
        assert page.evaluate("document.documentElement.scrollWidth") <= 390  # no sideways scrolling
        if SHOTS:
            page.wait_for_timeout(1000)
            page.screenshot(path=str(Path(SHOTS) / "console-390.png"))
        assert not errors, errors
        browser.close()


"""The console's /metrics, scraped for real over HTTP from uvicorn behind the console's token:
alerts received by type and state and the board's incidents, parsed with prometheus_client."""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
import uuid

import uvicorn
from prometheus_client.parser import text_string_to_metric_families

from pipeline.app.console.server import create_app
from pipeline.app.embedded import free_port, wait_port
from tests.test_console import TOKEN, alert_bytes, make_config, publish, wait_until
from tests.test_metrics import value


def _scrape(port: int, token: str | None) -> dict:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics",
                                     headers={"Authorization": f"Bearer {token}"} if token else {})
    with urllib.request.urlopen(request, timeout=5) as response:
        text = response.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_console_metrics_count_alerts_and_board_incidents_behind_the_token(mqtt_broker):
    prefix = f"cwcmet-{uuid.uuid4().hex[:8]}"
    cfg = make_config(mqtt_broker, prefix)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(cfg, token=TOKEN, client_id=f"console-{prefix}"),
                                           host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_port("127.0.0.1", port, 20)
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5)
            raise AssertionError("/metrics answered without the token")
        except urllib.error.HTTPError as exc:
            assert exc.code == 401
        before = _scrape(port, TOKEN)
        time.sleep(1.0)  # the console's MQTT session subscribes
        _, topic, start = alert_bytes(cfg, seq=1)
        publish(cfg.mqtt, topic, start)
        publish(cfg.mqtt, topic, alert_bytes(cfg, seq=2, state="update", severity="extreme")[2])
        publish(cfg.mqtt, topic, alert_bytes(cfg, seq=2, state="update", severity="extreme")[2])  # duplicate

        def counted():
            after = _scrape(port, TOKEN)
            return after if value(after, "citywatch_console_alerts_total", type="fire", state="update") \
                - value(before, "citywatch_console_alerts_total", type="fire", state="update") >= 1 else None

        after = wait_until(counted)
        assert after, "the update never reached the console's metrics"
        assert value(after, "citywatch_console_alerts_total", type="fire", state="start") \
            - value(before, "citywatch_console_alerts_total", type="fire", state="start") == 1
        assert value(after, "citywatch_console_alerts_total", type="fire", state="update") \
            - value(before, "citywatch_console_alerts_total", type="fire", state="update") == 1  # not the duplicate
        assert value(after, "citywatch_console_incidents", type="fire", state="update", severity="extreme",
                     acked="false") >= 1
    finally:
        server.should_exit = True
        thread.join(10)

"""The console's MQTT side: a persistent-session subscriber feeding the board, an ack sender,
and the hub that fans board changes out to the open pages (Server-Sent Events queues).

MQTT callbacks run on paho's network thread; pages are served from the asyncio loop. The
:class:`PageHub` crosses that border with ``loop.call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.subscribeoptions import SubscribeOptions

from pipeline.app.console.board import IncidentBoard
from pipeline.config.settings import MqttSettings
from pipeline.delivery.acks import AckMessage, ack_topic
from pipeline.delivery.mqtt import Subscriber, make_client, reason_text, safe_url

__all__ = ["PageHub", "PageFeed", "ConsoleSubscriber", "AckSender", "AckNotSent", "console_filters"]

log = logging.getLogger(__name__)


def console_filters(prefix: str) -> list[str]:
    return [f"{prefix}/alerts/#", f"{prefix}/cameras/+/status", f"{prefix}/workers/+/status", f"{prefix}/ack/#"]


class PageFeed:
    """One open page's queue of deltas; ``overflowed`` means it must be sent a fresh snapshot."""

    def __init__(self, maxsize: int) -> None:
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=maxsize)
        self.overflowed = False


class PageHub:
    """Fan-out of board deltas (from any thread) to every connected page."""

    def __init__(self, queue_size: int = 1000) -> None:
        self._queue_size = queue_size
        self._feeds: set[PageFeed] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def open(self) -> PageFeed:
        feed = PageFeed(self._queue_size)
        self._feeds.add(feed)
        return feed

    def close(self, feed: PageFeed) -> None:
        self._feeds.discard(feed)

    @property
    def pages(self) -> int:
        return len(self._feeds)

    def publish(self, delta: dict[str, Any]) -> None:
        """Thread-safe: queue ``delta`` for every page (a page too slow to keep up gets a resync)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(self._fanout, delta)
        except RuntimeError:  # loop shutting down
            pass

    def _fanout(self, delta: dict[str, Any]) -> None:
        for feed in list(self._feeds):
            try:
                feed.queue.put_nowait(delta)
            except asyncio.QueueFull:
                feed.overflowed = True


class ConsoleSubscriber(Subscriber):
    """Subscriber that also reports broker connection changes (shown on the page)."""

    def __init__(self, mqtt: MqttSettings, client_id: str, board: IncidentBoard, hub: PageHub,
                 on_alarm: Callable[[dict[str, Any], str], None] | None = None) -> None:
        self.board, self.hub, self.on_alarm = board, hub, on_alarm
        self.connected = False
        self._fresh = True  # nothing received yet in this process
        super().__init__(mqtt, client_id, console_filters(mqtt.topic_prefix), self._route,
                         clean_start=False, session_expiry_s=86_400, reconnect_min_s=0.5, reconnect_max_s=5.0)

    def _route(self, topic: str, payload: bytes, retain: bool) -> None:
        delta = self.board.handle(topic, payload)
        if delta is not None:
            self.hub.publish(delta)
            if delta.get("alarm") and self.on_alarm is not None:
                self.on_alarm(delta["incident"], delta["alarm"])

    def _set_connected(self, value: bool) -> None:
        if value != self.connected:
            self.connected = value
            self.hub.publish({"kind": "broker", "connected": value})

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        super()._on_connect(client, userdata, flags, reason_code, properties)
        self._set_connected(not reason_code.is_failure)
        if not reason_code.is_failure and flags.session_present and self._fresh:
            # A restarted console finds its session (queued alerts arrive), but the broker only sends
            # retained camera statuses on SUBSCRIBE: subscribe again to fill the fresh board.
            client.subscribe([(f, SubscribeOptions(qos=self.mqtt.qos)) for f in self.filters])
        if not reason_code.is_failure:
            self._fresh = False
            log.info("console connected to %s (session present: %s)", safe_url(self.mqtt), flags.session_present)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        super()._on_disconnect(client, userdata, flags, reason_code, properties)
        self._set_connected(False)


class AckNotSent(RuntimeError):
    """The ack could not be handed to the broker (not connected, or no PUBACK in time)."""


class AckSender:
    """Publishes acks to ``<prefix>/ack/<incident_id>`` at QoS 1 and waits for the PUBACK."""

    def __init__(self, mqtt: MqttSettings, client_id: str) -> None:
        self.mqtt = mqtt
        self._client = make_client(mqtt, client_id, clean_start=True, session_expiry_s=0,
                                   reconnect_min_s=0.5, reconnect_max_s=5.0)
        self._lock = threading.Lock()

    def start(self) -> AckSender:
        self._client.loop_start()
        return self

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def send(self, ack: AckMessage, timeout_s: float = 5.0) -> None:
        if not self._client.is_connected():
            raise AckNotSent(f"not connected to the broker {safe_url(self.mqtt)}; the ack was not sent")
        with self._lock:
            info = self._client.publish(ack_topic(self.mqtt.topic_prefix, ack.incident_id), ack.to_json(),
                                        qos=1, retain=False)
        if info.rc != paho.MQTT_ERR_SUCCESS:
            raise AckNotSent(f"broker refused the ack: {reason_text(info.rc)}")
        try:
            info.wait_for_publish(timeout_s)
        except (RuntimeError, ValueError) as exc:
            raise AckNotSent(f"the ack was not sent: {exc}") from None
        if not info.is_published():
            raise AckNotSent(f"the broker did not confirm the ack within {timeout_s:.0f} s")



"""Deliver the outbox to the broker: QoS 1, in id order, each row deleted only on its PUBACK.

The worker's liveness is a retained ``<prefix>/workers/<name>/status`` message: "online" on every
connect, "offline" on a clean stop, and the same "offline" as the broker-held last will when the
process dies or the link is lost.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import socket
import threading
import time
from collections import deque
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as paho

from pipeline.common.ids import NAME, full_match
from pipeline.config.settings import MqttSettings
from pipeline.delivery.mqtt import make_client, reason_text, safe_url
from pipeline.state.store import OutboxRow, StateStore

__all__ = ["MqttPublisher"]

log = logging.getLogger(__name__)

#: PUBACK reason codes that mean "not now" rather than "never": Server busy, Quota exceeded.
_RETRYABLE = {0x89, 0x97}
#: Warn when the oldest message in flight has waited this long for its PUBACK.
PUBACK_WARN_S = 30.0


def _utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _as_bytes(payload: Any) -> bytes:
    if isinstance(payload, (bytes, bytearray)):
        return bytes(payload)
    if isinstance(payload, str):
        return payload.encode("utf-8")
    return json.dumps(payload, separators=(",", ":"), sort_keys=True).encode("utf-8")


class MqttPublisher:
    """Publishes a :class:`StateStore` outbox over MQTT; never raises because the broker is down.

    ``flush`` keeps at most ``window`` messages in flight (fewer if the broker's Receive Maximum
    says so); PUBACKs are matched to rows by message id. A PUBACK with a failure reason code that
    will not change (e.g. "Not authorized") moves the row to the store's dead-letter table with
    that reason instead of retrying it forever; "Server busy" / "Quota exceeded" are retried.
    """

    def __init__(self, mqtt: MqttSettings, store: StateStore, worker_name: str, *, window: int = 100,
                 client_id: str | None = None, reconnect_min_s: float = 1.0,
                 reconnect_max_s: float = 30.0, connect_wait_s: float = 0.5,
                 puback_warn_s: float = PUBACK_WARN_S) -> None:
        if not full_match(NAME, worker_name):
            raise ValueError(f"worker name {worker_name!r} may only hold A-Z a-z 0-9 _ - (1-64 chars)")
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self.mqtt = mqtt
        self.store = store
        self.worker_name = worker_name
        self.window = window
        self.connect_wait_s = connect_wait_s
        self.puback_warn_s = puback_warn_s
        self._sent_at: dict[int, float] = {}  # paho mid -> when the row was handed to paho
        self._puback_late_since: float | None = None  # set while the warning below stands
        self.client_id = client_id or mqtt.client_id or f"citywatch-pub-{worker_name}"
        self.status_topic = f"{mqtt.topic_prefix}/workers/{worker_name}/status"
        self._client = make_client(mqtt, self.client_id, clean_start=False, max_inflight=window,
                                   reconnect_min_s=reconnect_min_s, reconnect_max_s=reconnect_max_s)
        self._client.will_set(self.status_topic, self._worker_status("offline", "connection lost"),
                              qos=1, retain=True)
        self._client.on_connect = self._on_connect
        self._client.on_connect_fail = self._on_connect_fail
        self._client.on_disconnect = self._on_disconnect
        self._client.on_publish = self._on_publish
        self._connected = threading.Event()
        self._acks: queue.SimpleQueue[tuple[int, paho.ReasonCode | int]] = queue.SimpleQueue()
        self._inflight: dict[int, OutboxRow] = {}  # paho mid -> outbox row
        self._last_sent_id = 0                     # rows up to here are with paho (sent or resending)
        self._retry: deque[OutboxRow] = deque()    # deferred by the broker, sent again first
        self._retry_after = 0.0
        self._receive_maximum = window             # lowered to the broker's Receive Maximum
        self._flush_lock = threading.Lock()
        self._statuses: dict[str, bytes] = {}    # retained status topics, re-sent on every connect
        self._status_lock = threading.Lock()
        self._outage_logged = False
        self._started = False
        self._stopping = False
        self._disconnected = threading.Event()

    # -- lifecycle ----------------------------------------------------------------------------
    def _worker_status(self, state: str, reason: str) -> bytes:
        return _as_bytes({"state": state, "worker": self.worker_name, "reason": reason,
                          "host": socket.gethostname(), "pid": os.getpid(), "ts": _utc_now()})

    def start(self) -> MqttPublisher:
        """Start the network thread; connecting (and reconnecting) happens in the background."""
        if not self._started:
            log.info("MQTT publisher %s -> %s", self.client_id, safe_url(self.mqtt))
            self._client.loop_start()
            self._started = True
        return self

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def wait_connected(self, timeout_s: float) -> bool:
        return self._connected.wait(timeout_s)

    def stop(self, timeout_s: float = 5.0) -> None:
        """Publish the retained offline status (if connected) and disconnect cleanly."""
        if not self._started:
            return
        if self._connected.is_set():
            info = self._client.publish(self.status_topic, self._worker_status("offline", "stopped"),
                                        qos=1, retain=True)
            try:
                info.wait_for_publish(timeout_s)
            except (RuntimeError, ValueError) as exc:
                log.warning("offline status not confirmed before disconnect: %s", exc)
        self._stopping = True
        was_connected = self._connected.is_set()
        self._client.disconnect()
        if was_connected:
            self._disconnected.wait(timeout_s)  # let the network thread finish before joining it
        self._client.loop_stop()
        self._connected.clear()
        self._started = self._stopping = False

    def __enter__(self) -> MqttPublisher:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- paho callbacks (network thread) ------------------------------------------------------
    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.error("MQTT broker %s refused connection for %s: %s", safe_url(self.mqtt),
                      self.client_id, reason_text(reason_code))
            return
        self._outage_logged = False
        self._disconnected.clear()
        self._sent_at.update(dict.fromkeys(list(self._sent_at), time.monotonic()))  # resent now: wait anew
        self._receive_maximum = min(self.window, getattr(properties, "ReceiveMaximum", self.window) or self.window)
        log.info("MQTT connected to %s as %s (session present: %s)", safe_url(self.mqtt),
                 self.client_id, flags.session_present)
        client.publish(self.status_topic, self._worker_status("online", "connected"), qos=1, retain=True)
        with self._status_lock:
            for topic, data in self._statuses.items():
                client.publish(topic, data, qos=1, retain=True)
        self._connected.set()

    def _on_connect_fail(self, client, userdata) -> None:
        if not self._outage_logged:
            log.warning("MQTT broker %s unreachable (TCP or TLS handshake failed); retrying in background",
                        safe_url(self.mqtt))
            self._outage_logged = True

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        was = self._connected.is_set()
        self._connected.clear()
        self._disconnected.set()
        if was and not self._stopping:
            log.warning("MQTT connection to %s lost: %s; outbox keeps undelivered alerts",
                        safe_url(self.mqtt), reason_text(reason_code))

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        self._acks.put((mid, reason_code))

    # -- publishing ---------------------------------------------------------------------------
    def publish_status(self, topic: str, payload: Any, retain: bool = True) -> bool:
        """Publish a status message (QoS 1); retained ones are re-sent after every reconnect.

        Returns True if it went out now, False if it waits for the connection.
        """
        if not topic or any(c in topic for c in "+#\x00"):
            raise ValueError(f"status topic {topic!r} is empty or holds a wildcard")
        data = _as_bytes(payload)
        if retain:
            with self._status_lock:
                self._statuses[topic] = data
        if not self._connected.is_set():
            return False
        info = self._client.publish(topic, data, qos=1, retain=retain)
        return info.rc == paho.MQTT_ERR_SUCCESS

    def _settle_acks(self, first: tuple[int, Any] | None = None) -> int:
        """Match queued PUBACKs to rows: delete delivered rows, retry on "quota exceeded"/"server
        busy", dead-letter rows the broker refuses for good (e.g. "Not authorized")."""
        items = [first] if first else []
        while True:
            try:
                items.append(self._acks.get_nowait())
            except queue.Empty:
                break
        done: list[int] = []
        for mid, reason in items:
            row = self._inflight.pop(mid, None)
            self._sent_at.pop(mid, None)
            if row is None:
                continue  # a status message, or a row already settled
            if isinstance(reason, paho.ReasonCode) and reason.is_failure:
                if reason.value in _RETRYABLE:
                    log.warning("broker deferred outbox message %d (%s); retrying", row.id, reason_text(reason))
                    self._retry.append(row)
                    self._retry_after = time.monotonic() + 0.5
                    continue
                log.error("broker refused outbox message %d on %s: %s; moved to dead letters", row.id,
                          row.topic, reason_text(reason))
                self.store.move_to_dead_letter(row.id, reason_text(reason))
            else:
                done.append(row.id)
        self.store.delete(done)
        if items and self._puback_late_since is not None:
            log.info("MQTT broker %s acknowledges again (PUBACKs were missing for %.0f s)", safe_url(self.mqtt),
                     time.monotonic() - self._puback_late_since)
            self._puback_late_since = None
        return len(done)

    def _warn_if_pubacks_late(self) -> None:
        """One warning while the oldest message in flight waits longer than ``puback_warn_s``."""
        waited = time.monotonic() - min(self._sent_at.values(), default=time.monotonic())
        if self._puback_late_since is None and waited >= self.puback_warn_s:
            self._puback_late_since = time.monotonic() - waited
            log.warning("MQTT broker %s has not acknowledged %d message(s) for %.0f s although connected; "
                        "they stay in the outbox (a stalled or overloaded broker?)", safe_url(self.mqtt),
                        len(self._inflight), waited)

    def _publish_row(self, row: OutboxRow) -> None:
        info = self._client.publish(row.topic, row.payload, qos=max(1, row.qos), retain=row.retain)
        if info.rc in (paho.MQTT_ERR_SUCCESS, paho.MQTT_ERR_NO_CONN):
            # NO_CONN: paho keeps the message and sends it after reconnecting.
            self._inflight[info.mid] = row
            self._sent_at[info.mid] = time.monotonic()
        else:
            log.error("cannot publish outbox message %d to %s: %s; moved to dead letters",
                      row.id, row.topic, reason_text(info.rc))
            self.store.move_to_dead_letter(row.id, reason_text(info.rc))

    def _send_more(self) -> None:
        if not self._connected.is_set():
            return
        room = self.effective_window - len(self._inflight)
        if self._retry and time.monotonic() >= self._retry_after:
            while self._retry and room > 0:
                self._publish_row(self._retry.popleft())
                room -= 1
        if room <= 0:
            return
        for row in self.store.pending(room, after_id=self._last_sent_id):
            self._publish_row(row)
            self._last_sent_id = row.id

    def flush(self, timeout_s: float = 5.0) -> int:
        """Send pending outbox rows in order and wait for their PUBACKs, up to ``timeout_s``.

        Returns how many rows were acknowledged (and deleted) during this call. With the broker
        down it returns within ``connect_wait_s`` and the rows stay in the outbox.
        """
        deadline = time.monotonic() + max(0.0, timeout_s)
        with self._flush_lock:
            acked = self._settle_acks()
            if not self._connected.wait(min(timeout_s, self.connect_wait_s)):
                return acked
            while True:
                self._send_more()
                if not self._inflight and not self._retry and not self.store.pending(1, after_id=self._last_sent_id):
                    return acked
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return acked
                if not self._connected.is_set() and not self._connected.wait(min(remaining, self.connect_wait_s)):
                    return acked + self._settle_acks()
                try:
                    first = self._acks.get(timeout=min(remaining, 0.2))
                except queue.Empty:
                    self._warn_if_pubacks_late()
                    continue
                acked += self._settle_acks(first)

    @property
    def effective_window(self) -> int:
        """Messages allowed in flight: ``window``, capped by the broker's Receive Maximum."""
        return min(self.window, self._receive_maximum)

    def in_flight(self) -> int:
        """Messages handed to the broker and not yet acknowledged."""
        return len(self._inflight)

"""MqttPublisher against real Mosquitto brokers: order, PUBACK deletion, outages, restarts, SIGKILL."""

from __future__ import annotations

import getpass
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid

import pytest

from pipeline.app.embedded import free_port
from pipeline.config.settings import MqttSettings
from pipeline.delivery.mqtt import Subscriber
from pipeline.delivery.publisher import MqttPublisher
from pipeline.state.store import OutboxMessage, StateStore


class Collector:
    """A real MQTT subscriber that records (topic, payload) in arrival order."""

    def __init__(self, url: str, filters: list[str], *, client_id: str | None = None,
                 persistent: bool = False, **settings) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self._cond = threading.Condition()
        self.sub = Subscriber(MqttSettings(url=url, **settings), client_id or f"test-{uuid.uuid4().hex[:10]}",
                              filters, self._on, clean_start=not persistent,
                              session_expiry_s=300 if persistent else 0, reconnect_min_s=0.2, reconnect_max_s=1)

    def _on(self, topic: str, payload: bytes, retain: bool) -> None:
        with self._cond:
            self.messages.append((topic, payload))
            self._cond.notify_all()

    def start(self) -> Collector:
        self.sub.start()
        assert self.sub.wait_subscribed(5), "subscription not confirmed"
        return self

    def payloads(self) -> list[str]:
        with self._cond:
            return [p.decode() for _, p in self.messages]

    def wait_for(self, predicate, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate([p.decode() for _, p in self.messages]):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def stop(self) -> None:
        self.sub.stop()


# Mosquitto started as root drops to the "mosquitto" user and then cannot write its persistence
# file in our temp dir; keep it as the current user (ignored when not root).
RUN_AS_ME = f"user {getpass.getuser()}"


def prefix() -> str:
    return f"cwtest-{uuid.uuid4().hex[:8]}"


def commit(store: StateStore, pfx: str, numbers, camera: str = "cam-1") -> None:
    store.commit_batch(camera, None, [OutboxMessage(f"{pfx}/alerts/fire/{camera}", str(i).encode())
                                      for i in numbers], None)


def make_publisher(url: str, store: StateStore, pfx: str, **kw) -> MqttPublisher:
    return MqttPublisher(MqttSettings(url=url, topic_prefix=pfx), store, "worker-t",
                         reconnect_min_s=0.2, reconnect_max_s=1, client_id=f"pub-{uuid.uuid4().hex[:10]}", **kw)


def test_flush_delivers_in_order_and_deletes_on_puback(mqtt_broker, tmp_path):
    pfx = prefix()
    store = StateStore(tmp_path / "state.db")
    commit(store, pfx, range(60))
    alerts = Collector(mqtt_broker, [f"{pfx}/alerts/#"]).start()
    status = Collector(mqtt_broker, [f"{pfx}/workers/+/status"]).start()
    pub = make_publisher(mqtt_broker, store, pfx, window=7).start()
    try:
        t0 = time.perf_counter()
        assert pub.flush(10) == 60
        elapsed = time.perf_counter() - t0
        assert store.outbox_size() == 0 and pub.in_flight() == 0
        assert alerts.wait_for(lambda p: len(p) >= 60)
        assert alerts.payloads() == [str(i) for i in range(60)]
        assert pub.flush(1) == 0  # nothing left
        print(f"60 alerts flushed with window 7 in {elapsed * 1000:.0f} ms")
        assert status.wait_for(lambda p: any(json.loads(x)["state"] == "online" for x in p))
    finally:
        pub.stop()
        assert status.wait_for(lambda p: json.loads(p[-1])["state"] == "offline")
        assert json.loads(status.payloads()[-1])["reason"] == "stopped"
        alerts.stop()
        status.stop()


def test_broker_down_keeps_outbox_then_delivers_in_order(mosquitto_factory, tmp_path):
    port = free_port()
    url = f"mqtt://127.0.0.1:{port}"
    pfx = prefix()
    store = StateStore(tmp_path / "state.db")
    pub = make_publisher(url, store, pfx).start()
    try:
        commit(store, pfx, range(20))
        t0 = time.monotonic()
        assert pub.flush(5) == 0
        assert time.monotonic() - t0 < 1.5, "flush must return quickly while the broker is down"
        assert store.outbox_size() == 20
        assert pub.publish_status(f"{pfx}/cameras/cam-1/status", {"state": "online"}) is False
        commit(store, pfx, range(20, 30))

        mosquitto_factory(port=port, extra_config=RUN_AS_ME)
        alerts = Collector(url, [f"{pfx}/alerts/#", f"{pfx}/cameras/+/status"]).start()
        assert pub.wait_connected(5)
        assert pub.flush(10) == 30
        assert store.outbox_size() == 0
        assert alerts.wait_for(lambda p: len(p) >= 31)
        got = alerts.payloads()
        assert [p for p in got if p.isdigit()] == [str(i) for i in range(30)]
        assert '{"state":"online"}' in got  # the status waited for the connection
        alerts.stop()
    finally:
        pub.stop()


def test_broker_restart_mid_stream_loses_nothing(mosquitto_factory, tmp_path):
    """Broker stopped and restarted while a stream flows, with a persistent QoS 1 subscriber session
    that is offline across the restart: what the broker queued for it must survive."""
    broker = mosquitto_factory(extra_config=RUN_AS_ME)
    pfx = prefix()
    n = 300
    subscribe = lambda: Collector(broker.url, [f"{pfx}/alerts/#"], client_id="ioc-persistent",  # noqa: E731
                                  persistent=True).start()
    first = subscribe()
    store = StateStore(tmp_path / "state.db")
    pub = make_publisher(broker.url, store, pfx, window=10).start()
    assert pub.wait_connected(5)
    delivered = []

    def produce() -> None:
        for i in range(n):
            commit(store, pfx, [i])
            if i % 10 == 9:
                delivered.append(pub.flush(0.05))
            time.sleep(0.003)

    producer = threading.Thread(target=produce)
    producer.start()
    assert first.wait_for(lambda p: len(p) >= 40), "stream did not start"
    first.stop()                      # the operations center goes away; the broker queues for it
    queued_from = sum(delivered)
    deadline = time.monotonic() + 5
    while sum(delivered) < queued_from + 40 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sum(delivered) >= queued_from + 40, "nothing was queued for the absent subscriber"
    broker.stop()                     # ... and the broker restarts mid-stream
    time.sleep(0.3)
    broker.start()
    producer.join()
    deadline = time.monotonic() + 20
    while store.outbox_size() and time.monotonic() < deadline:
        pub.flush(1)
    assert store.outbox_size() == 0
    second = subscribe()
    everything = {str(i) for i in range(n)}
    assert second.wait_for(lambda p: set(p) | set(first.payloads()) >= everything, timeout=10), \
        f"missing: {sorted(everything - set(second.payloads()) - set(first.payloads()), key=int)[:20]}"
    received = len(first.payloads()) + len(second.payloads())
    print(f"subscriber left after {len(first.payloads())}, broker restarted with queued messages; "
          f"{received} received for {n} sent")
    pub.stop()
    second.stop()


_KILLED_PUBLISHER = textwrap.dedent("""
    import sys, time
    from pipeline.config.settings import MqttSettings
    from pipeline.delivery.publisher import MqttPublisher
    from pipeline.state.store import OutboxMessage, StateStore
    url, db, pfx, n, client_id = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
    store = StateStore(db)
    store.commit_batch("cam-1", "k", [OutboxMessage(f"{pfx}/alerts/fire/cam-1", str(i).encode())
                                      for i in range(n)], None)
    pub = MqttPublisher(MqttSettings(url=url, topic_prefix=pfx), store, "worker-k",
                        window=3, client_id=client_id).start()
    pub.wait_connected(5)
    print("flushing", flush=True)
    while store.outbox_size():
        pub.flush(0.01)
        time.sleep(0.02)
    print("finished", flush=True)
""")


def test_sigkill_publisher_then_fresh_publisher_drains(mqtt_broker, tmp_path):
    pfx = prefix()
    n = 200
    script = tmp_path / "publisher.py"
    script.write_text(_KILLED_PUBLISHER)
    db = tmp_path / "state.db"
    alerts = Collector(mqtt_broker, [f"{pfx}/alerts/#"]).start()
    status = Collector(mqtt_broker, [f"{pfx}/workers/+/status"]).start()
    client_id = f"pub-killed-{uuid.uuid4().hex[:8]}"
    proc = subprocess.Popen([sys.executable, str(script), mqtt_broker, str(db), pfx, str(n), client_id],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "flushing"
        assert alerts.wait_for(lambda p: len(p) >= 30)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    # The broker notices the dead connection and publishes the last will.
    assert status.wait_for(lambda p: any(json.loads(x)["reason"] == "connection lost" for x in p), 5)
    store = StateStore(db)
    left = store.outbox_size()
    assert 0 < left < n, f"kill was not mid-stream ({left} left)"
    pub = MqttPublisher(MqttSettings(url=mqtt_broker, topic_prefix=pfx), store, "worker-k",
                        client_id=client_id).start()
    try:
        assert pub.flush(10) == left
    finally:
        pub.stop()
    assert alerts.wait_for(lambda p: set(p) == {str(i) for i in range(n)})
    got = [int(x) for x in alerts.payloads()]
    duplicates = len(got) - n
    assert duplicates <= 3, "at most the in-flight window is sent twice"
    first_seen = list(dict.fromkeys(got))
    assert first_seen == sorted(first_seen), "delivery order is kept"
    print(f"SIGKILL with {left} of {n} left; duplicates after restart: {duplicates}")
    alerts.stop()
    status.stop()


def test_broker_receive_maximum_caps_the_window(mosquitto_factory, tmp_path):
    broker = mosquitto_factory(extra_config=f"max_inflight_messages 2\n{RUN_AS_ME}")
    pfx = prefix()
    store = StateStore(tmp_path / "state.db")
    commit(store, pfx, range(50))
    pub = make_publisher(broker.url, store, pfx, window=40).start()
    try:
        assert pub.wait_connected(5)
        assert pub.effective_window == 2
        assert pub.flush(10) == 50 and store.outbox_size() == 0
    finally:
        pub.stop()


def test_refused_and_deferred_pubacks(tmp_path):
    """PUBACK reason codes: 'Not authorized' -> dead letter; 'Quota exceeded' -> sent again."""
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.reasoncodes import ReasonCode

    store = StateStore(tmp_path / "state.db")
    commit(store, "p", range(3))
    rows = store.pending(3)
    pub = make_publisher("mqtt://127.0.0.1:1", store, "p")
    pub._inflight.update({11: rows[0], 12: rows[1], 13: rows[2]})
    for mid, code in ((11, 0), (12, 0x87), (13, 0x97)):
        pub._on_publish(None, None, mid, ReasonCode(PacketTypes.PUBACK, identifier=code), None)
    assert pub._settle_acks() == 1
    assert [r.id for r in store.pending(10)] == [rows[2].id]
    assert store.dead_letters() == [(rows[1].id, rows[1].topic, "Not authorized (135)")]
    assert list(pub._retry) == [rows[2]] and not pub._inflight


def test_publisher_validates_its_inputs(tmp_path):
    store = StateStore(tmp_path / "state.db")
    with pytest.raises(ValueError, match="worker name"):
        MqttPublisher(MqttSettings(), store, "worker/+")
    with pytest.raises(ValueError, match="window"):
        MqttPublisher(MqttSettings(), store, "w1", window=0)
    pub = MqttPublisher(MqttSettings(), store, "w1")
    with pytest.raises(ValueError, match="wildcard"):
        pub.publish_status("citywatch/cameras/#", {"state": "online"})

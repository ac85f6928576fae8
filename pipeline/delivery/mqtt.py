"""MQTT client factory shared by the publisher and the subscribers (paho-mqtt 2.x, MQTT 5).

Credentials come from :class:`~pipeline.config.settings.MqttSettings` (SecretStr); nothing here logs them.
Use :func:`safe_url` whenever a broker address goes into a log line.
"""

from __future__ import annotations

import logging
import re
import ssl
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Self

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from pipeline.common.ids import CLIENT_ID, full_match
from pipeline.common.text import printable
from pipeline.config.settings import MqttSettings

__all__ = ["make_client", "safe_url", "MqttSetupError", "reason_text", "EVENT_TYPE_RE", "Subscriber"]

log = logging.getLogger(__name__)
_PAHO_LOG = logging.getLogger("pipeline.delivery.mqtt.paho")


def _quiet_shutdown_race(record: logging.LogRecord) -> bool:
    """paho 2.2 logs an ERROR when its loop runs once more after a disconnect; make it DEBUG."""
    if record.levelno >= logging.ERROR and str(record.msg).startswith("Client is not connected"):
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return _PAHO_LOG.isEnabledFor(logging.DEBUG)
    return True


_PAHO_LOG.addFilter(_quiet_shutdown_race)

#: Event types as they appear in topics: lower-case words joined by '_' (no wildcards, no '/').
EVENT_TYPE_RE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


class MqttSetupError(ValueError):
    """MQTT settings that cannot work (missing TLS files, key without certificate, ...)."""


def safe_url(mqtt: MqttSettings) -> str:
    """The broker address without credentials, for log lines."""
    return f"{'mqtts' if mqtt.tls else 'mqtt'}://{mqtt.host}:{mqtt.port}"


def reason_text(reason: object) -> str:
    """Readable text of a paho ReasonCode / error code (e.g. 'Bad user name or password')."""
    if isinstance(reason, paho.ReasonCode):
        return f"{reason.getName()} ({reason.value})"
    if isinstance(reason, int):
        return paho.error_string(reason)
    return str(reason)


def _check_file(path: Path | None, what: str) -> str | None:
    if path is None:
        return None
    if not Path(path).is_file():
        raise MqttSetupError(f"mqtt.{what}: file {path} does not exist")
    return str(path)


def _configure_tls(client: paho.Client, mqtt: MqttSettings) -> None:
    ca = _check_file(mqtt.ca_file, "ca_file")
    cert = _check_file(mqtt.cert_file, "cert_file")
    key = _check_file(mqtt.key_file, "key_file")
    if bool(cert) != bool(key):
        raise MqttSetupError("mqtt.cert_file and mqtt.key_file must be given together (client certificate)")
    # ca None -> the system's trusted CAs; hostname checking stays on. Each file is loaded on its
    # own first, so an unreadable one is named (ssl's own error says only "PEM lib").
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    for what, path_given, load in (("ca_file", ca, lambda: context.load_verify_locations(cafile=ca)),
                                   ("cert_file", cert, lambda: context.load_cert_chain(str(cert), key))):
        try:
            if path_given:
                load()
        except (ssl.SSLError, OSError, ValueError) as exc:
            path = ca if what == "ca_file" else f"{cert} (key {key})"
            raise MqttSetupError(f"mqtt.{what}: {path} is not a usable PEM file "
                                 f"({type(exc).__name__}: {exc})") from None
    client.tls_set(ca_certs=ca, certfile=cert, keyfile=key, cert_reqs=ssl.CERT_REQUIRED,
                   tls_version=ssl.PROTOCOL_TLS_CLIENT)


def make_client(mqtt: MqttSettings, client_id: str, *, clean_start: bool = False,
                session_expiry_s: int = 86_400, reconnect_min_s: float = 1.0,
                reconnect_max_s: float = 30.0, max_inflight: int = 100) -> paho.Client:
    """A paho MQTT 5 client configured for ``mqtt`` and ready to connect.

    ``connect_async`` has been called (nothing is sent yet): set the will and the callbacks,
    then call ``loop_start()``. ``clean_start=False`` with ``session_expiry_s > 0`` asks the
    broker for a persistent session (QoS 1 messages are queued for the client while it is away).
    """
    if not full_match(CLIENT_ID, client_id):
        raise MqttSetupError(f"client id {client_id!r} may only hold A-Z a-z 0-9 _ -")
    if not mqtt.tls and (mqtt.cert_file or mqtt.key_file):
        raise MqttSetupError("mqtt.cert_file/key_file need an mqtts:// url")
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
    client.enable_logger(_PAHO_LOG)
    if mqtt.username is not None:
        password = mqtt.password.get_secret_value() if mqtt.password is not None else None
        client.username_pw_set(mqtt.username, password)
    if mqtt.tls:
        _configure_tls(client, mqtt)
    client.reconnect_delay_set(min_delay=reconnect_min_s, max_delay=max(reconnect_min_s, reconnect_max_s))  # type: ignore[arg-type]
    client.max_inflight_messages_set(max_inflight)
    client.max_queued_messages_set(0)
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = int(session_expiry_s)
    client.connect_async(mqtt.host, mqtt.port, keepalive=mqtt.keepalive_s,
                         clean_start=clean_start, properties=props)
    log.debug("MQTT client %s configured for %s (clean_start=%s, session expiry %d s)",
              client_id, safe_url(mqtt), clean_start, session_expiry_s)
    return client


MessageHandler = Callable[[str, bytes, bool], None]


class Subscriber:
    """Subscribes to topic filters at QoS 1 and hands each message to ``on_message(topic, payload, retain)``.

    With ``clean_start=False`` and ``session_expiry_s > 0`` the broker keeps the subscription and
    queues QoS 1 messages while this client is away (or while the broker restarts, if it persists);
    the filters are only re-sent when the broker reports no session.
    """

    def __init__(self, mqtt: MqttSettings, client_id: str, filters: list[str], on_message: MessageHandler, *,
                 clean_start: bool = True, session_expiry_s: int = 0, reconnect_min_s: float = 1.0,
                 reconnect_max_s: float = 30.0) -> None:
        if not filters:
            raise ValueError("at least one topic filter is needed")
        self.mqtt = mqtt
        self.client_id = client_id
        self.filters = list(filters)
        self._handler = on_message
        self.clean_start = clean_start
        self._client = make_client(mqtt, client_id, clean_start=clean_start, session_expiry_s=session_expiry_s,
                                   reconnect_min_s=reconnect_min_s, reconnect_max_s=reconnect_max_s)
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message
        self._client.on_disconnect = self._on_disconnect
        self._subscribed = threading.Event()
        self._answered = threading.Event()  # subscribed, or the broker refused the connection
        self.refusal: str | None = None  # why the broker refused the last connection, if it did

    def start(self) -> Self:
        self._client.loop_start()
        return self

    def wait_subscribed(self, timeout_s: float) -> bool:
        """True once the broker confirmed the subscription (or kept it in the session);
        False after ``timeout_s`` or as soon as the broker refuses the connection (see ``refusal``)."""
        self._answered.wait(timeout_s)
        return self._subscribed.is_set()

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self.refusal = reason_text(reason_code)
            log.error("MQTT broker %s refused connection for %s: %s", safe_url(self.mqtt), self.client_id,
                      self.refusal)
            self._answered.set()
            return
        self.refusal = None
        if flags.session_present and not self.clean_start:
            self._subscribed.set()
            self._answered.set()
            return
        client.subscribe([(f, SubscribeOptions(qos=self.mqtt.qos)) for f in self.filters])

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        bad = [f"{f}: {reason_text(rc)}" for f, rc in zip(self.filters, reason_codes) if rc.is_failure]
        if bad:
            log.error("MQTT subscription refused: %s", "; ".join(bad))
            self.refusal = "subscription refused: " + "; ".join(bad)
            self._answered.set()
            return
        self._subscribed.set()
        self._answered.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.warning("MQTT subscriber %s disconnected: %s", self.client_id, reason_text(reason_code))

    def _on_message(self, client, userdata, message: paho.MQTTMessage) -> None:
        try:
            self._handler(message.topic, bytes(message.payload), bool(message.retain))
        except Exception:  # noqa: BLE001 - one bad message must not kill the network thread
            log.exception("handler failed for a message on %s", printable(message.topic))

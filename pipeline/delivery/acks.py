"""Operator acknowledgements of incidents: the ``<prefix>/ack/<incident_id>`` message and its recorder.

The operations-center console publishes an :class:`AckMessage` (QoS 1, JSON) when an operator
presses *acknowledge*; every console learns acks from that topic, and the pipeline's
:class:`AckRecorder` (started by ``WatchSession``) stores them in the worker's state database
(``acks`` table) and writes a log line, so "who acknowledged what, when" survives on the edge box.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from pipeline.common.ids import INCIDENT_ID, anchored, full_match
from pipeline.common.text import PlainText, printable
from pipeline.config.settings import MqttSettings
from pipeline.delivery.mqtt import Subscriber

__all__ = ["AckMessage", "AckError", "ack_topic", "ack_filter", "parse_ack", "make_ack", "AckRecorder"]

log = logging.getLogger(__name__)

INCIDENT_ID_PATTERN = anchored(INCIDENT_ID)


class AckError(ValueError):
    """An acknowledgement that cannot be accepted (bad incident id, operator, payload)."""


class AckMessage(BaseModel):
    """One acknowledgement: which incident, by whom, when (and an optional note)."""

    model_config = ConfigDict(extra="forbid")

    incident_id: str = Field(..., pattern=INCIDENT_ID_PATTERN)
    operator: PlainText = Field(..., min_length=1, max_length=64)
    time: AwareDatetime = Field(..., description="When the operator acknowledged (UTC)")
    note: PlainText = Field("", max_length=500)
    console: PlainText = Field("", max_length=128, description="Which console sent it")

    def to_json(self) -> bytes:
        return self.model_dump_json().encode("utf-8")


def _check_incident_id(incident_id: str) -> str:
    if not full_match(INCIDENT_ID, incident_id):
        raise AckError(f"incident id {incident_id!r} is not valid: 1-160 of A-Z a-z 0-9 _ - "
                       "('+', '#' and '/' are not allowed)")
    return incident_id


def ack_topic(prefix: str, incident_id: str) -> str:
    """``<prefix>/ack/<incident_id>``, refusing ids that would be wildcards or extra levels."""
    return f"{prefix}/ack/{_check_incident_id(incident_id)}"


def ack_filter(prefix: str) -> str:
    return f"{prefix}/ack/+"


def make_ack(incident_id: str, operator: str, *, note: str = "", console: str = "",
             when: datetime | None = None) -> AckMessage:
    """Build a checked ack; AckError names the field that is wrong."""
    _check_incident_id(incident_id)
    try:
        return AckMessage(incident_id=incident_id, operator=(operator or "").strip(), note=note or "",
                          console=console, time=when or datetime.now(UTC))
    except ValidationError as exc:
        raise AckError("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())) from None


def parse_ack(topic: str, payload: bytes) -> AckMessage:
    """The ack carried by ``payload`` on ``topic``; AckError when it is malformed or the ids disagree."""
    try:
        doc = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        raise AckError(f"ack on {topic} is not JSON: {exc}") from None
    try:
        ack = AckMessage.model_validate(doc)
    except ValidationError as exc:
        raise AckError(f"ack on {topic} is not valid: " + "; ".join(
            f"{'.'.join(map(str, e['loc'])) or '(root)'}: {e['msg']}" for e in exc.errors())) from None
    if topic.rsplit("/", 1)[-1] != ack.incident_id:
        raise AckError(f"ack on {topic} names incident {ack.incident_id!r}, not the topic's")
    return ack


class AckRecorder(Subscriber):
    """Subscribes to ``<prefix>/ack/+`` (persistent session) and hands each valid ack to ``record``.

    ``record(ack, raw_payload)`` is typically ``StateStore.record_ack``; malformed acks are logged
    and dropped. Never raises when the broker is down: the subscriber keeps reconnecting.
    """

    def __init__(self, mqtt: MqttSettings, client_id: str, record: Callable[[AckMessage, bytes], bool]) -> None:
        self._record = record
        super().__init__(mqtt, client_id, [ack_filter(mqtt.topic_prefix)], self._handle,
                         clean_start=False, session_expiry_s=7 * 86_400, reconnect_max_s=30)

    def _handle(self, topic: str, payload: bytes, retain: bool) -> None:
        try:
            ack = parse_ack(topic, payload)
        except AckError as exc:
            log.warning("ignoring acknowledgement: %s", printable(exc))
            return
        if self._record(ack, payload):
            log.info("incident %s acknowledged by %s at %s%s", ack.incident_id, printable(ack.operator),
                     ack.time.isoformat(), f" ({printable(ack.note)})" if ack.note else "")

"""The operator's terminal view of live alerts: topic filter, one readable line per alert.

Used by ``citywatch alerts`` and by the demo to show alerts as they arrive::

    with AlertConsole(cfg.mqtt, print, event_type="fire") as view:
        view.wait_subscribed(5)
        ...
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

from pipeline.common.ids import EVENT_TYPE, full_match
from pipeline.common.text import printable
from pipeline.config.settings import MqttSettings
from pipeline.delivery.mqtt import Subscriber
from pipeline.frames.keys import validate_camera_id

__all__ = ["alert_filter", "format_alert_line", "AlertConsole", "validate_event_type"]

def validate_event_type(event_type: str) -> str:
    """The event type if it is safe inside a topic ([a-z][a-z0-9_]*), else ValueError saying why."""
    if not full_match(EVENT_TYPE, event_type):
        raise ValueError(f"event type {event_type!r} is not valid: use lower-case letters, digits and '_' "
                         "(e.g. fire, flood, camera_offline); '+', '#' and '/' are not allowed")
    return event_type


def alert_filter(prefix: str, event_type: str | None = None, camera_id: str | None = None) -> str:
    """``<prefix>/alerts/<type or +>/<camera or +>``, with type and camera checked against injection."""
    t = validate_event_type(event_type) if event_type is not None else "+"
    c = validate_camera_id(camera_id) if camera_id is not None else "+"
    return f"{prefix}/alerts/{t}/{c}"


def _get(doc: Any, *path: str) -> Any:
    for part in path:
        if not isinstance(doc, dict):
            return None
        doc = doc.get(part)
    return doc


def format_alert_line(topic: str, payload: bytes) -> str:
    """:func:`_alert_line` with every control character escaped (payloads come from the broker)."""
    return printable(_alert_line(topic, payload))


def _alert_line(topic: str, payload: bytes) -> str:
    """One line: frame time, camera, type, state, severity, seq, incident id, snapshot URL.

    Tolerant on purpose (a console must not stop on one odd message): missing fields show as
    ``-``, a payload that is not a JSON object gives a line saying so.
    """
    try:
        doc = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        return f"!! unreadable alert on {topic}: not JSON ({exc.__class__.__name__}), {len(payload)} bytes"
    if not isinstance(doc, dict):
        return f"!! unreadable alert on {topic}: JSON {type(doc).__name__}, expected an object"
    parts = topic.split("/")
    camera = _get(doc, "camera", "id") or (parts[-1] if len(parts) >= 2 else "-")
    name = _get(doc, "camera", "name")
    where = camera if not name or name == camera else f"{camera} ({name})"
    fields = [
        str(_get(doc, "frame", "time") or doc.get("detected_at") or "-"),
        "TEST" if doc.get("test") else "LIVE",
        where,
        str(doc.get("type") or (parts[-2] if len(parts) >= 2 else "-")),
        str(doc.get("state") or "-"),
        str(doc.get("severity") or "-"),
        f"#{doc.get('seq', '-')}",
        str(doc.get("incident_id") or "-"),
        str(_get(doc, "evidence", "url") or "no snapshot"),
    ]
    return "  ".join(fields)


class AlertConsole(Subscriber):
    """Subscribes to the alert topics and calls ``on_line`` with one string per alert.

    ``raw_json=True`` passes the payload text instead of the formatted line, with control
    characters escaped (a valid JSON text stays JSON with the same value).
    """

    def __init__(self, mqtt: MqttSettings, on_line: Callable[[str], None], *, event_type: str | None = None,
                 camera_id: str | None = None, raw_json: bool = False, client_id: str | None = None) -> None:
        self.topic_filter = alert_filter(mqtt.topic_prefix, event_type, camera_id)
        self._on_line = on_line
        self._raw = raw_json
        super().__init__(mqtt, client_id or f"citywatch-alerts-{uuid.uuid4().hex[:8]}", [self.topic_filter],
                         self._handle, clean_start=True, session_expiry_s=0, reconnect_max_s=10)

    def _handle(self, topic: str, payload: bytes, retain: bool) -> None:
        if self._raw:
            self._on_line(printable(payload.decode("utf-8", errors="replace")))
        else:
            self._on_line(format_alert_line(topic, payload))

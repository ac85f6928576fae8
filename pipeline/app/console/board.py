"""What the console knows: recent incidents grouped by id, camera and worker health, acknowledgements.

:class:`IncidentBoard` is fed by the MQTT thread (alerts, camera and worker statuses, acks) and read
by the web server (snapshot for a page that (re)connects). Every change returns a small JSON-able
*delta* the server pushes to the open pages, and is written through to the incident store (if
given), from which :meth:`IncidentBoard.restore` rebuilds the board after a restart. A delta
carrying ``"alarm": "new"`` is an incident that just started to need an operator (open, not
acknowledged, severe or extreme); :meth:`IncidentBoard.escalate` marks those left too long.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import OrderedDict
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from pipeline.alerts.incident_store import IncidentStore, epoch
from pipeline.alerts.payload import validate_alert_json
from pipeline.common.text import printable
from pipeline.config.settings import Config
from pipeline.delivery.acks import AckError, parse_ack

__all__ = ["IncidentBoard"]

log = logging.getLogger(__name__)

SEVERITY_RANK = {"minor": 1, "moderate": 2, "severe": 3, "extreme": 4}
MAX_MESSAGES_PER_INCIDENT = 50


def _camera_entry(cam: Any) -> dict[str, Any]:
    loc = cam.location
    return {"id": cam.id, "name": cam.name or cam.id, "lat": loc.lat if loc else None,
            "lon": loc.lon if loc else None, "district": loc.district if loc else "",
            "status": None, "in_registry": True}


class IncidentBoard:
    """Recent incidents (at most ``max_incidents``, oldest dropped first) and camera health."""

    def __init__(self, config: Config, max_incidents: int = 500, store: IncidentStore | None = None) -> None:
        if max_incidents < 1:
            raise ValueError(f"max_incidents must be >= 1, got {max_incidents}")
        self.prefix = config.mqtt.topic_prefix
        self.max_incidents = max_incidents
        self.store = store
        self.alarm_test = config.console.alarm.include_test
        self._lock = threading.Lock()
        self._incidents: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._acks_before_alert: dict[str, dict[str, Any]] = {}
        self._cameras: dict[str, dict[str, Any]] = {c.id: _camera_entry(c) for c in config.cameras}
        self._workers: dict[str, dict[str, Any]] = {}
        self._unsaved: dict[str, tuple[list[tuple[int, bytes]], list[dict[str, Any]]]] = {}
        self.rejected = 0
        self.store_errors = 0

    def restore(self) -> int:
        """Load the board from the store (after a restart); returns how many incidents it holds."""
        if self.store is None:
            return 0
        docs = self.store.board(self.max_incidents)
        with self._lock:
            for doc in docs:
                self._incidents[doc["incident_id"]] = doc
            return len(self._incidents)

    def alarming(self, inc: dict[str, Any]) -> bool:
        """Open, unacknowledged, severe or extreme at its peak (test alerts only if configured)."""
        return (inc.get("state") != "end" and not inc.get("ack") and (self.alarm_test or not inc.get("test"))
                and SEVERITY_RANK.get(inc.get("peak_severity") or inc.get("severity") or "", 0) >= 3)

    # -- feeding ------------------------------------------------------------------------------
    def handle(self, topic: str, payload: bytes) -> dict[str, Any] | None:
        """Route one MQTT message; returns the delta to push, or None if nothing changed."""
        if not topic.startswith(self.prefix + "/"):
            return None
        rest = topic[len(self.prefix) + 1:].split("/")
        kind = rest[0]
        if kind == "alerts" and len(rest) == 3:
            return self.add_alert(payload, topic)
        if kind == "cameras" and len(rest) == 3 and rest[2] == "status":
            return self.set_camera_status(rest[1], payload)
        if kind == "workers" and len(rest) == 3 and rest[2] == "status":
            return self.set_worker_status(rest[1], payload)
        if kind == "ack" and len(rest) == 2:
            try:
                ack = parse_ack(topic, payload)
            except AckError:
                self.rejected += 1
                return None
            return self.add_ack(json.loads(ack.model_dump_json()))
        return None

    def add_alert(self, payload: bytes, topic: str | None = None) -> dict[str, Any] | None:
        """Merge one alert payload into its incident; duplicates (same seq) change nothing.

        The payload must validate against the alert schema (and name the type and camera of its
        ``topic``): anything else is dropped with a log line, so one bad message never reaches
        the pages of every operator."""
        try:
            doc = validate_alert_json(payload)
            if topic is not None and topic.split("/")[-2:] != [doc["type"], doc["camera"]["id"]]:
                raise ValueError(f"payload is a {doc['type']} alert of camera {doc['camera']['id']}")
        except (ValueError, UnicodeDecodeError) as exc:
            self.rejected += 1
            log.warning("console: dropped an alert on %s: %s", printable(topic or "(no topic)"), printable(str(exc)[:300]))
            return None
        iid, seq, state, camera = doc["incident_id"], doc["seq"], doc["state"], doc["camera"]
        with self._lock:
            inc = self._incidents.get(iid)
            if inc is None:
                inc = self._new_incident(iid, doc, camera)
            if any(m["seq"] == seq for m in inc["messages"]):
                return None
            was_alarming = self.alarming(inc) if inc["messages"] else False
            inc["messages"].append({
                "seq": seq, "state": state, "severity": doc.get("severity"), "time": (doc.get("frame") or {}).get("time"),
                "detected_at": doc.get("detected_at"), "measurements": doc.get("measurements") or {},
                "level": doc.get("level"), "confidence": doc.get("confidence"),
            })
            inc["messages"].sort(key=lambda m: m["seq"])
            del inc["messages"][:-MAX_MESSAGES_PER_INCIDENT]
            if seq >= inc["seq"]:  # the newest message decides what the incident looks like now
                inc.update(seq=seq, state=state, severity=doc.get("severity"), confidence=doc.get("confidence"),
                           measurements=doc.get("measurements") or {}, level=doc.get("level"),
                           ended_at=doc.get("ended_at"), frame_time=(doc.get("frame") or {}).get("time"))
            if state == "end":
                inc["state"], inc["ended_at"] = "end", doc.get("ended_at") or inc["ended_at"]
            worst = max(SEVERITY_RANK.get(m["severity"], 0) for m in inc["messages"])
            inc["peak_severity"] = next((k for k, v in SEVERITY_RANK.items() if v == worst), None)
            evidence = doc.get("evidence") or {}
            url = evidence.get("url") if isinstance(evidence, dict) else None
            if isinstance(url, str) and url.startswith(("http://", "https://")) and seq >= inc.get("snapshot_seq", 0):
                inc["snapshot_url"], inc["snapshot_seq"] = url, seq
                inc["snapshot_expires_at"] = evidence.get("expires_at")
            if worst >= 3 and not inc.get("alarm_since"):
                inc["alarm_since"] = doc.get("detected_at")
            self._persist(inc, alert=(seq, payload))
            delta = {"kind": "incident", "incident": _copy(inc)}
            if self.alarming(inc) and not was_alarming:
                delta["alarm"] = "new"
            return delta

    def _new_incident(self, iid: str, doc: dict[str, Any], camera: dict[str, Any]) -> dict[str, Any]:
        loc = camera.get("location") or {}
        cam_id = camera.get("id")
        known = self._cameras.get(cam_id or "", {})
        inc: dict[str, Any] = {
            "incident_id": iid, "type": doc.get("type"), "camera_id": cam_id,
            "camera_name": camera.get("name") or known.get("name") or cam_id,
            "district": loc.get("district") or known.get("district") or "",
            "lat": loc.get("lat", known.get("lat")), "lon": loc.get("lon", known.get("lon")),
            "test": bool(doc.get("test")), "started_at": doc.get("started_at"), "seq": 0, "messages": [],
            "first_severity": doc.get("severity"), "ack": self._acks_before_alert.pop(iid, None),
        }
        self._incidents[iid] = inc
        while len(self._incidents) > self.max_incidents:
            self._incidents.popitem(last=False)
        return inc

    def add_ack(self, ack: dict[str, Any]) -> dict[str, Any] | None:
        """Mark an incident acknowledged (the first ack wins; later ones are kept as ``acks``)."""
        iid = ack["incident_id"]
        with self._lock:
            inc = self._incidents.get(iid)
            if inc is None:  # ack seen before the alert (e.g. session replay order): keep it for later
                self._acks_before_alert.setdefault(iid, ack)
                return None
            if inc["ack"] is not None and inc["ack"].get("operator") == ack.get("operator"):
                return None
            if inc["ack"] is None:
                inc["ack"] = ack
            else:
                inc.setdefault("more_acks", []).append(ack)
            self._persist(inc, ack=ack)
            return {"kind": "incident", "incident": _copy(inc)}

    def escalate(self, now: float, after_s: float) -> list[dict[str, Any]]:
        """Mark every incident alarming for ``after_s`` or more as escalated; their deltas
        (``"alarm": "escalated"``), each once."""
        deltas = []
        with self._lock:
            for inc in self._incidents.values():
                since = epoch(inc.get("alarm_since"))
                if inc.get("escalated_at") or since is None or now - since < after_s or not self.alarming(inc):
                    continue
                inc["escalated_at"] = datetime.fromtimestamp(now, UTC).isoformat().replace("+00:00", "Z")
                self._persist(inc)
                deltas.append({"kind": "incident", "incident": _copy(inc), "alarm": "escalated"})
        return deltas

    def _persist(self, inc: dict[str, Any], alert: tuple[int, bytes] | None = None,
                 ack: dict[str, Any] | None = None) -> None:
        """Write through to the store; on a database error keep it for :meth:`retry_unsaved`."""
        if self.store is None:
            return
        alerts, acks = self._unsaved.pop(inc["incident_id"], ([], []))
        alerts, acks = alerts + ([alert] if alert else []), acks + ([ack] if ack else [])
        try:
            self.store.save(inc, alert=alerts[0] if alerts else None, ack=acks[0] if acks else None)
            for extra in alerts[1:]:
                self.store.save(inc, alert=extra)
            for extra_ack in acks[1:]:
                self.store.save(inc, ack=extra_ack)
        except (SQLAlchemyError, OSError) as exc:
            self.store_errors += 1
            self._unsaved[inc["incident_id"]] = (alerts, acks)
            log.error("console: incident %s not saved to %s (kept, retried): %s", inc["incident_id"],
                      self.store.where, printable(str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__))

    def retry_unsaved(self) -> int:
        """Save what a database error held back; returns how many incidents are still unsaved."""
        with self._lock:
            for iid in list(self._unsaved):
                inc = self._incidents.get(iid)
                if inc is None:
                    self._unsaved.pop(iid)
                else:
                    self._persist(inc)
            return len(self._unsaved)

    def set_worker_status(self, worker: str, payload: bytes) -> dict[str, Any] | None:
        """Retained ``<prefix>/workers/<name>/status`` (online / offline, the broker-held last will)."""
        try:
            status = json.loads(payload) if payload else None
        except (ValueError, UnicodeDecodeError):
            status = {}
        if status is not None and not (isinstance(status, dict) and status.get("state") in ("online", "offline")):
            self.rejected += 1
            return None
        with self._lock:
            if status is None:
                self._workers.pop(worker, None)
            else:
                self._workers[worker] = {"name": worker, "state": status["state"], "reason": str(status.get("reason", ""))[:200],
                                         "ts": status.get("ts") if isinstance(status.get("ts"), str) else None}
            return {"kind": "workers", "workers": sorted(self._workers.values(), key=lambda w: w["name"])}

    def set_camera_status(self, camera_id: str, payload: bytes) -> dict[str, Any] | None:
        """Retained ``<prefix>/cameras/<id>/status``; an empty payload clears it."""
        try:
            status = json.loads(payload) if payload else None
        except (ValueError, UnicodeDecodeError):
            self.rejected += 1
            return None
        if status is not None and not isinstance(status, dict):
            self.rejected += 1
            return None
        with self._lock:
            cam = self._cameras.get(camera_id)
            if cam is None:
                cam = {"id": camera_id, "name": camera_id, "lat": None, "lon": None, "district": "",
                       "status": None, "in_registry": False}
                self._cameras[camera_id] = cam
            cam["status"] = status
            return {"kind": "camera", "camera": dict(cam)}

    # -- reading ------------------------------------------------------------------------------
    def incident(self, incident_id: str) -> dict[str, Any] | None:
        with self._lock:
            inc = self._incidents.get(incident_id)
            return None if inc is None else _copy(inc)

    def snapshot(self) -> dict[str, Any]:
        """Everything a freshly (re)connected page needs: incidents newest first and cameras."""
        with self._lock:
            incidents = sorted((_copy(i) for i in self._incidents.values()),
                               key=lambda i: (i.get("started_at") or "", i["incident_id"]), reverse=True)
            return {"kind": "snapshot", "incidents": incidents,
                    "cameras": [dict(c) for c in sorted(self._cameras.values(), key=lambda c: c["id"])],
                    "workers": sorted((dict(w) for w in self._workers.values()), key=lambda w: w["name"])}

    def cameras(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(c) for c in sorted(self._cameras.values(), key=lambda c: c["id"])]


def _copy(inc: dict[str, Any]) -> dict[str, Any]:
    out = dict(inc)
    out["messages"] = [dict(m) for m in inc["messages"]]
    return out

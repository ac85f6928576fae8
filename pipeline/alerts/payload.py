"""The alert payload the operations center receives (JSON over MQTT), its topics and its schema.

``build_alert`` turns an :class:`~pipeline.alerts.incidents.IncidentEvent` into an :class:`AlertPayload`;
``AlertPayload.to_json()`` gives the bytes to publish on ``alert_topic(prefix, type, camera)``.
The JSON Schema (Draft 2020-12) in ``pipeline/schema/alert.schema.json`` is generated from the
model: ``python -m pipeline.alerts.payload --write-schema`` rewrites it, ``--check`` verifies it.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import math
import re
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from jsonschema import Draft202012Validator, ValidationError, validators
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from pipeline.alerts.evidence import Evidence
from pipeline.alerts.incidents import IncidentEvent
from pipeline.common.ids import CAMERA_ID, EVENT_TYPE, INCIDENT_ID, NAME, TOPIC_PREFIX, anchored, full_match
from pipeline.config.settings import CameraConfig
from pipeline.frames.keys import InvalidFrameKey, parse_frame_key, validate_camera_id

log = logging.getLogger(__name__)

SCHEMA_VERSION: Literal["1.0"] = "1.0"
SCHEMA_PATH = Path(__file__).resolve().parents[1] / "schema" / "alert.schema.json"
SCHEMA_ID = "https://citywatch.example.org/schema/alert.schema.json"
_MESSAGE_NS = uuid.UUID("6f1c2d1e-8a57-4c8e-9a43-2b1f0c5e7d10")
EVENT_TYPE_PATTERN = anchored(EVENT_TYPE)

FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
Unit = Annotated[float, Field(ge=0.0, le=1.0)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LocationInfo(_Strict):
    lat: float = Field(..., ge=-90, le=90)
    lon: float = Field(..., ge=-180, le=180)
    district: str = ""


class CameraInfo(_Strict):
    id: str = Field(..., pattern=anchored(CAMERA_ID))
    name: str = ""
    location: LocationInfo | None = None


class FrameInfo(_Strict):
    bucket: str | None = Field(None, description="Frames bucket; null for alerts without a frame")
    key: str | None = Field(None, description="Object key of the source frame")
    time: AwareDatetime = Field(..., description="Frame time (UTC) the alert is based on")


class EvidenceInfo(_Strict):
    bucket: str
    key: str
    sha256: str = Field(..., pattern=r"^[0-9a-f]{64}$")
    sha1: str = Field("", pattern=r"^([0-9a-f]{40})?$", description="For CAP's resource digest")
    url: str = Field(..., description="Presigned GET URL of the annotated snapshot")
    expires_at: AwareDatetime
    mime_type: str = "image/jpeg"
    size: int = Field(0, ge=0)


class AlertPayload(_Strict):
    """One alert message: a start, update or end of an incident, with its place and evidence."""

    schema_version: Literal["1.0"] = SCHEMA_VERSION
    message_id: uuid.UUID = Field(..., description="Same for a replay of the same message")
    incident_id: str = Field(..., pattern=anchored(INCIDENT_ID))
    seq: int = Field(..., ge=1, description="Message number within the incident, from 1")
    state: Literal["start", "update", "end"]
    type: str = Field(..., pattern=EVENT_TYPE_PATTERN)
    severity: Literal["minor", "moderate", "severe", "extreme"]
    confidence: Unit
    test: bool = Field(..., description="True for alerts raised by replayed test footage")
    camera: CameraInfo
    frame: FrameInfo
    detected_at: AwareDatetime = Field(..., description="When the worker raised this message (UTC)")
    started_at: AwareDatetime
    ended_at: AwareDatetime | None = None
    measurements: dict[str, FiniteFloat] = Field(default_factory=dict)
    level: str | None = None
    boxes: list[tuple[Unit, Unit, Unit, Unit]] = Field(default_factory=list, description="Normalized x, y, w, h")
    evidence: EvidenceInfo | None = None
    worker: str = Field(..., pattern=anchored(NAME))

    def to_json(self) -> bytes:
        return self.model_dump_json().encode("utf-8")


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, tz=UTC)


def message_id(incident_id: str, seq: int) -> uuid.UUID:
    """Deterministic per (incident, seq), so consumers can drop a replayed duplicate."""
    return uuid.uuid5(_MESSAGE_NS, f"{incident_id}/{seq}")


def build_alert(event: IncidentEvent, camera: CameraConfig, *, frame_bucket: str | None,
                frame_key: str | None, evidence: Evidence | None, test: bool, worker: str,
                detected_at: datetime | None = None) -> AlertPayload:
    """The payload of ``event`` raised on ``camera``. A ``.test`` frame key forces ``test``."""
    if event.camera_id != camera.id:
        raise ValueError(f"event of camera {event.camera_id!r} built with camera {camera.id!r}")
    if frame_key is not None:
        try:
            test = test or parse_frame_key(frame_key).test
        except InvalidFrameKey:
            pass  # keys outside the contract are the frame store's concern; keep the given flag
    measurements = {}
    for name, value in event.measurements.items():
        if math.isfinite(value):
            measurements[name] = float(value)
        else:
            log.warning("dropping non-finite measurement %s=%r of %s", name, value, event.incident_id)
    loc = camera.location
    return AlertPayload(
        message_id=message_id(event.incident_id, event.seq), incident_id=event.incident_id,
        seq=event.seq, state=event.state, type=event.type, severity=event.severity,
        confidence=min(1.0, max(0.0, float(event.confidence))), test=bool(test),
        camera=CameraInfo(id=camera.id, name=camera.name or camera.id,
                          location=LocationInfo(lat=loc.lat, lon=loc.lon, district=loc.district) if loc else None),
        frame=FrameInfo(bucket=frame_bucket, key=frame_key, time=_utc(event.frame_ts)),
        detected_at=detected_at or datetime.now(UTC), started_at=_utc(event.started_ts),
        ended_at=_utc(event.ended_ts) if event.ended_ts is not None else None,
        measurements=measurements, level=event.level,
        boxes=[tuple(min(1.0, max(0.0, v)) for v in b) for b in event.boxes],
        evidence=EvidenceInfo(bucket=evidence.bucket, key=evidence.key, sha256=evidence.sha256,
                              sha1=evidence.sha1, url=evidence.url, expires_at=evidence.expires_at,
                              mime_type=evidence.mime_type, size=evidence.size) if evidence else None,
        worker=worker,
    )


def _topic(prefix: str, kind: str, event_type: str, camera_id: str) -> str:
    if not full_match(TOPIC_PREFIX, prefix):
        raise ValueError(f"topic prefix {prefix!r} may hold only A-Z a-z 0-9 _ - and single '/'")
    if not full_match(EVENT_TYPE, event_type):
        raise ValueError(f"event type {event_type!r} is not allowed in a topic: use [a-z][a-z0-9_]{{0,39}}")
    return f"{prefix}/{kind}/{event_type}/{validate_camera_id(camera_id)}"


def alert_topic(prefix: str, event_type: str, camera_id: str) -> str:
    """``<prefix>/alerts/<type>/<camera_id>``; refuses ``+``, ``#``, ``/`` in type and camera."""
    return _topic(prefix, "alerts", event_type, camera_id)


def cap_topic(prefix: str, event_type: str, camera_id: str) -> str:
    """``<prefix>/cap/<type>/<camera_id>`` for the CAP 1.2 XML twin of an alert."""
    return _topic(prefix, "cap", event_type, camera_id)


def generate_schema() -> dict[str, Any]:
    """The JSON Schema (Draft 2020-12) of :class:`AlertPayload` as published."""
    schema = AlertPayload.model_json_schema(mode="serialization")
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID, **schema}


@functools.lru_cache(maxsize=1)
def load_schema() -> dict[str, Any]:
    """The committed schema file shipped with the package."""
    text = resources.files("pipeline").joinpath("schema/alert.schema.json").read_text(encoding="utf-8")
    return json.loads(text)


def _pattern_to_the_end(validator, pattern: str, instance: Any, schema: dict) -> Iterator[ValidationError]:
    """JSON Schema's ``pattern`` with ECMA-262's ``$`` (the end of the text): jsonschema's
    ``re.search`` would let ``"cam-1\\n"`` match ``^...$``."""
    if validator.is_type(instance, "string") and not _ecma_regex(pattern).search(instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


@functools.lru_cache(maxsize=64)
def _ecma_regex(pattern: str) -> re.Pattern[str]:
    return re.compile(re.sub(r"(?<!\\)\$", r"\\Z", pattern))


@functools.lru_cache(maxsize=1)
def _validator() -> Draft202012Validator:
    cls = validators.extend(Draft202012Validator, {"pattern": _pattern_to_the_end})
    return cls(load_schema(), format_checker=Draft202012Validator.FORMAT_CHECKER)


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not JSON (alerts carry finite numbers only)")


def validate_alert_json(data: bytes | str | dict[str, Any]) -> dict[str, Any]:
    """Parse (if needed; ``NaN`` and ``Infinity`` are refused) and validate an alert against the
    shipped schema; ValueError naming each problem."""
    doc = json.loads(data, parse_constant=_refuse_constant) if isinstance(data, (bytes, str)) else data
    errors = sorted(_validator().iter_errors(doc), key=lambda e: list(e.absolute_path))
    if errors:
        raise ValueError("; ".join(f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}"
                                   for e in errors))
    return doc


def _schema_text() -> str:
    return json.dumps(generate_schema(), indent=2, sort_keys=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.alerts.payload", description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--write-schema", nargs="?", const=str(SCHEMA_PATH), metavar="PATH",
                       help=f"write the alert JSON Schema (default {SCHEMA_PATH})")
    group.add_argument("--check", action="store_true", help="fail if the committed schema is out of date")
    args = parser.parse_args(argv)
    if args.check:
        if SCHEMA_PATH.read_text(encoding="utf-8") != _schema_text():
            print(f"{SCHEMA_PATH} is out of date: run python -m pipeline.alerts.payload --write-schema", file=sys.stderr)
            return 1
        return 0
    path = Path(args.write_schema)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(_schema_text(), encoding="utf-8")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

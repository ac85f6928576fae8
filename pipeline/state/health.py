"""Camera health: online / stale / offline status, and ``camera_offline`` incidents.

The pipeline calls :meth:`CameraHealth.frame_seen` for every frame it takes and
:meth:`CameraHealth.check` after each poll, passing the wall-clock ``now`` (this module never reads
a clock). A camera is *seen* when the pipeline takes one of its frames (arrival, not the frame's
own time), so a camera with a wrong clock or replayed old footage counts as alive while frames
arrive. With ``s`` = seconds since it was last seen:

- ``online`` while s < ``stale_after_s``; ``stale`` while s < ``offline_after_s``; ``offline`` after.
- ``camera_offline`` incident: **start** once s >= ``offline_after_s`` (short blips are only
  ``stale`` and raise nothing); **end** with the first frame after it. The incident starts at
  last-seen + ``offline_after_s``, so its id is the same however late ``check`` runs.
  Severity moderate, confidence 1.

:meth:`statuses` gives the retained ``<prefix>/cameras/<id>/status`` payloads.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pipeline.alerts.incidents import IncidentEvent, incident_id
from pipeline.config.settings import HealthSettings
from pipeline.frames.keys import validate_camera_id

EVENT_TYPE = "camera_offline"
SEVERITY = "moderate"
FPS_WINDOW = 20
"""Frame times kept per camera to estimate its frame rate."""


class _Outage(BaseModel):
    incident_id: str
    started_ts: float
    seq: int = 1


class _Camera(BaseModel):
    registered_ts: float
    last_seen_ts: float | None = None
    last_frame_ts: float | None = None
    frame_times: list[float] = Field(default_factory=list)
    outage: _Outage | None = None


class _HealthState(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int = 1
    cameras: dict[str, _Camera] = Field(default_factory=dict)


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class CameraHealth:
    """Health of a set of cameras, driven by frames seen and the wall-clock time passed in."""

    def __init__(self, settings: HealthSettings) -> None:
        self.settings = settings
        self._cams: dict[str, _Camera] = {}
        self._resumed_ts: float | None = None

    def register(self, camera_ids: Iterable[str], now: float) -> None:
        """Watch these cameras from ``now`` on (one never heard of goes offline after offline_after_s)."""
        for cam in camera_ids:
            self._cams.setdefault(validate_camera_id(cam), _Camera(registered_ts=now))

    def frame_seen(self, camera_id: str, frame_ts: float, now: float) -> list[IncidentEvent]:
        """Record a frame of ``camera_id``; returns the ``end`` of its outage if it had one."""
        cam = self._cams.setdefault(validate_camera_id(camera_id), _Camera(registered_ts=now))
        silent_s = now - self._last_alive(cam)
        cam.last_seen_ts = max(cam.last_seen_ts or now, now)
        if cam.last_frame_ts is None or frame_ts > cam.last_frame_ts:
            cam.last_frame_ts = frame_ts
            cam.frame_times = (cam.frame_times + [frame_ts])[-FPS_WINDOW:]
        if cam.outage is None:
            return []
        outage, cam.outage = cam.outage, None
        return [IncidentEvent(
            incident_id=outage.incident_id, camera_id=camera_id, type=EVENT_TYPE, state="end",
            seq=outage.seq + 1, severity=SEVERITY, confidence=1.0,
            measurements={"silent_s": round(silent_s, 3), "offline_s": round(now - outage.started_ts, 3)},
            frame_ts=frame_ts, started_ts=outage.started_ts, ended_ts=now,
        )]

    def check(self, now_or_camera: float | str, now: float | None = None) -> list[IncidentEvent]:
        """Start a ``camera_offline`` incident for each camera silent for ``offline_after_s``.

        ``check(now)`` judges every known camera; ``check(camera_id, now)`` one camera (a camera
        checked before any frame of it was seen is watched from that moment)."""
        if isinstance(now_or_camera, str):
            if now is None:
                raise TypeError("check(camera_id, now) needs now")
            self.register([now_or_camera], now)
            camera_ids = [now_or_camera]
        else:
            now, camera_ids = float(now_or_camera), sorted(self._cams)
        events = []
        for camera_id in camera_ids:
            cam = self._cams[camera_id]
            silent_s = now - self._last_alive(cam)
            if cam.outage is not None or silent_s < self.settings.offline_after_s:
                continue
            started = self._last_alive(cam) + self.settings.offline_after_s
            cam.outage = _Outage(incident_id=incident_id(camera_id, EVENT_TYPE, started), started_ts=started)
            events.append(IncidentEvent(
                incident_id=cam.outage.incident_id, camera_id=camera_id, type=EVENT_TYPE, state="start",
                seq=1, severity=SEVERITY, confidence=1.0,
                measurements={"silent_s": round(silent_s, 3), "offline_after_s": self.settings.offline_after_s},
                frame_ts=cam.last_frame_ts if cam.last_frame_ts is not None else started, started_ts=started,
            ))
        return events

    def state_of(self, camera_id: str, now: float) -> str:
        """``online``, ``stale`` or ``offline``."""
        cam = self._cams[camera_id]
        silent_s = now - self._last_alive(cam)
        if silent_s >= self.settings.offline_after_s:
            return "offline"
        return "stale" if silent_s >= self.settings.stale_after_s else "online"

    def statuses(self, now: float) -> dict[str, dict[str, Any]]:
        """``{camera_id: status}`` for the retained camera status topics (JSON-able)."""
        out = {}
        for camera_id in sorted(self._cams):
            cam = self._cams[camera_id]
            state = self.state_of(camera_id, now)
            out[camera_id] = {
                "camera_id": camera_id, "state": state,
                "last_frame_time": _iso(cam.last_frame_ts), "last_seen": _iso(cam.last_seen_ts),
                "silent_s": round(now - self._last_alive(cam), 3),
                "fps": 0.0 if state == "offline" else self._fps(cam),
                "incident_id": cam.outage.incident_id if cam.outage else None,
                "checked_at": _iso(now),
            }
        return out

    def to_state(self) -> dict[str, Any]:
        """JSON-able state; an open outage survives a worker restart."""
        return _HealthState(cameras=self._cams).model_dump(mode="json")

    @classmethod
    def from_state(cls, settings: HealthSettings, state: dict[str, Any], now: float | None = None) -> CameraHealth:
        """Rebuild from :meth:`to_state`. With ``now`` (the restart time) no camera is judged
        silent for the time the worker itself was down: silence counts from ``now`` at most."""
        try:
            parsed = _HealthState.model_validate(state)
        except ValidationError as exc:
            raise ValueError(f"camera health state is not valid: {exc}") from None
        health = cls(settings)
        health._cams = dict(parsed.cameras)
        health._resumed_ts = now
        return health

    def _last_alive(self, cam: _Camera) -> float:
        alive = cam.last_seen_ts if cam.last_seen_ts is not None else cam.registered_ts
        if self._resumed_ts is not None and cam.outage is None:
            alive = max(alive, self._resumed_ts)
        return alive

    @staticmethod
    def _fps(cam: _Camera) -> float:
        times = cam.frame_times
        if len(times) < 2 or times[-1] <= times[0]:
            return 0.0
        return round((len(times) - 1) / (times[-1] - times[0]), 3)

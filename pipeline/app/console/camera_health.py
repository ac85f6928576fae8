"""A camera's health as the console judges it, for ``/api/cameras``: the same rules as the page's
``health()`` in ``static/console.js``, so a client of the REST API never sees a camera green
whose worker is gone or whose reports stopped coming.

- no status report ever: ``unknown`` (``no_report_yet``);
- its worker's last will (offline) arrived at or after its last report (5 s grace): ``offline``
  (``worker_offline``, with the worker's name). The camera-health job's own publisher
  (``<worker>-health``, flows/health.py) says "offline, stopped" after every run: it analyses no
  camera, so its liveness never counts;
- its last report is older than ``offline_after_s``: ``offline``; older than ``stale_after_s``:
  ``stale`` (``no_report_for``, with the age);
- otherwise what the worker reported (``reported``).
"""

from __future__ import annotations

from typing import Any

from pipeline.alerts.incident_store import epoch

__all__ = ["HEALTH_JOB_SUFFIX", "WORKER_GRACE_S", "camera_health", "is_health_job"]

#: a worker's offline mark counts for reports up to this much newer than it (clock skew, in flight)
WORKER_GRACE_S = 5.0
#: the camera-health job publishes as ``f"{config.worker.name}-health"`` (flows/health.py)
HEALTH_JOB_SUFFIX = "-health"
_REPORTED = ("online", "stale", "offline")


def is_health_job(worker_name: object) -> bool:
    """True for the camera-health job's publisher, which runs briefly and handles no camera."""
    return isinstance(worker_name, str) and worker_name.endswith(HEALTH_JOB_SUFFIX)


def camera_health(status: dict[str, Any] | None, workers: list[dict[str, Any]], now: float,
                  stale_after_s: float, offline_after_s: float) -> dict[str, Any]:
    """``{"state", "reason", "age_s", "worker"}`` of a camera with last report ``status``."""
    if not status or not status.get("state"):
        return {"state": "unknown", "reason": "no_report_yet", "age_s": None, "worker": None}
    reported = epoch(status.get("checked_at") if isinstance(status.get("checked_at"), str) else None)
    age = None if reported is None else round(max(0.0, now - reported), 1)
    if reported is not None:
        owner = status.get("worker") if isinstance(status.get("worker"), str) else None
        for worker in workers:
            down_at = epoch(worker.get("ts"))
            if owner is not None and worker.get("name") != owner:
                continue  # another shard's worker: its cameras are not this one's
            if (worker.get("state") == "offline" and not is_health_job(worker.get("name")) and down_at is not None
                    and down_at >= reported - WORKER_GRACE_S):
                return {"state": "offline", "reason": "worker_offline", "age_s": age, "worker": worker.get("name")}
    if age is not None and age > offline_after_s:
        return {"state": "offline", "reason": "no_report_for", "age_s": age, "worker": None}
    if age is not None and age > stale_after_s:
        return {"state": "stale", "reason": "no_report_for", "age_s": age, "worker": None}
    state = status["state"] if status["state"] in _REPORTED else "unknown"
    return {"state": state, "reason": "reported", "age_s": age, "worker": None}

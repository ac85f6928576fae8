"""Per-camera memory that outlives the process: detector state and camera health.

The deployment's process work pool starts every watch window as a fresh process, and a worker
may restart at any time. What detectors learn over minutes (the dry reference, backgrounds, the
obstruction baseline and frozen-picture clock, congestion lanes) and the camera health (an open
``camera_offline`` incident) would be lost each time: an offline camera would get a new start every
window and never an end. So the worker stores them in its state store at the end of every window
(and when a session closes; the health also as soon as an outage starts or ends), and the next
process restores them:

- **detectors:** each camera's detector objects, pickled and zlib-compressed (~0.9 MB a camera,
  ~25 ms). A blob is used only with the same detector code and the same camera settings (a
  fingerprint of both), otherwise the camera starts fresh with a log line: after an upgrade old
  state never meets new code. Pickle is safe here because the state dir is the worker's own
  (written only by it and locked, :mod:`pipeline.state.lock`); never load a state file from elsewhere.
- **health:** :meth:`CameraHealth.to_state` as JSON, limited to the worker's own cameras.

A crash loses what was learnt since the last save; the detectors then see a gap in the frames,
as if the camera had paused.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import pickle
import platform
import zlib
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from pipeline.config.settings import CameraConfig, Config
from pipeline.state.health import CameraHealth
from pipeline.state.store import StateStore

__all__ = ["HEALTH_KEY", "detectors_key", "dump_detectors", "health_value", "load_detectors", "restore_health"]

log = logging.getLogger(__name__)
HEALTH_KEY = "camera_health"
_ROOT = Path(__file__).resolve().parents[2]
#: The code whose objects are stored: a change to any of it invalidates stored detector state.
_CODE = ("detectors", "pipeline/processing/analysis.py")


def detectors_key(camera_id: str) -> str:
    return f"detectors/{camera_id}"


@functools.lru_cache(maxsize=1)
def _code_fingerprint() -> bytes:
    digest = hashlib.sha256(f"{platform.python_version()} {np.__version__} {cv2.__version__}".encode())
    for part in _CODE:
        path = _ROOT / part
        for file in sorted(path.rglob("*.py")) if path.is_dir() else [path]:
            digest.update(str(file.relative_to(_ROOT)).encode() + b"\0" + file.read_bytes() + b"\0")
    return digest.digest()


def _fingerprint(camera: CameraConfig) -> bytes:
    settings = camera.detectors.model_dump_json().encode()
    return hashlib.sha256(_code_fingerprint() + settings).hexdigest().encode()


def dump_detectors(camera: CameraConfig, detectors: list[Any]) -> bytes:
    """``detectors`` (a camera's detector objects) as a blob for :func:`load_detectors`."""
    return _fingerprint(camera) + b"\n" + zlib.compress(pickle.dumps(detectors, protocol=5), 1)


def load_detectors(camera: CameraConfig, blob: bytes | None) -> list[Any] | None:
    """The detector objects stored by :func:`dump_detectors` for this camera, or None (nothing
    stored, other code or settings, or unreadable: logged) so the camera starts fresh."""
    if not blob:
        return None
    fingerprint, _, data = bytes(blob).partition(b"\n")
    if fingerprint != _fingerprint(camera):
        log.info("camera %s: stored detector state is from other detector code or settings; starting fresh",
                 camera.id)
        return None
    try:
        detectors = pickle.loads(zlib.decompress(data))
    except Exception as exc:  # noqa: BLE001 - a broken blob costs the warm-up, never the camera
        log.warning("camera %s: stored detector state unreadable (%s); starting fresh", camera.id, exc)
        return None
    if not isinstance(detectors, list):
        return None
    log.info("camera %s: detector state restored from the state store", camera.id)
    return detectors


def health_value(health: CameraHealth) -> bytes:
    return json.dumps(health.to_state(), separators=(",", ":")).encode()


def restore_health(config: Config, store: StateStore, now: float) -> CameraHealth:
    """The worker's camera health as stored by the previous process (its own cameras only), or a
    fresh one; every configured camera is registered."""
    cameras = [c.id for c in config.cameras]
    health = CameraHealth(config.health)
    raw = store.saved_value(HEALTH_KEY)
    if raw:
        try:
            state = json.loads(raw)
            state["cameras"] = {k: v for k, v in state.get("cameras", {}).items() if k in set(cameras)}
            health = CameraHealth.from_state(config.health, state, now=now)
        except (ValueError, TypeError, AttributeError) as exc:
            log.warning("stored camera health unreadable (%s); starting fresh", exc)
    health.register(cameras, now)
    return health

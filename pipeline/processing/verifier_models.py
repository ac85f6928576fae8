"""The shipped verifier models: `pipeline/models/fire_verifier.onnx` and its manifest.

`citywatch train` writes both (see :mod:`pipeline.app.verifier_fit`); this module only reads them, once
per process, and builds each camera's verifiers from them (one OpenCV net per camera).
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from typing import Any

from detectors.verifier import FireVerifier, FireVerifierModel, OnnxClassifier
from pipeline.config.settings import CameraConfig

FIRE_MODEL = "fire_verifier.onnx"
FIRE_MANIFEST = "fire_verifier.json"


class ModelError(RuntimeError):
    """A shipped model file is missing or unreadable; the message names it."""


@lru_cache(maxsize=1)
def shipped_fire_model() -> tuple[bytes, dict[str, Any]]:
    """The ONNX bytes and the manifest of the shipped fire verifier."""
    folder = resources.files("pipeline") / "models"
    try:
        onnx = (folder / FIRE_MODEL).read_bytes()
        manifest = json.loads((folder / FIRE_MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"shipped fire verifier pipeline/models/{FIRE_MODEL} cannot be read: {exc} "
                         "(run `citywatch train` or set detectors.fire.verify: false)") from None
    return onnx, manifest


def fire_verifier_model(onnx: bytes, manifest: dict[str, Any]) -> FireVerifierModel:
    """A fresh model object (its own OpenCV net) with the manifest's thresholds."""
    t = manifest["thresholds"]
    return FireVerifierModel(OnnxClassifier(onnx), still_threshold=float(t["still"]),
                             live_threshold=float(t["live"]))


def build_verifiers(camera: CameraConfig) -> list[FireVerifier]:
    """The camera's learned verifiers from the shipped models (none where verification is off)."""
    fire = camera.detectors.fire
    if not (fire.enabled and fire.verify):
        return []
    return [FireVerifier(fire_verifier_model(*shipped_fire_model()))]

"""The shipped verifier models: the fire patch verifier (`pipeline/models/fire_verifier.onnx` and its
manifest) and the scene verifier (`scene_backbone.onnx`, a fixed pretrained backbone, and
`scene_heads.json`, its trained heads).

`citywatch train` writes them (see :mod:`pipeline.app.verifier_fit`, :mod:`pipeline.app.scene_fit`);
this module only reads them, once per process, and builds each camera's verifiers from them: one
small OpenCV net per camera for the patches, one backbone net per process for the scene (shared
under a lock: a camera scores its scene at most every 2 s, so cameras seldom wait).
"""

from __future__ import annotations

import json
import threading
from functools import lru_cache
from importlib import resources
from typing import Any

import numpy as np

from detectors.scene import OnnxEmbedder, SceneHead, SceneModel, SceneVerifier
from detectors.verifier import FireVerifier, FireVerifierModel, OnnxClassifier
from pipeline.config.settings import CameraConfig

FIRE_MODEL = "fire_verifier.onnx"
FIRE_MANIFEST = "fire_verifier.json"
SCENE_BACKBONE = "scene_backbone.onnx"
SCENE_HEADS = "scene_heads.json"


class ModelError(RuntimeError):
    """A shipped model file is missing or unreadable; the message names it."""


@lru_cache(maxsize=1)
def shipped_fire_model() -> tuple[bytes, dict[str, Any]]:
    """The ONNX bytes and the manifest of the shipped fire verifier."""
    onnx = read_model(FIRE_MODEL, "fire verifier")
    try:
        manifest = json.loads(read_model(FIRE_MANIFEST, "fire verifier manifest").decode("utf-8"))
    except ValueError as exc:
        raise ModelError(f"shipped fire verifier manifest pipeline/models/{FIRE_MANIFEST} is not valid JSON: "
                         f"{exc}") from None
    return onnx, manifest


def fire_verifier_model(onnx: bytes, manifest: dict[str, Any]) -> FireVerifierModel:
    """A fresh model object (its own OpenCV net) with the manifest's thresholds."""
    t = manifest["thresholds"]
    return FireVerifierModel(OnnxClassifier(onnx), still_threshold=float(t["still"]),
                             live_threshold=float(t["live"]))


def read_model(name: str, what: str) -> bytes:
    """The bytes of ``pipeline/models/NAME``; :class:`ModelError` naming it if it cannot be read."""
    try:
        return (resources.files("pipeline") / "models" / name).read_bytes()
    except OSError as exc:
        raise ModelError(f"shipped {what} pipeline/models/{name} cannot be read: {exc} "
                         "(run `citywatch train` or set the detectors' verify: false)") from None


class LockedEmbedder:
    """One backbone net shared by the cameras of a process, one scoring at a time."""

    def __init__(self, onnx: bytes) -> None:
        self._embedder = OnnxEmbedder(onnx)
        self._lock = threading.Lock()

    def embed(self, frame: np.ndarray) -> np.ndarray:
        with self._lock:
            return self._embedder.embed(frame)


@lru_cache(maxsize=1)
def shipped_scene_embedder() -> LockedEmbedder:
    """The process's backbone net, from the shipped ONNX file."""
    return LockedEmbedder(read_model(SCENE_BACKBONE, "scene backbone"))


@lru_cache(maxsize=1)
def shipped_scene_heads() -> dict[str, Any]:
    """The manifest of the shipped scene heads."""
    try:
        return dict(json.loads(read_model(SCENE_HEADS, "scene heads").decode("utf-8")))
    except ValueError as exc:
        raise ModelError(f"shipped scene heads pipeline/models/{SCENE_HEADS} are not valid JSON: {exc}") from None


def scene_types(camera: CameraConfig) -> tuple[str, ...]:
    """The types the scene verifier decides on this camera: enabled with ``verify`` on."""
    d = camera.detectors
    return tuple(name for name in ("fire", "smoke", "flood")
                 if getattr(d, name).enabled and getattr(d, name).verify)


def scene_model(embedder: Any, manifest: dict[str, Any], types: tuple[str, ...]) -> SceneModel:
    """The scene model of ``types`` from a heads manifest."""
    heads = {name: SceneHead(np.asarray(h["weights"], np.float32), float(h["bias"]), float(h["threshold"]))
             for name, h in manifest["heads"].items() if name in types}
    return SceneModel(embedder, heads)


def camera_verifiers(camera: CameraConfig, fire_model: tuple[bytes, dict[str, Any]] | None,
                     embedder: Any, heads: dict[str, Any]) -> list[FireVerifier | SceneVerifier]:
    """The verifier chain of a camera: the fire patch verifier, then the scene verifier of its
    types that the heads cover (a type without a head is left to the classical cues). Where the
    scene verifier decides fire, the patch verifier comes after it and only boxes the fires it
    let through (``decide=False``)."""
    types = scene_types(camera)
    model = scene_model(embedder, heads, types) if types else None
    scene = [SceneVerifier(model)] if model is not None and model.heads else []
    fire = camera.detectors.fire
    if fire_model is None or not (fire.enabled and fire.verify):
        return [*scene]
    decides_fire = model is not None and "fire" in model.heads
    patches = FireVerifier(fire_verifier_model(*fire_model), decide=not decides_fire)
    return [*scene, patches] if decides_fire else [patches, *scene]


def build_verifiers(camera: CameraConfig) -> list[FireVerifier | SceneVerifier]:
    """The camera's learned verifiers from the shipped models (none where verification is off)."""
    types = scene_types(camera)
    embedder, heads = (shipped_scene_embedder(), shipped_scene_heads()) if types else (None, {})
    fire = camera.detectors.fire
    fire_model = shipped_fire_model() if fire.enabled and fire.verify else None
    return camera_verifiers(camera, fire_model, embedder, heads)

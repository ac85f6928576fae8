"""Synthetic sample scenes the project owns (fire, flood, traffic, quiet), made by
``python -m sample_media.generate``: JPEG frames at 2 frames/s plus ``scenes/manifest.json``."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

SCENES_DIR = Path(__file__).resolve().parent / "scenes"

__all__ = ["SCENES_DIR", "load_scene", "manifest", "scene_names", "scene_info"]


@lru_cache(maxsize=4)
def _read_manifest(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run `python -m sample_media.generate`")
    return json.loads(path.read_text(encoding="utf-8"))


def manifest(root: Path | None = None) -> dict[str, Any]:
    """The manifest (scene -> frames, fps, expected event types, onset, seed, frame hashes)."""
    return _read_manifest((root or SCENES_DIR) / "manifest.json")


def scene_names(root: Path | None = None) -> list[str]:
    """Names of the generated scenes, sorted."""
    return sorted(manifest(root)["scenes"])


def scene_info(name: str, root: Path | None = None) -> dict[str, Any]:
    """One scene's manifest entry; ``KeyError`` naming the known scenes if it does not exist."""
    scenes = manifest(root)["scenes"]
    if name not in scenes:
        raise KeyError(f"no sample scene {name!r}; known: {sorted(scenes)}")
    return scenes[name]


def load_scene(name: str, root: Path | None = None) -> list[tuple[float, bytes]]:
    """The scene's frames as ``(seconds from the first frame, JPEG bytes)``, in time order."""
    info = scene_info(name, root)
    folder = (root or SCENES_DIR) / name
    frames = []
    for i in range(info["frames"]):
        path = folder / f"{i:04d}.jpg"
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing: regenerate with `python -m sample_media.generate`")
        frames.append((i / info["fps"], path.read_bytes()))
    return frames

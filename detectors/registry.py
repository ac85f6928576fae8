"""Every detector citywatch runs, by name: the settings it takes and how to build it.

A camera's detectors are built from this table (``pipeline.processing.analysis.build_detectors``), so a new
detector is one entry here plus its settings in the camera config, not another branch elsewhere.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from detectors.base import Detector
from detectors.congestion import CongestionDetector
from detectors.fire import FireDetector
from detectors.flood import FloodDetector
from detectors.obstruction import ObstructionDetector


@dataclass(frozen=True)
class DetectorSpec:
    """One detector: ``settings`` names the camera-config sections handed to ``build`` in order;
    it is built when any of them is enabled (fire and smoke share one detector)."""

    name: str
    settings: tuple[str, ...]
    build: Callable[..., Detector]

    def wanted(self, sections: list[Any]) -> bool:
        return any(getattr(s, "enabled", True) for s in sections)


REGISTRY: tuple[DetectorSpec, ...] = (
    DetectorSpec("fire", ("fire", "smoke"), FireDetector),
    DetectorSpec("flood", ("flood",), FloodDetector),
    DetectorSpec("congestion", ("congestion",), CongestionDetector),
    DetectorSpec("obstruction", ("obstruction",), ObstructionDetector),
)


def build(config: Any) -> list[Detector]:
    """Fresh detectors for a camera's detector settings (an object with one attribute per section)."""
    built = []
    for spec in REGISTRY:
        sections = [getattr(config, name) for name in spec.settings]
        if spec.wanted(sections):
            built.append(spec.build(*sections))
    return built

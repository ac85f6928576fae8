"""The contract every detector speaks: settings model, `detect(frame, ts)`, and `Finding`.

Detectors are plain OpenCV/numpy objects holding per-camera state. They never do I/O and never
read the clock: ``ts`` (seconds, float) is the frame time from the object key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

Point = tuple[float, float]
Polygon = list[Point]


class DetectorSettings(BaseModel):
    """Settings shared by all detectors. Regions are polygons in normalized (0..1) coordinates;
    no region means the whole frame."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(True, description="Run this detector on the camera")
    sensitivity: float = Field(
        0.5, ge=0.0, le=1.0, description="0 = fewest alarms, 1 = most; 0.5 is the tuned default"
    )
    regions: list[Polygon] = Field(
        default_factory=list,
        description="Polygons [[x, y], ...] with 0 <= x, y <= 1 to watch; empty = whole frame",
    )

    @field_validator("regions")
    @classmethod
    def _check_regions(cls, regions: list[Polygon]) -> list[Polygon]:
        for i, poly in enumerate(regions):
            if len(poly) < 3:
                raise ValueError(f"region {i} needs at least 3 points, got {len(poly)}")
            for x, y in poly:
                if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
                    raise ValueError(f"region {i} point ({x}, {y}) is outside 0..1")
        return regions


@dataclass(frozen=True)
class Finding:
    """What one detector concluded about one frame for one event type.

    ``active`` is the per-frame decision (evidence present); the alert policy turns a run of
    active findings into an incident. ``boxes`` are normalized ``(x, y, w, h)`` for the evidence
    snapshot. ``level`` is a grade where the type has one (congestion: free/medium/heavy).
    ``ready`` is False while the detector is still warming up (e.g. has no motion history yet)
    and cannot judge.
    """

    type: str
    active: bool
    confidence: float = 0.0
    measurements: dict[str, float] = field(default_factory=dict)
    boxes: tuple[tuple[float, float, float, float], ...] = ()
    level: str | None = None
    ready: bool = True


class Detector(Protocol):
    """A per-camera detector: feed frames in time order, get one Finding per event type."""

    event_types: tuple[str, ...]

    def detect(self, frame: np.ndarray, ts: float) -> list[Finding]: ...


def region_mask(regions: list[Polygon], height: int, width: int) -> np.ndarray:
    """A uint8 mask (255 inside) of the normalized polygons at a frame size; whole frame if none."""
    if not regions:
        return np.full((height, width), 255, np.uint8)
    mask = np.zeros((height, width), np.uint8)
    for poly in regions:
        pts = np.array([[x * (width - 1), y * (height - 1)] for x, y in poly], np.float32)
        cv2.fillPoly(mask, [np.round(pts).astype(np.int32)], 255)
    return mask


def working_size(height: int, width: int, target_width: int = 320) -> tuple[int, int]:
    """The (height, width) a detector works at: ``target_width`` wide, aspect kept, never upscaled."""
    if width <= target_width:
        return height, width
    scale = target_width / width
    return max(1, round(height * scale)), target_width

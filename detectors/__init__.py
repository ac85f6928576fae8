"""Plain OpenCV/numpy detectors: per-camera state, ``detect(frame, ts)``, no I/O, no clock."""

from detectors.base import Detector, DetectorSettings, Finding, region_mask, working_size
from detectors.congestion import CongestionSettings
from detectors.fire import FireSettings, SmokeSettings
from detectors.flood import FloodSettings
from detectors.obstruction import ObstructionSettings

__all__ = [
    "CongestionSettings",
    "Detector",
    "DetectorSettings",
    "FireSettings",
    "Finding",
    "FloodSettings",
    "ObstructionSettings",
    "SmokeSettings",
    "region_mask",
    "working_size",
]

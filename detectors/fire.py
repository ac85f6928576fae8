"""Fire and smoke detection (colour proposes, temporal evidence decides)."""

from __future__ import annotations

from pydantic import Field

from detectors.base import DetectorSettings


class FireSettings(DetectorSettings):
    """Settings of the fire detector."""


class SmokeSettings(DetectorSettings):
    """Settings of the smoke detector (runs inside the fire detector)."""

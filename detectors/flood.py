"""Flood detection: water evidence in the road region against a dry reference."""

from __future__ import annotations

from detectors.base import DetectorSettings


class FloodSettings(DetectorSettings):
    """Settings of the flood detector."""

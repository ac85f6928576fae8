"""Traffic congestion: occupancy and speed in the road region, graded by level of service."""

from __future__ import annotations

from detectors.base import DetectorSettings


class CongestionSettings(DetectorSettings):
    """Settings of the congestion detector."""

"""Camera obstruction: covered, blurred or frozen images."""

from __future__ import annotations

from detectors.base import DetectorSettings


class ObstructionSettings(DetectorSettings):
    """Settings of the obstruction (camera tampering) detector."""

"""The detector registry: every detector section of the camera config belongs to one detector,
and a camera gets exactly the detectors it enables."""

from __future__ import annotations

from detectors.fire import FireDetector
from detectors.flood import FloodDetector
from detectors.registry import REGISTRY, build
from pipeline.config.settings import CameraDetectors


def test_every_config_section_has_one_detector():
    sections = [name for spec in REGISTRY for name in spec.settings]
    assert sorted(sections) == sorted(CameraDetectors.model_fields) and len(set(sections)) == len(sections)


def test_a_camera_gets_what_it_enables():
    assert [type(d).__name__ for d in build(CameraDetectors())] == \
        ["FireDetector", "FloodDetector", "CongestionDetector", "ObstructionDetector"]
    only = CameraDetectors.model_validate({"fire": {"enabled": False}, "congestion": {"enabled": False},
                                           "obstruction": {"enabled": False}})
    built = build(only)  # smoke is still on, and the fire detector carries it
    assert [type(d) for d in built] == [FireDetector, FloodDetector]
    none = CameraDetectors.model_validate({name: {"enabled": False} for name in CameraDetectors.model_fields})
    assert build(none) == []

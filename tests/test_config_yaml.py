"""Hostile YAML in the config file: alias bombs are refused fast with a clear error, while
ordinary anchors (one detector block shared by many cameras) still load."""

from __future__ import annotations

import time

import pytest
from typer.testing import CliRunner

from pipeline.app.cli import app
from pipeline.config.settings import ConfigError, load_config

LAUGHS = "\n".join(
    ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    + [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    + ["cameras: *a9"]) + "\n"


def test_a_billion_laughs_config_is_refused_fast(tmp_path):
    path = tmp_path / "bomb.yaml"
    path.write_text(LAUGHS)
    started = time.monotonic()
    with pytest.raises(ConfigError, match="too many aliases|expands to more than") as info:
        load_config(path, env={})
    assert time.monotonic() - started < 2
    assert str(path) in str(info.value)
    result = CliRunner().invoke(app, ["config", "check", str(path)])
    assert result.exit_code == 2 and "Traceback" not in result.output


def test_anchors_shared_by_many_cameras_still_load(tmp_path):
    first = ("  - {id: cam-0, name: C0, location: &loc {lat: 10.9, lon: 106.6, district: D},\n"
             "     detectors: &det {flood: {sensitivity: 0.6}, fire: {enabled: true}}}")
    others = [f"  - {{id: cam-{i}, name: C{i}, location: *loc, detectors: *det}}" for i in range(1, 300)]
    path = tmp_path / "anchors.yaml"
    path.write_text("cameras:\n" + "\n".join([first, *others]) + "\n")
    config = load_config(path, env={})
    assert len(config.cameras) == 300 and config.cameras[299].detectors.flood.sensitivity == 0.6


def test_absurd_nesting_is_refused_with_a_clear_error(tmp_path):
    path = tmp_path / "deep.yaml"
    path.write_text("cameras: " + "[" * 50_000 + "]" * 50_000 + "\n")
    with pytest.raises(ConfigError, match="nested more than 200 levels"):
        load_config(path, env={})

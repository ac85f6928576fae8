"""Configuration: a strictly validated YAML file plus ``CITYWATCH_*`` environment overrides.

Unknown keys and out-of-range values fail with the field's path (e.g.
``cameras.0.location.lat: Input should be less than or equal to 90``). Secrets may be written
as ``${ENV_VAR}`` in the YAML and are held as ``SecretStr`` so they never print.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from detectors import CongestionSettings, FireSettings, FloodSettings, ObstructionSettings, SmokeSettings
from pipeline.common.ids import NAME, anchored, full_match
from pipeline.common.text import PlainText
from pipeline.config.console import ConsoleSettings
from pipeline.config.endpoints import MqttSettings, S3Settings
from pipeline.config.endpoints import Strict as _Strict
from pipeline.config.safe_yaml import YamlTooLarge, load_yaml
from pipeline.frames.keys import validate_camera_id

__all__ = ["AlertSettings", "CameraConfig", "CameraDetectors", "CapSettings", "Config", "ConfigError", "HealthSettings",
           "Location", "MqttSettings", "S3Settings", "ShardSettings", "WorkerSettings", "config_from_dict",
           "format_validation_error", "load_config"]


class ConfigError(ValueError):
    """A configuration that cannot be used; the message names each bad field by its path."""


class CapSettings(_Strict):
    """CAP 1.2 XML output alongside the JSON alerts."""

    enabled: bool = False
    sender: PlainText = Field("citywatch@ioc.example.org", min_length=3, max_length=200)
    area_radius_km: float = Field(0.2, gt=0, le=100)


class AlertSettings(_Strict):
    """Incident lifecycle: debounce before start, hysteresis before end, heartbeat, cooldown."""

    debounce_hits: int = Field(3, ge=1, le=100, description="Active frames needed ...")
    debounce_window: int = Field(5, ge=1, le=200, description="... among the last this many frames")
    end_after_s: float = Field(30.0, ge=1, le=3600, description="Seconds without evidence before end")
    update_heartbeat_s: float = Field(60.0, ge=5, le=86400, description="Update at least this often")
    cooldown_s: float = Field(60.0, ge=0, le=86400, description="Quiet time after end before a new start")
    cap: CapSettings = CapSettings()

    @model_validator(mode="after")
    def _hits_fit_window(self) -> AlertSettings:
        if self.debounce_hits > self.debounce_window:
            raise ValueError("debounce_hits must not exceed debounce_window")
        return self


class HealthSettings(_Strict):
    """Camera health: when a camera is stale, then offline (short blips are ignored)."""

    stale_after_s: float = Field(30.0, gt=0, le=86400)
    offline_after_s: float = Field(120.0, gt=0, le=7 * 86400)

    @model_validator(mode="after")
    def _order(self) -> HealthSettings:
        if self.offline_after_s < self.stale_after_s:
            raise ValueError("offline_after_s must be >= stale_after_s")
        return self


class WorkerSettings(_Strict):
    """The process that runs the watch flow."""

    name: str = Field("worker-1", pattern=anchored(NAME))
    state_dir: Path = Field(Path(".citywatch"), description="Outbox, checkpoints, incident state")
    poll_interval_s: float = Field(1.0, gt=0, le=60)
    frame_notices: bool = Field(True, description="Process a camera as soon as a new-frame notice "
                                "(<prefix>/frames/new: MinIO bucket notification or citywatch ingest) names it")
    notice_sweep_s: float = Field(10.0, gt=0, le=3600, description="Cameras whose notices arrive are "
                                  "still listed this often (a lost notice is found by then)")
    window_s: float = Field(300.0, gt=0, le=86400, description="How long one watch run polls")
    max_frames_per_batch: int = Field(200, ge=1, le=10000)
    max_frame_bytes: int = Field(20_000_000, ge=1000, le=200_000_000)
    max_frame_pixels: int = Field(40_000_000, ge=10_000, le=400_000_000, description="Decompression-bomb guard")
    max_future_s: float = Field(300.0, ge=0, le=86400, description="Frames stamped further ahead are refused")
    lock_wait_s: float = Field(10.0, ge=0, le=600, description="How long a worker waits for the state dir's "
                               "lock (held by the previous window's process while it exits) before it fails")


class ShardSettings(_Strict):
    """How cameras are split across edge workers: ``count`` shards named ``shard-0`` .. or ``names``."""

    count: int = Field(1, ge=1, le=1000, description="Number of shards (one watch deployment each)")
    names: list[str] | None = Field(None, description="Explicit shard names; default shard-0 .. shard-<count-1>")

    @model_validator(mode="after")
    def _names_match_count(self) -> ShardSettings:
        if self.names is None:
            return self
        if not self.names:
            raise ValueError("names must list at least one shard (or be left out)")
        if "count" not in self.model_fields_set:
            self.count = len(self.names)
        if len(self.names) != self.count:
            raise ValueError(f"names lists {len(self.names)} shards but count is {self.count}")
        for name in self.names:
            if not full_match(NAME, name):
                raise ValueError(f"shard name {name!r} is not allowed: use 1-64 characters from A-Z a-z 0-9 _ -")
        if len(set(self.names)) != len(self.names):
            raise ValueError("shard names must be unique")
        return self


class Location(_Strict):
    lat: float = Field(..., ge=-90, le=90)
    lon: float = Field(..., ge=-180, le=180)
    district: PlainText = Field("", max_length=120)


class CameraDetectors(_Strict):
    fire: FireSettings = FireSettings()
    smoke: SmokeSettings = SmokeSettings()
    flood: FloodSettings = FloodSettings()
    congestion: CongestionSettings = CongestionSettings()
    obstruction: ObstructionSettings = ObstructionSettings()


class CameraConfig(_Strict):
    """One camera in the registry."""

    id: str = Field(..., description="[A-Za-z0-9_-]{1,64}; part of object keys and MQTT topics")
    name: PlainText = Field("", max_length=200)
    location: Location | None = None
    fps: float = Field(2.0, gt=0, le=30, description="Frames per second the pipeline samples")
    detectors: CameraDetectors = CameraDetectors()

    @field_validator("id")
    @classmethod
    def _check_id(cls, value: str) -> str:
        return validate_camera_id(value)


class Config(_Strict):
    """The whole citywatch configuration."""

    s3: S3Settings = S3Settings()
    mqtt: MqttSettings = MqttSettings()
    alerts: AlertSettings = AlertSettings()
    health: HealthSettings = HealthSettings()
    worker: WorkerSettings = WorkerSettings()
    cameras: list[CameraConfig] = Field(default_factory=list)
    shards: ShardSettings = ShardSettings()
    console: ConsoleSettings = ConsoleSettings()

    @model_validator(mode="after")
    def _unique_cameras(self) -> Config:
        seen: set[str] = set()
        for cam in self.cameras:
            if cam.id in seen:
                raise ValueError(f"camera id {cam.id!r} appears twice")
            seen.add(cam.id)
        return self

    def camera(self, camera_id: str) -> CameraConfig | None:
        return next((c for c in self.cameras if c.id == camera_id), None)


ENV_OVERRIDES: dict[str, tuple[str, ...]] = {
    "CITYWATCH_S3_URL": ("s3", "url"),
    "CITYWATCH_S3_ACCESS_KEY": ("s3", "access_key"),
    "CITYWATCH_S3_SECRET_KEY": ("s3", "secret_key"),
    "CITYWATCH_MQTT_URL": ("mqtt", "url"),
    "CITYWATCH_MQTT_USERNAME": ("mqtt", "username"),
    "CITYWATCH_MQTT_PASSWORD": ("mqtt", "password"),
    "CITYWATCH_MQTT_CA_FILE": ("mqtt", "ca_file"),
    "CITYWATCH_WORKER_NAME": ("worker", "name"),
    "CITYWATCH_STATE_DIR": ("worker", "state_dir"),
    "CITYWATCH_CONSOLE_DB_URL": ("console", "store", "url"),
}
_ENV_REF = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)\}")


def _substitute_env(node: Any, env: Mapping[str, str], path: str = "") -> Any:
    if isinstance(node, dict):
        return {k: _substitute_env(v, env, f"{path}.{k}" if path else str(k)) for k, v in node.items()}
    if isinstance(node, list):
        return [_substitute_env(v, env, f"{path}.{i}") for i, v in enumerate(node)]
    if isinstance(node, str):
        def repl(m: re.Match[str]) -> str:
            if m[1] not in env:
                raise ConfigError(f"{path}: environment variable {m[1]} is not set")
            return env[m[1]]
        return _ENV_REF.sub(repl, node)
    return node


def format_validation_error(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        lines.append(f"{where}: {err['msg']}")
    return "; ".join(lines)


def config_from_dict(data: Mapping[str, Any] | None, env: Mapping[str, str] | None = None) -> Config:
    """Validate a config mapping, with ``${VAR}`` references and ``CITYWATCH_*`` overrides applied."""
    env = os.environ if env is None else env
    raw = _substitute_env(dict(data or {}), env)
    for var, path in ENV_OVERRIDES.items():
        if env.get(var):
            node = raw
            for i, part in enumerate(path[:-1]):
                node.setdefault(part, {})
                if not isinstance(node[part], dict):
                    raise ConfigError(f"{'.'.join(path[:i + 1])}: must be a mapping")
                node = node[part]
            node[path[-1]] = env[var]
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc)) from None


def load_config(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Load ``path`` (or ``$CITYWATCH_CONFIG``; none at all gives the defaults)."""
    env = os.environ if env is None else env
    path = path or env.get("CITYWATCH_CONFIG")
    data: Any = {}
    if path:
        p = Path(path)
        try:
            data = load_yaml(p.read_text(encoding="utf-8")) or {}
        except FileNotFoundError:
            raise ConfigError(f"config file {p} does not exist") from None
        except YamlTooLarge as exc:
            raise ConfigError(f"config file {p}: {exc}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {p} is not valid YAML: {exc}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"config file {p}: top level must be a mapping, got {type(data).__name__}")
    return config_from_dict(data, env)

"""The ``console:`` section of the configuration: language, time zone, incident store, triage
alarm and escalation, push targets and the map.

Example::

    console:
      language: vi                      # vi or en: every page string, push text
      timezone: Asia/Ho_Chi_Minh        # times on the page, in pushes and on snapshot labels
      store: {url: "postgresql://citywatch@127.0.0.1:5432/ioc"}   # default: SQLite in worker.state_dir
      alarm: {repeat_s: 20, escalate_after_s: 300, sound: true}
      push: {urls: ["${CITYWATCH_PUSH_URL}"], min_severity: severe}
      map: {tile_url: "https://tiles.example.org/{z}/{x}/{y}.png"}
"""

from __future__ import annotations

import re
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, field_validator

from pipeline.config.endpoints import Strict

__all__ = ["AlarmSettings", "ConsoleSettings", "MapSettings", "PushSettings", "StoreSettings"]

_PREFIX = re.compile(r"[a-z][a-z0-9_]{0,30}")
_TILE_URL = re.compile(r"https?://[^\s\"'<>]+")


class StoreSettings(Strict):
    """Where incidents and acknowledgements are kept (SQLAlchemy URL: ``sqlite:///...`` or
    ``postgresql://user@host/db``); unset means ``<worker.state_dir>/console.db``."""

    url: SecretStr | None = Field(None, description="Database URL; may hold a password (never printed)")
    table_prefix: str = Field("console_", description="Prefix of the store's table names")
    board_size: int = Field(500, ge=10, le=100_000, description="Incidents on the board after a restart")

    @field_validator("table_prefix")
    @classmethod
    def _check_prefix(cls, value: str) -> str:
        if not _PREFIX.fullmatch(value):
            raise ValueError("use 1-31 characters: a lower-case letter, then lower-case letters, digits or '_'")
        return value

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith(("sqlite://", "postgresql://",
                                                                          "postgresql+psycopg://")):
            raise ValueError("the store URL must start with sqlite:// or postgresql://")
        return value


class AlarmSettings(Strict):
    """Triage alarm for open, unacknowledged severe and extreme incidents."""

    repeat_s: float = Field(20.0, ge=2, le=600, description="The alarm repeats this often until acknowledged")
    escalate_after_s: float = Field(300.0, ge=10, le=86_400, description="Unacknowledged this long: escalated")
    sound: bool = Field(True, description="Alarm sound on by default (the page asks for one click to allow it)")
    include_test: bool = Field(False, description="Alarm (and push) for test alerts too")


class PushSettings(Strict):
    """Push of severe incidents and escalations through apprise (webhook, e-mail, chat URLs)."""

    urls: list[SecretStr] = Field(default_factory=list, description="apprise URLs, e.g. json://host/path, "
                                  "mailtos://user:pass@host, tgram://token/chat")
    min_severity: Literal["minor", "moderate", "severe", "extreme"] = "severe"
    timeout_s: float = Field(10.0, gt=0, le=120)


class MapSettings(Strict):
    """The camera map: works offline (camera markers, district outlines); tiles only if configured."""

    tile_url: str | None = Field(None, description="Tile URL template holding {z}, {x} and {y}")
    attribution: str = Field("", max_length=200)

    @field_validator("tile_url")
    @classmethod
    def _check_tiles(cls, value: str | None) -> str | None:
        if value is not None and (not _TILE_URL.fullmatch(value) or not all(p in value for p in ("{z}", "{x}", "{y}"))):
            raise ValueError("must be an http(s) URL holding {z}, {x} and {y}")
        return value


class ConsoleSettings(Strict):
    """The operations-center console (``citywatch console``)."""

    language: Literal["vi", "en"] = "vi"
    timezone: str = Field("Asia/Ho_Chi_Minh", description="IANA zone for every time shown to people")
    store: StoreSettings = StoreSettings()
    alarm: AlarmSettings = AlarmSettings()
    push: PushSettings = PushSettings()
    map: MapSettings = MapSettings()

    @field_validator("timezone")
    @classmethod
    def _check_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (use an IANA name such as Asia/Ho_Chi_Minh)") from None
        return value

    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

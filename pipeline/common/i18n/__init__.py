"""The strings people read (console page, push messages, CAP text), from one catalogue per language
(``en.json``, ``vi.json`` next to this file), with measurements in plain words and units and times
in the configured zone.

::

    cat = catalogue("vi")
    cat.t("count.unacked", n=2)                  # '2 chưa xác nhận'
    cat.measurement("flooded_pct", 64.2)         # ('mặt đường bị ngập', '64 %')
    local_time(1764700000, ZoneInfo("Asia/Ho_Chi_Minh"))   # '2025-12-02 18:06:40 +07'
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, tzinfo
from functools import cache
from importlib import resources
from typing import Any

__all__ = ["LANGUAGES", "MEASURE_KINDS", "Catalogue", "catalogue", "local_time"]

LANGUAGES = ("vi", "en")
#: How each measurement reads: pct (already in %), fraction (0..1 shown as %), seconds, times
#: (a ratio such as growth, "x2.0"), flag (0/1 shown yes/no), number (plain).
MEASURE_KINDS: dict[str, str] = {
    "area_pct": "pct", "candidate_pct": "pct", "flooded_pct": "pct", "flooded_pct_smoothed": "pct",
    "puddle_pct": "pct", "occupancy_pct": "pct", "fast_pct": "pct", "changed_pct": "pct", "zone_pct": "pct",
    "water_level_index": "fraction", "sharpness_ratio": "fraction", "flicker": "number", "edge_loss": "fraction",
    "rigidity": "fraction", "growth": "times", "frozen_s": "seconds", "silent_s": "seconds",
    "offline_s": "seconds", "offline_after_s": "seconds", "static_scene": "flag", "covered": "flag",
    "blurred": "flag", "frozen": "flag", "zone_from_motion": "flag", "verified_p": "fraction",
}


class Catalogue:
    """One language's strings; a key missing from it is a KeyError naming the key and language."""

    def __init__(self, language: str, strings: dict[str, str]) -> None:
        self.language = language
        self.strings = strings

    def t(self, key: str, **values: Any) -> str:
        try:
            text = self.strings[key]
        except KeyError:
            raise KeyError(f"no string {key!r} in the {self.language} catalogue") from None
        return text.format(**values) if values else text

    def label(self, measurement: str) -> str:
        """The plain name of a measurement (its key with spaces if the catalogue lacks it)."""
        return self.strings.get(f"measure.{measurement}", measurement.replace("_", " "))

    def value(self, measurement: str, value: float) -> str:
        """``value`` with its unit, e.g. ``64 %``, ``12 s`` / ``12 giây``, ``x2.1``, ``yes`` / ``có``."""
        kind = MEASURE_KINDS.get(measurement, "number")
        if kind == "pct":
            return f"{_num(value)} {self.t('unit.pct')}"
        if kind == "fraction":
            return f"{_num(100 * value)} {self.t('unit.pct')}"
        if kind == "seconds":
            return f"{_num(value)} {self.t('unit.s')}"
        if kind == "times":
            return f"x{value:.1f}"
        if kind == "flag":
            return self.t("bool.yes" if value else "bool.no")
        return _num(value)

    def measurement(self, measurement: str, value: float) -> tuple[str, str]:
        return self.label(measurement), self.value(measurement, value)

    def event(self, event_type: str) -> str:
        return self.strings.get(f"type.{event_type}", event_type.replace("_", " "))

    def severity(self, severity: str) -> str:
        return self.strings.get(f"severity.{severity}", severity)


def _num(value: float) -> str:
    v = abs(value)
    text = f"{value:.0f}" if v >= 10 else f"{value:.1f}" if v >= 1 else f"{value:.2f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


@cache
def catalogue(language: str) -> Catalogue:
    """The catalogue of ``language`` (``vi`` or ``en``)."""
    if language not in LANGUAGES:
        raise ValueError(f"no catalogue for language {language!r}; use one of {', '.join(LANGUAGES)}")
    text = resources.files("pipeline.common.i18n").joinpath(f"{language}.json").read_text(encoding="utf-8")
    return Catalogue(language, json.loads(text))


def local_time(ts: float | datetime, zone: tzinfo) -> str:
    """``YYYY-MM-DD HH:MM:SS +07`` in ``zone`` (the offset always shown, never a bare local time)."""
    when = ts if isinstance(ts, datetime) else datetime.fromtimestamp(ts, UTC)
    local = when.astimezone(zone)
    offset = local.strftime("%z")
    short = offset[:3] if offset.endswith("00") else f"{offset[:3]}:{offset[3:]}"
    return f"{local:%Y-%m-%d %H:%M:%S} {short}"

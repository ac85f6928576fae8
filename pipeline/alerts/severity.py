"""Severity of an incident per event type, and the primary measurement each type is judged by.

Severity grades follow CAP 1.2: ``minor`` < ``moderate`` < ``severe`` < ``extreme``. The rules:

=================  ==========================================================================
type               rule
=================  ==========================================================================
fire               burning area ``area_pct`` (% of the watched region): < 1 % moderate,
                   1-5 % severe, >= 5 % extreme; a *growing* fire (area at least 2x its area
                   when the incident started, and >= 0.5 %) is one grade higher. Never below
                   moderate: a confirmed flame in a city is never minor.
smoke              ``area_pct``: < 5 % minor, 5-20 % moderate, >= 20 % severe; growing smoke
                   (2x) one grade higher; capped at severe (smoke ranks below fire).
flood              the higher of two grades: ``flooded_pct`` (% of the road region under
                   water) < 25 % minor, 25-60 % moderate, >= 60 % severe; and
                   ``water_level_index`` (0..1, how far up the region the water reaches)
                   < 0.3 minor, 0.3-0.6 moderate, >= 0.6 severe. Extreme only when both
                   agree on a deep, wide flood: index >= 0.85 and flooded >= 60 %.
congestion         level of service: ``medium`` minor, ``heavy`` moderate, ``heavy`` lasting
                   15 minutes or more severe.
camera_obstructed  minor; moderate once it has lasted 10 minutes.
camera_offline     moderate (the operations center has lost an eye, nobody is in danger).
other types        minor.
=================  ==========================================================================

When the measurement a rule needs is missing, the finding's confidence stands in for it (scaled
to the rule's range), so a detector that reports no measurements still yields a graded alert.
"""

from __future__ import annotations

from collections.abc import Mapping

SEVERITIES: tuple[str, ...] = ("minor", "moderate", "severe", "extreme")

GROWTH_FACTOR = 2.0
"""Area ratio (now / at start) from which a fire or smoke incident counts as growing."""
CONGESTION_SEVERE_AFTER_S = 15 * 60.0
OBSTRUCTED_MODERATE_AFTER_S = 10 * 60.0

PRIMARY_MEASUREMENT: dict[str, str] = {
    "fire": "area_pct",
    "smoke": "area_pct",
    "flood": "flooded_pct",
    "congestion": "occupancy_pct",
    "camera_obstructed": "sharpness_ratio",
}
"""The measurement whose material change (> 25 %) triggers an ``update`` message."""
MATERIAL_CHANGE = 0.25
_CHANGE_FLOOR = {"area_pct": 0.5, "flooded_pct": 2.0, "occupancy_pct": 2.0, "sharpness_ratio": 0.05}
"""Smallest absolute change that counts, so values near zero do not trigger on noise."""


def severity_rank(severity: str) -> int:
    """0 for minor ... 3 for extreme; ValueError for anything else."""
    try:
        return SEVERITIES.index(severity)
    except ValueError:
        raise ValueError(f"unknown severity {severity!r}; expected one of {', '.join(SEVERITIES)}") from None


def _step(severity: str, steps: int, cap: str = "extreme") -> str:
    rank = min(severity_rank(severity) + steps, severity_rank(cap))
    return SEVERITIES[max(rank, 0)]


def _grade(value: float, bounds: tuple[float, ...], grades: tuple[str, ...]) -> str:
    """``grades[i]`` for the first ``bounds[i]`` that ``value`` is below; the last grade otherwise."""
    for bound, grade in zip(bounds, grades):
        if value < bound:
            return grade
    return grades[-1]


def primary_value(event_type: str, measurements: Mapping[str, float], confidence: float) -> float:
    """The value an incident of ``event_type`` is tracked by (its primary measurement, else confidence)."""
    key = PRIMARY_MEASUREMENT.get(event_type)
    if key is not None and key in measurements:
        return float(measurements[key])
    return float(confidence)


def material_change(event_type: str, sent: float, now: float) -> bool:
    """Whether the primary value moved by more than 25 % of the last sent value (and its floor)."""
    floor = _CHANGE_FLOOR.get(PRIMARY_MEASUREMENT.get(event_type, ""), 0.05)
    return abs(now - sent) > max(MATERIAL_CHANGE * abs(sent), floor)


def growth_ratio(start_area: float | None, area: float | None) -> float:
    """How many times the area has grown since the start (1.0 when unknown)."""
    if start_area is None or area is None or start_area <= 0:
        return 1.0
    return area / start_area


def severity_for(event_type: str, measurements: Mapping[str, float], *, confidence: float = 0.0,
                 level: str | None = None, growth: float = 1.0, duration_s: float = 0.0) -> str:
    """The severity of an incident of ``event_type`` now (see the module table)."""
    m = measurements
    if event_type in ("fire", "smoke"):
        # Without an area, confidence 0..1 maps onto 0..10 % (fire) or 0..40 % (smoke).
        area = float(m["area_pct"]) if "area_pct" in m else confidence * (10.0 if event_type == "fire" else 40.0)
        growing = growth >= GROWTH_FACTOR and area >= 0.5
        if event_type == "fire":
            base = _grade(area, (1.0, 5.0), ("moderate", "severe", "extreme"))
            return _step(base, 1 if growing else 0)
        base = _grade(area, (5.0, 20.0), ("minor", "moderate", "severe"))
        return _step(base, 1 if growing else 0, cap="severe")
    if event_type == "flood":
        pct = float(m["flooded_pct"]) if "flooded_pct" in m else confidence * 100.0
        grades = [_grade(pct, (25.0, 60.0), ("minor", "moderate", "severe"))]
        if "water_level_index" in m:
            wli = float(m["water_level_index"])
            if wli >= 0.85 and pct >= 60.0:
                return "extreme"
            grades.append(_grade(wli, (0.3, 0.6), ("minor", "moderate", "severe")))
        return max(grades, key=severity_rank)
    if event_type == "congestion":
        if level == "heavy" or (level is None and confidence >= 0.5):
            return "severe" if duration_s >= CONGESTION_SEVERE_AFTER_S else "moderate"
        return "minor"
    if event_type == "camera_obstructed":
        return "moderate" if duration_s >= OBSTRUCTED_MODERATE_AFTER_S else "minor"
    if event_type == "camera_offline":
        return "moderate"
    return "minor"

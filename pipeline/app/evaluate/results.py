"""Results of an evaluation as numbers and files: clip-level confusion counts per task with time to
detect (from the start of the footage) and time to alert (from the labelled onset), the traffic-level
confusion table (labelled level against the highest level a congestion incident reported), the
``--json`` document (headline scores, fold mode, traffic confusion, one entry per media) and the
``--csv`` file (the same per-media entries, one flat row each)."""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.app.evaluate.labels import HEADLINE, TASKS, truth

if TYPE_CHECKING:
    from pipeline.app.evaluate.run import Evaluation, MediaResult

#: Congestion levels a finding / incident reports (detectors.congestion), lowest first.
LEVEL_RANK = {"free": 0, "medium": 1, "heavy": 2}
TRAFFIC_LABELS = ("congested", "medium", "free", "empty")  # confusion rows ("na" is left out)
TRAFFIC_PREDICTED = ("heavy", "medium", "free", "not judged")  # confusion columns


def _percentile(values: tuple[float, ...], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 3) if values else None


@dataclass(frozen=True)
class Score:
    """Clip-level confusion counts and the derived rates for one task over some media."""

    tp: int
    fp: int
    fn: int
    tn: int
    ttd_s: tuple[float, ...]  # time to first alarm of each true positive, from the footage's start
    unjudged: int = 0  # of the counted media, those where the detector never said it could judge
    tta_s: tuple[float, ...] = ()  # time to first alarm of each true positive, from the labelled onset

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def accuracy(self) -> float:
        n = self.tp + self.fp + self.fn + self.tn
        return (self.tp + self.tn) / n if n else 0.0

    def ttd(self, q: float) -> float | None:
        return _percentile(self.ttd_s, q)

    def tta(self, q: float) -> float | None:
        return _percentile(self.tta_s, q)

    def as_dict(self) -> dict[str, Any]:
        return {"tp": self.tp, "fp": self.fp, "fn": self.fn, "tn": self.tn,
                "precision": round(self.precision, 4), "recall": round(self.recall, 4),
                "accuracy": round(self.accuracy, 4), "median_ttd_s": self.ttd(50), "p90_ttd_s": self.ttd(90),
                "median_tta_s": self.tta(50), "p90_tta_s": self.tta(90)}


def score(results: Iterable[MediaResult], task: str) -> Score:
    """Clip-level TP/FP/FN/TN of ``task`` over the readable media that have a label for it."""
    tp = fp = fn = tn = unjudged = 0
    ttd: list[float] = []
    tta: list[float] = []
    for r in results:
        label = truth(r.media, task)
        if r.error or label is None:
            continue
        unjudged += not r.judged.intersection(TASKS[task])
        alarm, to_alert = r.alarm_s(task), r.tta_s(task)
        if label and alarm is not None and to_alert is not None:
            tp += 1
            ttd.append(alarm)
            tta.append(to_alert)
        elif label:
            fn += 1
        elif alarm is not None:
            fp += 1
        else:
            tn += 1
    return Score(tp, fp, fn, tn, tuple(ttd), unjudged, tuple(tta))


def traffic_confusion(results: Iterable[MediaResult]) -> dict[str, dict[str, int]]:
    """``{labelled level: {predicted level: media}}`` over the readable media with a traffic label."""
    table = {label: dict.fromkeys(TRAFFIC_PREDICTED, 0) for label in TRAFFIC_LABELS}
    for r in results:
        if r.error is None and r.media.traffic in table:
            table[r.media.traffic][r.predicted_traffic] += 1
    return table


#: Finding / incident types with their own CSV columns, whether or not a run saw them.
EVENT_TYPES = ("fire", "smoke", "flood", "congestion", "camera_obstructed")


def outcome(result: MediaResult, task: str) -> str | None:
    """``TP`` / ``FP`` / ``FN`` / ``TN`` of one readable media for ``task``; None when not counted."""
    label = truth(result.media, task)
    if result.error or label is None:
        return None
    alarmed = result.alarm_s(task) is not None
    return ("TP" if alarmed else "FN") if label else ("FP" if alarmed else "TN")


def media_entry(r: MediaResult) -> dict[str, Any]:
    """One media's labels and what the run made of it (the ``media`` list of the JSON)."""
    return {
        "path": r.media.path, "source": r.source, "fold": r.fold,
        "labels": {"fire": r.media.fire, "flood": r.media.flood, "traffic": r.media.traffic},
        "frames": r.frames, "footage_s": round(r.footage_s, 3), "error": r.error,
        "alarmed": sorted(r.first_start_s),
        "first_alarm_s": dict(sorted(r.first_start_s.items())),
        "max_confidence": {t: round(c, 4) for t, c in sorted(r.max_confidence.items())},
        "judged": sorted(r.judged),
        "predicted_traffic": r.predicted_traffic,
        "onset_s": r.media.onset_s,
        "tta_s": {task: r.tta_s(task) for task in HEADLINE},
        "outcome": {task: outcome(r, task) for task in HEADLINE},
    }


def evaluation_json(ev: Evaluation) -> dict[str, Any]:
    """The ``--json`` document. The headline keys (``fire``, ``flood``, ``congestion``, ``frames``,
    ``frames_per_s``) keep their meaning: scores over all readable media."""
    out: dict[str, Any] = {task: score(ev.evaluated, task).as_dict() for task in HEADLINE}
    out["frames"] = ev.frames
    out["frames_per_s"] = round(ev.frames_per_s, 2)
    out["folds"] = {"mode": ev.folds, "description": ev.mode, "held_out": list(ev.held_out)}
    out["traffic_confusion"] = traffic_confusion(ev.results)
    out["media"] = [media_entry(r) for r in ev.results]
    return out


def _types(results: Iterable[MediaResult]) -> list[str]:
    seen = {t for r in results for t in (*r.first_start_s, *r.max_confidence, *r.judged)}
    return [*EVENT_TYPES, *sorted(seen - set(EVENT_TYPES))]


def csv_columns(types: list[str]) -> list[str]:
    return ["path", "source", "fold", "fire", "flood", "traffic", "frames", "footage_s", "error",
            "alarmed", *(f"first_alarm_s_{t}" for t in types), *(f"max_confidence_{t}" for t in types),
            "judged", "predicted_traffic", "onset_s", *(f"tta_s_{t}" for t in HEADLINE),
            *(f"outcome_{t}" for t in HEADLINE)]


def csv_row(entry: dict[str, Any], types: list[str]) -> dict[str, Any]:
    """A media entry flattened: dicts become one column per key, lists ``;``-joined, None empty."""
    row: dict[str, Any] = {k: entry[k] for k in ("path", "source", "fold", "frames", "footage_s", "error",
                                                 "predicted_traffic", "onset_s")}
    row.update(entry["labels"])
    row["alarmed"] = ";".join(entry["alarmed"])
    row["judged"] = ";".join(entry["judged"])
    for t in types:
        row[f"first_alarm_s_{t}"] = entry["first_alarm_s"].get(t)
        row[f"max_confidence_{t}"] = entry["max_confidence"].get(t)
    for task in HEADLINE:
        row[f"tta_s_{task}"] = entry["tta_s"][task]
        row[f"outcome_{task}"] = entry["outcome"][task]
    return {k: "" if v is None else v for k, v in row.items()}


def write_csv(ev: Evaluation, path: Path) -> None:
    """One row per media of ``ev`` (labels order) with the columns of :func:`csv_columns`."""
    types = _types(ev.results)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=csv_columns(types))
        writer.writeheader()
        for r in ev.results:
            writer.writerow(csv_row(media_entry(r), types))

"""Human-readable output of an :class:`~pipeline.evaluate.Evaluation`: a rich table per task and
media kind, the medium-traffic class, wrong calls, skipped files, and throughput."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from pipeline.evaluate import HEADLINE, Evaluation, score, truth

_LABELS = {"fire": "fire", "flood": "flood", "congestion": "congestion",
           "fire_only": "fire-only", "smoke_only": "smoke-only"}


def _fmt(value: float | None, pattern: str = "{:.2f}") -> str:
    return "-" if value is None else pattern.format(value)


def results_table(evaluation: Evaluation) -> Table:
    """Clip-level TP/FP/FN/TN, precision, recall, accuracy and time to first alarm per task."""
    table = Table(title=f"citywatch evaluate @ {evaluation.fps:g} frames/s", title_justify="left")
    for name, justify in (("task", "left"), ("media", "left"), ("n", "right"), ("TP", "right"),
                          ("FP", "right"), ("FN", "right"), ("TN", "right"), ("prec.", "right"),
                          ("recall", "right"), ("acc.", "right"), ("TTD p50 s", "right"),
                          ("TTD p90 s", "right"), ("not judged", "right")):
        table.add_column(name, justify=justify)
    rows = [(task, kind) for task in HEADLINE for kind in ("all", "clips", "stills")]
    rows += [("fire_only", "all"), ("smoke_only", "all")]
    for task, kind in rows:
        s = score(evaluation.subset(kind), task)
        n = s.tp + s.fp + s.fn + s.tn
        if n == 0 and kind != "all":
            continue
        style = "bold" if kind == "all" and task in HEADLINE else None
        table.add_row(_LABELS[task], kind, str(n), str(s.tp), str(s.fp), str(s.fn), str(s.tn),
                      _fmt(s.precision), _fmt(s.recall), _fmt(s.accuracy),
                      _fmt(s.ttd(50), "{:.1f}"), _fmt(s.ttd(90), "{:.1f}"), str(s.unjudged), style=style,
                      end_section=kind == "stills")
    return table


def wrong_calls(evaluation: Evaluation) -> list[str]:
    """One line per missed positive and per false alarm of the headline tasks."""
    lines = []
    for r in evaluation.evaluated:
        for task in HEADLINE:
            label, alarm = truth(r.media, task), r.alarm_s(task)
            if label is True and alarm is None:
                lines.append(f"missed {task}: {r.media.path}")
            elif label is False and alarm is not None:
                kinds = ", ".join(t for t in r.first_start_s)
                lines.append(f"false {task} alarm at {alarm:.1f} s ({kinds}): {r.media.path}")
    return lines


def print_report(evaluation: Evaluation, console: Console | None = None) -> None:
    """Print the whole report to ``console`` (stdout by default)."""
    console = console or Console()
    console.print(results_table(evaluation))
    medium = score(evaluation.evaluated, "congestion_medium")
    if medium.tp + medium.fn:
        console.print(f"medium traffic (own class, neither positive nor negative): flagged as congestion in "
                      f"{medium.tp} of {medium.tp + medium.fn} media")
    for line in wrong_calls(evaluation):
        console.print(f"  [yellow]{escape(line)}[/]")
    for r in evaluation.skipped:
        console.print(f"  [red]skipped[/] {escape(r.media.path)} (labels line {r.media.line}): {escape(r.error or '')}")
    clips = evaluation.subset("clips")
    footage = sum(r.footage_s for r in clips)
    console.print(
        f"{len(evaluation.evaluated)} media evaluated ({len(clips)} clips, {footage:.0f} s of footage; "
        f"{len(evaluation.evaluated) - len(clips)} stills), {len(evaluation.skipped)} skipped; "
        f"{evaluation.frames} frames; {evaluation.frames_per_s:.1f} frames/s for reduced decode + detectors + "
        f"alert policy ({evaluation.analyze_frames_per_s:.1f} frames/s without the decode); "
        f"{evaluation.wall_s:.1f} s wall time"
    )
    console.print("fire = a fire or smoke incident started; fire-only / smoke-only score each type alone "
                  "against the fire labels. TTD = seconds of footage to the first alert. not judged = media "
                  "where the detector never reported itself ready (e.g. a motion-based detector on a still); "
                  "they still count in TP/FP/FN/TN.")

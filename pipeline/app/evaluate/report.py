"""Human-readable output of an :class:`~pipeline.app.evaluate.run.Evaluation`: which models ran (in-sample or
leave-one-source-out), a rich table per task and media kind, the traffic-level confusion, the
medium-traffic class, wrong calls, skipped files, and throughput."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from pipeline.app.evaluate.results import TRAFFIC_LABELS, TRAFFIC_PREDICTED, traffic_confusion
from pipeline.app.evaluate.run import HEADLINE, Evaluation, Subset, score, truth

_LABELS = {"fire": "fire", "flood": "flood", "congestion": "congestion",
           "fire_only": "fire-only", "smoke_only": "smoke-only", "smoke": "smoke (shown)"}


def _fmt(value: float | None, pattern: str = "{:.2f}") -> str:
    return "-" if value is None else pattern.format(value)


COLUMNS = ("task", "media", "n", "TP", "FP", "FN", "TN", "prec.", "recall", "acc.", "TTD p50 s", "TTD p90 s",
           "TTA p50 s", "TTA p90 s", "not judged")


def score_rows(evaluation: Evaluation) -> list[tuple[str, Subset, list[str]]]:
    """``(task, media kind, formatted cells under COLUMNS)`` of the results table: the console's and
    the HTML report's numbers come from here."""
    kinds: tuple[Subset, ...] = ("all", "clips", "stills")
    rows: list[tuple[str, Subset]] = [(task, kind) for task in HEADLINE for kind in kinds]
    rows += [("fire_only", "all"), ("smoke_only", "all"), ("smoke", "all")]
    out = []
    for task, kind in rows:
        s = score(evaluation.subset(kind), task)
        n = s.tp + s.fp + s.fn + s.tn
        if n == 0 and kind != "all":
            continue
        out.append((task, kind, [_LABELS[task], kind, str(n), str(s.tp), str(s.fp), str(s.fn), str(s.tn),
                                 _fmt(s.precision), _fmt(s.recall), _fmt(s.accuracy),
                                 _fmt(s.ttd(50), "{:.1f}"), _fmt(s.ttd(90), "{:.1f}"),
                                 _fmt(s.tta(50), "{:.1f}"), _fmt(s.tta(90), "{:.1f}"), str(s.unjudged)]))
    return out


def results_table(evaluation: Evaluation) -> Table:
    """Clip-level TP/FP/FN/TN, precision, recall, accuracy and time to first alarm per task."""
    table = Table(title=f"citywatch evaluate @ {evaluation.fps:g} frames/s ({evaluation.mode})",
                  title_justify="left")
    for name in COLUMNS:
        table.add_column(name, justify="left" if name in ("task", "media") else "right")
    for task, kind, cells in score_rows(evaluation):
        style = "bold" if kind == "all" and task in HEADLINE else None
        table.add_row(*cells, style=style, end_section=kind == "stills")
    return table


def traffic_table(evaluation: Evaluation) -> Table:
    """Labelled traffic level (rows) against the highest level a congestion incident reported."""
    table = Table(title="traffic level: labelled (rows) vs predicted (columns)", title_justify="left")
    table.add_column("labelled", justify="left")
    for name in TRAFFIC_PREDICTED:
        table.add_column(name, justify="right")
    for label, counts in traffic_confusion(evaluation.results).items():
        table.add_row(label, *(str(counts[p]) for p in TRAFFIC_PREDICTED))
    return table


def wrong_calls(evaluation: Evaluation) -> list[str]:
    """One line per missed positive and per false alarm of the headline tasks."""
    lines = []
    for r in evaluation.evaluated:
        fold = f" [fold without {r.fold}]" if evaluation.folds == "source" else ""
        for task in HEADLINE:
            label, alarm = truth(r.media, task), r.alarm_s(task)
            if label is True and alarm is None:
                lines.append(f"missed {task}: {r.media.path}{fold}")
            elif label is False and alarm is not None:
                kinds = ", ".join(t for t in r.first_start_s)
                lines.append(f"false {task} alarm at {alarm:.1f} s ({kinds}): {r.media.path}{fold}")
    return lines


NOTES = ("fire = a fire or smoke incident started; fire-only / smoke-only score each type alone against the fire "
         "labels; smoke (shown) scores smoke incidents on the fires whose description shows smoke against every fire negative. TTD = seconds of footage to the first alert; TTA = seconds from the labelled onset (the "
         "description's \"from ... s\" / \"frame N\", else 0) to the first alert. not judged = media where the "
         "detector never reported itself ready (e.g. a motion-based detector on a still); they still count in "
         "TP/FP/FN/TN. Predicted traffic = the highest level a congestion incident started with or was updated "
         "to, else free when the congestion detector could judge the media, else not judged.")


def mode_line(evaluation: Evaluation) -> str:
    """Which models scored the media, and what that means for the figures."""
    if evaluation.folds == "source":
        return f"models: {evaluation.mode} (each source's media scored by models fitted without that source)"
    return (f"models: {evaluation.mode} (the committed models; where they were fitted on this footage the "
            "figures are in-sample)")


def summary_line(evaluation: Evaluation) -> str:
    """Media evaluated and skipped, footage, frames and throughput."""
    clips = evaluation.subset("clips")
    footage = sum(r.footage_s for r in clips)
    return (f"{len(evaluation.evaluated)} media evaluated ({len(clips)} clips, {footage:.0f} s of footage; "
            f"{len(evaluation.evaluated) - len(clips)} stills), {len(evaluation.skipped)} skipped; "
            f"{evaluation.frames} frames; {evaluation.frames_per_s:.1f} frames/s for reduced decode + detectors + "
            f"alert policy ({evaluation.analyze_frames_per_s:.1f} frames/s without the decode); "
            f"{evaluation.wall_s:.1f} s wall time")


def print_report(evaluation: Evaluation, console: Console | None = None) -> None:
    """Print the whole report to ``console`` (stdout by default)."""
    console = console or Console()
    console.print(mode_line(evaluation))
    console.print(results_table(evaluation))
    if any(r.media.traffic in TRAFFIC_LABELS for r in evaluation.evaluated):
        console.print(traffic_table(evaluation))
    medium = score(evaluation.evaluated, "congestion_medium")
    if medium.tp + medium.fn:
        console.print(f"medium traffic (own class, neither positive nor negative): flagged as congestion in "
                      f"{medium.tp} of {medium.tp + medium.fn} media")
    for line in wrong_calls(evaluation):
        console.print(f"  [yellow]{escape(line)}[/]")
    for r in evaluation.skipped:
        console.print(f"  [red]skipped[/] {escape(r.media.path)} (labels line {r.media.line}): {escape(r.error or '')}")
    console.print(summary_line(evaluation))
    console.print(NOTES)

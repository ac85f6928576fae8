"""`citywatch tune LABELS.csv`: how each tuned rule setting does on labelled footage, and which value
the fitting rule picks (the shipped defaults are its picks on all of ``../shared/footage``)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from pipeline.app.evaluate.run import EvaluationError, read_labels
from pipeline.app.rule_tuning import choose
from pipeline.config.settings import CameraDetectors


def tune_command(
    labels: Path = typer.Argument(..., help="Labels CSV (e.g. ../shared/footage/labels.csv)"),
    root: Path | None = typer.Option(None, "--root", help="Folder the labelled paths are relative to (default: the CSV's)"),
    fps: float = typer.Option(2.0, "--fps", help="Camera rate to sample clips at (frames/s, 0 < N <= 30)"),
) -> None:
    """Replay the labelled media once per value of every tuned rule setting (only that setting's
    detector running) and print recall and false alarms per value, the value the fitting rule picks
    (best recall inside the task's false-alarm budget) and the shipped default. `citywatch evaluate
    --folds source` makes the same pick on each fold's training sources."""
    from pipeline.app.cli.evaluate import rule_tuner
    from pipeline.config.settings import AlertSettings

    out = Console()
    try:
        rows = read_labels(labels)
    except EvaluationError as exc:
        Console(stderr=True).print(f"[red]error:[/red] {escape(str(exc))}", highlight=False)
        raise typer.Exit(2) from None
    root = Path(root) if root is not None else Path(labels).resolve().parent
    tuner = rule_tuner(fps, AlertSettings(), CameraDetectors(), every_grid=True)
    shipped = CameraDetectors()
    for grid in tuner.grids:
        points = tuner.points(rows, root, grid)
        best = choose(points, grid.max_fa_rate)
        default = getattr(getattr(shipped, grid.detector), grid.setting)
        table = Table(title=f"{grid.name} on {grid.task} (false alarms at most {grid.max_fa_rate:.0%})")
        for column in ("value", "recall", "hits", "false alarms", "FA rate", ""):
            table.add_column(column, justify="right")
        for p in points:
            mark = " ".join(x for x in ("picked" if p is best else "", "shipped" if p.value == default else "") if x)
            table.add_row(f"{p.value:g}", f"{p.recall:.2f}", f"{p.hits}/{p.positives}",
                          f"{p.false_alarms}/{p.negatives}", f"{p.fa_rate:.1%}", mark)
        out.print(table)


def register(app: typer.Typer) -> None:
    app.command("tune")(tune_command)

"""`citywatch evaluate LABELS.csv`: score the detectors and alert policy on labelled footage."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from pipeline.config import AlertSettings, ConfigError, load_config
from pipeline.evaluate import EvaluationError, MediaResult, evaluate
from pipeline.evaluate_report import print_report


def evaluate_command(
    labels: Path = typer.Argument(..., help="Labels CSV (columns path, fire, flood, traffic; see footage README)"),
    root: Optional[Path] = typer.Option(None, "--root", help="Folder the labelled paths are relative to (default: the CSV's)"),
    fps: float = typer.Option(2.0, "--fps", help="Camera rate to sample clips at (frames/s, 0 < N <= 30)"),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the headline scores as JSON here"),
    config: Optional[Path] = typer.Option(None, "--config", help="Take the alert policy from this config (default: built-in defaults)"),
) -> None:
    """Replay every clip and still of LABELS through the flows' detectors and alert policy and report
    clip-level TP/FP/FN/TN, precision, recall, accuracy, time to first alert and frames/s."""
    err = Console(stderr=True)
    try:
        alerts = load_config(config).alerts if config else AlertSettings()
    except ConfigError as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False)
        raise typer.Exit(2) from None
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), console=err, transient=True)

    def on_media(done: int, total: int, result: MediaResult) -> None:
        progress.update(task, total=total, completed=done, description=escape(Path(result.media.path).name[:40]))

    try:
        with progress:
            task = progress.add_task("evaluating", total=None)
            evaluation = evaluate(labels, root, fps, alerts=alerts, on_media=on_media)
    except EvaluationError as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False)
        raise typer.Exit(2) from None
    out = Console()
    if not out.is_terminal:  # piped into a file or a CI log: no need to wrap at 80 columns
        out = Console(width=160)
    print_report(evaluation, out)
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(evaluation.to_json(), indent=2) + "\n", encoding="utf-8")
        out.print(f"wrote {escape(str(json_out))}")
    if not evaluation.evaluated:
        err.print("[red]error:[/red] no media could be evaluated", highlight=False)
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("evaluate")(evaluate_command)

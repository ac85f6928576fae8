"""`citywatch evaluate LABELS.csv`: score the detectors and alert policy on labelled footage."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from pipeline.app.evaluate.html import write_html
from pipeline.app.evaluate.report import print_report
from pipeline.app.evaluate.results import write_csv
from pipeline.app.evaluate.run import Evaluation, EvaluationError, LabeledMedia, MediaResult, evaluate, run_media
from pipeline.app.rule_tuning import GRIDS, FoldTrainer, RuleTuner, chosen_summary
from pipeline.config.settings import AlertSettings, CameraConfig, CameraDetectors, ConfigError, load_config

CONFIG_HELP = (
    "Config file to take the settings from: the alert policy (`alerts`) and the detector settings "
    "(`detectors` of a camera in `cameras`: enabled, sensitivity, regions, ...) of the camera picked "
    "with --camera, or of the only camera when the config lists just one; with several cameras and no "
    "--camera the built-in detector defaults apply. Nothing else (S3, MQTT, worker, fps) is used. "
    "Default: built-in defaults."
)


class Folds(str, Enum):
    none = "none"
    source = "source"


def _settings(config: Path | None, camera_id: str | None) -> tuple[AlertSettings, CameraDetectors, str]:
    """The alert policy, the detector settings, and a line saying where the detector settings came from."""
    if config is None:
        if camera_id:
            raise ConfigError("--camera picks a camera of --config; no --config given")
        return AlertSettings(), CameraDetectors(), "detector settings: built-in defaults"
    cfg = load_config(config)
    if camera_id:
        camera = cfg.camera(camera_id)
        if camera is None:
            listed = ", ".join(c.id for c in cfg.cameras) or "none"
            raise ConfigError(f"config file {config}: no camera {camera_id!r} (cameras: {listed})")
    elif len(cfg.cameras) == 1:
        camera = cfg.cameras[0]
    else:
        why = f"it lists {len(cfg.cameras)} cameras; pick one with --camera" if cfg.cameras else "it lists no camera"
        return cfg.alerts, CameraDetectors(), f"detector settings: built-in defaults ({why})"
    return cfg.alerts, camera.detectors, f"detector settings: camera {camera.id} of {config}"


def _trainer(fps: float, alerts: AlertSettings, detectors: CameraDetectors) -> FoldTrainer:
    """Each fold's fitting: the learned verifier and the rule settings (the verifier's module is
    loaded only when folds are asked for)."""
    try:
        from pipeline.app.verifier_fit import VerifierTrainer
    except ImportError as exc:
        raise EvaluationError(f"--folds source needs the verifier trainer (pipeline.app.verifier_fit): {exc}") from None
    return FoldTrainer(VerifierTrainer(), rule_tuner(fps, alerts, detectors))


def rule_tuner(fps: float, alerts: AlertSettings, detectors: CameraDetectors,
               every_grid: bool = False) -> RuleTuner:
    """A tuner replaying media like ``citywatch evaluate`` does (same fps, policy and settings),
    with the classical cues alone: the rules it tunes are theirs, and a learned model trained on
    every source must not take part in a fold's choice. A rule whose type the scene verifier
    decides (``verify`` on) is left at its value, as it would change nothing (``every_grid``:
    keep it, to show the classical rule's own curve)."""
    from pipeline.processing.analysis import FrameAnalyzer

    def classical(camera: CameraConfig, policy: AlertSettings) -> FrameAnalyzer:
        return FrameAnalyzer(camera, policy, verifiers=[])

    def replay(media: LabeledMedia, root: Path, tuned: CameraDetectors) -> MediaResult:
        return run_media(media, root, fps, 0, classical, alerts=alerts, detectors=tuned)
    grids = tuple(g for g in GRIDS
                  if every_grid or not getattr(getattr(detectors, g.detector), "verify", False))
    return RuleTuner(replay, grids=grids, base=detectors)


def evaluate_command(
    labels: Path = typer.Argument(..., help="Labels CSV (columns path, fire, flood, traffic; see footage README)"),
    root: Path | None = typer.Option(None, "--root", help="Folder the labelled paths are relative to (default: the CSV's)"),
    fps: float = typer.Option(2.0, "--fps", help="Camera rate to sample clips at (frames/s, 0 < N <= 30)"),
    json_out: Path | None = typer.Option(None, "--json", help="Also write the scores, the traffic confusion and one entry per media as JSON here"),
    csv_out: Path | None = typer.Option(None, "--csv", help="Also write one row per media (labels, alarms, confidences, TTA) as CSV here"),
    html_out: Path | None = typer.Option(None, "--html", help="Also write a self-contained HTML report (tables, one card per media with its first alarm frame) here"),
    config: Path | None = typer.Option(None, "--config", help=CONFIG_HELP),
    camera: str | None = typer.Option(None, "--camera", help="Id of the --config camera whose detector settings to evaluate"),
    folds: Folds = typer.Option(Folds.none, "--folds", help="none: every media with the shipped models (an in-sample "
                                "figure for what was fitted on this footage); source: leave one source (first path "
                                "component) out, fitting the verifier on the others for each"),
) -> None:
    """Replay every clip and still of LABELS through the flows' detectors and alert policy and report
    clip-level TP/FP/FN/TN, precision, recall, accuracy, time to first alert (from the start and from
    the labelled onset), the traffic-level confusion and frames/s."""
    err = Console(stderr=True)
    try:
        alerts, detectors, settings_line = _settings(config, camera)
    except ConfigError as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False)
        raise typer.Exit(2) from None
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), console=err, transient=True)

    def on_media(done: int, total: int, result: MediaResult) -> None:
        progress.update(task, total=total, completed=done, description=escape(Path(result.media.path).name[:40]))

    def on_fold(source: str, k: int, n: int) -> None:
        progress.update(task, description=escape(f"fold {k}/{n}: fitting without {source}"[:60]))

    try:
        trainer = _trainer(fps, alerts, detectors) if folds is Folds.source else None
        with progress:
            task = progress.add_task("evaluating", total=None)
            evaluation = evaluate(labels, root, fps, alerts=alerts, detectors=detectors, trainer=trainer,
                                  folds=folds.value, on_media=on_media, on_fold=on_fold)
    except EvaluationError as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False)
        raise typer.Exit(2) from None
    out = Console()
    if not out.is_terminal:  # piped into a file or a CI log: no need to wrap at 80 columns
        out = Console(width=160)
    out.print(escape(settings_line), highlight=False)
    print_report(evaluation, out)
    if trainer is not None:
        out.print("rule settings chosen per fold (on the other sources): " + "; ".join(chosen_summary(trainer.tuner)),
                  highlight=False)
    for path, write in ((json_out, _write_json), (csv_out, write_csv), (html_out, write_html)):
        if path:
            write(evaluation, path)
            out.print(f"wrote {escape(str(path))}")
    if not evaluation.evaluated:
        err.print("[red]error:[/red] no media could be evaluated", highlight=False)
        raise typer.Exit(1)


def _write_json(evaluation: Evaluation, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(evaluation.to_json(), indent=2) + "\n", encoding="utf-8")


def register(app: typer.Typer) -> None:
    app.command("evaluate")(evaluate_command)

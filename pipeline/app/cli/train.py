"""`citywatch train LABELS.csv`: fit the fire verifier and write it where the pipeline loads it."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from pipeline.app.evaluate.run import EvaluationError, read_labels

DEFAULT_OUT = Path(__file__).resolve().parents[2] / "models"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def train_command(
    labels: Path = typer.Argument(..., help="Labels CSV (e.g. ../shared/footage/labels.csv)"),
    root: Path | None = typer.Option(None, "--root", help="Folder the labelled paths are relative to (default: the CSV's)"),
    out: Path = typer.Option(DEFAULT_OUT, "--out", help="Folder to write fire_verifier.onnx and fire_verifier.json"),
    scenes: bool = typer.Option(True, "--scenes/--no-scenes", help="Add the project's synthetic scenes to the data"),
) -> None:
    """Fit the fire verifier (recipe and seed in pipeline/app/verifier_fit.py) on LABELS and the synthetic
    scenes; write the ONNX model and a manifest (recipe, thresholds, the data used with SHA-256)."""
    err = Console(stderr=True)
    try:
        import onnx  # noqa: F401 - the train extra
        import sklearn  # noqa: F401

        from pipeline.app.verifier_fit import VerifierTrainer, train_fire
    except ImportError as exc:
        err.print(f"[red]error:[/red] training needs the train extra ({exc.name} is missing): "
                  "pip install -e '.[train]'", highlight=False)
        raise typer.Exit(2) from None
    try:
        rows = read_labels(labels)
    except EvaluationError as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False)
        raise typer.Exit(2) from None
    root = Path(root) if root is not None else Path(labels).resolve().parent
    trainer = VerifierTrainer(with_scenes=scenes)
    with err.status("replaying media ..."):
        items = trainer.items(rows, root)
    with err.status(f"fitting on {len(items)} media ..."):
        trained = train_fire(items)
    by_path = {m.path: m for m in rows}
    data = []
    for item in items:
        media = by_path.get(item.path)
        entry = {"path": item.path, "source": item.source, "label": item.label, "still": item.still,
                 "frames": len(item.frames), "rows": item.rows}
        if media is not None and item.source != "synthetic":
            entry.update(bytes=(root / item.path).stat().st_size, sha256=_sha256(root / item.path))
        data.append(entry)
    manifest = {**trained.manifest, "labels": str(labels), "labels_sha256": _sha256(Path(labels)), "data": data}
    out.mkdir(parents=True, exist_ok=True)
    (out / "fire_verifier.onnx").write_bytes(trained.onnx)
    (out / "fire_verifier.json").write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    Console().print(f"trained on {len(items)} media ({manifest['training']['positives']} fire), "
                    f"{manifest['training']['rows']} rows; still threshold {manifest['thresholds']['still']}; "
                    f"wrote {escape(str(out / 'fire_verifier.onnx'))} ({len(trained.onnx)} bytes) and its manifest")


def register(app: typer.Typer) -> None:
    app.command("train")(train_command)

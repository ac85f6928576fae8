"""`citywatch train LABELS.csv`: fit the fire patch verifier and the scene heads and write them where
the pipeline loads them; with ``--backbone-weights``, export the scene backbone first."""

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
    out: Path = typer.Option(DEFAULT_OUT, "--out", help="Folder to write fire_verifier.onnx/.json and scene_heads.json (and scene_backbone.onnx with --backbone-weights)"),
    scenes: bool = typer.Option(True, "--scenes/--no-scenes", help="Add the project's synthetic scenes to the data"),
    backbone_weights: Path | None = typer.Option(
        None, "--backbone-weights",
        help="torchvision's mobilenet_v2-b0353104.pth (scripts/fetch_backbone_weights): re-export "
             "scene_backbone.onnx from it first"),
) -> None:
    """Fit the fire patch verifier (pipeline/app/verifier_fit.py) and the scene heads
    (pipeline/app/scene_fit.py) on LABELS and the synthetic scenes; write the models and manifests
    (recipe, thresholds, the data used with SHA-256)."""
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
    out.mkdir(parents=True, exist_ok=True)
    backbone = None
    if backbone_weights is not None:
        from pipeline.app.backbone_export import BackboneError, export_backbone

        try:
            with err.status("exporting the scene backbone ..."):
                backbone = export_backbone(backbone_weights)
        except BackboneError as exc:
            err.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False)
            raise typer.Exit(2) from None
        (out / "scene_backbone.onnx").write_bytes(backbone)
    from pipeline.app.scene_fit import SceneTrainer

    scene = SceneTrainer(backbone=backbone, with_scenes=scenes)
    trainer = VerifierTrainer(with_scenes=scenes, scene=scene)
    with err.status("replaying media ..."):
        items = trainer.items(rows, root)
    with err.status(f"fitting on {len(items)} media ..."):
        trained = train_fire(items)
    with err.status("embedding media with the scene backbone and fitting the heads ..."):
        heads = scene(rows, root)
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
    (out / "fire_verifier.onnx").write_bytes(trained.onnx)
    heads.update(labels=str(labels), labels_sha256=manifest["labels_sha256"],
                 backbone_sha256=hashlib.sha256(scene.backbone).hexdigest())
    (out / "scene_heads.json").write_text(json.dumps(heads, indent=1) + "\n", encoding="utf-8")
    (out / "fire_verifier.json").write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    Console().print(f"trained on {len(items)} media ({manifest['training']['positives']} fire), "
                    f"{manifest['training']['rows']} rows; still threshold {manifest['thresholds']['still']}; "
                    f"wrote {escape(str(out / 'fire_verifier.onnx'))} ({len(trained.onnx)} bytes) and its manifest")
    for name, head in heads["heads"].items():
        Console().print(f"scene head {name}: {head['media']} media ({head['positives']} positive), "
                        f"threshold {head['threshold']}")
    Console().print(f"wrote {escape(str(out / 'scene_heads.json'))}")


def register(app: typer.Typer) -> None:
    app.command("train")(train_command)

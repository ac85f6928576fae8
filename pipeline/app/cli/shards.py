"""``citywatch shards``: show which shard (watch deployment / edge worker) handles which camera."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from pipeline.app.cli._common import CONFIG_OPTION, config_or_exit
from pipeline.state.shards import (
    UnknownShard,
    cameras_for_shard,
    check_watch_deployments,
    grown_shard_names,
    moved_cameras,
    seed_checkpoints,
    shard_names,
    shard_table,
)
from pipeline.state.store import StateStore


def shards_command(
    config: Path | None = CONFIG_OPTION,
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table"),
    count: int | None = typer.Option(
        None, "--count", min=1, max=1000,
        help="Preview growing/shrinking to this many shards and how many cameras would move",
    ),
    seed: str | None = typer.Option(
        None, "--seed", metavar="SHARD",
        help="On the box that runs SHARD: start its cameras that have no checkpoint yet at now - --since "
             "(instead of at their oldest retained frame)",
    ),
    since: float = typer.Option(300.0, "--since", min=0, help="With --seed: seconds of recent frames to catch up"),
    prefect_file: Path | None = typer.Option(
        None, "--prefect-file", help="Check that this prefect.yaml has one watch deployment per shard (exit 1 if not)",
    ),
) -> None:
    """Print the camera -> shard assignment (rendezvous hashing over the configured shard names)."""
    cfg = config_or_exit(config)
    if seed is not None:
        _seed(cfg, seed, since)
        return
    if prefect_file is not None:
        _check(cfg, prefect_file)
        return
    current = shard_names(cfg.shards)
    names = current if count is None else grown_shard_names(cfg.shards, count)
    rows = shard_table(cfg, names)
    camera_ids = [c.id for c in cfg.cameras]
    moved = moved_cameras(camera_ids, current, names) if count is not None else {}

    if as_json:
        doc: dict[str, object] = {"shards": [r.as_dict() for r in rows], "cameras": len(camera_ids)}
        if count is not None:
            doc["moved"] = {cam: {"from": old, "to": new} for cam, (old, new) in sorted(moved.items())}
        typer.echo(json.dumps(doc, indent=2))
        return

    from rich.console import Console
    from rich.table import Table

    title = f"{len(camera_ids)} cameras in {len(rows)} shards"
    table = Table(title=title)
    table.add_column("shard")
    table.add_column("deployment")
    table.add_column("cameras", justify="right")
    table.add_column("camera ids", overflow="fold")
    for row in rows:
        table.add_row(row.shard, f"watch-{row.shard}", str(row.count), " ".join(row.camera_ids))
    console = Console()
    console.print(table)
    if count is not None:
        share = f" ({100 * len(moved) / len(camera_ids):.1f} %)" if camera_ids else ""
        console.print(f"going from {len(current)} to {len(names)} shards moves {len(moved)} of "
                      f"{len(camera_ids)} cameras{share}")


def _check(cfg, prefect_file: Path) -> None:
    import yaml

    from pipeline.config.safe_yaml import YamlTooLarge, load_yaml

    try:
        doc = load_yaml(prefect_file.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError, YamlTooLarge) as exc:
        typer.echo(f"error: cannot read {prefect_file}: {exc}", err=True)
        raise typer.Exit(2) from None
    problems = check_watch_deployments(cfg, doc if isinstance(doc, dict) else {})
    for problem in problems:
        typer.echo(problem)
    if problems:
        raise typer.Exit(1)
    typer.echo(f"{prefect_file}: one watch deployment per shard ({len(shard_names(cfg.shards))} shards)")


def _seed(cfg, shard: str, since: float) -> None:
    import time

    try:
        cameras = [c.id for c in cameras_for_shard(cfg, shard)]
    except UnknownShard as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    state_dir = Path(cfg.worker.state_dir).expanduser()
    state_dir.mkdir(parents=True, exist_ok=True)
    store = StateStore(state_dir / "state.db")  # the watch worker's state file (pipeline.processing.runner)
    try:
        seeded = seed_checkpoints(store, cameras, time.time(), since)
    finally:
        store.close()
    for camera_id, key in seeded.items():
        typer.echo(f"{camera_id}: starts after {key}")
    typer.echo(f"seeded {len(seeded)} of {len(cameras)} camera(s) of {shard} in {state_dir / 'state.db'}; "
               f"{len(cameras) - len(seeded)} already had a checkpoint")


def register(app: typer.Typer) -> None:
    app.command("shards")(shards_command)

"""``citywatch shards``: show which shard (watch deployment / edge worker) handles which camera."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from pipeline.config import ConfigError, load_config
from pipeline.shards import grown_shard_names, moved_cameras, shard_names, shard_table


def shards_command(
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="Config YAML (default $CITYWATCH_CONFIG)"),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table"),
    count: Optional[int] = typer.Option(
        None, "--count", min=1, max=1000,
        help="Preview growing/shrinking to this many shards and how many cameras would move",
    ),
) -> None:
    """Print the camera -> shard assignment (rendezvous hashing over the configured shard names)."""
    try:
        cfg = load_config(config)
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
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


def register(app: typer.Typer) -> None:
    app.command("shards")(shards_command)

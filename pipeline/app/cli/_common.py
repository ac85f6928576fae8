"""Pieces shared by the command modules (not a command: the leading underscore skips discovery)."""

from __future__ import annotations

from pathlib import Path

import typer

from pipeline.config.settings import Config, ConfigError, load_config

CONFIG_OPTION = typer.Option(None, "--config", "-c", help="Config YAML (default $CITYWATCH_CONFIG)")


def config_or_exit(path: Path | None) -> Config:
    """The validated config, or exit 2 with the message naming every bad field."""
    try:
        return load_config(path)
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None

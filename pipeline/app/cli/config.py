"""`citywatch config check|schema`: validate a camera registry, print the config JSON Schema."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from pipeline.config.settings import Config, ConfigError, load_config

config_app = typer.Typer(help="Validate the configuration or print its schema.", no_args_is_help=True)


@config_app.command("check")
def check(path: Path | None = typer.Argument(None, help="YAML file (default $CITYWATCH_CONFIG)")) -> None:
    """Validate a config file; every problem is named by its field path. Secrets are never shown."""
    try:
        cfg = load_config(path)
    except ConfigError as exc:
        typer.echo(f"invalid: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"ok: {len(cfg.cameras)} camera(s), S3 {cfg.s3.url}, MQTT {cfg.mqtt.host}:{cfg.mqtt.port}"
               f" ({'TLS' if cfg.mqtt.tls else 'plain'}), prefix {cfg.mqtt.topic_prefix!r}")


@config_app.command("schema")
def schema() -> None:
    """Print the JSON Schema of the configuration (field bounds and descriptions)."""
    typer.echo(json.dumps(Config.model_json_schema(), indent=2))


def register(app: typer.Typer) -> None:
    app.add_typer(config_app, name="config")

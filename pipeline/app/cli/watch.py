"""`citywatch watch`: run the watch flow locally, once or continuously."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import typer

from pipeline.app.cli._common import CONFIG_OPTION, config_or_exit
from pipeline.app.prefect_env import prepare_prefect_env
from pipeline.delivery.mqtt import MqttSetupError
from pipeline.state.lock import StateDirLocked

log = logging.getLogger("citywatch.watch")


def watch_command(
    config: Path | None = CONFIG_OPTION,
    once: bool = typer.Option(False, "--once", help="One pass over every camera, then exit"),
    shard: str | None = typer.Option(None, "--shard", help="Only this shard's cameras"),
    window: float | None = typer.Option(None, "--window", help="Seconds per flow run (default worker.window_s)"),
) -> None:
    """Pick up new frames, run the detectors and publish alerts (a Prefect flow run per window)."""
    cfg = config_or_exit(config)
    if not cfg.cameras:
        typer.echo("error: the config lists no cameras (cameras: [...])", err=True)
        raise typer.Exit(2)
    prepare_prefect_env()
    from flows.watch import close_sessions, prefect_api_reachable, watch  # Prefect is imported only here

    config_path = str(config) if config else None
    try:
        while True:
            result = watch(config_path=config_path, shard=shard, window_s=window, once=once)
            typer.echo(json.dumps(result))
            if once:
                break
    except KeyboardInterrupt:
        typer.echo("stopped")
    except StateDirLocked as exc:  # another worker runs on this state dir
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    except MqttSetupError as exc:  # e.g. a CA file that is no PEM: the config must change
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    except Exception as exc:  # noqa: BLE001 - say plainly when it is Prefect's API that went away
        if prefect_api_reachable() is False:
            typer.echo(f"error: the Prefect API is unreachable ({type(exc).__name__}); alerts already "
                       "queued stay in the outbox and go out on the next run", err=True)
            raise typer.Exit(1) from None
        raise
    finally:
        close_sessions()


def register(app: typer.Typer) -> None:
    app.command("watch")(watch_command)

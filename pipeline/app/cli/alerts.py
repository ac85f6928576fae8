"""`citywatch alerts [--type T] [--camera ID] [--json]`: print live alerts, one line each, until Ctrl-C."""

from __future__ import annotations

import queue
import sys
from pathlib import Path

import typer

from pipeline.app.console_view import AlertConsole, validate_event_type
from pipeline.config.settings import ConfigError, load_config
from pipeline.delivery.mqtt import MqttSetupError, safe_url
from pipeline.frames.keys import InvalidCameraId, validate_camera_id

_HEADER = "frame time (UTC)  live/test  camera  type  state  severity  #seq  incident  snapshot URL"


def _check_type(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return validate_event_type(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def _check_camera(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return validate_camera_id(value)
    except InvalidCameraId as exc:
        raise typer.BadParameter(str(exc)) from None


def alerts_command(
    event_type: str | None = typer.Option(None, "--type", "-t", callback=_check_type,
                                             help="Only this event type (fire, smoke, flood, congestion, ...)"),
    camera: str | None = typer.Option(None, "--camera", "-c", callback=_check_camera,
                                         help="Only this camera id"),
    config: Path | None = typer.Option(None, "--config", help="Config YAML (default $CITYWATCH_CONFIG)"),
    raw_json: bool = typer.Option(False, "--json", help="Print each payload as received (one JSON per line)"),
    count: int | None = typer.Option(None, "--count", min=1, help="Exit after this many alerts"),
    connect_timeout: float = typer.Option(10.0, "--connect-timeout", min=0.5,
                                          help="Seconds to wait for the broker before warning (keeps retrying)"),
) -> None:
    """Subscribe to <prefix>/alerts/<type>/<camera> and print each alert as it arrives."""
    try:
        cfg = load_config(config)
        lines: queue.SimpleQueue[str] = queue.SimpleQueue()
        view = AlertConsole(cfg.mqtt, lines.put, event_type=event_type, camera_id=camera, raw_json=raw_json)
    except (ConfigError, MqttSetupError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    where = safe_url(cfg.mqtt)
    view.start()
    try:
        if view.wait_subscribed(connect_timeout):
            typer.echo(f"subscribed to {view.topic_filter} at {where} (Ctrl-C to stop)", err=True)
        elif view.refusal:
            typer.echo(f"error: broker {where} refused the connection: {view.refusal}", err=True)
            raise typer.Exit(1)
        else:
            typer.echo(f"warning: broker {where} not reachable after {connect_timeout:.0f} s; still trying "
                       "(Ctrl-C to stop)", err=True)
        if not raw_json:
            typer.echo(_HEADER, err=True)
        printed = 0
        while count is None or printed < count:
            try:
                line = lines.get(timeout=0.5)
            except queue.Empty:
                continue
            sys.stdout.write(line + "\n")
            sys.stdout.flush()
            printed += 1
    except KeyboardInterrupt:
        pass
    finally:
        view.stop()


def register(app: typer.Typer) -> None:
    app.command("alerts")(alerts_command)

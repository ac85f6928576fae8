"""`citywatch console`: serve the operations-center web page (live incidents, camera map, acks)."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import typer

from pipeline.config.settings import ConfigError, load_config
from pipeline.delivery.mqtt import MqttSetupError, safe_url

TOKEN_ENV = "CITYWATCH_CONSOLE_TOKEN"


def default_client_id(port: int) -> str:
    """``citywatch-console-<host>-<port>``: stable across restarts, so the broker keeps our session."""
    host = re.sub(r"[^A-Za-z0-9_-]", "-", socket.gethostname())[:40] or "host"
    return f"citywatch-console-{host}-{port}"


def console_command(
    config: Path | None = typer.Option(None, "--config", "-c", help="Config YAML (default $CITYWATCH_CONFIG)"),
    host: str = typer.Option("127.0.0.1", "--host", help="Bind address; non-loopback needs a token"),
    port: int = typer.Option(8090, "--port", min=1, max=65535, help="TCP port"),
    auth_token: str | None = typer.Option(None, "--auth-token", envvar=TOKEN_ENV, show_envvar=True,
                                             help="Access token (>= 16 chars) operators must present"),
    tile_url: str | None = typer.Option(None, "--tile-url", envvar="CITYWATCH_CONSOLE_TILE_URL",
                                           help="Map tiles, e.g. https://tile.example.org/{z}/{x}/{y}.png"),
    client_id: str | None = typer.Option(None, "--client-id", help="MQTT client id (default per host and port)"),
    max_incidents: int | None = typer.Option(None, "--max-incidents", min=10, max=100_000,
                                                help="Incidents on the board (default console.store.board_size)"),
) -> None:
    """Serve the console page; it follows <prefix>/alerts, camera, worker and ack topics live and
    keeps every incident in the incident store (console.store.url; SQLite in worker.state_dir by default)."""
    import uvicorn

    from pipeline.alerts.incident_store import IncidentStore, StoreError, store_url
    from pipeline.alerts.push import PushError
    from pipeline.app.console import ConsoleBindError, check_bind, create_app

    if tile_url is not None and (not re.fullmatch(r"https?://[^\s\"'<>]+", tile_url)
                                 or not all(part in tile_url for part in ("{z}", "{x}", "{y}"))):
        typer.echo("error: --tile-url must be an http(s) URL holding {z}, {x} and {y}", err=True)
        raise typer.Exit(2)
    try:
        check_bind(host, auth_token or None)
        cfg = load_config(config)
        url = cfg.console.store.url
        if url is None:
            Path(cfg.worker.state_dir).mkdir(parents=True, exist_ok=True)
        store = IncidentStore(store_url(url.get_secret_value() if url else None, cfg.worker.state_dir),
                              cfg.console.store.table_prefix)
        app = create_app(cfg, token=auth_token or None, client_id=client_id or default_client_id(port),
                         tile_url=tile_url, max_incidents=max_incidents, store=store)
    except (ConsoleBindError, ConfigError, MqttSetupError, StoreError, PushError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    shown = f"[{host}]" if ":" in host else host
    typer.echo(f"console on http://{shown}:{port}/ following {safe_url(cfg.mqtt)}, incidents in {store.where} "
               f"({'token required' if auth_token else 'no token: localhost only'}); Ctrl-C to stop", err=True)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False, timeout_graceful_shutdown=2)


def register(app: typer.Typer) -> None:
    app.command("console")(console_command)


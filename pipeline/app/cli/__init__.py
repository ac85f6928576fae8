"""The ``citywatch`` command line.

Each command lives in its own module in this package and exposes ``register(app)``; this
module discovers them, so commands can be added without touching a shared file.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil

import typer

app = typer.Typer(
    name="citywatch",
    help="Camera frames in MinIO -> OpenCV detectors in Prefect flows -> MQTT alerts.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root(verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging")) -> None:
    from pipeline.common.logs import configure_logging

    try:  # CITYWATCH_LOG_FORMAT=json: one JSON object per log line
        configure_logging(logging.DEBUG if verbose else logging.INFO)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if not verbose:
        for noisy in ("httpx", "httpcore", "pipeline.delivery.mqtt.paho", "werkzeug", "botocore"):
            logging.getLogger(noisy).setLevel(logging.WARNING)


for _mod in sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")):
    importlib.import_module(f"{__name__}.{_mod}").register(app)


def main() -> None:
    app()

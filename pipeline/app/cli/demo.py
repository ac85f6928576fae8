"""`citywatch demo`: the main job on embedded defaults."""

from __future__ import annotations

import typer


def demo_command(
    timeout: float = typer.Option(300.0, "--timeout", help="Seconds to wait for alerts to arrive"),
) -> None:
    """Ingest the sample scenes, run the flow, print the alerts received over MQTT, summarize."""
    import logging

    from pipeline.app.demo import format_summary, run_demo

    if logging.getLogger().level > logging.DEBUG:  # the alert lines are the show; keep logs to problems
        logging.getLogger("pipeline").setLevel(logging.WARNING)

    summary = run_demo(echo=typer.echo, timeout_s=timeout)
    for line in format_summary(summary):
        typer.echo(line)
    if not summary.alerts:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("demo")(demo_command)

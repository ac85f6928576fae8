"""Prefect settings citywatch applies before Prefect is first imported (by `watch` and `demo`).

Kept here, free of any Prefect import, so the CLI can prepare the environment and only then load
:mod:`flows`. Values already set by the user win.
"""

from __future__ import annotations

import os

DEFAULTS = {
    # No usage telemetry from an operations center's edge boxes.
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    # Bound how long a run waits for an API that went away (a stopped server can block the final
    # state call for minutes); detection and delivery never wait on the API.
    "PREFECT_API_REQUEST_TIMEOUT": "20",
    "PREFECT_CLIENT_MAX_RETRIES": "2",
    # The ephemeral server needs ~15 s on a small box.
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
    "PREFECT_LOGGING_LEVEL": "WARNING",
}


def prepare_prefect_env(environ: dict[str, str] | None = None) -> None:
    """Set citywatch's Prefect defaults in ``environ`` (``os.environ``) unless already set."""
    env = os.environ if environ is None else environ
    for key, value in DEFAULTS.items():
        env.setdefault(key, value)

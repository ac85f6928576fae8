"""Log output of the citywatch commands: plain text lines (default) or one JSON object per line.

``CITYWATCH_LOG_FORMAT=json`` (or ``configure_logging(fmt="json")``) switches the root handler to
``python-json-logger``: each record becomes ``{"time", "level", "logger", "message", ...}`` plus
whatever ``extra`` it carries, ready for Loki, Elasticsearch or journald. Control characters in
messages stay escaped (JSON escapes them), so a hostile camera name cannot forge a line either way.
"""

from __future__ import annotations

import logging
import os
import sys

from pythonjsonlogger.json import JsonFormatter

FORMAT_ENV = "CITYWATCH_LOG_FORMAT"
FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
JSON_FIELDS = "%(asctime)s %(levelname)s %(name)s %(message)s"


def log_format_from_env(environ: dict[str, str] | None = None) -> str:
    """``CITYWATCH_LOG_FORMAT`` (text or json, default text); ValueError naming the variable."""
    value = (os.environ if environ is None else environ).get(FORMAT_ENV, "").strip().lower() or "text"
    if value not in FORMATS:
        raise ValueError(f"{FORMAT_ENV}: {value!r} is not one of {', '.join(FORMATS)}")
    return value


def json_formatter() -> logging.Formatter:
    """One JSON object per record: time (ISO 8601, UTC), level, logger, message, extras."""
    formatter = JsonFormatter(JSON_FIELDS, rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
                              datefmt="%Y-%m-%dT%H:%M:%S%z")
    formatter.converter = __import__("time").gmtime
    return formatter


def configure_logging(level: int = logging.INFO, fmt: str | None = None, stream=None) -> str:
    """Set up the root logger for a citywatch command; returns the format used. ``fmt`` None reads
    :data:`FORMAT_ENV`. Like ``logging.basicConfig`` it leaves a root logger that already has
    handlers alone (a host application's, pytest's)."""
    fmt = fmt or log_format_from_env()
    if fmt not in FORMATS:
        raise ValueError(f"log format {fmt!r} is not one of {', '.join(FORMATS)}")
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(json_formatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=level, handlers=[handler])
    return fmt

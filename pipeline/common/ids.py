"""The one check for ids, names and topic parts: the whole value must match the pattern.

``re.match(r"^[a-z]+$", "fire\\n")`` matches, because Python's ``$`` also matches before a final
newline; an id with a trailing newline would then reach topics, keys and logs. Every validator
in ``pipeline/`` goes through :func:`full_match` (``re.fullmatch``). The patterns here carry no
anchors; :func:`anchored` gives the ``^...$`` form for pydantic ``Field(pattern=...)`` and the
JSON Schema, where ``$`` means the end of the text (Rust's regex, ECMA-262).
"""

from __future__ import annotations

import functools
import re

__all__ = ["BUCKET", "CAMERA_ID", "CLIENT_ID", "EVENT_TYPE", "INCIDENT_ID", "NAME", "TOPIC_PREFIX",
           "anchored", "full_match"]

CAMERA_ID = r"[A-Za-z0-9_-]{1,64}"
INCIDENT_ID = r"[A-Za-z0-9_-]{1,160}"
EVENT_TYPE = r"[a-z][a-z0-9_]{0,39}"
#: Worker names, shard names, MQTT client ids given in the config.
NAME = r"[A-Za-z0-9_-]{1,64}"
CLIENT_ID = r"[A-Za-z0-9_-]{1,128}"
TOPIC_PREFIX = r"[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*"
BUCKET = r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]"


@functools.lru_cache(maxsize=64)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def full_match(pattern: str, value: object) -> bool:
    """Whether ``value`` is a string matching ``pattern`` from its first to its last character."""
    return isinstance(value, str) and _compiled(pattern).fullmatch(value) is not None


def anchored(pattern: str) -> str:
    """``^pattern$`` for pydantic and JSON Schema (where ``$`` is the end of the text)."""
    return f"^{pattern}$"

"""The exit watchdog: a watch run whose Prefect API went away must still end in bounded time.

A run whose server is gone blocks its final state call (bounded by ``PREFECT_API_REQUEST_TIMEOUT``
and ``PREFECT_CLIENT_MAX_RETRIES``, see :mod:`pipeline.app.prefect_env`) and then, at interpreter
exit, Prefect's event worker retries every queued run event for ~7 s each: minutes for a long
window. The `watch` flow arms :class:`ExitWatchdog` when its work ends and disarms it when the
next run of the process starts. Armed for ``CITYWATCH_PREFECT_EXIT_GRACE_S`` (default 15 s,
read when armed) while the API does not answer, it ends the process with exit code 1. Frames,
checkpoints and alerts are safe in the local state store; only unsent run events are dropped.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import threading
import time
import urllib.request
from collections.abc import Mapping

__all__ = ["DEFAULT_EXIT_GRACE_S", "EXIT_GRACE_ENV", "ExitWatchdog", "exit_grace_s", "prefect_api_reachable"]

log = logging.getLogger(__name__)
EXIT_GRACE_ENV = "CITYWATCH_PREFECT_EXIT_GRACE_S"
DEFAULT_EXIT_GRACE_S = 15.0


def exit_grace_s(env: Mapping[str, str] | None = None) -> float:
    """``CITYWATCH_PREFECT_EXIT_GRACE_S`` in seconds (1..3600); anything else logs a warning and
    gives the default, so a typo never stops a watch run from starting."""
    raw = (os.environ if env is None else env).get(EXIT_GRACE_ENV)
    if raw is None or not raw.strip():
        return DEFAULT_EXIT_GRACE_S
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not 1 <= value <= 3600:
        log.warning("%s=%r is not a number of seconds from 1 to 3600; using %.0f s", EXIT_GRACE_ENV, raw,
                    DEFAULT_EXIT_GRACE_S)
        return DEFAULT_EXIT_GRACE_S
    return value


def prefect_api_reachable(timeout_s: float = 2.0) -> bool | None:
    """Whether the configured Prefect API answers its health check; None without a PREFECT_API_URL."""
    from prefect.settings import PREFECT_API_URL

    url = PREFECT_API_URL.value()
    if not url:
        return None
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/health", timeout=timeout_s) as resp:
            return resp.status == 200
    except OSError:
        return False


class ExitWatchdog:
    """Ends the process if it still runs ``grace_s`` after :meth:`arm` while the Prefect API is
    unreachable (a reachable but slow API pushes the deadline on); :meth:`disarm` stops it."""

    def __init__(self, poll_s: float = 0.5) -> None:
        self._poll_s = poll_s
        self._lock = threading.Lock()
        self._deadline: float | None = None
        self._grace_s = DEFAULT_EXIT_GRACE_S
        self._thread: threading.Thread | None = None

    def arm(self, grace_s: float | None = None) -> None:
        with self._lock:
            self._grace_s = exit_grace_s() if grace_s is None else grace_s
            self._deadline = time.monotonic() + self._grace_s
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="citywatch-exit-watchdog", daemon=True)
                self._thread.start()

    def disarm(self) -> None:
        with self._lock:
            self._deadline = None

    def _run(self) -> None:
        while True:
            time.sleep(self._poll_s)
            with self._lock:
                deadline = self._deadline
            if deadline is None or time.monotonic() < deadline:
                continue
            if prefect_api_reachable() is not False:
                with self._lock:
                    if self._deadline is not None:
                        self._deadline = time.monotonic() + self._grace_s  # only slow: let it finish
                continue
            sys.stderr.write(
                f"citywatch: Prefect API unreachable and the process still waits on Prefect "
                f"{self._grace_s:.0f} s after its work ended; exiting now (unsent run events are dropped; "
                "frames, checkpoints and alerts are safe in the local state store)\n")
            sys.stderr.flush()
            os._exit(1)

"""The `watch` flow: a bounded window of polling one shard of cameras, re-launched by its schedule.

The flow only sequences tasks; all the work is in :mod:`pipeline.runner`. Each task is a *slice*
of polling (default 15 s) over all of the shard's cameras, so Prefect records a few task runs per
minute with their frame/alert counts, never one per frame. Detector state lives in the process
(`_SESSIONS`), so consecutive runs in one process keep their background models.

Prefect outages: detection and delivery never wait on the API (task runs are orchestrated in the
process; the outbox and checkpoints are local). What can hang is the end: a run whose server
went away blocks its final state call (bounded by ``PREFECT_API_REQUEST_TIMEOUT`` and
``PREFECT_CLIENT_MAX_RETRIES``, see :mod:`pipeline.prefect_env`) and then, at interpreter exit,
Prefect's event worker retries every queued run event for ~7 s each, minutes for a long window.
:func:`start_exit_watchdog` bounds that wait to ``CITYWATCH_PREFECT_EXIT_GRACE_S`` (15 s).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
import urllib.request

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from pipeline.config import Config, load_config
from pipeline.runner import SliceStats, WatchSession

SLICE_S = 15.0
EXIT_GRACE_S = float(os.environ.get("CITYWATCH_PREFECT_EXIT_GRACE_S", "15"))
log = logging.getLogger(__name__)
_WATCHDOG: threading.Thread | None = None
_SESSIONS: dict[tuple[str | None, str | None], WatchSession] = {}
_SESSIONS_LOCK = threading.Lock()


def shard_cameras(config: Config, shard: str | None) -> list[str]:
    """Camera ids of ``shard`` (all cameras when no shard is given)."""
    if shard is None:
        return [c.id for c in config.cameras]
    from pipeline.shards import cameras_for_shard

    return [c.id for c in cameras_for_shard(config, shard)]


def session_for(config_path: str | None, shard: str | None) -> WatchSession:
    """The process-wide started session of a (config, shard), created on first use."""
    key = (config_path, shard)
    with _SESSIONS_LOCK:
        if key not in _SESSIONS:
            config = load_config(config_path)
            _SESSIONS[key] = WatchSession(config, shard_cameras(config, shard)).start()
        return _SESSIONS[key]


def close_sessions() -> None:
    """Stop every session of this process (publishes the workers' offline status)."""
    with _SESSIONS_LOCK:
        for session in _SESSIONS.values():
            session.close()
        _SESSIONS.clear()


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


def _exit_watchdog(grace_s: float) -> None:
    while not getattr(threading, "_SHUTTING_DOWN", False):  # set when the interpreter starts exiting
        time.sleep(0.5)
    deadline = time.monotonic() + grace_s
    while True:
        time.sleep(max(0.1, deadline - time.monotonic()))
        if prefect_api_reachable() is not False:
            deadline = time.monotonic() + grace_s  # Prefect is only slow: let it finish
            continue
        sys.stderr.write(
            f"citywatch: Prefect API unreachable and the process still waits on Prefect {grace_s:.0f} s "
            "after its work ended; exiting now (unsent run events are dropped; frames, checkpoints "
            "and alerts are safe in the local state store)\n")
        sys.stderr.flush()
        os._exit(1)


def start_exit_watchdog(grace_s: float = EXIT_GRACE_S) -> None:
    """Once per process: a daemon thread that, once the interpreter is exiting, ends the process
    if it is still waiting on Prefect after ``grace_s`` while the API is unreachable."""
    global _WATCHDOG
    if _WATCHDOG is None:
        _WATCHDOG = threading.Thread(target=_exit_watchdog, args=(grace_s,), name="citywatch-exit-watchdog",
                                     daemon=True)
        _WATCHDOG.start()


@task(name="watch-slice", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=5)
def watch_slice(config_path: str | None, shard: str | None, duration_s: float) -> dict:
    """Poll the shard's cameras for ``duration_s`` (0 = a single pass) and process what arrives."""
    session = session_for(config_path, shard)
    stats = session.cycle() if duration_s <= 0 else session.run_slice(duration_s)
    return stats.as_dict()


@task(name="drain-outbox", cache_policy=NO_CACHE)
def drain_outbox(config_path: str | None, shard: str | None, timeout_s: float) -> int:
    """Deliver what is still queued before the run ends (what is not acknowledged stays queued)."""
    return session_for(config_path, shard).drain(timeout_s)


@flow(name="watch", retries=0)
def watch(config_path: str | None = None, shard: str | None = None,
          window_s: float | None = None, once: bool = False) -> dict:
    """Watch one shard (or every camera) for ``window_s`` seconds, or one pass with ``once``."""
    logger = get_run_logger()
    start_exit_watchdog()
    session = session_for(config_path, shard)
    window = session.config.worker.window_s if window_s is None else window_s
    logger.info("watching %d camera(s) of shard %s for %s", len(session.camera_ids), shard or "(all)",
                "one pass" if once else f"{window:.0f} s")
    total = SliceStats()
    deadline = time.monotonic() + window
    while True:
        remaining = deadline - time.monotonic()
        duration = 0.0 if once else min(SLICE_S, max(0.0, remaining))
        result = watch_slice(config_path, shard, duration)
        total.merge(SliceStats(**result))
        if once or time.monotonic() >= deadline:
            break
    total.delivered += drain_outbox(config_path, shard, 10.0)
    if prefect_api_reachable() is False:
        # Said on the process log too: the run logger's records would go to the missing API.
        log.warning("Prefect API unreachable at the end of the window: %d frames processed and %d alerts "
                    "delivered regardless; this run's final state may not be recorded", total.frames,
                    total.delivered)
    logger.info("window done: %s", total.as_dict())
    return total.as_dict()

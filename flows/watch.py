"""The `watch` flow: a bounded window of polling one shard of cameras, re-launched by its schedule.

The flow only sequences tasks; all the work is in :mod:`pipeline.processing.runner`. Each task is a *slice*
of polling (default 15 s) over all of the shard's cameras, so Prefect records a few task runs per
minute with their frame/alert counts, never one per frame. Detector state lives in the process
(`_SESSIONS`), so consecutive runs in one process keep their background models; at the end of
every run it is also stored in the state store (:mod:`pipeline.state.cameras`), so the next run
in a fresh process (the process work pool starts one per window) picks up where this one ended.

Prefect outages: detection and delivery never wait on the API (task runs are orchestrated in the
process; the outbox and checkpoints are local). What can hang is the end of a run: the
:class:`~flows.watchdog.ExitWatchdog`, armed when the run's work is done, bounds that wait.
"""

from __future__ import annotations

import logging
import threading
import time

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows.watchdog import ExitWatchdog, prefect_api_reachable
from pipeline.config.settings import Config, load_config
from pipeline.processing.runner import SliceStats, WatchSession

SLICE_S = 15.0
log = logging.getLogger(__name__)
_WATCHDOG = ExitWatchdog()
_SESSIONS: dict[tuple[str | None, str | None], WatchSession] = {}
_SESSIONS_LOCK = threading.Lock()


def shard_cameras(config: Config, shard: str | None) -> list[str]:
    """Camera ids of ``shard`` (all cameras when no shard is given)."""
    if shard is None:
        return [c.id for c in config.cameras]
    from pipeline.state.shards import cameras_for_shard

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
    _WATCHDOG.disarm()  # this process works again
    try:
        return _watch(logger, config_path, shard, window_s, once)
    finally:
        with _SESSIONS_LOCK:
            session = _SESSIONS.get((config_path, shard))
        if session is not None:  # the next window may be a fresh process (process work pool)
            session.save_state()
        _WATCHDOG.arm()  # the work is done: what follows waits only on Prefect


def _watch(logger, config_path: str | None, shard: str | None, window_s: float | None, once: bool) -> dict:
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

"""One worker per state dir: a second one (another process, or another session in this process)
fails fast with an error naming the dir and the holder's pid; a killed holder frees it at once."""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid

import pytest

from pipeline.processing.runner import WatchSession, build_worker
from pipeline.state.lock import StateDirLock, StateDirLocked
from tests.faults_support import start_worker_process, write_config


def _config(tmp_path, s3_server, mqtt_broker, **worker):
    tag = uuid.uuid4().hex[:8]
    return write_config(tmp_path, s3_url=s3_server.url, mqtt_url=mqtt_broker, prefix=f"cwlock-{tag}",
                        cameras=["cam-l"], bucket=f"lock-{tag}", worker_name=f"lock-{tag}",
                        worker={"lock_wait_s": 0, **worker})


def _wait_for_holder(lock_file, pid: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if lock_file.exists() and lock_file.read_text().strip() == str(pid):
            return
        time.sleep(0.1)
    raise AssertionError(f"worker {pid} never took {lock_file}")


def test_a_second_worker_on_one_state_dir_fails_fast_naming_the_dir_and_the_holder(
        s3_server, mqtt_broker, tmp_path):
    config_path, config = _config(tmp_path, s3_server, mqtt_broker)
    state_dir = config.worker.state_dir
    holder = start_worker_process(config_path, frames=10**9, log_path=tmp_path / "holder.log", timeout_s=120)
    try:
        _wait_for_holder(state_dir / "worker.lock", holder.pid)
        started = time.monotonic()
        with pytest.raises(StateDirLocked) as info:
            build_worker(config)
        assert time.monotonic() - started < 2
        message = str(info.value)
        assert str(state_dir) in message and f"pid {holder.pid}" in message, message
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(10)
    # The kernel drops a killed holder's lock: no stale lock file to clean up by hand.
    with WatchSession(config) as session:
        with pytest.raises(StateDirLocked, match=f"pid {os.getpid()}"):
            WatchSession(config)  # a second session in this process would process everything twice too
        assert session.cycle().errors == []
    with WatchSession(config):  # closing a session frees its state dir
        pass


def test_lock_waits_up_to_lock_wait_s_for_a_holder_that_is_exiting(tmp_path):
    first = StateDirLock(tmp_path).acquire()
    threading.Timer(0.5, first.release).start()
    started = time.monotonic()
    second = StateDirLock(tmp_path).acquire(wait_s=10)
    try:
        assert 0.4 < time.monotonic() - started < 5
        assert (tmp_path / "worker.lock").read_text().strip() == str(os.getpid())
    finally:
        second.release()
    with pytest.raises(StateDirLocked, match="in use by another citywatch worker"):
        with StateDirLock(tmp_path).acquire():
            StateDirLock(tmp_path).acquire(wait_s=0.3)

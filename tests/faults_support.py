"""Helpers for the pipeline-level fault tests: configs, scene uploads, an MQTT inbox, and a worker
that runs as its own process (so a test can SIGKILL it).

Run as a script, this module is that worker:
``python -m tests.faults_support --config X --frames N [--timeout S] [--log-level DEBUG]`` cycles a
:class:`WatchSession` until the state store counts N processed frames and the outbox is empty.
"""

from __future__ import annotations

import argparse
import json
import logging
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from pipeline.config.settings import Config, config_from_dict
from pipeline.frames.store import FrameStore, make_minio
from sample_media import load_scene

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
CAMERA_LOCATION = {"lat": 10.98, "lon": 106.65, "district": "Thu Dau Mot"}
#: An S3 identity of the session's SeaweedFS server with a secret unique to this run, for the
#: tests that look for secrets in logs (they must use a secret the server really checks).
TESTER_ACCESS_KEY = "citywatch-tester"
TESTER_SECRET_KEY = f"S3secret-{uuid.uuid4().hex}"


def write_config(tmp_path: Path, *, s3_url: str, mqtt_url: str, prefix: str, cameras: list[str],
                 access_key: str = "citywatch", secret_key: str = "citywatch-secret",
                 worker_name: str = "faults", bucket: str = "frames", state_dir: Path | None = None,
                 alerts: dict | None = None, worker: dict | None = None,
                 detectors: dict[str, dict] | None = None,
                 name: str = "citywatch.yaml") -> tuple[Path, Config]:
    """A citywatch YAML in ``tmp_path`` for ``cameras`` (``detectors``: per camera id, its
    detector settings) and the parsed :class:`Config`."""
    data: dict[str, Any] = {
        "s3": {"url": s3_url, "access_key": access_key, "secret_key": secret_key,
               "frames_bucket": bucket, "alerts_bucket": f"{bucket}-alerts"},
        "mqtt": {"url": mqtt_url, "topic_prefix": prefix},
        "alerts": {"end_after_s": 5, **(alerts or {})},
        "worker": {"name": worker_name, "state_dir": str(state_dir or tmp_path / f"state-{worker_name}"),
                   "max_frames_per_batch": 500, "poll_interval_s": 0.2, **(worker or {})},
        "cameras": [{"id": c, "name": f"Camera {c}", "location": CAMERA_LOCATION,
                     **({"detectors": detectors[c]} if detectors and c in detectors else {})} for c in cameras],
    }
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path, config_from_dict(data, env={})


def frame_store(config: Config) -> FrameStore:
    """The config's frames bucket (created) through the real minio client."""
    store = FrameStore(make_minio(config.s3), config.s3.frames_bucket)
    store.ensure_bucket()
    return store


def put_scene(store: FrameStore, camera: str, scene: str, start: float, test: bool = True) -> list[str]:
    """Upload a sample scene's frames for ``camera`` stamped from ``start``; returns the keys."""
    return [store.put_frame(camera, start + offset, jpeg, test=test) for offset, jpeg in load_scene(scene)]


def read_counters(state_db: Path) -> dict[str, int]:
    """The persistent counters of a worker's state database, read from outside the worker."""
    if not state_db.exists():
        return {}
    db = sqlite3.connect(f"file:{state_db}?mode=ro", uri=True, timeout=5)
    try:
        return dict(db.execute("SELECT name, value FROM counters").fetchall())
    except sqlite3.OperationalError:
        return {}
    finally:
        db.close()


class Inbox:
    """Collects (topic, payload) pairs from a subscriber thread."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()

    def __call__(self, topic: str, payload: bytes, retain: bool) -> None:
        with self._lock:
            self.messages.append((topic, payload))

    def alerts(self) -> list[dict]:
        with self._lock:
            return [json.loads(p) for t, p in self.messages if "/alerts/" in t]

    def events(self) -> set[tuple[str, int, str]]:
        """(incident_id, seq, state) of every alert received (duplicates collapse)."""
        return {(a["incident_id"], a["seq"], a["state"]) for a in self.alerts()}

    def wait_for(self, predicate: Callable[[Inbox], bool], timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self):
                return True
            time.sleep(0.1)
        return predicate(self)


def incidents_consistent(alerts: list[dict]) -> list[str]:
    """Problems a consumer would see: a second start of an incident, gaps in its sequence numbers,
    or different payloads under one (incident_id, seq). Empty when all is well."""
    problems = []
    by_id: dict[str, dict[int, dict]] = {}
    for a in alerts:
        seen = by_id.setdefault(a["incident_id"], {})
        earlier = seen.get(a["seq"])
        if earlier is not None and (earlier["state"], earlier["frame"]) != (a["state"], a["frame"]):
            problems.append(f"{a['incident_id']} seq {a['seq']} delivered with two different contents")
        seen[a["seq"]] = a
    for incident, seqs in by_id.items():
        starts = [s for s, a in seqs.items() if a["state"] == "start"]
        if starts != [1]:
            problems.append(f"{incident}: start at seqs {starts}, expected exactly one at seq 1")
        if sorted(seqs) != list(range(1, max(seqs) + 1)):
            problems.append(f"{incident}: sequence has gaps {sorted(seqs)}")
    return problems


def start_worker_process(config_path: Path, frames: int, log_path: Path, *, timeout_s: float = 120,
                         log_level: str = "INFO", env: dict[str, str] | None = None) -> subprocess.Popen:
    """This module as a worker subprocess, its stderr to ``log_path``."""
    return subprocess.Popen(
        [PYTHON, "-m", "tests.faults_support", "--config", str(config_path), "--frames", str(frames),
         "--timeout", str(timeout_s), "--log-level", log_level],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=open(log_path, "ab"), env=env)


def _run_worker(config_path: str, frames: int, timeout_s: float) -> int:
    from pipeline.config.settings import load_config
    from pipeline.processing.runner import WatchSession

    config = load_config(config_path)
    deadline = time.monotonic() + timeout_s
    with WatchSession(config) as session:
        store = session.worker.state
        while time.monotonic() < deadline:
            stats = session.cycle()
            logging.getLogger("faults.worker").info("cycle: %s", stats.as_dict())
            if store.counters().get("frames_processed", 0) >= frames and not store.outbox_size():
                return 0
            if stats.frames == 0:
                time.sleep(config.worker.poll_interval_s)
    return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", required=True)
    parser.add_argument("--frames", type=int, required=True, help="stop once this many frames are processed")
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return _run_worker(args.config, args.frames, args.timeout)


if __name__ == "__main__":
    sys.exit(main())

"""Harness for tests/test_deployment.py: a whole citywatch site on loopback, every part a real
process or server (Prefect server and process workers, SeaweedFS's S3 server, Mosquitto)."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import httpx
import numpy as np
import paho.mqtt.client as mqtt
import psutil
import yaml
from minio import Minio

from pipeline.app.embedded import free_port
from pipeline.frames.keys import frame_key
from pipeline.state.shards import shard_for_camera
from pipeline.state.store import StateStore

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SHARDS = ["shard-0", "shard-1"]
PATTERN = "CCCCC" + "CCCCCOOO" * 2 + "CCCC"  # warm-up, then 2 incidents (covered lens) that end
ALERT_SETTINGS = {"debounce_hits": 2, "debounce_window": 3, "end_after_s": 2, "cooldown_s": 0,
                  "update_heartbeat_s": 5}
OFF = {"enabled": False}


def _jpeg(kind: str, rng: np.random.Generator) -> bytes:
    frame = (np.full((180, 320, 3), 128, np.uint8) if kind == "O"
             else rng.integers(0, 255, (180, 320, 3), dtype=np.uint8))
    ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 80])
    assert ok
    return buf.tobytes()


def _cameras_by_shard(per_shard: int = 2) -> dict[str, list[str]]:
    table: dict[str, list[str]] = {s: [] for s in SHARDS}
    i = 0
    while any(len(v) < per_shard for v in table.values()):
        cam = f"cam-{i:02d}"
        shard = shard_for_camera(cam, SHARDS)
        if len(table[shard]) < per_shard:
            table[shard].append(cam)
        i += 1
    return table


class AlertCollector:
    """Subscribes like the operations center and keeps every alert payload with its arrival time."""

    def __init__(self, url: str) -> None:
        host, port = url.removeprefix("mqtt://").split(":")
        self.messages: list[tuple[float, dict]] = []
        self._lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"ioc-{os.getpid()}")
        self.client.on_message = self._on_message
        self.client.on_connect = lambda c, *a: c.subscribe("citywatch/alerts/#", qos=1)
        self.client.connect(host, int(port))
        self.client.loop_start()

    def _on_message(self, client, userdata, msg) -> None:
        with self._lock:
            self.messages.append((time.time(), json.loads(msg.payload)))

    def alerts(self, cameras: list[str] | None = None, since: float = 0.0,
               type_: str = "camera_obstructed") -> list[dict]:
        with self._lock:
            return [m for t, m in self.messages if t >= since and m["type"] == type_
                    and (cameras is None or m["camera"]["id"] in cameras)]

    def stop(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


class Site:
    """Prefect server + workers + S3 + MQTT, all as real processes or servers on loopback."""

    def __init__(self, tmp: Path, s3, mqtt_url: str) -> None:
        self.tmp, self.s3, self.mqtt_url = tmp, s3, mqtt_url
        self.port = free_port()
        self.api = f"http://127.0.0.1:{self.port}/api"
        self.http = httpx.Client(base_url=self.api, timeout=30)
        self.procs: dict[str, subprocess.Popen] = {}
        self.cameras = _cameras_by_shard()
        self.config_path = tmp / "config.yaml"
        cams = [{"id": c, "detectors": {"fire": OFF, "smoke": OFF, "flood": OFF, "congestion": OFF}}
                for ids in self.cameras.values() for c in ids]
        self.config_path.write_text(yaml.safe_dump({
            "alerts": ALERT_SETTINGS, "worker": {"poll_interval_s": 0.5},
            "health": {"stale_after_s": 2, "offline_after_s": 4},  # shorter than a run
            "shards": {"count": len(SHARDS)}, "cameras": cams}))
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "CITYWATCH_"))}
        self.env.update({
            "PATH": f"{BIN}:{os.environ['PATH']}", "PREFECT_HOME": str(tmp / "prefect-home"),
            "PREFECT_API_URL": self.api, "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1",
            "PREFECT_SERVER_UI_ENABLED": "false", "PREFECT_LOGGING_LEVEL": "INFO",
            # Runs are started by the test, not by the schedules (a 300 s schedule would hold the slot).
            "PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": "false",
            "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{tmp}/prefect.db",
            "PREFECT_WORKER_QUERY_SECONDS": "1", "PREFECT_WORKER_HEARTBEAT_SECONDS": "5",
            "CITYWATCH_HOME": str(ROOT), "CITYWATCH_CONFIG": str(self.config_path),
            "CITYWATCH_S3_URL": s3.url, "CITYWATCH_S3_ACCESS_KEY": s3.access_key,
            "CITYWATCH_S3_SECRET_KEY": s3.secret_key, "CITYWATCH_MQTT_URL": mqtt_url,
        })
        self.minio = Minio(f"127.0.0.1:{s3.port}", access_key=s3.access_key, secret_key=s3.secret_key,
                           secure=False, region="us-east-1")
        for bucket in ("frames", "alerts"):
            if not self.minio.bucket_exists(bucket):
                self.minio.make_bucket(bucket)

    # --- processes -------------------------------------------------------------------------
    def _spawn(self, name: str, args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
        log = open(self.tmp / f"{name}.log", "ab")
        proc = subprocess.Popen(args, cwd=ROOT, env=env or self.env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        self.procs[name] = proc
        return proc

    def run_cli(self, *args: str, timeout: float = 120) -> str:
        res = subprocess.run([str(BIN / "prefect"), *args], cwd=ROOT, env=self.env, capture_output=True,
                             text=True, timeout=timeout)
        assert res.returncode == 0, f"prefect {' '.join(args)} failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
        return res.stdout

    def start_server(self) -> None:
        self._spawn("server", [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1",
                               "--port", str(self.port)])
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.api}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            assert self.procs["server"].poll() is None, self.log("server")
            time.sleep(0.5)
        raise TimeoutError(f"prefect server did not answer: {self.log('server')}")

    def start_worker(self, k: int) -> subprocess.Popen:
        env = dict(self.env, CITYWATCH_STATE_DIR=str(self.state_dir(k)), CITYWATCH_WORKER_NAME=f"worker-{k}")
        return self._spawn(f"worker-{k}", [str(BIN / "prefect"), "worker", "start", "--pool", "citywatch-edge",
                                           "--type", "process", "--name", f"edge-{k}",
                                           "--work-queue", SHARDS[k]], env)

    def kill_tree(self, name: str) -> None:
        """SIGKILL a process and all its descendants at once (a box losing power)."""
        proc = psutil.Process(self.procs[name].pid)
        victims = [proc] + proc.children(recursive=True)
        for p in victims:
            try:
                p.send_signal(signal.SIGKILL)
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(victims, timeout=10)
        self.procs[name].wait(10)

    def stop(self) -> None:
        for name in list(self.procs)[::-1]:
            proc = self.procs.pop(name)
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                    proc.wait(15)
                except (ProcessLookupError, subprocess.TimeoutExpired):
                    try:
                        os.killpg(proc.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
        self.http.close()

    def log(self, name: str) -> str:
        path = self.tmp / f"{name}.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def state_dir(self, k: int) -> Path:
        return self.tmp / f"state-{k}"

    def checkpoints(self, k: int) -> dict[str, str]:
        path = self.state_dir(k) / "state.db"
        if not path.exists():
            return {}
        store = StateStore(path)
        try:
            return store.checkpoints()
        finally:
            store.close()

    # --- Prefect API -----------------------------------------------------------------------
    def call(self, method: str, url: str, **kw) -> dict | list:
        """One API call, retried on 5xx and connection errors (SQLite under a loaded machine)."""
        for attempt in range(6):
            try:
                res = self.http.request(method, url, **kw)
                if res.status_code < 500:
                    return res.raise_for_status().json()
            except httpx.TransportError:
                pass
            time.sleep(1 + attempt)
        return self.http.request(method, url, **kw).raise_for_status().json()

    def run_deployment(self, name: str, **parameters) -> str:
        dep = self.call("GET", f"/deployments/name/watch/{name}")
        return self.call("POST", f"/deployments/{dep['id']}/create_flow_run", json={"parameters": parameters})["id"]

    def run_state(self, run_id: str) -> str:
        return self.call("GET", f"/flow_runs/{run_id}")["state"]["type"]

    def wait_state(self, run_id: str, states: set[str], timeout: float) -> str:
        deadline = time.monotonic() + timeout
        state = None
        while time.monotonic() < deadline:
            state = self.run_state(run_id)
            if state in states:
                return state
            if state in {"FAILED", "CRASHED", "CANCELLED"}:
                break
            time.sleep(0.5)
        raise AssertionError(f"flow run {run_id} is {state}, wanted {states}\n"
                             + "\n".join(f"--- {n}\n{self.log(n)}" for n in self.procs if n != "server"))

    # --- frames ----------------------------------------------------------------------------
    def put_frames(self, camera: str, start_ts: float, pattern: str, seed: int) -> list[str]:
        rng = np.random.default_rng(seed)
        keys = []
        for i, kind in enumerate(pattern):
            data = _jpeg(kind, rng)
            key = frame_key(camera, start_ts + i)
            self.minio.put_object("frames", key, io.BytesIO(data), len(data), content_type="image/jpeg")
            keys.append(key)
        return keys


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")

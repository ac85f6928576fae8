"""Prometheus metrics of the worker and the console, with ``prometheus_client``.

The worker counts frames processed and skipped (by reason), alerts (by type and state) and the
seconds its per-frame stages take (decode, detectors with the alert policy); at each scrape it
reports every live worker's outbox depth, dead letters and each camera's lag (now minus the frame
time of its newest processed frame). :func:`serve_metrics` exposes them over HTTP on a small
thread; the worker does so when ``CITYWATCH_METRICS_PORT`` is set (off by default; 9464 is the
documented port in `deploy/`). Bind address: ``CITYWATCH_METRICS_ADDR`` (default 0.0.0.0).

The console serves the same registry at its ``/metrics`` (:func:`metrics_endpoint`, behind its
token) with the incidents on its board by type, state, severity and acknowledgement
(:func:`watch_console_board`) and the alerts it received by type and state.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import weakref
from collections.abc import Iterable
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Histogram, generate_latest, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from pipeline.processing.worker import Worker

log = logging.getLogger(__name__)

PORT_ENV, ADDR_ENV = "CITYWATCH_METRICS_PORT", "CITYWATCH_METRICS_ADDR"
DEFAULT_PORT = 9464

FRAMES_PROCESSED = Counter("citywatch_frames_processed", "Frames decoded and analysed", ["camera"])
FRAMES_SKIPPED = Counter("citywatch_frames_skipped", "Frames skipped, by reason (bad_frame, bad_key, "
                         "analysis_error, out_of_order, future_time)", ["camera", "reason"])
ALERTS = Counter("citywatch_alerts", "Alert messages queued in the outbox, by type and state", ["type", "state"])
STAGE_SECONDS = Histogram("citywatch_frame_stage_seconds", "Seconds per frame of a worker stage "
                          "(decode; detectors: every detector, the verifier and the alert policy)", ["stage"],
                          buckets=(0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.02, 0.05, 0.1, 0.5))
DECODE = STAGE_SECONDS.labels("decode")
DETECTORS = STAGE_SECONDS.labels("detectors")
STAGE_CPU = Counter("citywatch_frame_stage_cpu_seconds", "CPU seconds of the worker thread in a stage, "
                    "summed over frames (citywatch_frame_stage_seconds is the wall time; it is the larger "
                    "where threads wait for each other)", ["stage"])
DECODE_CPU = STAGE_CPU.labels("decode")
DETECTORS_CPU = STAGE_CPU.labels("detectors")


class WorkerCollector(Collector):
    """Outbox depth, dead letters and camera lag of every live :class:`Worker`, read at scrape."""

    def __init__(self) -> None:
        self._workers: weakref.WeakSet = weakref.WeakSet()

    def add(self, worker: Worker) -> None:
        self._workers.add(worker)

    def collect(self) -> Iterable[GaugeMetricFamily]:
        outbox = GaugeMetricFamily("citywatch_outbox_messages", "Messages in the outbox waiting for the "
                                   "broker's PUBACK", labels=["worker"])
        dead = GaugeMetricFamily("citywatch_dead_letters", "Messages the broker refused for good "
                                 "(dead-letter table)", labels=["worker"])
        lag = GaugeMetricFamily("citywatch_camera_lag_seconds", "Now minus the frame time of the camera's "
                                "newest processed frame", labels=["camera"])
        for worker in list(self._workers):
            name = worker.config.worker.name
            try:
                outbox.add_metric([name], worker.state.outbox_size())
                dead.add_metric([name], len(worker.state.dead_letters()))
            except Exception as exc:  # noqa: BLE001 - a closed state store must not break the scrape
                log.debug("metrics: worker %s state unreadable: %s", name, exc)
            now = worker.clock()
            for camera_id, (frame_ts, _) in list(worker.last_frames().items()):
                lag.add_metric([camera_id], max(0.0, now - frame_ts))
        yield outbox
        yield dead
        yield lag


WORKERS = WorkerCollector()
REGISTRY.register(WORKERS)


class ConsoleCollector(Collector):
    """Incidents on every live console board (``IncidentBoard.snapshot()``), read at scrape."""

    def __init__(self) -> None:
        self._boards: weakref.WeakSet = weakref.WeakSet()

    def add(self, board) -> None:
        self._boards.add(board)

    def collect(self) -> Iterable[GaugeMetricFamily]:
        family = GaugeMetricFamily("citywatch_console_incidents", "Incidents on the console's board, by type, "
                                   "state (start/update/end), severity and acknowledgement",
                                   labels=["type", "state", "severity", "acked"])
        counts: dict[tuple[str, str, str, str], int] = {}
        for board in list(self._boards):
            for inc in board.snapshot()["incidents"]:
                key = (str(inc.get("type")), str(inc.get("state")), str(inc.get("severity")),
                       "true" if inc.get("ack") else "false")
                counts[key] = counts.get(key, 0) + 1
        for key, n in sorted(counts.items()):
            family.add_metric(list(key), n)
        yield family


CONSOLE = ConsoleCollector()
REGISTRY.register(CONSOLE)
CONSOLE_ALERTS = Counter("citywatch_console_alerts", "Alerts the console received, by type and state",
                         ["type", "state"])


def watch_console_board(board) -> None:
    """Report ``board``'s incidents, and count the alerts it takes in, at ``/metrics``."""
    CONSOLE.add(board)
    add_alert = board.add_alert

    def counted(payload: bytes, topic: str | None = None):
        delta = add_alert(payload, topic)
        if delta is not None:  # a new message of an incident (duplicates and refusals are None)
            doc = json.loads(payload)  # valid: the board took it
            CONSOLE_ALERTS.labels(str(doc.get("type")), str(doc.get("state"))).inc()
        return delta

    board.add_alert = counted


async def metrics_endpoint(request):
    """Starlette endpoint: the registry in Prometheus' text format."""
    from starlette.responses import Response

    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

_server_lock = threading.Lock()
_server: tuple | None = None


def metrics_port_from_env(environ: dict[str, str] | None = None) -> int | None:
    """``CITYWATCH_METRICS_PORT`` as a port number, None when unset or empty; ValueError naming
    the variable when it is no port."""
    value = (os.environ if environ is None else environ).get(PORT_ENV, "").strip()
    if not value:
        return None
    try:
        port = int(value)
    except ValueError:
        raise ValueError(f"{PORT_ENV}: {value!r} is not a port number") from None
    if not 1 <= port <= 65535:
        raise ValueError(f"{PORT_ENV}: {port} is out of range (1..65535)")
    return port


def serve_metrics(port: int, addr: str = "0.0.0.0") -> int:
    """Serve the default registry at ``http://addr:port/metrics`` on a daemon thread, once per
    process (later calls return the port already served); returns the port."""
    global _server
    with _server_lock:
        if _server is None:
            server, thread = start_http_server(port, addr=addr)
            _server = (server, thread, server.server_address[1])
            log.info("metrics at http://%s:%d/metrics", addr, _server[2])
        return _server[2]


def serve_from_env() -> int | None:
    """Start the metrics server if ``CITYWATCH_METRICS_PORT`` is set; a bad value or a port in use
    is logged as a warning (the worker runs on without metrics)."""
    try:
        port = metrics_port_from_env()
        if port is None:
            return None
        return serve_metrics(port, os.environ.get(ADDR_ENV, "0.0.0.0") or "0.0.0.0")
    except (ValueError, OSError) as exc:
        log.warning("no metrics endpoint: %s", exc)
        return None


def stop_metrics_server() -> None:
    """Shut the metrics server down (tests; a process normally serves until it exits)."""
    global _server
    with _server_lock:
        if _server is not None:
            _server[0].shutdown()
            _server[0].server_close()
            _server = None

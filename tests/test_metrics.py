"""Prometheus metrics of the worker, scraped for real over HTTP and parsed with
``prometheus_client.parser``; JSON logs as an option (`CITYWATCH_LOG_FORMAT`)."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import time
import urllib.request
import uuid

import pytest
from prometheus_client.parser import text_string_to_metric_families

from pipeline.app.embedded import free_port
from pipeline.common.logs import configure_logging, log_format_from_env
from pipeline.processing import metrics
from pipeline.processing.runner import WatchSession
from tests.faults_support import frame_store, put_scene, write_config


def scrape(port: int) -> dict[tuple[str, tuple], float]:
    """``{(sample name, sorted labels): value}`` of one real scrape of ``/metrics``."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
def metrics_port(monkeypatch):
    port = free_port()
    monkeypatch.setenv(metrics.PORT_ENV, str(port))
    monkeypatch.setenv(metrics.ADDR_ENV, "127.0.0.1")
    metrics.stop_metrics_server()
    yield port
    metrics.stop_metrics_server()


def test_a_watch_session_serves_frames_skips_alerts_lag_outbox_and_stage_times(
        s3_server, mqtt_broker, tmp_path, metrics_port):
    tag = uuid.uuid4().hex[:8]
    fire, junk = f"m-fire-{tag}", f"m-junk-{tag}"
    _, config = write_config(tmp_path, s3_url=s3_server.url, mqtt_url=mqtt_broker, prefix=f"cwmet-{tag}",
                             cameras=[fire, junk], bucket=f"metrics-{tag}", worker_name=f"met-{tag}")
    store = frame_store(config)
    started = time.time() - 120
    keys = put_scene(store, fire, "fire", started)
    store.client.put_object(store.bucket, f"{junk}/2026/11/22/20261122T204026.123Z.jpg",
                            io.BytesIO(b"not a jpeg"), 10)
    with WatchSession(config, threads=2) as session:  # it starts the metrics server
        before = scrape(metrics_port)
        session.cycle()
        session.drain(10)
        after = scrape(metrics_port)
        assert value(after, "citywatch_outbox_messages", worker=config.worker.name) == 0
        assert value(after, "citywatch_dead_letters", worker=config.worker.name) == 0
        lag = value(after, "citywatch_camera_lag_seconds", camera=fire)
        newest = started + (len(keys) - 1) * 0.5
        assert time.time() - newest - 5 < lag <= time.time() - newest + 1

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("citywatch_frames_processed_total", camera=fire) == len(keys)
    assert grew("citywatch_frames_skipped_total", camera=junk, reason="bad_frame") == 1
    assert grew("citywatch_alerts_total", type="fire", state="start") >= 1
    for stage in ("decode", "detectors"):
        assert grew("citywatch_frame_stage_seconds_count", stage=stage) >= len(keys)
        assert grew("citywatch_frame_stage_seconds_sum", stage=stage) > 0
        cpu = grew("citywatch_frame_stage_cpu_seconds_total", stage=stage)  # this thread's CPU only
        assert 0 < cpu <= grew("citywatch_frame_stage_seconds_sum", stage=stage) * 1.05 + 0.01
    assert value(after, "process_cpu_seconds_total") > 0  # prometheus_client's process collector


def test_the_metrics_port_is_validated_and_a_busy_port_does_not_stop_the_worker(monkeypatch, caplog):
    assert metrics.metrics_port_from_env({}) is None
    assert metrics.metrics_port_from_env({metrics.PORT_ENV: "9464"}) == 9464
    for bad, message in (("http", "is not a port number"), ("70000", "out of range")):
        with pytest.raises(ValueError, match=f"{metrics.PORT_ENV}: .*{message}"):
            metrics.metrics_port_from_env({metrics.PORT_ENV: bad})
    metrics.stop_metrics_server()
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        monkeypatch.setenv(metrics.PORT_ENV, str(busy.getsockname()[1]))
        monkeypatch.setenv(metrics.ADDR_ENV, "127.0.0.1")
        caplog.set_level(logging.WARNING, logger="pipeline.processing.metrics")
        assert metrics.serve_from_env() is None
    assert "no metrics endpoint" in caplog.text


def test_json_logs_one_object_per_line_with_extras_and_escapes():
    code = ("import logging; from pipeline.common.logs import configure_logging; configure_logging(); "
            "logging.getLogger('pipeline.processing.worker').warning('camera %s: skipped %s', 'cam-1', 'a\\x1b[2Jb\\nforged', "
            "extra={'camera': 'cam-1'})")
    env = {**os.environ, "CITYWATCH_LOG_FORMAT": "json"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    record = json.loads(lines[0])
    assert record["level"] == "WARNING" and record["logger"] == "pipeline.processing.worker" and record["camera"] == "cam-1"
    assert record["message"] == "camera cam-1: skipped a\x1b[2Jb\nforged" and "\\u001b" in lines[0]
    assert record["time"].endswith("+0000")


def test_log_format_is_validated(tmp_path):
    assert log_format_from_env({}) == "text" and log_format_from_env({"CITYWATCH_LOG_FORMAT": "JSON"}) == "json"
    with pytest.raises(ValueError, match="CITYWATCH_LOG_FORMAT: 'xml' is not one of text, json"):
        log_format_from_env({"CITYWATCH_LOG_FORMAT": "xml"})
    with pytest.raises(ValueError, match="log format 'yaml'"):
        configure_logging(fmt="yaml")
    out = subprocess.run([sys.executable, "-m", "pipeline.app.cli", "shards"], capture_output=True, text=True,
                         env={**os.environ, "CITYWATCH_LOG_FORMAT": "xml"}, timeout=60)
    assert out.returncode == 2 and "CITYWATCH_LOG_FORMAT: 'xml' is not one of text, json" in out.stderr

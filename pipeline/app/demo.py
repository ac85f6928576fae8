"""`citywatch demo`: the whole pipeline on embedded defaults, on a machine with nothing running.

Starts what is missing (a SeaweedFS S3 server unless ``CITYWATCH_S3_URL`` is set; mosquitto, or amqtt,
unless ``CITYWATCH_MQTT_URL`` is set), subscribes like the operations center, ingests the
synthetic sample scenes as four cameras (marked as test footage), runs the Prefect `watch` flow,
prints every alert as it arrives over MQTT and ends with a summary.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import yaml

from pipeline.app.console_view import format_alert_line
from pipeline.app.embedded import EmbeddedS3, port_open, start_embedded_broker
from pipeline.app.prefect_env import prepare_prefect_env
from pipeline.config.settings import Config, config_from_dict
from pipeline.delivery.mqtt import Subscriber
from pipeline.frames.store import FrameStore, make_minio

#: Seconds the flow keeps watching after the scenes, so incidents end (hysteresis) within the demo.
AFTER_S = 12.0
EXPECTED = ("fire", "flood", "congestion")


@dataclass
class DemoSummary:
    """What the demo saw arrive over MQTT."""

    alerts: list[dict] = field(default_factory=list)
    cap_messages: int = 0
    frames_ingested: int = 0
    flow_result: dict = field(default_factory=dict)

    def by_type_state(self) -> Counter:
        return Counter((a["type"], a["state"]) for a in self.alerts)

    def missing(self) -> list[str]:
        seen = {a["type"] for a in self.alerts if a["state"] == "start"}
        return [t for t in EXPECTED if t not in seen]


def demo_config_dict(state_dir: Path) -> dict:
    """The embedded demo configuration with its state directory filled in."""
    text = resources.files("pipeline").joinpath("defaults/demo.yaml").read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    data.setdefault("worker", {})["state_dir"] = str(state_dir)
    return data


def run_demo(echo: Callable[[str], None] = print, timeout_s: float = 300.0) -> DemoSummary:
    """Run the demo end to end; ``echo`` receives every line to show."""
    prepare_prefect_env()
    summary = DemoSummary()
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="citywatch-demo-")))
        env_backup = dict(os.environ)
        def restore_env() -> None:
            os.environ.clear()
            os.environ.update(env_backup)

        stack.callback(restore_env)
        if not os.environ.get("CITYWATCH_S3_URL"):
            s3 = stack.enter_context(EmbeddedS3(workdir=workdir / "s3"))
            for bucket in ("frames", "alerts"):  # the admin makes them; the worker identity may not
                s3.client().make_bucket(bucket)
            worker = s3.identities["worker"]
            os.environ.update(CITYWATCH_S3_URL=s3.url, CITYWATCH_S3_ACCESS_KEY=worker.access_key,
                              CITYWATCH_S3_SECRET_KEY=worker.secret_key)
            echo(f"S3: embedded SeaweedFS server at {s3.url} (ready in {s3.startup_s:.1f} s; "
                 "the pipeline uses its least-privilege worker identity)")
        else:
            echo(f"S3: {os.environ['CITYWATCH_S3_URL']}")
        if not os.environ.get("CITYWATCH_MQTT_URL"):
            broker = start_embedded_broker()
            stack.callback(broker.stop)
            os.environ["CITYWATCH_MQTT_URL"] = broker.url
            echo(f"MQTT: embedded {type(broker).__name__} at {broker.url}")
        config_path = workdir / "citywatch.yaml"
        config_path.write_text(yaml.safe_dump(demo_config_dict(workdir / "state")), encoding="utf-8")
        config: Config = config_from_dict(yaml.safe_load(config_path.read_text()))
        mqtt = config.mqtt
        if not port_open(mqtt.host, mqtt.port):
            echo(f"MQTT: broker {mqtt.host}:{mqtt.port} is unreachable; alerts wait in the outbox "
                 "and are delivered when it comes back")

        def on_message(topic: str, payload: bytes, retain: bool) -> None:
            if "/cap/" in topic:
                summary.cap_messages += 1
                echo(f"  CAP 1.2 on {topic} ({len(payload)} bytes)")
                return
            echo(format_alert_line(topic, payload))
            try:
                summary.alerts.append(json.loads(payload))
            except ValueError:
                summary.alerts.append({"type": "?", "state": "unreadable"})

        prefix = mqtt.topic_prefix
        feed = stack.enter_context(Subscriber(mqtt, "citywatch-demo-ioc", [f"{prefix}/alerts/#", f"{prefix}/cap/#"],
                                              on_message, clean_start=True))
        summary.frames_ingested = _ingest_scenes(config, echo)
        if not feed.wait_subscribed(10):
            # Our operations-center view must be subscribed before alerts go out, or it would miss
            # them when the broker returns; the pipeline's outbox would hold them meanwhile.
            echo(f"waiting up to {timeout_s:.0f} s for the broker before running the flow ...")
            if not feed.wait_subscribed(timeout_s):
                echo("broker still unreachable: running the flow anyway; its alerts stay in the outbox")

        from flows.watch import close_sessions, session_for, watch  # Prefect loads here (~15 s)

        stack.callback(close_sessions)
        window = config.alerts.end_after_s + AFTER_S
        echo(f"running the Prefect 'watch' flow for {window:.0f} s (incidents end after "
             f"{config.alerts.end_after_s:.0f} s without evidence) ...")
        deadline = time.monotonic() + timeout_s
        summary.flow_result = watch(config_path=str(config_path), window_s=window)
        expected = summary.flow_result.get("alerts", 0)
        session = session_for(str(config_path), None)
        next_note = time.monotonic()
        while len(summary.alerts) < expected and time.monotonic() < deadline:
            if session.drain(1.0) == 0 and session.worker.state.outbox_size():
                if time.monotonic() >= next_note:  # broker still away: the outbox keeps them
                    echo(f"waiting for the broker: {session.worker.state.outbox_size()} message(s) in "
                         f"the outbox (up to {max(0, deadline - time.monotonic()):.0f} s more)")
                    next_note = time.monotonic() + 15
            time.sleep(0.2)
        if len(summary.alerts) < expected:
            echo(f"warning: {expected - len(summary.alerts)} alert(s) not received before the timeout")
    return summary


def _ingest_scenes(config: Config, echo: Callable[[str], None]) -> int:
    from sample_media import load_scene

    store = FrameStore(make_minio(config.s3), config.s3.frames_bucket)
    store.ensure_bucket()
    total = 0
    now = time.time()
    for camera in config.cameras:
        scene = camera.id.removeprefix("demo-")
        frames = load_scene(scene)
        duration = frames[-1][0] if frames else 0.0
        start = now - duration
        for offset, jpeg in frames:
            store.put_frame(camera.id, start + offset, jpeg, test=True)
        total += len(frames)
        echo(f"ingested {len(frames)} frames of scene '{scene}' as camera {camera.id} (test footage)")
    return total


def format_summary(summary: DemoSummary) -> list[str]:
    """The closing table of the demo."""
    lines = ["", "summary", f"  frames ingested: {summary.frames_ingested}",
             f"  flow: {summary.flow_result}", f"  alerts received over MQTT: {len(summary.alerts)}"
             f" (+{summary.cap_messages} CAP 1.2 copies)"]
    for (typ, state), n in sorted(summary.by_type_state().items()):
        lines.append(f"    {typ:<18} {state:<7} {n}")
    missing = summary.missing()
    lines.append("  all expected event types alerted" if not missing else f"  MISSING: {', '.join(missing)}")
    return lines

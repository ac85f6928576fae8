"""The cameras of `citywatch bench`'s end-to-end run: one process that puts JPEGs into S3 on a
schedule, as a site's cameras would, and announces each put as a new-frame notice.

Each camera plays a looped sample scene from its own phase: the fire scene (sure to alert: the
run's latency samples), or, for the share of cameras :func:`quiet_cameras` picks, the quiet street
scene (what most of a city's cameras show most of the time: no event, the scene verifier at its
idle pace). The quiet ones are spread evenly over the camera list.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path


def quiet_cameras(n: int, share: float) -> list[bool]:
    """Which of ``n`` cameras play the quiet scene: ``round(n * share)`` of them, evenly spread."""
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"the quiet share must be between 0 and 1, got {share}")
    quiet = round(n * share)
    return [(c + 1) * quiet // n > c * quiet // n for c in range(n)]


@dataclass
class FeedPlan:
    """What the camera process puts: ``cameras`` x ``fps`` frames/s for ``seconds``."""

    s3: dict
    cameras: list[str]
    fps: float
    seconds: float
    frame_files: list[str]
    start_at: float
    out_file: str
    first_frame: int = 0
    threads: int = 8
    #: JPEG files of the quiet scene, and which cameras play it (see :func:`quiet_cameras`)
    quiet_files: list[str] = field(default_factory=list)
    quiet: list[bool] = field(default_factory=list)
    #: MQTT settings to announce each put on (a new-frame notice, as `citywatch ingest` and MinIO's
    #: bucket notifications do); None: the workers find frames by polling only
    mqtt: dict | None = None


def run_cameras(plan: FeedPlan) -> None:  # child process: the cameras
    from pipeline.config.settings import S3Settings
    from pipeline.frames.store import FrameStore, make_minio

    scenes = {False: [Path(p).read_bytes() for p in plan.frame_files],
              True: [Path(p).read_bytes() for p in plan.quiet_files]}
    notices = None
    if plan.mqtt is not None:
        from pipeline.config.endpoints import MqttSettings
        from pipeline.frames.notices import start_notice_publisher

        notices = start_notice_publisher(MqttSettings(**plan.mqtt), f"bench-cameras-{uuid.uuid4().hex[:8]}",
                                         plan.s3["frames_bucket"])
    store = FrameStore(make_minio(S3Settings(**plan.s3)), plan.s3["frames_bucket"], on_put=notices)
    count = int(plan.seconds * plan.fps)
    n = len(plan.cameras)
    puts: dict[str, float] = {}
    lock = threading.Lock()
    # A camera uploads its frames one after the other, in time order (the key contract): frame i+1
    # of a camera waits for frame i's put, so a slow put never lets a later key land first (the
    # worker's checkpoint would step over the earlier one). Tasks are submitted in time order, so
    # a waiting task's predecessor is already running or done.
    turn = [threading.Condition() for _ in plan.cameras]
    next_frame = [0] * len(plan.cameras)

    def put(camera_index: int, i: int, due: float) -> None:
        camera = plan.cameras[camera_index]
        jpegs = scenes[bool(plan.quiet) and plan.quiet[camera_index]]
        jpeg = jpegs[(plan.first_frame + camera_index * 3 + i) % len(jpegs)]  # cameras at different phases
        issued = time.time()
        with turn[camera_index]:
            turn[camera_index].wait_for(lambda: next_frame[camera_index] == i)
        try:
            key = store.put_frame(camera, due, jpeg, test=True)
            with lock:
                puts[key] = issued
        finally:
            with turn[camera_index]:
                next_frame[camera_index] = i + 1
                turn[camera_index].notify_all()

    schedule = sorted((plan.start_at + (c / n + i) / plan.fps, c, i) for c in range(n) for i in range(count))
    with ThreadPoolExecutor(plan.threads) as pool:
        futures = []
        for due, c, i in schedule:
            delay = due - time.time()
            if delay > 0:
                time.sleep(delay)
            futures.append(pool.submit(put, c, i, due))
        errors = [str(f.exception()) for f in futures if f.exception() is not None]
    if notices is not None:
        notices.stop()
    Path(plan.out_file).write_text(json.dumps({"puts": puts, "errors": errors[:5], "ended": time.time()}))

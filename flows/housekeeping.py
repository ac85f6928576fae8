"""The `housekeeping` flow: frame retention in the frames bucket (nightly, see deploy/prefect.yaml).

All the work is in :func:`pipeline.frames.retention.delete_old_frames`; this flow only wires the
configuration to it and reports the result to Prefect.
"""

from __future__ import annotations

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from pipeline.config.settings import load_config
from pipeline.frames.retention import delete_old_frames
from pipeline.frames.store import make_minio


@task(name="delete-old-frames", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=30)
def delete_old_frames_task(config_path: str | None, frame_retention_days: float, dry_run: bool) -> dict:
    """One retention pass over every camera folder of the frames bucket."""
    config = load_config(config_path)
    client = make_minio(config.s3)
    report = delete_old_frames(client, config.s3.frames_bucket, max_age_days=frame_retention_days,
                               dry_run=dry_run)
    return report.as_dict()


@flow(name="housekeeping")
def housekeeping(config_path: str | None = None, frame_retention_days: float = 30.0,
                 dry_run: bool = False) -> dict:
    """Delete frames older than ``frame_retention_days`` (key time) from the frames bucket."""
    if not frame_retention_days > 0:
        raise ValueError(f"frame_retention_days must be > 0, got {frame_retention_days}")
    logger = get_run_logger()
    result = delete_old_frames_task(config_path, frame_retention_days, dry_run)
    logger.info("%s %d frame(s) older than %s days from %s (%d off-contract keys kept)",
                "would delete" if dry_run else "deleted", result["deleted"], frame_retention_days,
                result["bucket"], result["ignored_keys"])
    return result

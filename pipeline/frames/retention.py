"""Frame retention: delete frames older than N days from the frames bucket.

The frame time is read from the object key (the key contract), not from the upload time, and a
camera's keys sort in time order, so each camera's listing stops at its first frame that is new
enough. Objects whose keys do not follow the contract are never deleted, only counted.

On MinIO the same can be done by a lifecycle expiry rule (``deploy/minio/init-buckets.sh``);
this function is the portable way and what the ``housekeeping`` flow runs.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from minio import Minio
from minio.deleteobjects import DeleteObject

from pipeline.frames.keys import InvalidFrameKey, camera_prefix, parse_frame_key

log = logging.getLogger(__name__)

DELETE_BATCH = 1000  # S3 DeleteObjects takes at most 1000 keys per request


class RetentionError(RuntimeError):
    """The object store refused to delete some frames; the message names them."""


@dataclass
class RetentionReport:
    """What one retention pass did."""

    bucket: str
    cutoff_ts: float
    dry_run: bool = False
    deleted: int = 0
    cameras: dict[str, int] = field(default_factory=dict)
    ignored_keys: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {"bucket": self.bucket, "cutoff_ts": self.cutoff_ts, "dry_run": self.dry_run,
                "deleted": self.deleted, "cameras": dict(self.cameras),
                "ignored_keys": len(self.ignored_keys)}


def _camera_prefixes(client: Minio, bucket: str) -> list[str]:
    return sorted(obj.object_name for obj in client.list_objects(bucket, recursive=False)
                  if obj.is_dir and obj.object_name)


def _old_keys(client: Minio, bucket: str, prefix: str, cutoff_ts: float, report: RetentionReport):
    for obj in client.list_objects(bucket, prefix=prefix, recursive=True):
        key = obj.object_name
        try:
            parsed = parse_frame_key(key)
        except InvalidFrameKey:
            report.ignored_keys.append(key)
            continue
        if parsed.ts >= cutoff_ts:
            return  # keys sort in time order: everything after this one is newer
        yield key


def _delete(client: Minio, bucket: str, keys: list[str]) -> None:
    errors = list(client.remove_objects(bucket, [DeleteObject(k) for k in keys]))
    if errors:
        shown = "; ".join(f"{e.name}: {e.message}" for e in errors[:5])
        raise RetentionError(f"could not delete {len(errors)} of {len(keys)} frames in {bucket}: {shown}")


def delete_old_frames(client: Minio, bucket: str, *, max_age_days: float, now_ts: float | None = None,
                      camera_ids: list[str] | None = None, dry_run: bool = False) -> RetentionReport:
    """Delete frames whose key time is more than ``max_age_days`` before ``now_ts``.

    ``camera_ids`` limits the pass to those cameras (default: every camera folder in the bucket).
    ``dry_run`` counts without deleting.
    """
    if not max_age_days > 0:
        raise ValueError(f"max_age_days must be > 0, got {max_age_days}")
    if not client.bucket_exists(bucket):
        raise RetentionError(f"bucket {bucket!r} does not exist")
    now_ts = time.time() if now_ts is None else now_ts
    report = RetentionReport(bucket=bucket, cutoff_ts=now_ts - max_age_days * 86400, dry_run=dry_run)
    prefixes = ([camera_prefix(c) for c in camera_ids] if camera_ids is not None
                else _camera_prefixes(client, bucket))
    for prefix in prefixes:
        camera = prefix.rstrip("/")
        batch: list[str] = []
        count = 0
        for key in _old_keys(client, bucket, prefix, report.cutoff_ts, report):
            batch.append(key)
            count += 1
            if len(batch) >= DELETE_BATCH:
                if not dry_run:
                    _delete(client, bucket, batch)
                batch = []
        if batch and not dry_run:
            _delete(client, bucket, batch)
        if count:
            report.cameras[camera] = count
            report.deleted += count
    log.info("retention on %s: %s %d frames older than %.1f days (%d keys off-contract kept)",
             bucket, "would delete" if dry_run else "deleted", report.deleted, max_age_days,
             len(report.ignored_keys))
    return report

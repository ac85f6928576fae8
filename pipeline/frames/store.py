"""The frame store: camera frames in an S3 bucket (MinIO) under the object-key contract.

Listing uses ``list_objects(prefix=<camera>/, start_after=<checkpoint key>)``: keys sort in time
order, so this yields exactly the frames newer than the checkpoint. Keys outside the contract are
returned as ``rejected`` with their reason instead of breaking the listing. Transient failures
(connection refused, timeouts, HTTP 5xx) are retried with exponential backoff and jitter for a
bounded time, one log line per failure, then surface as :class:`FrameStoreUnavailable`.
"""

from __future__ import annotations

import io
import logging
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

import urllib3
from minio import Minio
from minio.error import InvalidResponseError, S3Error, ServerError

from pipeline.config.settings import S3Settings
from pipeline.frames.decode import BadFrame, decode_frame, jpeg_dimensions
from pipeline.frames.keys import FrameKey, InvalidFrameKey, camera_prefix, frame_key, last_frame_key, parse_frame_key

__all__ = [
    "BadFrame", "FrameStore", "FrameStoreUnavailable", "FrameTooLarge", "ListResult",
    "decode_frame", "jpeg_dimensions", "make_minio",
]

log = logging.getLogger(__name__)
T = TypeVar("T")
#: A listing steps over at most this many keys outside the contract, then returns what it has.
MAX_REJECTED_PER_LISTING = 10_000


class FrameStoreUnavailable(RuntimeError):
    """The S3 endpoint kept failing for the whole retry budget; try again next cycle."""


class FrameTooLarge(BadFrame):
    """An object bigger than the configured ``max_frame_bytes``."""


class FrameMissing(BadFrame):
    """An object listed earlier that no longer exists (deleted by a lifecycle rule or by hand)."""


@dataclass
class ListResult:
    """New frame keys in time order (and parsed), and keys outside the contract with the reason (``truncated``:
    the listing stopped at :data:`MAX_REJECTED_PER_LISTING` of them)."""

    keys: list[str] = field(default_factory=list)
    parsed: list[FrameKey] = field(default_factory=list)  # ``keys`` parsed (the worker needs no second parse)
    rejected: list[tuple[str, str]] = field(default_factory=list)
    truncated: bool = False


def collect_new_keys(listed: Iterable[str], last: str, limit: int, max_rejected: int) -> ListResult:
    """Read a camera's keys in listing order into a :class:`ListResult` (see :meth:`FrameStore.list_new`):
    contract keys up to ``limit``, the others rejected with the reason, stopping at the first rejected
    key after ``last`` (the last possible frame key) or at ``max_rejected`` rejections."""
    result = ListResult()
    for key in listed:
        try:
            parsed = parse_frame_key(key)  # keys outside the contract are rejected, not fed
        except InvalidFrameKey as exc:
            result.rejected.append((key, str(exc)))
            if key > last:
                break
            if len(result.rejected) >= max_rejected:
                result.truncated = True
                break
            continue
        result.keys.append(key)
        result.parsed.append(parsed)
        if len(result.keys) >= limit:
            break
    return result


def make_minio(s3: S3Settings) -> Minio:
    """A real ``minio`` client for ``s3`` with short timeouts and no silent retries inside urllib3:
    :class:`FrameStore` retries with backoff itself and logs each failure once.
    """
    http = urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=min(2.0, s3.timeout_s), read=2 * s3.timeout_s),
        retries=urllib3.Retry(total=0, redirect=0, raise_on_status=False),
        maxsize=8,
    )
    return Minio(
        s3.endpoint,
        access_key=s3.access_key.get_secret_value() if s3.access_key else None,
        secret_key=s3.secret_key.get_secret_value() if s3.secret_key else None,
        secure=s3.secure,
        region=s3.region,
        http_client=http,
    )


def _transient_reason(exc: BaseException) -> str | None:
    """A short description if ``exc`` is worth retrying (network trouble, 5xx), else None."""
    if isinstance(exc, urllib3.exceptions.MaxRetryError) and exc.reason is not None:
        return _transient_reason(exc.reason) or type(exc.reason).__name__
    if isinstance(exc, urllib3.exceptions.NewConnectionError):
        return "cannot connect: " + str(exc).rsplit("new connection: ", 1)[-1]
    if isinstance(exc, (urllib3.exceptions.TimeoutError, TimeoutError)):
        return "timed out"
    if isinstance(exc, (urllib3.exceptions.HTTPError, ConnectionError)):
        return f"connection failed ({type(exc).__name__})"
    if isinstance(exc, ServerError) and exc.status_code >= 500:
        return f"HTTP {exc.status_code}"
    if isinstance(exc, S3Error) and exc.response is not None and exc.response.status >= 500:
        return f"HTTP {exc.response.status} {exc.code}"
    if isinstance(exc, InvalidResponseError) and getattr(exc, "_code", 0) >= 500:
        return f"HTTP {exc._code} (non-S3 response)"
    return None


class FrameStore:
    """Frames of all cameras in one bucket; every call retries transient failures for a bounded time."""

    def __init__(self, client: Minio, bucket: str, *, retry_for_s: float = 10.0,
                 backoff_s: float = 0.2, backoff_max_s: float = 3.0,
                 sleep: Callable[[float], None] = time.sleep,
                 on_put: Callable[[str, int], None] | None = None) -> None:
        self.client = client
        #: called with (key, size) after each successful put_frame, e.g. a new-frame notice
        #: (pipeline.frames.notices); its failure is logged, never the put's
        self.on_put = on_put
        self.bucket = bucket
        self.retry_for_s = retry_for_s
        self.backoff_s = backoff_s
        self.backoff_max_s = backoff_max_s
        self._sleep = sleep
        self.endpoint = getattr(getattr(client, "_base_url", None), "host", "?")

    # -- retry ------------------------------------------------------------------------------
    def _call(self, operation: str, fn: Callable[[], T]) -> T:
        started = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            try:
                return fn()
            except Exception as exc:  # noqa: BLE001 - classified below, permanent errors re-raised
                reason = _transient_reason(exc)
                if reason is None:
                    raise
                elapsed = time.monotonic() - started
                left = self.retry_for_s - elapsed
                if left <= 0:
                    log.error("S3 %s %s failed (attempt %d): %s; giving up after %.1f s",
                              self.endpoint, operation, attempt, reason, elapsed)
                    raise FrameStoreUnavailable(
                        f"S3 endpoint {self.endpoint} unavailable: {operation} failed {attempt} times "
                        f"over {elapsed:.1f} s, last error: {reason}"
                    ) from None
                delay = min(left, self.backoff_max_s, self.backoff_s * 2 ** (attempt - 1) * random.uniform(0.5, 1.0))
                log.warning("S3 %s %s failed (attempt %d): %s; retrying in %.1f s",
                            self.endpoint, operation, attempt, reason, delay)
                self._sleep(delay)

    # -- operations -------------------------------------------------------------------------
    def ensure_bucket(self) -> None:
        """Create the bucket if it does not exist (a concurrent creator is fine). A least-privilege
        identity that may only put frames (a camera, `citywatch ingest`) may not even ask whether
        the bucket exists: then it is left to the administrator, and the first put says if not."""
        def run() -> None:
            try:
                if self.client.bucket_exists(self.bucket):
                    return
            except S3Error as exc:
                if exc.code != "AccessDenied":
                    raise
                log.debug("S3 %s: not allowed to look up bucket %s; assuming it exists", self.endpoint, self.bucket)
                return
            try:
                self.client.make_bucket(self.bucket)
            except S3Error as exc:
                if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                    raise
        self._call(f"ensure_bucket {self.bucket}", run)

    def put_frame(self, camera_id: str, ts: float | datetime, jpeg: bytes, test: bool = False) -> str:
        """Store one JPEG frame under the contract key for ``camera_id`` at ``ts``; return the key."""
        key = frame_key(camera_id, ts, test=test)
        self._call(f"put {self.bucket}/{key}", lambda: self.client.put_object(
            self.bucket, key, io.BytesIO(jpeg), len(jpeg), content_type="image/jpeg"))
        if self.on_put is not None:
            try:
                self.on_put(key, len(jpeg))
            except Exception as exc:  # noqa: BLE001 - the frame is stored; a lost hint costs one poll
                log.warning("frame %s stored, but its new-frame notice failed: %s", key, exc)
        return key

    def list_new(self, camera_id: str, after_key: str | None, limit: int,
                 max_rejected: int = MAX_REJECTED_PER_LISTING) -> ListResult:
        """Up to ``limit`` contract keys of ``camera_id`` after ``after_key`` (time order).

        Keys that break the contract are collected in ``rejected`` with the reason; they never
        count towards ``limit``, so junk cannot hide the frames after it. The listing stops at the
        first key sorting after every possible frame key (``<camera>/snapshot.jpg``: nothing after
        it can be a frame) and after ``max_rejected`` rejected keys (``truncated``). Callers keep
        their checkpoint on frame keys: a frame key sorting before junk may still arrive.
        """
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        prefix = camera_prefix(camera_id)
        last = last_frame_key(camera_id)

        def run() -> ListResult:
            listed = self.client.list_objects(self.bucket, prefix=prefix, recursive=True,
                                              start_after=after_key or None)
            return collect_new_keys((obj.object_name for obj in listed), last, limit, max_rejected)
        return self._call(f"list {self.bucket}/{prefix} after {after_key or '(start)'}", run)

    def get(self, key: str, max_bytes: int) -> bytes:
        """The object's bytes; :class:`FrameTooLarge` if it exceeds ``max_bytes``,
        :class:`FrameMissing` if it is gone."""
        def run() -> bytes:
            try:
                response = self.client.get_object(self.bucket, key)
            except S3Error as exc:
                if exc.code == "NoSuchKey":
                    raise FrameMissing(f"object {key} no longer exists") from None
                raise
            try:
                declared = response.headers.get("Content-Length")
                if declared is not None and int(declared) > max_bytes:
                    raise FrameTooLarge(f"object is {int(declared)} bytes, more than the {max_bytes} allowed")
                data = response.read(max_bytes + 1)
                if len(data) > max_bytes:
                    raise FrameTooLarge(f"object is more than the {max_bytes} bytes allowed")
                return data
            finally:
                response.close()
                response.release_conn()
        return self._call(f"get {self.bucket}/{key}", run)

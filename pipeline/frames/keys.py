"""The object-key contract between cameras and citywatch.

A frame is stored in the frames bucket under::

    <camera_id>/<YYYY>/<MM>/<DD>/<YYYYMMDD>T<HHMMSS>.<mmm>Z[.test].jpg

for example ``cam-01/2026/11/22/20261122T204026.123Z.jpg``. All fields are fixed width and UTC,
so the lexicographic order of a camera's keys is its time order, and ``list_objects`` with
``start_after=<last key>`` yields exactly the newer frames. The frame time is read from the key,
never from the upload time. ``.test`` marks frames replayed by testers: alerts raised from them
carry ``"test": true``.

Camera ids must match ``[A-Za-z0-9_-]{1,64}``: they end up inside MQTT topics, where ``+``, ``#``
and ``/`` would be an injection.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from pipeline.common.ids import CAMERA_ID, full_match

CAMERA_ID_PATTERN = CAMERA_ID  # the camera id pattern, unanchored (pipeline.common.ids)
_KEY_RE = re.compile(
    rf"^(?P<camera>{CAMERA_ID_PATTERN})/(?P<y>\d{{4}})/(?P<m>\d{{2}})/(?P<d>\d{{2}})/"
    r"(?P<stamp>(?P<date>\d{8})T(?P<time>\d{6})\.(?P<ms>\d{3})Z)(?P<test>\.test)?\.jpg$"
)
_STAMP_FORMAT = "%Y%m%dT%H%M%S"


class InvalidCameraId(ValueError):
    """A camera id outside ``[A-Za-z0-9_-]{1,64}``."""


class InvalidFrameKey(ValueError):
    """An object key that does not follow the frame key contract."""


@dataclass(frozen=True, order=True)
class FrameKey:
    """A parsed frame key: which camera, when (UTC), and whether it is test footage."""

    camera_id: str
    time: datetime
    test: bool = False

    @property
    def ts(self) -> float:
        """Frame time as a POSIX timestamp (seconds)."""
        return self.time.timestamp()

    def __str__(self) -> str:
        return frame_key(self.camera_id, self.time, test=self.test)


def validate_camera_id(camera_id: object) -> str:
    """Return ``camera_id`` if it is a legal camera id, else raise :class:`InvalidCameraId`."""
    if not full_match(CAMERA_ID, camera_id):
        shown = repr(camera_id)[:80]
        raise InvalidCameraId(
            f"camera id {shown} is not allowed: use 1-64 characters from A-Z a-z 0-9 _ -"
        )
    assert isinstance(camera_id, str)  # full_match accepts only a str
    return camera_id


def _as_utc(when: datetime | float) -> datetime:
    if isinstance(when, (int, float)):
        return datetime.fromtimestamp(float(when), tz=UTC)
    if when.tzinfo is None:
        raise ValueError("frame time must be timezone-aware (UTC)")
    return when.astimezone(UTC)


def frame_key(camera_id: str, when: datetime | float, *, test: bool = False) -> str:
    """Build the object key of a frame taken by ``camera_id`` at ``when`` (aware datetime or POSIX ts)."""
    validate_camera_id(camera_id)
    t = _as_utc(when)
    if not 1970 <= t.year <= 9999:
        raise ValueError(f"frame time {t.isoformat()} is out of range")
    stamp = f"{t.strftime(_STAMP_FORMAT)}.{t.microsecond // 1000:03d}Z"
    suffix = ".test.jpg" if test else ".jpg"
    return f"{camera_id}/{t:%Y}/{t:%m}/{t:%d}/{stamp}{suffix}"


def parse_frame_key(key: str) -> FrameKey:
    """Parse an object key; raise :class:`InvalidFrameKey` naming what is wrong."""
    if not isinstance(key, str):
        raise InvalidFrameKey(f"object key must be a string, got {type(key).__name__}")
    m = _KEY_RE.fullmatch(key)
    if not m:
        camera = key.split("/", 1)[0]
        if not full_match(CAMERA_ID, camera):
            raise InvalidFrameKey(f"object key {key[:120]!r}: camera id {camera[:70]!r} is not allowed")
        raise InvalidFrameKey(
            f"object key {key[:120]!r} does not match "
            "<camera_id>/<YYYY>/<MM>/<DD>/<YYYYMMDD>T<HHMMSS>.<mmm>Z[.test].jpg"
        )
    if m["date"] != m["y"] + m["m"] + m["d"]:
        raise InvalidFrameKey(f"object key {key!r}: folder date and file name date differ")
    try:
        t = datetime.strptime(f"{m['date']}T{m['time']}", _STAMP_FORMAT)
    except ValueError as exc:
        raise InvalidFrameKey(f"object key {key!r}: invalid timestamp ({exc})") from None
    t = t.replace(microsecond=int(m["ms"]) * 1000, tzinfo=UTC)
    return FrameKey(camera_id=m["camera"], time=t, test=m["test"] is not None)


def camera_prefix(camera_id: str) -> str:
    """The listing prefix of one camera's frames."""
    return validate_camera_id(camera_id) + "/"


def last_frame_key(camera_id: str) -> str:
    """The greatest key a frame of ``camera_id`` can have: objects sorting after it (e.g.
    ``<camera>/snapshot.jpg``) can hide no frame, so a listing may stop there."""
    return f"{camera_prefix(camera_id)}9999/12/31/99991231T235959.999Z.test.jpg"

"""The I/O ends the :class:`~pipeline.processing.worker.Worker` talks to, as small Protocols.

Each one lists exactly what the worker and its :class:`~pipeline.processing.runner.WatchSession` use:
the production classes (:class:`~pipeline.frames.store.FrameStore`,
:class:`~pipeline.alerts.evidence.EvidenceStore`, :class:`~pipeline.delivery.publisher.MqttPublisher`)
provide them, and so do the in-memory fakes the logic tests run on (``tests/fakes.py``), so those
tests need no S3 server and no broker.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np

from pipeline.alerts.evidence import Evidence
from pipeline.alerts.incidents import IncidentEvent
from pipeline.frames.store import ListResult


@runtime_checkable
class FrameSource(Protocol):
    """Where a camera's frames come from: listed by object key in time order, then fetched.

    ``list_new`` and ``get`` raise :class:`~pipeline.frames.store.FrameStoreUnavailable` when the
    store cannot be reached; ``get`` raises :class:`~pipeline.frames.store.BadFrame` (or a subclass)
    for a frame that is too large or gone."""

    def ensure_bucket(self) -> None: ...

    def list_new(self, camera_id: str, after_key: str | None, limit: int) -> ListResult: ...

    def get(self, key: str, max_bytes: int) -> bytes: ...


@runtime_checkable
class SnapshotStore(Protocol):
    """Where an alert's annotated snapshot is kept; raises
    :class:`~pipeline.alerts.evidence.EvidenceError` when it cannot be stored."""

    def ensure_bucket(self) -> None: ...

    def store(self, event: IncidentEvent, frame: np.ndarray, frame_key: str | None) -> Evidence: ...


@runtime_checkable
class AlertPublisher(Protocol):
    """Sends the outbox's messages and the retained camera statuses to the broker."""

    def start(self) -> Any: ...

    def stop(self, timeout_s: float = 5.0) -> None: ...

    def publish_status(self, topic: str, payload: Any, retain: bool = True) -> bool: ...

    def flush(self, timeout_s: float = 5.0) -> int: ...

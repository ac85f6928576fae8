"""The worker's durable state in one SQLite file: alert outbox, per-camera checkpoints, incident state.

Why SQLite in WAL mode with ``synchronous=FULL``: WAL lets readers (``citywatch status``, the
publisher) run while the flow writes, and a transaction is all-or-nothing under ``kill -9`` in
any synchronous mode. ``FULL`` additionally fsyncs the WAL at every commit, so a commit that
returned survives a power cut on an edge box too; with ``NORMAL`` the last commits could roll
back after power loss. Commits happen once per camera batch (tens per minute, ~0.3-3 ms each
measured here), so the fsync costs nothing that matters. Deleting delivered rows skips the fsync
(``NORMAL``): losing a delete to a power cut only re-sends an alert, which consumers de-duplicate.

One connection is shared by all threads behind a lock (the MQTT network thread and the flow
thread both use the store); other processes may open the same file (busy timeout 10 s).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.frames.keys import validate_camera_id

__all__ = ["OutboxMessage", "OutboxRow", "StateStore", "StateError"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    topic      TEXT    NOT NULL,
    payload    BLOB    NOT NULL,
    qos        INTEGER NOT NULL DEFAULT 1,
    retain     INTEGER NOT NULL DEFAULT 0,
    created_at REAL    NOT NULL
);
CREATE TABLE IF NOT EXISTS dead_letter (
    id         INTEGER PRIMARY KEY,
    topic      TEXT    NOT NULL,
    payload    BLOB    NOT NULL,
    qos        INTEGER NOT NULL,
    retain     INTEGER NOT NULL,
    created_at REAL    NOT NULL,
    reason     TEXT    NOT NULL,
    failed_at  REAL    NOT NULL
);
CREATE TABLE IF NOT EXISTS checkpoints (
    camera_id  TEXT PRIMARY KEY,
    last_key   TEXT NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS tracker_state (
    camera_id  TEXT PRIMARY KEY,
    state      TEXT NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS saved_state (name TEXT PRIMARY KEY, value BLOB NOT NULL, updated_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS counters (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS acks (
    incident_id TEXT NOT NULL,
    operator    TEXT NOT NULL,
    acked_at    TEXT NOT NULL,
    payload     BLOB NOT NULL,
    recorded_at REAL NOT NULL,
    PRIMARY KEY (incident_id, operator, acked_at)
);
"""


class StateError(RuntimeError):
    """The state file cannot be opened or used (path, permissions, corruption)."""


@dataclass(frozen=True)
class OutboxMessage:
    """A message to publish, as handed to :meth:`StateStore.commit_batch`."""

    topic: str
    payload: bytes
    retain: bool = False
    qos: int = 1

    def __post_init__(self) -> None:
        if not self.topic or any(c in self.topic for c in "+#\x00"):
            raise ValueError(f"outbox topic {self.topic!r} is empty or holds a wildcard/NUL")
        if not isinstance(self.payload, (bytes, bytearray)):
            raise TypeError(f"outbox payload must be bytes, got {type(self.payload).__name__}")
        if self.qos not in (0, 1, 2):
            raise ValueError(f"qos must be 0, 1 or 2, got {self.qos}")


@dataclass(frozen=True)
class OutboxRow:
    """A stored outbox message; ``id`` gives the publishing order."""

    id: int
    topic: str
    payload: bytes
    qos: int
    retain: bool


class StateStore:
    """SQLite state of one worker; see the module docstring for durability and threading."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=10.0, isolation_level=None,
                                       check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise StateError(f"cannot open state database {self.path}: {exc}") from None
        self._lock = threading.RLock()

    # -- transactions -------------------------------------------------------------------------
    def _write(self, fn, *args: Any) -> Any:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                result = fn(*args)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            return result

    def commit_batch(self, camera_id: str, last_key: str | None, messages: Iterable[OutboxMessage],
                     tracker_state: dict | None, counters: dict[str, int] | None = None) -> None:
        """Store a camera batch's alerts, its checkpoint and incident state in ONE transaction.

        ``last_key`` None leaves the checkpoint as it is; ``tracker_state`` None leaves it as well.
        ``counters`` (name -> increment) are added in the same transaction, so a count of processed
        frames stays exact across a crash.
        """
        validate_camera_id(camera_id)
        msgs = list(messages)
        for m in msgs:
            if not isinstance(m, OutboxMessage):
                raise TypeError(f"messages must be OutboxMessage, got {type(m).__name__}")
        state_json = None if tracker_state is None else json.dumps(tracker_state, separators=(",", ":"))

        def work() -> None:
            now = time.time()
            self._db.executemany(
                "INSERT INTO outbox(topic, payload, qos, retain, created_at) VALUES (?,?,?,?,?)",
                [(m.topic, bytes(m.payload), m.qos, int(m.retain), now) for m in msgs])
            if last_key is not None:
                self._db.execute(
                    "INSERT INTO checkpoints(camera_id, last_key, updated_at) VALUES (?,?,?) "
                    "ON CONFLICT(camera_id) DO UPDATE SET last_key=excluded.last_key, "
                    "updated_at=excluded.updated_at", (camera_id, last_key, now))
            if state_json is not None:
                self._db.execute(
                    "INSERT INTO tracker_state(camera_id, state, updated_at) VALUES (?,?,?) "
                    "ON CONFLICT(camera_id) DO UPDATE SET state=excluded.state, "
                    "updated_at=excluded.updated_at", (camera_id, state_json, now))
            self._bump("alerts_enqueued", len(msgs))
            for name, by in (counters or {}).items():
                self._bump(name, by)

        self._write(work)

    def enqueue(self, messages: Iterable[OutboxMessage]) -> None:
        """Add messages to the outbox without touching any checkpoint."""
        msgs = list(messages)
        now = time.time()
        self._write(lambda: self._db.executemany(
            "INSERT INTO outbox(topic, payload, qos, retain, created_at) VALUES (?,?,?,?,?)",
            [(m.topic, bytes(m.payload), m.qos, int(m.retain), now) for m in msgs]))

    # -- reads --------------------------------------------------------------------------------
    def _one(self, sql: str, args: tuple) -> Any:
        with self._lock:
            row = self._db.execute(sql, args).fetchone()
        return None if row is None else row[0]

    def checkpoint(self, camera_id: str) -> str | None:
        """Key of the last frame whose alerts are safely in the outbox, or None."""
        return self._one("SELECT last_key FROM checkpoints WHERE camera_id=?", (camera_id,))

    def checkpoints(self) -> dict[str, str]:
        with self._lock:
            return dict(self._db.execute("SELECT camera_id, last_key FROM checkpoints").fetchall())

    def tracker_state(self, camera_id: str) -> dict | None:
        """The incident tracker state stored with the camera's last batch, or None."""
        text = self._one("SELECT state FROM tracker_state WHERE camera_id=?", (camera_id,))
        return None if text is None else json.loads(text)

    def pending(self, limit: int = 100, after_id: int = 0) -> list[OutboxRow]:
        """Oldest outbox rows first (id order), at most ``limit``, with id > ``after_id``."""
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        with self._lock:
            rows = self._db.execute(
                "SELECT id, topic, payload, qos, retain FROM outbox WHERE id > ? ORDER BY id LIMIT ?",
                (after_id, limit)).fetchall()
        return [OutboxRow(i, t, bytes(p), q, bool(r)) for i, t, p, q, r in rows]

    def outbox_size(self) -> int:
        return int(self._one("SELECT COUNT(*) FROM outbox", ()))

    def dead_letters(self) -> list[tuple[int, str, str]]:
        """(id, topic, reason) of messages the broker refused for good."""
        with self._lock:
            return self._db.execute("SELECT id, topic, reason FROM dead_letter ORDER BY id").fetchall()

    # -- removal ------------------------------------------------------------------------------
    def delete(self, ids: Iterable[int]) -> int:
        """Remove acknowledged rows; returns how many existed."""
        id_list = [(int(i),) for i in ids]
        if not id_list:
            return 0

        def work() -> int:
            cur = self._db.executemany("DELETE FROM outbox WHERE id=?", id_list)
            self._bump("alerts_delivered", cur.rowcount)
            return cur.rowcount

        # A delete lost to a power cut only means a duplicate delivery (consumers de-duplicate by
        # incident id and seq), so it skips the fsync: one per PUBACK batch would cap throughput.
        with self._lock:
            self._db.execute("PRAGMA synchronous=NORMAL")
            try:
                return self._write(work)
            finally:
                self._db.execute("PRAGMA synchronous=FULL")

    def move_to_dead_letter(self, row_id: int, reason: str) -> None:
        """Take a row the broker refused (e.g. not authorized) out of the outbox, keeping it."""
        def work() -> None:
            self._db.execute(
                "INSERT OR REPLACE INTO dead_letter SELECT id, topic, payload, qos, retain, created_at, ?, ? "
                "FROM outbox WHERE id=?", (reason, time.time(), row_id))
            self._db.execute("DELETE FROM outbox WHERE id=?", (row_id,))
            self._bump("alerts_refused", 1)

        self._write(work)

    # -- operator acknowledgements (pipeline.delivery.acks) --------------------------------------------
    def record_ack(self, ack: Any, payload: bytes) -> bool:
        """Store an :class:`~pipeline.delivery.acks.AckMessage`; False if the same ack was already recorded."""
        def work() -> bool:
            cur = self._db.execute(
                "INSERT OR IGNORE INTO acks(incident_id, operator, acked_at, payload, recorded_at) "
                "VALUES (?,?,?,?,?)", (ack.incident_id, ack.operator, ack.time.isoformat(), bytes(payload),
                                       time.time()))
            self._bump("acks_recorded", cur.rowcount)
            return cur.rowcount == 1

        return self._write(work)

    def acks(self, incident_id: str | None = None) -> list[tuple[str, str, str]]:
        """(incident_id, operator, acked_at ISO) of recorded acks, oldest first."""
        sql = "SELECT incident_id, operator, acked_at FROM acks"
        args: tuple = ()
        if incident_id is not None:
            sql, args = sql + " WHERE incident_id=?", (incident_id,)
        with self._lock:
            return self._db.execute(sql + " ORDER BY recorded_at, rowid", args).fetchall()

    def save_values(self, values: dict[str, bytes]) -> None:
        """Store named blobs kept between processes (:mod:`pipeline.state.cameras`), in one transaction."""
        now = time.time()
        self._write(lambda: self._db.executemany(
            "INSERT OR REPLACE INTO saved_state(name, value, updated_at) VALUES (?,?,?)",
            [(name, bytes(value), now) for name, value in values.items()]))

    def saved_value(self, name: str) -> bytes | None:
        return self._one("SELECT value FROM saved_state WHERE name=?", (name,))

    # -- counters -----------------------------------------------------------------------------
    def _bump(self, name: str, by: int) -> None:
        if by:
            self._db.execute("INSERT INTO counters(name, value) VALUES (?, ?) "
                             "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value", (name, by))

    def add_counter(self, name: str, by: int = 1) -> None:
        self._write(self._bump, name, by)

    def counters(self) -> dict[str, int]:
        with self._lock:
            return dict(self._db.execute("SELECT name, value FROM counters").fetchall())

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> StateStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

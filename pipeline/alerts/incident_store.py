"""The console's incident store: every alert and acknowledgement, and each incident's current view,
in a real database (PostgreSQL through psycopg 3, or SQLite embedded) via SQLAlchemy Core.

Three tables (names carry ``table_prefix``): ``incidents`` (one row per incident: searchable
columns plus the board's JSON view), ``alerts`` (every alert payload as received, one per
incident and seq) and ``acks`` (every acknowledgement). The console writes through it on every
change and rebuilds its board from :meth:`IncidentStore.board` after a restart.
"""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    func,
    or_,
    select,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

__all__ = ["IncidentStore", "StoreError", "SEARCH_FIELDS", "store_url", "epoch"]

SEARCH_FIELDS = ("type", "camera_id", "district", "state", "test")
SEVERITIES = ("minor", "moderate", "severe", "extreme")


class StoreError(RuntimeError):
    """The incident database cannot be opened or used (the message names the database, no password)."""


def store_url(url: str | None, state_dir: Path) -> str:
    """The SQLAlchemy URL: ``postgresql://`` gets the psycopg 3 driver, none means SQLite in ``state_dir``."""
    if not url:
        return f"sqlite:///{Path(state_dir) / 'console.db'}"
    if url.startswith("postgresql://"):
        return "postgresql+psycopg://" + url[len("postgresql://"):]
    return url


def epoch(iso: str | None) -> float | None:
    """Seconds since 1970 of an ISO 8601 time (``Z`` allowed), None for None or garbage."""
    if not iso:
        return None
    try:
        when = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except (TypeError, ValueError):
        return None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def _tables(prefix: str) -> tuple[MetaData, Table, Table, Table]:
    md = MetaData()
    incidents = Table(
        f"{prefix}incidents", md,
        Column("incident_id", String(200), primary_key=True),
        Column("type", String(64), index=True), Column("camera_id", String(64), index=True),
        Column("camera_name", String(200)), Column("district", String(120), index=True),
        Column("test", Boolean, nullable=False, default=False), Column("state", String(16), index=True),
        Column("severity", String(16)), Column("peak_severity", String(16)), Column("severity_rank", Integer),
        Column("started_ts", Float, index=True), Column("ended_ts", Float), Column("updated_ts", Float),
        Column("ack_operator", String(200)), Column("ack_ts", Float), Column("escalated_ts", Float),
        Column("doc", Text, nullable=False))
    alerts = Table(
        f"{prefix}alerts", md,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("incident_id", String(200), nullable=False, index=True), Column("seq", Integer, nullable=False),
        Column("received_ts", Float, nullable=False), Column("payload", Text, nullable=False),
        UniqueConstraint("incident_id", "seq", name=f"{prefix}alerts_once"))
    acks = Table(
        f"{prefix}acks", md,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("incident_id", String(200), nullable=False, index=True), Column("operator", String(200)),
        Column("ack_ts", Float), Column("received_ts", Float, nullable=False), Column("payload", Text, nullable=False))
    return md, incidents, alerts, acks


class IncidentStore:
    """One interface, two backends (SQLite file or PostgreSQL); thread-safe (a connection pool)."""

    def __init__(self, url: str, table_prefix: str = "console_") -> None:
        self.url = url
        self.dialect = url.split(":", 1)[0].split("+", 1)[0]
        self._md, self.incidents, self.alerts, self.acks = _tables(table_prefix)
        self._write_lock = threading.Lock()  # SQLite takes one writer at a time; keep writes in order
        try:
            if self.dialect == "sqlite":
                self.engine: Engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
                event.listen(self.engine, "connect", _sqlite_pragmas)
            else:
                self.engine = create_engine(url, pool_pre_ping=True, pool_size=4, max_overflow=4)
            self._md.create_all(self.engine)
        except SQLAlchemyError as exc:
            raise StoreError(f"incident store {self.where}: {_reason(exc)}") from None

    @property
    def where(self) -> str:
        """The database without its password (for messages)."""
        return self.engine.url.render_as_string(hide_password=True) if hasattr(self, "engine") else self.dialect

    def close(self) -> None:
        self.engine.dispose()

    def drop(self) -> None:
        """Drop the store's tables (tests)."""
        self._md.drop_all(self.engine)

    # -- writing ------------------------------------------------------------------------------
    def save(self, inc: dict[str, Any], alert: tuple[int, bytes] | None = None,
             ack: dict[str, Any] | None = None, now: float | None = None) -> None:
        """Upsert the incident's view, with the alert (seq, payload) or ack that changed it."""
        now = now if now is not None else datetime.now(UTC).timestamp()
        row = _row(inc, now)
        with self._write_lock, self.engine.begin() as conn:
            conn.execute(self._upsert(self.incidents, row, ["incident_id"]))
            if alert is not None:
                seq, payload = alert
                stmt = self._insert(self.alerts).values(incident_id=inc["incident_id"], seq=seq, received_ts=now,
                                                        payload=payload.decode("utf-8", "replace"))
                conn.execute(stmt.on_conflict_do_nothing(index_elements=["incident_id", "seq"]))
            if ack is not None:
                conn.execute(self.acks.insert().values(
                    incident_id=ack["incident_id"], operator=ack.get("operator"), ack_ts=epoch(ack.get("time")),
                    received_ts=now, payload=json.dumps(ack, ensure_ascii=False)))

    def _insert(self, table: Table):
        if self.dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as pg_insert
            return pg_insert(table)
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert
        return sqlite_insert(table)

    def _upsert(self, table: Table, row: dict[str, Any], keys: list[str]):
        stmt = self._insert(table).values(**row)
        return stmt.on_conflict_do_update(index_elements=keys, set_={k: v for k, v in row.items() if k not in keys})

    # -- reading ------------------------------------------------------------------------------
    def board(self, limit: int = 500) -> list[dict[str, Any]]:
        """The incidents a restarted console shows: every open one, then the newest others, up to
        ``limit`` in all (open ones first), oldest first (the order the board inserts them)."""
        t = self.incidents
        with self.engine.connect() as conn:
            open_docs = conn.execute(select(t.c.doc).where(t.c.state != "end").order_by(t.c.started_ts.desc())
                                     .limit(limit)).scalars().all()
            rest = conn.execute(select(t.c.doc).where(t.c.state == "end").order_by(t.c.started_ts.desc())
                                .limit(max(0, limit - len(open_docs)))).scalars().all()
        docs = [json.loads(d) for d in (*open_docs, *rest)]
        return sorted(docs, key=lambda d: (epoch(d.get("started_at")) or 0.0, d["incident_id"]))

    def search(self, *, since: float | None = None, until: float | None = None, limit: int = 200, offset: int = 0,
               min_severity: str | None = None, **equal: Any) -> list[dict[str, Any]]:
        """Incidents started in [since, until), matching every given field of :data:`SEARCH_FIELDS`
        (``camera_id``, ``type``, ``district``, ``state`` — ``open`` means not ended —, ``test``),
        newest first; each is the board's view plus ``ack_operator`` and ``escalated_ts``."""
        t = self.incidents
        query = select(t.c.doc).order_by(t.c.started_ts.desc(), t.c.incident_id).limit(limit).offset(offset)
        if since is not None:
            query = query.where(t.c.started_ts >= since)
        if until is not None:
            query = query.where(t.c.started_ts < until)
        if min_severity is not None:
            query = query.where(t.c.severity_rank >= SEVERITIES.index(min_severity) + 1)
        for name, value in equal.items():
            if name not in SEARCH_FIELDS:
                raise ValueError(f"cannot search incidents by {name!r}; use one of {', '.join(SEARCH_FIELDS)}")
            if value is None:
                continue
            if name == "state" and value == "open":
                query = query.where(or_(t.c.state != "end", t.c.state.is_(None)))
            else:
                query = query.where(t.c[name] == value)
        with self.engine.connect() as conn:
            return [json.loads(d) for d in conn.execute(query).scalars()]

    def get(self, incident_id: str) -> dict[str, Any] | None:
        t = self.incidents
        with self.engine.connect() as conn:
            doc = conn.execute(select(t.c.doc).where(t.c.incident_id == incident_id)).scalar_one_or_none()
        return None if doc is None else json.loads(doc)

    def messages(self, incident_id: str) -> list[dict[str, Any]]:
        """Every alert payload of an incident, by seq (as received)."""
        a = self.alerts
        with self.engine.connect() as conn:
            rows = conn.execute(select(a.c.payload).where(a.c.incident_id == incident_id).order_by(a.c.seq))
            return [json.loads(p) for p in rows.scalars()]

    def ack_log(self, incident_id: str | None = None) -> list[dict[str, Any]]:
        a = self.acks
        query = select(a.c.payload).order_by(a.c.id)
        if incident_id is not None:
            query = query.where(a.c.incident_id == incident_id)
        with self.engine.connect() as conn:
            return [json.loads(p) for p in conn.execute(query).scalars()]

    def count(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(self.incidents)).scalar_one())


def _row(inc: dict[str, Any], now: float) -> dict[str, Any]:
    ack = inc.get("ack") or {}
    sev = inc.get("severity")
    return {
        "incident_id": inc["incident_id"], "type": inc.get("type"), "camera_id": inc.get("camera_id"),
        "camera_name": inc.get("camera_name"), "district": inc.get("district") or "", "test": bool(inc.get("test")),
        "state": inc.get("state"), "severity": sev, "peak_severity": inc.get("peak_severity"),
        "severity_rank": SEVERITIES.index(sev) + 1 if sev in SEVERITIES else 0,
        "started_ts": epoch(inc.get("started_at")), "ended_ts": epoch(inc.get("ended_at")), "updated_ts": now,
        "ack_operator": ack.get("operator"), "ack_ts": epoch(ack.get("time")),
        "escalated_ts": epoch(inc.get("escalated_at")), "doc": json.dumps(inc, ensure_ascii=False),
    }


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def _reason(exc: SQLAlchemyError) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return text[0] if text else exc.__class__.__name__


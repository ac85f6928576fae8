"""The console's REST API over the incident store: ``/api/incidents`` (JSON), ``/api/incidents.csv``,
``/api/incidents/<id>`` (with every alert message as received) and ``/api/cameras`` (each camera's
last report and its judged ``health``: stale, offline or worker offline when reports stopped).

Query parameters of the incident search: ``since`` / ``until`` (ISO 8601 with offset, or epoch
seconds), ``type``, ``camera``, ``district``, ``state`` (``open``, ``start``, ``update``,
``end``), ``test`` (``true`` / ``false``), ``min_severity``, ``limit`` (1-5000, default 200),
``offset``. CSV times are in the console's time zone, with their offset.
"""

from __future__ import annotations

import csv
import io
import time
from datetime import tzinfo
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from pipeline.alerts.incident_store import IncidentStore, epoch
from pipeline.app.console.board import IncidentBoard
from pipeline.app.console.camera_health import camera_health
from pipeline.common.i18n import Catalogue, local_time

__all__ = ["IncidentApi", "QueryError", "parse_query"]

CSV_COLUMNS = ("incident_id", "type", "state", "severity", "peak_severity", "test", "camera_id", "camera_name",
               "district", "started", "ended", "acknowledged_by", "acknowledged", "escalated", "last_seq", "measurements")
STATES = ("open", "start", "update", "end")
SEVERITIES = ("minor", "moderate", "severe", "extreme")


class QueryError(ValueError):
    """A search parameter that cannot be used (the message names it)."""


def _time(name: str, text: str) -> float:
    try:
        return float(text)
    except ValueError:
        pass
    ts = epoch(text) if ("+" in text[10:] or text.endswith("Z") or "-" in text[10:]) else None
    if ts is None:
        raise QueryError(f"{name}: {text[:40]!r} is not a time; use ISO 8601 with an offset "
                         "(2026-12-02T18:00:00+07:00) or epoch seconds")
    return ts


def parse_query(params: Any) -> dict[str, Any]:
    """Keyword arguments of :meth:`IncidentStore.search` from a request's query parameters."""
    known = {"since", "until", "type", "camera", "district", "state", "test", "min_severity", "limit", "offset"}
    unknown = sorted(set(params) - known)
    if unknown:
        raise QueryError(f"unknown parameter {unknown[0]!r}; use {', '.join(sorted(known))}")
    out: dict[str, Any] = {}
    for name in ("since", "until"):
        if params.get(name):
            out[name] = _time(name, params[name])
    for name, column in (("type", "type"), ("camera", "camera_id"), ("district", "district")):
        if params.get(name):
            out[column] = params[name][:200]
    if params.get("state"):
        if params["state"] not in STATES:
            raise QueryError(f"state: use one of {', '.join(STATES)}")
        out["state"] = params["state"]
    if params.get("test"):
        if params["test"] not in ("true", "false"):
            raise QueryError("test: use true or false")
        out["test"] = params["test"] == "true"
    if params.get("min_severity"):
        if params["min_severity"] not in SEVERITIES:
            raise QueryError(f"min_severity: use one of {', '.join(SEVERITIES)}")
        out["min_severity"] = params["min_severity"]
    for name, low, high, default in (("limit", 1, 5000, 200), ("offset", 0, 10_000_000, 0)):
        text = params.get(name) or str(default)
        if not text.isdigit() or not low <= int(text) <= high:
            raise QueryError(f"{name}: use a whole number from {low} to {high}")
        out[name] = int(text)
    return out


class IncidentApi:
    """Handlers of the REST routes; ``store`` None answers 503 (the console keeps no history).
    ``health_after_s`` is (stale, offline) seconds without a camera report, as in ``config.health``;
    ``words`` the console language's catalogue, for the CSV's measurements."""

    def __init__(self, board: IncidentBoard, store: IncidentStore | None, zone: tzinfo, headers: dict[str, str],
                 health_after_s: tuple[float, float] = (30.0, 120.0), words: Catalogue | None = None) -> None:
        self.board, self.store, self.zone, self.headers = board, store, zone, headers
        self.stale_after_s, self.offline_after_s = health_after_s
        self.words = words  # the CSV's measurements in plain words with units; None: key=value

    def _no_store(self) -> Response:
        return JSONResponse({"error": "this console runs without an incident store"}, 503, headers=self.headers)

    async def _search(self, request: Request) -> list[dict[str, Any]] | Response:
        if self.store is None:
            return self._no_store()
        try:
            query = parse_query(request.query_params)
        except QueryError as exc:
            return JSONResponse({"error": str(exc)}, 400, headers=self.headers)
        store = self.store
        return await run_in_threadpool(lambda: store.search(**query))

    async def incidents(self, request: Request) -> Response:
        found = await self._search(request)
        if isinstance(found, Response):
            return found
        return JSONResponse({"incidents": found, "count": len(found)}, headers=self.headers)

    async def incidents_csv(self, request: Request) -> Response:
        found = await self._search(request)
        if isinstance(found, Response):
            return found
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(CSV_COLUMNS)
        for inc in found:
            writer.writerow(self._csv_row(inc))
        return Response(out.getvalue().encode("utf-8-sig"), media_type="text/csv; charset=utf-8",  # BOM: Excel reads UTF-8
                        headers={**self.headers, "Content-Disposition": 'attachment; filename="incidents.csv"'})

    def _local(self, iso: str | None) -> str:
        ts = epoch(iso)
        return local_time(ts, self.zone) if ts is not None else ""

    def _figure(self, key: str, value: Any) -> str:
        """``diện tích cháy 6.5 %`` (plain words and unit in the console's language), ``key=value`` without one."""
        if self.words is None or not isinstance(value, (int, float)):
            return f"{key}={value}"
        label, text = self.words.measurement(key, float(value))
        return f"{label} {text}"

    def _csv_row(self, inc: dict[str, Any]) -> list[Any]:
        ack = inc.get("ack") or {}
        figures = "; ".join(self._figure(k, v) for k, v in sorted((inc.get("measurements") or {}).items()))
        row = [inc.get("incident_id"), inc.get("type"), inc.get("state"), inc.get("severity"), inc.get("peak_severity"),
               "true" if inc.get("test") else "false", inc.get("camera_id"), inc.get("camera_name"), inc.get("district"),
               self._local(inc.get("started_at")), self._local(inc.get("ended_at")), ack.get("operator", ""),
               self._local(ack.get("time")), self._local(inc.get("escalated_at")), inc.get("seq"), figures]
        # a cell starting with = + - @ would be a formula to a spreadsheet: quote it as text
        return [f"'{v}" if isinstance(v, str) and v[:1] in ("=", "+", "-", "@") else v for v in row]

    async def incident(self, request: Request) -> Response:
        iid = request.path_params["incident_id"]
        inc, alerts = self.board.incident(iid), []
        if self.store is not None:
            inc = inc or await run_in_threadpool(self.store.get, iid)
            alerts = await run_in_threadpool(self.store.messages, iid)
        if inc is None:
            return JSONResponse({"error": f"no incident {iid}"}, 404, headers=self.headers)
        return JSONResponse({"incident": inc, "alerts": alerts}, headers=self.headers)

    async def cameras(self, request: Request) -> Response:
        workers, now = self.board.snapshot()["workers"], time.time()
        cameras = [{**cam, "health": camera_health(cam.get("status"), workers, now, self.stale_after_s,
                                                   self.offline_after_s)} for cam in self.board.cameras()]
        return JSONResponse({"cameras": cameras, "workers": workers}, headers=self.headers)

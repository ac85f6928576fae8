"""The console web server (Starlette): the page, a Server-Sent Events feed and the ack endpoint.

Routes: ``/`` page, ``/static/<file>`` (and ``vendor/`` Leaflet), ``/api/state`` (JSON snapshot),
``/api/events`` (SSE: a ``snapshot`` then ``incident``/``camera``/``workers``/``broker`` deltas),
``/api/i18n`` (the page's strings), ``POST /api/incidents/<id>/ack`` (JSON ``{"operator": ...,
"note": ...}`` -> MQTT ``<prefix>/ack/<id>``), the REST API of :mod:`pipeline.app.console.api`
(``/api/incidents``, ``/api/incidents.csv``, ``/api/incidents/<id>``, ``/api/cameras``), ``/healthz``.
``create_app(extra_routes=...)`` adds more (e.g. metrics).

With an incident store the board is rebuilt from it at start-up and every change is written
through; a background tick escalates incidents left unacknowledged (``console.alarm``) and
retries writes a database error held back. Alarms (new and escalated) go to the pusher.

Auth: with a token every route but ``/healthz`` needs ``Authorization: Bearer <token>`` or the
``citywatch_console`` cookie (set by opening ``/?token=<token>`` once). Without a token the
server only answers requests addressed to a loopback host name (guards against DNS rebinding);
:func:`check_bind` refuses non-loopback binds without a token. The console never holds S3
credentials: snapshots are the presigned URLs carried by the alerts.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import logging
import socket
import time
from collections.abc import Iterable
from contextlib import asynccontextmanager, suppress
from importlib import resources
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from pipeline.alerts.incident_store import IncidentStore
from pipeline.alerts.push import IncidentPusher
from pipeline.app.console.api import IncidentApi
from pipeline.app.console.board import IncidentBoard
from pipeline.app.console.bridge import AckNotSent, AckSender, ConsoleSubscriber, PageHub
from pipeline.app.console.login import login_page
from pipeline.common.i18n import LANGUAGES, MEASURE_KINDS, catalogue
from pipeline.config.settings import Config
from pipeline.delivery.acks import AckError, make_ack
from pipeline.processing.metrics import metrics_endpoint, watch_console_board

__all__ = ["create_app", "check_bind", "ConsoleBindError", "COOKIE"]

log = logging.getLogger(__name__)
COOKIE = "citywatch_console"
LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1", "[::1]"}
STATIC_TYPES = {".js": "text/javascript", ".css": "text/css", ".html": "text/html", ".svg": "image/svg+xml",
                ".png": "image/png"}
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src * data: blob:; script-src 'self'; "
                               "style-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",  # presigned snapshot URLs must not leak the console's address
    "Cache-Control": "no-store",
}


class ConsoleBindError(ValueError):
    """A bind address that would expose the console without a token."""


def _is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        try:
            return all(ipaddress.ip_address(info[4][0]).is_loopback
                       for info in socket.getaddrinfo(host, None))
        except (OSError, ValueError):
            return False


def check_bind(host: str, token: str | None) -> None:
    """Refuse a non-loopback bind (0.0.0.0, a LAN address, ...) unless a token is set."""
    if not token and not _is_loopback(host):
        raise ConsoleBindError(f"refusing to serve the console on {host!r} without an access token: "
                               "set --auth-token or CITYWATCH_CONSOLE_TOKEN, or bind 127.0.0.1")
    if token is not None and len(token) < 16:
        raise ConsoleBindError("the console access token must be at least 16 characters long")


def _static(name: str) -> bytes:
    return resources.files("pipeline.app.console").joinpath("static", *name.split("/")).read_bytes()


def create_app(config: Config, *, token: str | None = None, client_id: str = "citywatch-console",
               tile_url: str | None = None, extra_hosts: Iterable[str] = (), max_incidents: int | None = None,
               ack_timeout_s: float = 5.0, store: IncidentStore | None = None, pusher: IncidentPusher | None = None,
               tick_s: float = 1.0, extra_routes: Iterable[BaseRoute] = ()) -> Starlette:
    """The console ASGI app; its lifespan connects to the broker named in ``config.mqtt``.

    ``store`` None keeps incidents in memory only (the CLI always opens one); ``pusher`` None
    builds one from ``console.push`` when it lists URLs."""
    settings = config.console
    zone = settings.zone()
    board = IncidentBoard(config, max_incidents=max_incidents or settings.store.board_size, store=store)
    watch_console_board(board)  # /metrics: its incidents and the alerts it receives
    if pusher is None and settings.push.urls:
        pusher = IncidentPusher([u.get_secret_value() for u in settings.push.urls], catalogue(settings.language), zone,
                                settings.push.min_severity, settings.push.timeout_s)
    hub = PageHub()

    def alarm(inc: dict[str, Any], reason: str) -> None:
        if pusher is not None:
            pusher.push(inc, reason, time.time())

    subscriber = ConsoleSubscriber(config.mqtt, client_id, board, hub, on_alarm=alarm)
    sender = AckSender(config.mqtt, f"{client_id}-ack")
    allowed_hosts = None if token else {h.lower() for h in (*LOOPBACK_NAMES, *extra_hosts)}
    meta = {"prefix": config.mqtt.topic_prefix, "tile_url": tile_url or settings.map.tile_url,
            "attribution": settings.map.attribution, "language": settings.language, "timezone": settings.timezone,
            "alarm": settings.alarm.model_dump(), "store": store is not None,
            "stale_after_s": config.health.stale_after_s, "offline_after_s": config.health.offline_after_s}
    api = IncidentApi(board, store, zone, SECURITY_HEADERS,
                      (config.health.stale_after_s, config.health.offline_after_s), catalogue(settings.language))

    def guarded(handler):
        async def route(request: Request) -> Response:
            return await handler(request) if authorized(request) else denied(request)
        return route

    def authorized(request: Request) -> bool:
        if token is None:
            host = (request.headers.get("host") or "").lower()
            host = host.rsplit(":", 1)[0] if not host.endswith("]") else host
            return allowed_hosts is not None and host in allowed_hosts
        auth = request.headers.get("authorization", "")
        given = auth[7:] if auth.lower().startswith("bearer ") else request.cookies.get(COOKIE, "")
        return hmac.compare_digest(given.encode(), token.encode())

    def denied(request: Request) -> Response:
        if token is None:
            return JSONResponse({"error": "this console answers only on localhost"}, 403, headers=SECURITY_HEADERS)
        return JSONResponse({"error": "missing or wrong console access token"}, 401,
                            headers={**SECURITY_HEADERS, "WWW-Authenticate": 'Bearer realm="citywatch"'})

    async def page(request: Request) -> Response:
        given = request.query_params.get("token")
        if token is not None and given is not None:
            if not hmac.compare_digest(given.encode(), token.encode()):
                return HTMLResponse(login_page(settings.language), 401, headers=SECURITY_HEADERS)
            resp = RedirectResponse("/", 303)
            resp.set_cookie(COOKIE, token, httponly=True, samesite="strict", secure=request.url.scheme == "https")
            return resp
        if not authorized(request):
            return HTMLResponse(login_page(settings.language), 401, headers=SECURITY_HEADERS) if token else denied(request)
        return HTMLResponse(_static("index.html"), headers=SECURITY_HEADERS)

    async def static(request: Request) -> Response:
        name = request.path_params["name"]
        suffix = "." + name.rsplit(".", 1)[-1] if "." in name else ""
        if request.url.path.startswith("/static/vendor/"):
            name = request.url.path[len("/static/"):]
            if not all(part and part[0] != "." for part in name.split("/")):
                return Response("not found", 404)
        elif "/" in name:
            return Response("not found", 404)
        if suffix not in STATIC_TYPES or not (name == "console.css" or authorized(request)):
            return denied(request) if suffix in STATIC_TYPES else Response("not found", 404)
        try:
            body = _static(name)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return Response("not found", 404)
        return Response(body, media_type=STATIC_TYPES[suffix], headers=SECURITY_HEADERS)

    def state() -> dict[str, Any]:
        return {**board.snapshot(), "meta": {**meta, "broker_connected": subscriber.connected}}

    async def api_state(request: Request) -> Response:
        if not authorized(request):
            return denied(request)
        return JSONResponse(state(), headers=SECURITY_HEADERS)

    async def api_events(request: Request) -> Response:
        if not authorized(request):
            return denied(request)
        feed = hub.open()

        async def stream():
            try:
                yield "retry: 2000\n\n"  # the page's EventSource reconnects 2 s after losing us
                yield _sse(state())
                while True:
                    if feed.overflowed:
                        feed.overflowed = False
                        while not feed.queue.empty():
                            feed.queue.get_nowait()
                        yield _sse(state())
                    try:
                        delta = await asyncio.wait_for(feed.queue.get(), timeout=15.0)
                    except TimeoutError:
                        yield ": keep-alive\n\n"
                        continue
                    yield _sse(delta)
            finally:
                hub.close(feed)

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={**SECURITY_HEADERS, "X-Accel-Buffering": "no"})

    async def api_ack(request: Request) -> Response:
        if not authorized(request):
            return denied(request)
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            return JSONResponse({"error": "send the ack as application/json"}, 415)
        incident_id = request.path_params["incident_id"]
        try:
            body = json.loads(await request.body() or b"{}")
            if not isinstance(body, dict):
                raise ValueError("body must be a JSON object")
            ack = make_ack(incident_id, str(body.get("operator", "")), note=str(body.get("note", "")),
                           console=client_id)
        except (ValueError, AckError) as exc:
            return JSONResponse({"error": str(exc)}, 400)
        if board.incident(incident_id) is None:
            return JSONResponse({"error": f"incident {incident_id} is not known to this console"}, 404)
        try:
            await run_in_threadpool(sender.send, ack, ack_timeout_s)
        except AckNotSent as exc:
            return JSONResponse({"error": str(exc)}, 503)
        log.info("operator %s acknowledged incident %s", ack.operator, incident_id)
        return JSONResponse({"sent": json.loads(ack.model_dump_json())}, 202)

    async def api_i18n(request: Request) -> Response:
        lang = request.query_params.get("lang") or settings.language
        if lang not in LANGUAGES:
            return JSONResponse({"error": f"lang: use one of {', '.join(LANGUAGES)}"}, 400, headers=SECURITY_HEADERS)
        return JSONResponse({"language": lang, "strings": catalogue(lang).strings, "measures": MEASURE_KINDS},
                            headers=SECURITY_HEADERS)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"ok": True, "broker_connected": subscriber.connected, "pages": hub.pages,
                             "unsaved": len(board._unsaved), "store_errors": board.store_errors})

    def tick() -> None:
        for delta in board.escalate(time.time(), settings.alarm.escalate_after_s):
            hub.publish(delta)
            alarm(delta["incident"], "escalated")
        board.retry_unsaved()

    async def ticker() -> None:
        while True:
            await asyncio.sleep(tick_s)
            try:
                await run_in_threadpool(tick)
            except Exception:  # noqa: BLE001 - the console keeps serving whatever one tick hit
                log.exception("console: escalation tick failed")

    @asynccontextmanager
    async def lifespan(app: Starlette):
        hub.bind(asyncio.get_running_loop())
        if store is not None:
            restored = await run_in_threadpool(board.restore)
            log.info("console: board rebuilt from %s with %d incidents", store.where, restored)
        subscriber.start()
        sender.start()
        task = asyncio.create_task(ticker())
        try:
            yield
        finally:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task
            subscriber.stop()
            sender.stop()
            if pusher is not None:
                await run_in_threadpool(pusher.close)

    app = Starlette(routes=[
        Route("/", page), Route("/static/{name}", static), Route("/static/vendor/{name:path}", static),
        Route("/api/state", api_state), Route("/api/events", api_events), Route("/api/i18n", guarded(api_i18n)),
        Route("/api/incidents", guarded(api.incidents)), Route("/api/incidents.csv", guarded(api.incidents_csv)),
        Route("/api/incidents/{incident_id}", guarded(api.incident)), Route("/api/cameras", guarded(api.cameras)),
        Route("/api/incidents/{incident_id}/ack", api_ack, methods=["POST"]), Route("/healthz", healthz),
        Route("/metrics", guarded(metrics_endpoint)),
        *extra_routes,
    ], lifespan=lifespan)
    app.state.board, app.state.hub, app.state.subscriber, app.state.store = board, hub, subscriber, store
    return app


def _sse(doc: dict[str, Any]) -> str:
    return f"event: {doc['kind']}\ndata: {json.dumps(doc, separators=(',', ':'))}\n\n"

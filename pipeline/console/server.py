"""The console web server (Starlette): the page, a Server-Sent Events feed and the ack endpoint.

Routes: ``/`` page, ``/static/<file>``, ``/api/state`` (JSON snapshot), ``/api/events`` (SSE:
a ``snapshot`` then ``incident``/``camera``/``broker`` deltas), ``POST /api/incidents/<id>/ack``
(JSON ``{"operator": ..., "note": ...}`` -> MQTT ``<prefix>/ack/<id>``), ``/healthz``.

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
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any, Iterable

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from pipeline.acks import AckError, make_ack
from pipeline.config import Config
from pipeline.console.board import IncidentBoard
from pipeline.console.bridge import AckNotSent, AckSender, ConsoleSubscriber, PageHub

__all__ = ["create_app", "check_bind", "ConsoleBindError", "COOKIE"]

log = logging.getLogger(__name__)
COOKIE = "citywatch_console"
LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1", "[::1]"}
STATIC_TYPES = {".js": "text/javascript", ".css": "text/css", ".html": "text/html", ".svg": "image/svg+xml"}
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src * data: blob:; script-src 'self'; "
                               "style-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",  # presigned snapshot URLs must not leak the console's address
    "Cache-Control": "no-store",
}
_LOGIN_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>citywatch console: sign in</title>
<link rel="stylesheet" href="/static/console.css"></head><body class="login"><form method="get" action="/">
<h1>citywatch operations console</h1><p>This console needs its access token.</p>
<input type="password" name="token" placeholder="access token" autofocus required>
<button type="submit">Open console</button></form></body></html>"""


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
    return resources.files("pipeline.console").joinpath("static", name).read_bytes()


def create_app(config: Config, *, token: str | None = None, client_id: str = "citywatch-console",
               tile_url: str | None = None, extra_hosts: Iterable[str] = (), max_incidents: int = 500,
               ack_timeout_s: float = 5.0) -> Starlette:
    """The console ASGI app; its lifespan connects to the broker named in ``config.mqtt``."""
    board = IncidentBoard(config, max_incidents=max_incidents)
    hub = PageHub()
    subscriber = ConsoleSubscriber(config.mqtt, client_id, board, hub)
    sender = AckSender(config.mqtt, f"{client_id}-ack")
    allowed_hosts = None if token else {h.lower() for h in (*LOOPBACK_NAMES, *extra_hosts)}
    meta = {"prefix": config.mqtt.topic_prefix, "tile_url": tile_url,
            "stale_after_s": config.health.stale_after_s, "offline_after_s": config.health.offline_after_s}

    def authorized(request: Request) -> bool:
        if token is None:
            host = (request.headers.get("host") or "").lower()
            host = host.rsplit(":", 1)[0] if not host.endswith("]") else host
            return host in allowed_hosts
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
                return HTMLResponse(_LOGIN_PAGE, 401, headers=SECURITY_HEADERS)
            resp = RedirectResponse("/", 303)
            resp.set_cookie(COOKIE, token, httponly=True, samesite="strict", secure=request.url.scheme == "https")
            return resp
        if not authorized(request):
            return HTMLResponse(_LOGIN_PAGE, 401, headers=SECURITY_HEADERS) if token else denied(request)
        return HTMLResponse(_static("index.html"), headers=SECURITY_HEADERS)

    async def static(request: Request) -> Response:
        name = request.path_params["name"]
        suffix = "." + name.rsplit(".", 1)[-1] if "." in name else ""
        if "/" in name or suffix not in STATIC_TYPES or not (name == "console.css" or authorized(request)):
            return denied(request) if suffix in STATIC_TYPES else Response("not found", 404)
        try:
            body = _static(name)
        except FileNotFoundError:
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
                    except asyncio.TimeoutError:
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

    async def healthz(request: Request) -> Response:
        return JSONResponse({"ok": True, "broker_connected": subscriber.connected, "pages": hub.pages})

    @asynccontextmanager
    async def lifespan(app: Starlette):
        hub.bind(asyncio.get_running_loop())
        subscriber.start()
        sender.start()
        try:
            yield
        finally:
            subscriber.stop()
            sender.stop()

    app = Starlette(routes=[
        Route("/", page), Route("/static/{name}", static), Route("/api/state", api_state),
        Route("/api/events", api_events), Route("/api/incidents/{incident_id}/ack", api_ack, methods=["POST"]),
        Route("/healthz", healthz),
    ], lifespan=lifespan)
    app.state.board, app.state.hub, app.state.subscriber = board, hub, subscriber
    return app


def _sse(doc: dict[str, Any]) -> str:
    return f"event: {doc['kind']}\ndata: {json.dumps(doc, separators=(',', ':'))}\n\n"

"""Push of severe incidents and escalations to webhooks, e-mail or chat through apprise.

The console hands each alarming incident to :class:`IncidentPusher`, which formats a short
title and body in the console's language and time zone and sends it on its own thread (a slow
mail server never holds up the MQTT feed). A target that refuses is logged, never fatal.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import tzinfo
from typing import Any

import apprise

from pipeline.alerts.incident_store import epoch
from pipeline.common.i18n import Catalogue, local_time
from pipeline.common.text import printable

__all__ = ["IncidentPusher", "PushError", "push_message"]

log = logging.getLogger(__name__)
SEVERITY_RANK = {"minor": 1, "moderate": 2, "severe": 3, "extreme": 4}


class PushError(ValueError):
    """A push target URL apprise does not understand (the message never shows the URL's secrets)."""


def push_message(inc: dict[str, Any], reason: str, cat: Catalogue, zone: tzinfo, now: float) -> tuple[str, str]:
    """(title, body) of an incident that is ``new`` or ``escalated``."""
    sev = cat.severity(inc.get("peak_severity") or inc.get("severity") or "")
    values = {"severity": sev, "type": cat.event(inc.get("type") or ""),
              "camera": inc.get("camera_name") or inc.get("camera_id") or "?"}
    started = epoch(inc.get("started_at"))
    since = epoch(inc.get("alarm_since")) or started or now
    title = cat.t(f"push.title.{reason}", **values, minutes=max(0, round((now - since) / 60)))
    if inc.get("test"):
        title = f"[{cat.t('push.test')}] {title}"
    body = cat.t("push.body", camera=values["camera"], district=inc.get("district") or "–",
                 time=local_time(started, zone) if started else "–", incident=inc.get("incident_id"))
    return title[:250], body


class IncidentPusher:
    """Sends incidents of ``min_severity`` or worse to every apprise URL, one at a time, in order."""

    def __init__(self, urls: list[str], cat: Catalogue, zone: tzinfo, min_severity: str = "severe",
                 timeout_s: float = 10.0) -> None:
        self.cat, self.zone = cat, zone
        self.min_rank = SEVERITY_RANK[min_severity]
        self._apprise = apprise.Apprise()
        self.targets = 0
        quiet = logging.getLogger("apprise")
        level = quiet.level
        quiet.setLevel(logging.CRITICAL + 1)  # apprise logs a refused URL whole, secrets too
        try:
            added = [self._apprise.add(url) for url in urls]
        finally:
            quiet.setLevel(level)
        for i, (url, ok) in enumerate(zip(urls, added)):
            if not ok:
                raise PushError(f"console.push.urls.{i}: not a URL apprise knows (scheme "
                                f"{url.split(':', 1)[0]!r}); see https://github.com/caronc/apprise/wiki")
            self.targets += 1
        for server in self._apprise:
            server.socket_read_timeout = server.socket_connect_timeout = timeout_s
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="citywatch-push")
        self._lock = threading.Lock()
        self.sent = self.failed = 0

    def wants(self, inc: dict[str, Any]) -> bool:
        return self.targets > 0 and SEVERITY_RANK.get(inc.get("peak_severity") or inc.get("severity") or "", 0) >= self.min_rank

    def push(self, inc: dict[str, Any], reason: str, now: float) -> Future | None:
        """Queue one push (``reason`` ``new`` or ``escalated``); None if this incident is below the bar."""
        if not self.wants(inc):
            return None
        title, body = push_message(inc, reason, self.cat, self.zone, now)
        notify_type = apprise.NotifyType.FAILURE if reason == "escalated" else apprise.NotifyType.WARNING
        return self._pool.submit(self._send, str(inc.get("incident_id")), title, body, notify_type)

    def _send(self, incident_id: str, title: str, body: str, notify_type: Any) -> bool:
        try:
            ok = bool(self._apprise.notify(title=title, body=body, notify_type=notify_type))
        except Exception as exc:  # a plugin's own failure must not kill the push thread
            log.error("push of incident %s failed: %s", incident_id, printable(str(exc)[:200]))
            ok = False
        with self._lock:
            if ok:
                self.sent += 1
            else:
                self.failed += 1
        if not ok:
            log.error("push of incident %s: at least one target refused or was unreachable", incident_id)
        return ok

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=False)

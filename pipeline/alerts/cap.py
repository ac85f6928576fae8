"""CAP 1.2 (OASIS Common Alerting Protocol) XML for an alert, for emergency-management systems.

Mapping from an :class:`~pipeline.alerts.payload.AlertPayload`:

- ``identifier`` ``<incident_id>-<seq>``; ``sender`` from ``alerts.cap.sender``; ``sent`` is the
  incident start for the first message (so later messages can reference it exactly) and the
  detection time otherwise, always ``YYYY-MM-DDThh:mm:ss-00:00`` (CAP forbids ``Z``).
- ``status`` ``Exercise`` for test alerts, else ``Actual``; ``msgType`` Alert / Update / Cancel
  for start / update / end; Update and Cancel carry ``references`` ``sender,identifier,sent`` of
  the first message. ``scope`` Public.
- two ``info`` blocks with the same codes, ``vi-VN`` then ``en-US``: event name, headline,
  description (measurements in plain words with units), note and resource text from the
  catalogue of :mod:`pipeline.common.i18n`; times in the description in ``zone`` (UTC by default).
- ``info``: category Fire (fire, smoke), Met (flood), Transport (congestion), Infra (camera
  health), Other; urgency Immediate (fire, smoke, flood), Expected (congestion), Unknown (camera
  health), Past on end; severity from ours; certainty Observed >= 0.8 confidence, Likely >= 0.5,
  Possible >= 0.2, else Unlikely; parameters carry incident id, seq, state, camera, confidence,
  level and every measurement; ``resource`` is the snapshot with its SHA-1 ``digest``; ``area`` a
  circle of ``alerts.cap.area_radius_km`` around the camera.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, tzinfo

from pipeline.alerts.payload import AlertPayload
from pipeline.common.i18n import Catalogue, catalogue, local_time
from pipeline.common.text import xml_text
from pipeline.config.settings import CapSettings

CAP_NS = "urn:oasis:names:tc:emergency:cap:1.2"
LANGUAGES = (("vi-VN", "vi"), ("en-US", "en"))
CATEGORY = {"fire": "Fire", "smoke": "Fire", "flood": "Met", "congestion": "Transport",
            "camera_offline": "Infra", "camera_obstructed": "Infra"}
URGENCY = {"fire": "Immediate", "smoke": "Immediate", "flood": "Immediate", "congestion": "Expected"}
RESPONSE_TYPE = {"fire": "Avoid", "smoke": "Monitor", "flood": "Avoid", "congestion": "Avoid"}
MSG_TYPE = {"start": "Alert", "update": "Update", "end": "Cancel"}
_RESTRICTED = re.compile(r"[\s,<&]")


def cap_datetime(when: datetime) -> str:
    """CAP dateTime: seconds precision, numeric offset, UTC written ``-00:00``."""
    if when.tzinfo is None:
        raise ValueError("CAP times must be timezone-aware")
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S") + "-00:00"


def cap_identifier(incident_id: str, seq: int) -> str:
    return f"{incident_id}-{seq}"


def certainty(confidence: float) -> str:
    if confidence >= 0.8:
        return "Observed"
    if confidence >= 0.5:
        return "Likely"
    if confidence >= 0.2:
        return "Possible"
    return "Unlikely"


def _check_token(name: str, value: str) -> str:
    if not value or _RESTRICTED.search(value):
        raise ValueError(f"CAP {name} {value!r} must be non-empty without spaces, commas, '<' or '&'")
    return value


def _sub(parent: ET.Element, tag: str, text: str | None = None) -> ET.Element:
    el = ET.SubElement(parent, f"{{{CAP_NS}}}{tag}")
    if text is not None:
        el.text = xml_text(text)
    return el


def _number(value: float) -> str:
    return f"{value:.6g}"


def cap_alert(payload: AlertPayload, cap: CapSettings, zone: tzinfo | None = None) -> ET.Element:
    """The ``<alert>`` element of ``payload`` (human times in ``zone``; CAP times always UTC)."""
    sender = _check_token("sender", cap.sender)
    identifier = _check_token("identifier", cap_identifier(payload.incident_id, payload.seq))
    first_sent = cap_datetime(payload.started_at)
    sent = first_sent if payload.state == "start" else cap_datetime(payload.detected_at)
    alert = ET.Element(f"{{{CAP_NS}}}alert")
    _sub(alert, "identifier", identifier)
    _sub(alert, "sender", sender)
    _sub(alert, "sent", sent)
    _sub(alert, "status", "Exercise" if payload.test else "Actual")
    _sub(alert, "msgType", MSG_TYPE[payload.state])
    _sub(alert, "source", f"citywatch worker {payload.worker}")
    _sub(alert, "scope", "Public")
    if payload.test:
        _sub(alert, "note", " / ".join(catalogue(lang).t("cap.test_note") for _, lang in LANGUAGES))
    if payload.state != "start":
        _sub(alert, "references", f"{sender},{cap_identifier(payload.incident_id, 1)},{first_sent}")
    _sub(alert, "incidents", payload.incident_id)
    for language, lang in LANGUAGES:
        _info(alert, payload, cap.area_radius_km, language, catalogue(lang), zone)
    return alert


def _when(when: datetime, zone: tzinfo | None) -> str:
    return cap_datetime(when) if zone is None else local_time(when, zone)


def _info(alert: ET.Element, p: AlertPayload, radius_km: float, language: str, cat: Catalogue,
          zone: tzinfo | None) -> None:
    cam = p.camera
    place = ", ".join(x for x in (cam.name, cam.location.district if cam.location else "") if x) or cam.id
    event = cat.strings.get(f"cap.event.{p.type}") or p.type.replace("_", " ").capitalize()
    ended = p.state == "end"
    info = _sub(alert, "info")
    _sub(info, "language", language)
    _sub(info, "category", CATEGORY.get(p.type, "Other"))
    _sub(info, "event", event)
    _sub(info, "responseType", "AllClear" if ended else RESPONSE_TYPE.get(p.type, "Monitor"))
    _sub(info, "urgency", "Past" if ended else URGENCY.get(p.type, "Unknown"))
    _sub(info, "severity", p.severity.capitalize())
    _sub(info, "certainty", "Observed" if p.type == "camera_offline" else certainty(p.confidence))
    code = _sub(info, "eventCode")
    _sub(code, "valueName", "citywatch")
    _sub(code, "value", p.type)
    _sub(info, "onset", cap_datetime(p.started_at))
    _sub(info, "senderName", f"citywatch ({p.worker})")
    _sub(info, "headline", cat.t("cap.headline", event=event, what=cat.t(f"cap.what.{p.state}"), place=place)[:160])
    figures = ", ".join("{} {}".format(*cat.measurement(k, v)) for k, v in sorted(p.measurements.items()))
    text = cat.t("cap.description", event=event, severity=cat.severity(p.severity), confidence=f"{p.confidence:.2f}",
                 camera=cam.id, started=_when(p.started_at, zone), frame=_when(p.frame.time, zone))
    if p.level:
        text += " " + cat.t("cap.level", level=p.level)
    if figures:
        text += " " + cat.t("cap.measurements", figures=figures)
    _sub(info, "description", text)
    params = {"incidentId": p.incident_id, "seq": str(p.seq), "state": p.state, "cameraId": cam.id,
              "confidence": f"{p.confidence:.3f}"}
    if p.level:
        params["level"] = p.level
    params.update({f"measurement:{k}": _number(v) for k, v in sorted(p.measurements.items())})
    for name, value in params.items():
        param = _sub(info, "parameter")
        _sub(param, "valueName", name)
        _sub(param, "value", value)
    if p.evidence is not None:
        res = _sub(info, "resource")
        _sub(res, "resourceDesc", cat.t("cap.resource"))
        _sub(res, "mimeType", p.evidence.mime_type)
        if p.evidence.size:
            _sub(res, "size", str(p.evidence.size))
        _sub(res, "uri", p.evidence.url)
        if p.evidence.sha1:
            _sub(res, "digest", p.evidence.sha1)
    area = _sub(info, "area")
    _sub(area, "areaDesc", place)
    if cam.location is not None:
        _sub(area, "circle", f"{cam.location.lat:.6f},{cam.location.lon:.6f} {radius_km:g}")


def cap_xml(payload: AlertPayload, cap: CapSettings, zone: tzinfo | None = None) -> str:
    """CAP 1.2 XML text (with XML declaration) of ``payload``."""
    ET.register_namespace("", CAP_NS)
    return ET.tostring(cap_alert(payload, cap, zone), encoding="unicode", xml_declaration=True)

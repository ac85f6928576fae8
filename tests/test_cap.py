"""CAP 1.2 XML: every required element, element order of the CAP 1.2 schema, and its value sets."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime

import pytest

from pipeline.alerts.cap import CAP_NS, cap_datetime, cap_xml
from pipeline.alerts.evidence import Evidence
from pipeline.alerts.incidents import IncidentEvent, incident_id
from pipeline.alerts.payload import build_alert
from pipeline.config.settings import CameraConfig, CapSettings
from pipeline.frames.keys import frame_key

NS = {"cap": CAP_NS}
TS = 1_763_844_026.4
CAM = CameraConfig(id="cam-01", name="Main St & 5th", location={"lat": 52.52, "lon": 13.405, "district": "Mitte"})
DETECTED = datetime(2025, 11, 22, 20, 41, 0, 250000, tzinfo=UTC)

# CAP 1.2 (OASIS standard, 2010) value sets
STATUS = {"Actual", "Exercise", "System", "Test", "Draft"}
MSG_TYPE = {"Alert", "Update", "Cancel", "Ack", "Error"}
SCOPE = {"Public", "Restricted", "Private"}
CATEGORY = {"Geo", "Met", "Safety", "Security", "Rescue", "Fire", "Health", "Env", "Transport", "Infra",
            "CBRNE", "Other"}
RESPONSE = {"Shelter", "Evacuate", "Prepare", "Execute", "Avoid", "Monitor", "Assess", "AllClear", "None"}
URGENCY = {"Immediate", "Expected", "Future", "Past", "Unknown"}
SEVERITY = {"Extreme", "Severe", "Moderate", "Minor", "Unknown"}
CERTAINTY = {"Observed", "Likely", "Possible", "Unlikely", "Unknown"}
# element order of the CAP 1.2 XML schema sequences (required ones marked by REQUIRED below)
ALERT_ORDER = ["identifier", "sender", "sent", "status", "msgType", "source", "scope", "restriction",
               "addresses", "code", "note", "references", "incidents", "info"]
INFO_ORDER = ["language", "category", "event", "responseType", "urgency", "severity", "certainty", "audience",
              "eventCode", "effective", "onset", "expires", "senderName", "headline", "description",
              "instruction", "web", "contact", "parameter", "resource", "area"]
RESOURCE_ORDER = ["resourceDesc", "mimeType", "size", "uri", "derefUri", "digest"]
AREA_ORDER = ["areaDesc", "polygon", "circle", "geocode", "altitude", "ceiling"]
REQUIRED = {"alert": ["identifier", "sender", "sent", "status", "msgType", "scope"],
            "info": ["category", "event", "urgency", "severity", "certainty"],
            "resource": ["resourceDesc", "mimeType"], "area": ["areaDesc"]}
CAP_DATETIME = re.compile(r"^\d\d\d\d-\d\d-\d\dT\d\d:\d\d:\d\d[-+]\d\d:\d\d$")


def payload(state="start", seq=1, etype="fire", test=False, with_evidence=True, confidence=0.9):
    ev = IncidentEvent(incident_id=incident_id("cam-01", etype, TS), camera_id="cam-01", type=etype, state=state,
                       seq=seq, severity="severe", confidence=confidence, measurements={"area_pct": 2.5},
                       boxes=(), frame_ts=TS + 10 * (seq - 1), started_ts=TS,
                       ended_ts=TS + 60 if state == "end" else None)
    evidence = Evidence(bucket="alerts", key="k.jpg", sha256="a" * 64, url="http://s3/alerts/k.jpg?a=1&b=2",
                        expires_at=DETECTED, sha1="b" * 40, size=4321) if with_evidence else None
    return build_alert(ev, CAM, frame_bucket="frames", frame_key=frame_key("cam-01", TS, test=test),
                       evidence=evidence, test=test, worker="w1", detected_at=DETECTED)


def local(el: ET.Element) -> str:
    return el.tag.split("}", 1)[1]


def check_order(parent: ET.Element, order: list[str]) -> None:
    names = [local(c) for c in parent]
    assert all(n in order for n in names), names
    positions = [order.index(n) for n in names]
    assert positions == sorted(positions), f"out of CAP order: {names}"
    for required in REQUIRED.get(local(parent), []):
        assert required in names, f"{local(parent)} lacks required {required}"


def parse(xml: str) -> ET.Element:
    assert xml.startswith("<?xml")
    root = ET.fromstring(xml)
    assert root.tag == f"{{{CAP_NS}}}alert"
    return root


@pytest.mark.parametrize("etype, category", [("fire", "Fire"), ("smoke", "Fire"), ("flood", "Met"),
                                             ("congestion", "Transport"), ("camera_offline", "Infra"),
                                             ("camera_obstructed", "Infra"), ("graffiti", "Other")])
@pytest.mark.parametrize("state", ["start", "update", "end"])
def test_structure_and_value_sets(etype, category, state):
    root = parse(cap_xml(payload(state=state, seq={"start": 1, "update": 2, "end": 3}[state], etype=etype),
                         CapSettings(sender="ioc@city.example")))
    check_order(root, ALERT_ORDER)
    get = lambda path: root.find(path, NS).text  # noqa: E731
    assert get("cap:status") in STATUS and get("cap:msgType") in MSG_TYPE and get("cap:scope") in SCOPE
    assert CAP_DATETIME.match(get("cap:sent")) and not get("cap:sent").endswith("Z")
    assert not re.search(r"[\s,<&]", get("cap:identifier"))
    info = root.find("cap:info", NS)
    check_order(info, INFO_ORDER)
    assert [c.text for c in info.findall("cap:category", NS)] == [category]
    assert get("cap:info/cap:urgency") in URGENCY and get("cap:info/cap:severity") in SEVERITY
    assert get("cap:info/cap:certainty") in CERTAINTY
    assert all(r.text in RESPONSE for r in info.findall("cap:responseType", NS))
    for el in info.iter():
        if local(el) in ("onset", "effective", "expires"):
            assert CAP_DATETIME.match(el.text)
    for param in info.findall("cap:parameter", NS):
        assert [local(c) for c in param] == ["valueName", "value"]
    resource = info.find("cap:resource", NS)
    check_order(resource, RESOURCE_ORDER)
    assert resource.find("cap:digest", NS).text == "b" * 40  # SHA-1 of the snapshot per CAP
    assert resource.find("cap:uri", NS).text == "http://s3/alerts/k.jpg?a=1&b=2"
    area = info.find("cap:area", NS)
    check_order(area, AREA_ORDER)
    assert area.find("cap:areaDesc", NS).text == "Main St & 5th, Mitte"
    assert area.find("cap:circle", NS).text == "52.520000,13.405000 0.2"


def test_lifecycle_msg_types_and_references():
    cap = CapSettings(sender="ioc@city.example", area_radius_km=0.5)
    start = parse(cap_xml(payload("start", 1), cap))
    update = parse(cap_xml(payload("update", 2), cap))
    end = parse(cap_xml(payload("end", 3), cap))
    t = lambda root, path: root.find(path, NS).text  # noqa: E731
    assert [t(r, "cap:msgType") for r in (start, update, end)] == ["Alert", "Update", "Cancel"]
    assert start.find("cap:references", NS) is None
    first = f"{t(start, 'cap:sender')},{t(start, 'cap:identifier')},{t(start, 'cap:sent')}"
    assert t(update, "cap:references") == first and t(end, "cap:references") == first
    assert t(start, "cap:sent") == "2025-11-22T20:40:26-00:00"
    assert t(update, "cap:sent") == "2025-11-22T20:41:00-00:00"
    assert t(end, "cap:info/cap:urgency") == "Past" and t(end, "cap:info/cap:responseType") == "AllClear"
    assert t(start, "cap:info/cap:area/cap:circle").endswith(" 0.5")


def test_test_alerts_are_exercises_and_certainty_follows_confidence():
    cap = CapSettings()
    assert parse(cap_xml(payload(test=True), cap)).find("cap:status", NS).text == "Exercise"
    assert parse(cap_xml(payload(test=False), cap)).find("cap:status", NS).text == "Actual"
    for conf, expected in [(0.95, "Observed"), (0.6, "Likely"), (0.3, "Possible"), (0.1, "Unlikely")]:
        root = parse(cap_xml(payload(confidence=conf), cap))
        assert root.find("cap:info/cap:certainty", NS).text == expected


def test_without_evidence_or_location():
    p = payload(with_evidence=False)
    p = p.model_copy(update={"camera": p.camera.model_copy(update={"location": None})})
    info = parse(cap_xml(p, CapSettings())).find("cap:info", NS)
    assert info.find("cap:resource", NS) is None
    assert info.find("cap:area/cap:circle", NS) is None and info.find("cap:area/cap:areaDesc", NS).text


def test_bad_sender_and_naive_time_refused():
    with pytest.raises(ValueError, match="sender"):
        cap_xml(payload(), CapSettings(sender="city ioc, north"))
    with pytest.raises(ValueError, match="timezone"):
        cap_datetime(datetime(2025, 1, 1))
    assert cap_datetime(datetime(2025, 1, 1, 12, tzinfo=UTC)) == "2025-01-01T12:00:00-00:00"


def test_two_info_blocks_vietnamese_then_english_with_the_same_codes():
    from zoneinfo import ZoneInfo

    root = parse(cap_xml(payload(etype="flood"), CapSettings(), ZoneInfo("Asia/Ho_Chi_Minh")))
    infos = root.findall("cap:info", NS)
    assert [i.find("cap:language", NS).text for i in infos] == ["vi-VN", "en-US"]
    vi, en = infos
    for info in infos:
        check_order(info, INFO_ORDER)
    codes = ("category", "urgency", "severity", "certainty", "responseType", "onset")
    assert [vi.find(f"cap:{c}", NS).text for c in codes] == [en.find(f"cap:{c}", NS).text for c in codes]
    assert vi.find("cap:event", NS).text == "Ngập nước" and en.find("cap:event", NS).text == "Flooding"
    assert vi.find("cap:headline", NS).text == "Ngập nước được phát hiện tại Main St & 5th, Mitte"
    # measurements in plain words with units; human times in the configured zone with their offset
    assert "diện tích cháy 2.5 %" in vi.find("cap:description", NS).text
    assert "burning area 2.5 %" in en.find("cap:description", NS).text and "area_pct" not in en.find("cap:description", NS).text
    assert "2025-11-23 03:40:26 +07" in en.find("cap:description", NS).text
    assert vi.find("cap:resource/cap:resourceDesc", NS).text == "Ảnh chụp có đánh dấu"
    assert vi.find("cap:severity", NS).text == "Severe"  # CAP's code, not a translation
    note = parse(cap_xml(payload(test=True), CapSettings())).find("cap:note", NS).text
    assert "không phải sự việc thật" in note and "not a real event" in note

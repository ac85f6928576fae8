"""Ids, names and topic parts must match their pattern in full: ``re.match("^...$")`` lets a
trailing newline through (Python's ``$`` also matches before a final ``\\n``)."""

from __future__ import annotations

import json

import pytest

from pipeline.alerts.payload import alert_topic, validate_alert_json
from pipeline.app.console_view import alert_filter, validate_event_type
from pipeline.common.ids import CAMERA_ID, full_match
from pipeline.config.settings import ConfigError, config_from_dict
from pipeline.delivery.acks import AckError, ack_topic, make_ack, parse_ack
from pipeline.delivery.publisher import MqttPublisher
from pipeline.frames.keys import InvalidCameraId, InvalidFrameKey, frame_key, parse_frame_key, validate_camera_id
from tests.test_cap import payload as cap_payload

TAILS = ["\n", "\r\n", "\n\n"]


@pytest.mark.parametrize("tail", TAILS)
def test_camera_ids_and_frame_keys_with_a_trailing_newline_are_refused(tail):
    with pytest.raises(InvalidCameraId):
        validate_camera_id("cam-1" + tail)
    with pytest.raises(InvalidFrameKey):
        parse_frame_key(frame_key("cam-1", 1_700_000_000.0) + tail)
    with pytest.raises(ConfigError, match="cameras.0.id"):
        config_from_dict({"cameras": [{"id": "cam-1" + tail, "location": {"lat": 1, "lon": 2}}]}, env={})


@pytest.mark.parametrize("tail", TAILS)
def test_topic_parts_with_a_trailing_newline_are_refused(tail):
    for build in (lambda: alert_topic("citywatch", "fire" + tail, "cam-1"),
                  lambda: alert_topic("citywatch" + tail, "fire", "cam-1"),
                  lambda: alert_filter("citywatch", "fire" + tail),
                  lambda: validate_event_type("fire" + tail),
                  lambda: ack_topic("citywatch", "inc-1" + tail)):
        with pytest.raises(ValueError):
            build()
    with pytest.raises(AckError):
        make_ack("inc-1" + tail, "ana")
    raw = json.dumps({"incident_id": "inc-1" + tail, "operator": "ana", "time": "2026-01-01T00:00:00Z"})
    with pytest.raises(AckError):
        parse_ack("citywatch/ack/inc-1" + tail, raw.encode())


@pytest.mark.parametrize("section, field", [("mqtt", "topic_prefix"), ("worker", "name"), ("mqtt", "client_id"),
                                            ("s3", "frames_bucket")])
def test_config_names_with_a_trailing_newline_are_refused(section, field):
    with pytest.raises(ConfigError, match=f"{section}.{field}"):
        config_from_dict({section: {field: "abc-1\n"}}, env={})
    with pytest.raises(ConfigError, match="shard name"):
        config_from_dict({"shards": {"names": ["shard-0\n"]}}, env={})


def test_publisher_refuses_a_worker_name_with_a_newline(tmp_path):
    from pipeline.config.settings import MqttSettings
    from pipeline.state.store import StateStore

    with pytest.raises(ValueError):
        MqttPublisher(MqttSettings(), StateStore(tmp_path / "s.db"), "worker-1\n")


@pytest.mark.parametrize("path, value", [(("camera", "id"), "cam-01\n"), (("incident_id",), "inc-1\n"),
                                         (("type",), "fire\n"), (("worker",), "w1\n")])
def test_the_alert_schema_check_refuses_ids_with_a_trailing_newline(path, value):
    doc = json.loads(cap_payload().to_json())
    target = doc
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    with pytest.raises(ValueError, match="/".join(path)):
        validate_alert_json(json.dumps(doc))


def test_full_match_is_the_one_shared_check():
    assert full_match(CAMERA_ID, "cam-1") and not full_match(CAMERA_ID, "cam-1\n")
    assert not full_match(CAMERA_ID, None) and not full_match(CAMERA_ID, "")

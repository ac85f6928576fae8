from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.frames.keys import InvalidCameraId, InvalidFrameKey, frame_key, parse_frame_key, validate_camera_id

T0 = datetime(2026, 11, 22, 20, 40, 26, 123456, tzinfo=UTC)


def test_key_layout_and_roundtrip():
    key = frame_key("cam-01", T0)
    assert key == "cam-01/2026/11/22/20261122T204026.123Z.jpg"
    parsed = parse_frame_key(key)
    assert parsed.camera_id == "cam-01" and not parsed.test
    assert parsed.time == T0.replace(microsecond=123000)


def test_test_marker_roundtrip():
    key = frame_key("cam_9", T0, test=True)
    assert key.endswith(".test.jpg")
    assert parse_frame_key(key).test


@pytest.mark.parametrize("bad", ["", "a/b", "cam+1", "cam#", "x" * 65, "caméra", "a b", "../etc"])
def test_bad_camera_ids_refused(bad):
    with pytest.raises(InvalidCameraId):
        validate_camera_id(bad)
    with pytest.raises(InvalidCameraId):
        frame_key(bad, T0)


@pytest.mark.parametrize("key,reason", [
    ("cam/2026/11/22/20261122T204026.123Z.png", "does not match"),
    ("cam/2026/11/21/20261122T204026.123Z.jpg", "folder date"),
    ("cam/2026/13/22/20261322T204026.123Z.jpg", "invalid timestamp"),
    ("cam+x/2026/11/22/20261122T204026.123Z.jpg", "camera id"),
    ("cam/20261122T204026.123Z.jpg", "does not match"),
])
def test_bad_keys_name_the_problem(key, reason):
    with pytest.raises(InvalidFrameKey, match=reason):
        parse_frame_key(key)


camera_ids = st.text(alphabet="abcXYZ019_-", min_size=1, max_size=64)
times = st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC))


@given(camera_ids, times, times, st.booleans(), st.booleans())
def test_lexicographic_order_is_time_order(cam, t1, t2, test1, test2):
    t1, t2 = t1.replace(microsecond=t1.microsecond // 1000 * 1000), t2.replace(microsecond=t2.microsecond // 1000 * 1000)
    k1, k2 = frame_key(cam, t1, test=test1), frame_key(cam, t2, test=test2)
    if t1 < t2:
        assert k1 < k2
    assert parse_frame_key(k1).time == t1


@given(st.text(max_size=200))
def test_parse_never_crashes_on_junk(text):
    try:
        parsed = parse_frame_key(text)
    except InvalidFrameKey:
        return
    assert frame_key(parsed.camera_id, parsed.time, test=parsed.test) == text


def test_naive_time_refused():
    with pytest.raises(ValueError):
        frame_key("cam", T0.replace(tzinfo=None))
    assert frame_key("cam", T0 + timedelta(days=40)).startswith("cam/2027/01/01/")

"""Config validation: field paths in errors, env overrides, ${VAR} substitution, secrets hidden."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.config.settings import Config, ConfigError, config_from_dict, load_config

CAMERA = {"id": "cam-1", "name": "Main St", "location": {"lat": 52.5, "lon": 13.4, "district": "Mitte"}, "fps": 2}


def fails(data: dict, env: dict | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        config_from_dict(data, env or {})
    return str(info.value)


def test_empty_config_gives_defaults():
    cfg = config_from_dict({}, {})
    assert cfg.s3.frames_bucket == "frames" and cfg.mqtt.port == 1883 and cfg.cameras == []
    assert config_from_dict({"cameras": [CAMERA]}, {}).camera("cam-1").location.district == "Mitte"


@pytest.mark.parametrize("data,path,fragment", [
    ({"bogus": 1}, "bogus", "Extra inputs are not permitted"),
    ({"s3": {"bukket": "x"}}, "s3.bukket", "Extra inputs are not permitted"),
    ({"cameras": [CAMERA | {"colour": "red"}]}, "cameras.0.colour", "Extra inputs"),
    ({"cameras": [CAMERA | {"detectors": {"fire": {"sensitivty": 0.5}}}]},
     "cameras.0.detectors.fire.sensitivty", "Extra inputs"),
    ({"cameras": [CAMERA | {"location": {"lat": 95, "lon": 0}}]}, "cameras.0.location.lat", "less than or equal to 90"),
    ({"cameras": [CAMERA, {"id": "cam-2", "fps": 0}]}, "cameras.1.fps", "greater than 0"),
    ({"cameras": [CAMERA | {"fps": "fast"}]}, "cameras.0.fps", "valid number"),
    ({"cameras": [CAMERA | {"id": "a+b"}]}, "cameras.0.id", "is not allowed"),
    ({"cameras": [CAMERA | {"detectors": {"flood": {"sensitivity": 1.5}}}]},
     "cameras.0.detectors.flood.sensitivity", "less than or equal to 1"),
    ({"cameras": [CAMERA | {"detectors": {"congestion": {"regions": [[[0, 0], [1, 0], [2, 1]]]}}}]},
     "cameras.0.detectors.congestion.regions", "outside 0..1"),
    ({"alerts": {"debounce_hits": 0}}, "alerts.debounce_hits", "greater than or equal to 1"),
    ({"alerts": {"debounce_hits": 6, "debounce_window": 5}}, "alerts", "must not exceed debounce_window"),
    ({"health": {"stale_after_s": 60, "offline_after_s": 10}}, "health", "offline_after_s must be >= stale_after_s"),
    ({"s3": {"url": "ftp://host"}}, "s3.url", "http://host:port"),
    ({"s3": {"frames_bucket": "Frames_Bucket"}}, "s3.frames_bucket", "pattern"),
    ({"mqtt": {"url": "http://broker"}}, "mqtt.url", "mqtt://"),
    ({"mqtt": {"topic_prefix": "city/+/x"}}, "mqtt.topic_prefix", "A-Z a-z 0-9"),
    ({"worker": {"max_frame_pixels": 10}}, "worker.max_frame_pixels", "greater than or equal to 10000"),
    ({"cameras": [CAMERA, CAMERA]}, "(top level)", "camera id 'cam-1' appears twice"),
])
def test_bad_values_name_the_field_path(data, path, fragment):
    message = fails(data)
    assert message.startswith(f"{path}: ") or f"; {path}: " in message, message
    assert fragment in message


def test_every_problem_is_reported_at_once():
    message = fails({"s3": {"timeout_s": -1}, "mqtt": {"qos": 0}, "cameras": [{"id": "x", "fpz": 1}]})
    assert "s3.timeout_s" in message and "mqtt.qos" in message and "cameras.0.fpz" in message


def test_environment_overrides_file_values():
    env = {"CITYWATCH_S3_URL": "https://minio.city:9000", "CITYWATCH_S3_ACCESS_KEY": "AK",
           "CITYWATCH_S3_SECRET_KEY": "SK", "CITYWATCH_MQTT_URL": "mqtts://ops:p%40ss@broker.city",
           "CITYWATCH_WORKER_NAME": "edge-7"}
    cfg = config_from_dict({"s3": {"url": "http://127.0.0.1:9000"}, "worker": {"name": "w"}}, env)
    assert cfg.s3.endpoint == "minio.city:9000" and cfg.s3.secure
    assert cfg.s3.access_key.get_secret_value() == "AK" and cfg.s3.secret_key.get_secret_value() == "SK"
    assert (cfg.mqtt.host, cfg.mqtt.port, cfg.mqtt.tls) == ("broker.city", 8883, True)
    assert cfg.mqtt.username == "ops" and cfg.mqtt.password.get_secret_value() == "p@ss"
    assert cfg.worker.name == "edge-7"


def test_bad_environment_value_names_the_field():
    assert fails({}, {"CITYWATCH_MQTT_URL": "broker:1883"}).startswith("mqtt.url: ")


def test_env_references_are_substituted_or_named_when_missing():
    data = {"s3": {"secret_key": "${MY_S3_SECRET}", "url": "http://${S3_HOST}:9000"}}
    cfg = config_from_dict(data, {"MY_S3_SECRET": "xyz", "S3_HOST": "minio"})
    assert cfg.s3.secret_key.get_secret_value() == "xyz" and cfg.s3.endpoint == "minio:9000"
    assert fails(data, {"S3_HOST": "minio"}) == "s3.secret_key: environment variable MY_S3_SECRET is not set"


def test_load_config_from_file_and_env_path(tmp_path):
    path = tmp_path / "citywatch.yaml"
    path.write_text("cameras:\n  - id: cam-9\n    fps: 5\n")
    assert load_config(path, {}).camera("cam-9").fps == 5
    assert load_config(None, {"CITYWATCH_CONFIG": str(path)}).camera("cam-9") is not None
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml", {})
    path.write_text("cameras: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path, {})
    path.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="top level must be a mapping, got list"):
        load_config(path, {})


# -- properties -------------------------------------------------------------------------------

secrets = st.text(alphabet="abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789", min_size=16, max_size=40).map(
    lambda s: "Zq9" + s)  # distinctive, so it cannot match ordinary words of the repr


@settings(max_examples=60, deadline=None)
@given(access=secrets, secret=secrets, mqtt_password=secrets)
def test_secrets_never_appear_in_repr_str_or_dump(access, secret, mqtt_password):
    env = {"CITYWATCH_S3_ACCESS_KEY": access, "CITYWATCH_S3_SECRET_KEY": secret,
           "CITYWATCH_MQTT_URL": f"mqtt://ops:{mqtt_password}@broker:1883"}
    cfg = config_from_dict({}, env)
    assert cfg.mqtt.password.get_secret_value() == mqtt_password
    shown = " ".join([repr(cfg), str(cfg), cfg.model_dump_json(), repr(cfg.model_dump()), repr(cfg.s3), str(cfg.mqtt)])
    for value in (access, secret, mqtt_password):
        assert value not in shown
    assert cfg.mqtt.url == "mqtt://broker:1883"  # credentials moved out of the URL


camera_ids = st.text(alphabet="abcxyzABC0189_-", min_size=1, max_size=64)
cameras = st.fixed_dictionaries({
    "id": camera_ids,
    "name": st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=200),  # controls: test_control_chars
    "fps": st.floats(min_value=0.01, max_value=30),
    "location": st.fixed_dictionaries({
        "lat": st.floats(min_value=-90, max_value=90), "lon": st.floats(min_value=-180, max_value=180)}),
    "detectors": st.fixed_dictionaries({
        "flood": st.fixed_dictionaries({"sensitivity": st.floats(0, 1), "enabled": st.booleans()})}),
})


@settings(max_examples=80, deadline=None)
@given(st.lists(cameras, max_size=5, unique_by=lambda c: c["id"]))
def test_valid_registries_validate_and_round_trip(registry):
    cfg = config_from_dict({"cameras": registry}, {})
    assert [c.id for c in cfg.cameras] == [c["id"] for c in registry]
    again = config_from_dict(cfg.model_dump(mode="json", exclude={"s3": {"access_key", "secret_key"},
                                                                   "mqtt": {"password"}}), {})
    assert again == cfg


@settings(max_examples=80, deadline=None)
@given(index=st.integers(0, 3), lat=st.one_of(st.floats(max_value=-90.0001, allow_nan=False, allow_infinity=False),
                                               st.floats(min_value=90.0001, allow_nan=False, allow_infinity=False)))
def test_out_of_range_latitude_is_named_by_path(index, lat):
    registry = [{"id": f"cam-{i}", "location": {"lat": 0, "lon": 0}} for i in range(4)]
    registry[index]["location"]["lat"] = lat
    assert fails({"cameras": registry}).startswith(f"cameras.{index}.location.lat: Input should be")


sections = st.sampled_from(["s3", "mqtt", "alerts", "health", "worker"])
unknown_keys = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=20)


@settings(max_examples=80, deadline=None)
@given(section=sections, key=unknown_keys, value=st.one_of(st.integers(), st.text(max_size=10), st.booleans()))
def test_unknown_keys_anywhere_are_refused(section, key, value):
    if key in Config.model_fields[section].annotation.model_fields:
        return
    message = fails({section: {key: value}})
    assert message == f"{section}.{key}: Extra inputs are not permitted"

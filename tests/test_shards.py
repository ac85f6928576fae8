"""Sharding: rendezvous hashing properties, config validation, cameras_for_shard and the CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from pipeline.app.cli import app
from pipeline.config.settings import ConfigError, ShardSettings, config_from_dict
from pipeline.state.shards import (
    UnknownShard,
    assign_cameras,
    cameras_for_shard,
    grown_shard_names,
    moved_cameras,
    rendezvous_weight,
    resolve_shard,
    shard_for_camera,
    shard_names,
)

camera_ids = st.lists(st.from_regex(r"[A-Za-z0-9_-]{1,24}", fullmatch=True), min_size=1, max_size=60, unique=True)
shard_lists = st.integers(1, 12).map(lambda n: [f"shard-{k}" for k in range(n)])


@given(camera_ids, shard_lists)
def test_every_camera_in_exactly_one_shard(cams, shards):
    table = assign_cameras(cams, shards)
    assert set(table) == set(shards)
    flat = [c for ids in table.values() for c in ids]
    assert sorted(flat) == sorted(cams)  # coverage and exclusivity
    for shard, ids in table.items():
        assert all(shard_for_camera(c, shards) == shard for c in ids)


@given(camera_ids, shard_lists, st.from_regex(r"[A-Za-z0-9_-]{1,24}", fullmatch=True))
def test_adding_a_camera_moves_no_other_camera(cams, shards, new_cam):
    before = assign_cameras(cams, shards)
    after = assign_cameras(cams + [new_cam] if new_cam not in cams else cams, shards)
    for shard in shards:
        assert set(before[shard]) <= set(after[shard])


@given(camera_ids, shard_lists)
def test_adding_a_shard_moves_cameras_only_onto_the_new_shard(cams, shards):
    grown = shards + ["shard-new"]
    for cam, (old, new) in moved_cameras(cams, shards, grown).items():
        assert old in shards and new == "shard-new", cam


@given(camera_ids, shard_lists)
def test_removing_a_shard_moves_only_its_cameras(cams, shards):
    if len(shards) < 2:
        return
    gone = shards[-1]
    for cam, (old, _new) in moved_cameras(cams, shards, shards[:-1]).items():
        assert old == gone, cam


@pytest.mark.parametrize("n", [1, 2, 4, 9, 19])
def test_share_moved_when_adding_a_shard_is_about_one_over_n_plus_one(n):
    cams = [f"cam-{i:05d}" for i in range(5000)]
    shards = [f"shard-{k}" for k in range(n)]
    moved = moved_cameras(cams, shards, shards + [f"shard-{n}"])
    expected = 1 / (n + 1)
    assert abs(len(moved) / len(cams) - expected) < 0.25 * expected + 0.01


def test_balance_over_many_cameras():
    cams = [f"cam-{i:05d}" for i in range(5000)]
    table = assign_cameras(cams, [f"shard-{k}" for k in range(20)])
    sizes = [len(v) for v in table.values()]
    assert min(sizes) > 0.75 * 250 and max(sizes) < 1.25 * 250


def test_hash_is_stable_across_processes():
    code = "from pipeline.state.shards import rendezvous_weight; print(rendezvous_weight('shard-3', 'cam-42'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONHASHSEED": "123", "PATH": ""}).stdout
    assert int(out) == rendezvous_weight("shard-3", "cam-42")
    # SHA-256 of "shard-3\0cam-42", first 8 bytes: a constant, so a change of hash is caught
    import hashlib
    assert rendezvous_weight("shard-3", "cam-42") == int.from_bytes(
        hashlib.sha256(b"shard-3\x00cam-42").digest()[:8], "big")


def test_shard_settings_defaults_and_validation():
    assert shard_names(ShardSettings()) == ["shard-0"]
    assert shard_names(ShardSettings(count=3)) == ["shard-0", "shard-1", "shard-2"]
    named = config_from_dict({"shards": {"names": ["north", "south"]}}, env={})
    assert named.shards.count == 2 and shard_names(named.shards) == ["north", "south"]
    assert config_from_dict({}, env={}).shards.count == 1  # old configs stay valid
    for bad, needle in [({"count": 0}, "shards.count"), ({"count": 1001}, "shards.count"),
                        ({"count": 3, "names": ["a", "b"]}, "count is 3"),
                        ({"names": ["a", "a"]}, "unique"), ({"names": ["a/b"]}, "not allowed"),
                        ({"names": []}, "at least one"), ({"colour": "red"}, "shards.colour")]:
        with pytest.raises(ConfigError, match=needle):
            config_from_dict({"shards": bad}, env={})


def _config(count=2, n=20):
    return config_from_dict({"shards": {"count": count},
                             "cameras": [{"id": f"cam-{i:02d}"} for i in range(n)]}, env={})


def test_cameras_for_shard_partitions_the_config():
    cfg = _config(count=3)
    parts = [cameras_for_shard(cfg, s) for s in shard_names(cfg.shards)]
    ids = [c.id for part in parts for c in part]
    assert sorted(ids) == [c.id for c in cfg.cameras]
    assert [c.id for c in cameras_for_shard(cfg, 1)] == [c.id for c in cameras_for_shard(cfg, "shard-1")]
    assert resolve_shard(cfg, "2") == "shard-2"
    with pytest.raises(UnknownShard, match="shard-0, shard-1, shard-2"):
        cameras_for_shard(cfg, "shard-7")
    with pytest.raises(UnknownShard):
        resolve_shard(cfg, 3)


def test_grown_shard_names_keeps_existing_names():
    named = ShardSettings(names=["north", "south"])
    assert grown_shard_names(named, 3) == ["north", "south", "shard-0"]
    assert grown_shard_names(named, 1) == ["north"]
    assert grown_shard_names(ShardSettings(count=2), 4) == ["shard-0", "shard-1", "shard-2", "shard-3"]
    with pytest.raises(ValueError, match="1..1000"):
        grown_shard_names(named, 0)


def test_cli_table_and_json(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("shards: {count: 2}\ncameras:\n" + "".join(f"  - id: cam-{i:02d}\n" for i in range(10)))
    runner = CliRunner()
    res = runner.invoke(app, ["shards", "--config", str(path), "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert doc["cameras"] == 10 and [r["shard"] for r in doc["shards"]] == ["shard-0", "shard-1"]
    assert sum(r["count"] for r in doc["shards"]) == 10
    cfg = _config(count=2, n=10)
    assert doc["shards"][1]["cameras"] == [c.id for c in cameras_for_shard(cfg, "shard-1")]

    res = runner.invoke(app, ["shards", "--config", str(path), "--count", "3", "--json"])
    moved = json.loads(res.output)["moved"]
    assert all(m["to"] == "shard-2" for m in moved.values())

    res = runner.invoke(app, ["shards", "--config", str(path)])
    assert res.exit_code == 0 and "watch-shard-1" in res.output and "10 cameras in 2 shards" in res.output

    path.write_text("shards: {count: 0}\n")
    res = runner.invoke(app, ["shards", "--config", str(path)])
    assert res.exit_code == 2 and "shards.count" in res.output


def test_seed_checkpoints_skips_old_frames_but_keeps_existing_checkpoints(tmp_path, minio_client):
    import io
    import time

    from pipeline.frames.keys import frame_key
    from pipeline.frames.store import FrameStore
    from pipeline.state.shards import seed_checkpoints
    from pipeline.state.store import StateStore

    bucket = f"seed-{int(time.time() * 1000) % 10**9}"
    minio_client.make_bucket(bucket)
    now = time.time()
    for age in (86400 * 3, 3600, 200, 100, 10):
        key = frame_key("cam-new", now - age)
        minio_client.put_object(bucket, key, io.BytesIO(b"x"), 1)
    store = StateStore(tmp_path / "state.db")
    store.commit_batch("cam-old", frame_key("cam-old", now - 7200), [], None)
    seeded = seed_checkpoints(store, ["cam-new", "cam-old"], now, 300)
    assert list(seeded) == ["cam-new"]
    assert store.checkpoint("cam-old") == frame_key("cam-old", now - 7200)  # untouched
    # What the worker lists next: only the frames of the last 300 s.
    listing = FrameStore(minio_client, bucket).list_new("cam-new", store.checkpoint("cam-new"), 100)
    assert listing.keys == [frame_key("cam-new", now - a) for a in (200, 100, 10)]
    assert seed_checkpoints(store, ["cam-new"], now + 50, 300) == {}  # idempotent
    with pytest.raises(ValueError, match="since_s"):
        seed_checkpoints(store, ["cam-x"], now, -1)
    store.close()


def test_cli_seed(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(f"worker: {{state_dir: {tmp_path / 'state'}}}\nshards: {{count: 2}}\ncameras:\n"
                    + "".join(f"  - id: cam-{i:02d}\n" for i in range(10)))
    runner = CliRunner()
    res = runner.invoke(app, ["shards", "--config", str(path), "--seed", "shard-1", "--since", "60"])
    assert res.exit_code == 0, res.output
    cfg = _config(count=2, n=10)
    ids = [c.id for c in cameras_for_shard(cfg, "shard-1")]
    assert f"seeded {len(ids)} of {len(ids)} camera(s) of shard-1" in res.output
    from pipeline.state.store import StateStore

    store = StateStore(tmp_path / "state" / "state.db")
    assert sorted(store.checkpoints()) == ids
    store.close()
    res = runner.invoke(app, ["shards", "--config", str(path), "--seed", "shard-9"])
    assert res.exit_code == 2 and "not configured" in res.output


def test_check_watch_deployments():
    from pipeline.state.shards import check_watch_deployments

    def dep(name, shard, queue=None):
        d = {"name": name, "entrypoint": "flows/watch.py:watch", "work_pool": {"work_queue_name": queue or shard}}
        if shard is not None:
            d["parameters"] = {"shard": shard}
        return d

    cfg = _config(count=3)
    good = {"deployments": [dep(f"watch-shard-{k}", f"shard-{k}") for k in range(3)]
            + [{"name": "housekeeping", "entrypoint": "flows/housekeeping.py:housekeeping"}]}
    assert check_watch_deployments(cfg, good) == []
    bad = {"deployments": [dep("a", "shard-0"), dep("b", "shard-0"), dep("c", "shard-1", queue="default"),
                           dep("d", "shard-7"), dep("e", None)]}
    problems = "\n".join(check_watch_deployments(cfg, bad))
    for needle in ["shard shard-0: 2 watch deployments", "deployment c: work queue 'default'",
                   "deployment d: shard 'shard-7' is not configured", "deployment e: watches every camera",
                   "shard shard-2: no watch deployment"]:
        assert needle in problems


def test_cli_checks_the_shipped_prefect_yaml(tmp_path):
    from pathlib import Path

    deploy = Path(__file__).resolve().parents[1] / "deploy"
    runner = CliRunner()
    res = runner.invoke(app, ["shards", "-c", str(deploy / "config.example.yaml"),
                              "--prefect-file", str(deploy / "prefect.yaml")])
    assert res.exit_code == 0 and "one watch deployment per shard (2 shards)" in res.output
    grown = tmp_path / "c.yaml"
    grown.write_text((deploy / "config.example.yaml").read_text().replace("count: 2 ", "count: 3 "))
    res = runner.invoke(app, ["shards", "-c", str(grown), "--prefect-file", str(deploy / "prefect.yaml")])
    assert res.exit_code == 1 and "shard shard-2: no watch deployment" in res.output

"""Camera sharding: which edge worker's watch deployment handles which camera.

Cameras are assigned with rendezvous (highest-random-weight) hashing: each (shard, camera) pair
gets a weight from SHA-256, and a camera belongs to the shard with the highest weight. So

- every camera is in exactly one shard, computed by anyone from the shard names alone (no
  coordination, no stored table);
- adding a camera moves no other camera;
- adding a shard moves only the cameras that now rank the new shard first, about 1/(N+1) of them,
  and removing one moves only that shard's cameras.

The hash is SHA-256 (not Python's salted ``hash``), so every process and every box agrees.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pipeline.config.settings import CameraConfig, Config, ShardSettings
from pipeline.frames.keys import frame_key
from pipeline.state.store import StateStore

__all__ = [
    "ShardAssignment",
    "UnknownShard",
    "assign_cameras",
    "check_watch_deployments",
    "cameras_for_shard",
    "grown_shard_names",
    "moved_cameras",
    "rendezvous_weight",
    "seed_checkpoints",
    "resolve_shard",
    "shard_for_camera",
    "shard_names",
    "shard_table",
]


class UnknownShard(ValueError):
    """A shard name (or index) that the configuration does not define."""


def shard_names(settings: ShardSettings) -> list[str]:
    """The configured shard names: ``settings.names`` or ``shard-0`` .. ``shard-<count-1>``."""
    if settings.names:
        return list(settings.names)
    return [f"shard-{k}" for k in range(settings.count)]


def rendezvous_weight(shard: str, camera_id: str) -> int:
    """A stable 64-bit weight of the pair; the camera goes to the shard with the highest one."""
    digest = hashlib.sha256(f"{shard}\x00{camera_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def shard_for_camera(camera_id: str, shards: Sequence[str]) -> str:
    """The shard that owns ``camera_id`` among ``shards`` (ties, vanishingly rare, go to the smaller name)."""
    if not shards:
        raise ValueError("at least one shard is needed")
    return max(shards, key=lambda s: (rendezvous_weight(s, camera_id), _reverse_key(s)))


def _reverse_key(name: str) -> tuple[int, ...]:
    # Makes max() prefer the lexicographically smaller name on equal weights.
    return tuple(-ord(c) for c in name) + (1,)


def assign_cameras(camera_ids: Iterable[str], shards: Sequence[str]) -> dict[str, list[str]]:
    """Map every shard name to the sorted ids of its cameras (shards without cameras map to [])."""
    if len(set(shards)) != len(shards):
        raise ValueError("shard names must be unique")
    table: dict[str, list[str]] = {s: [] for s in shards}
    for camera_id in camera_ids:
        table[shard_for_camera(camera_id, shards)].append(camera_id)
    return {s: sorted(ids) for s, ids in table.items()}


def moved_cameras(camera_ids: Iterable[str], before: Sequence[str], after: Sequence[str]) -> dict[str, tuple[str, str]]:
    """Cameras whose shard differs between two shard lists: ``{camera: (old, new)}``."""
    moved = {}
    for camera_id in camera_ids:
        old, new = shard_for_camera(camera_id, before), shard_for_camera(camera_id, after)
        if old != new:
            moved[camera_id] = (old, new)
    return moved


def resolve_shard(config: Config, shard: str | int) -> str:
    """Turn a shard name, or its index (``2`` / ``"2"``), into the configured shard name."""
    names = shard_names(config.shards)
    if isinstance(shard, str) and shard in names:
        return shard
    text = str(shard).strip()
    if text.isdigit() and int(text) < len(names):
        return names[int(text)]
    shown = ", ".join(names[:10]) + (" ..." if len(names) > 10 else "")
    raise UnknownShard(f"shard {str(shard)[:80]!r} is not configured; shards are: {shown} "
                       f"(or an index 0..{len(names) - 1})")


def cameras_for_shard(config: Config, shard: str | int) -> list[CameraConfig]:
    """The cameras of ``config`` that ``shard`` (name or index) handles, in config order."""
    name = resolve_shard(config, shard)
    names = shard_names(config.shards)
    return [cam for cam in config.cameras if shard_for_camera(cam.id, names) == name]


@dataclass(frozen=True)
class ShardAssignment:
    """One row of the assignment table: a shard and the ids of its cameras."""

    shard: str
    camera_ids: list[str]

    @property
    def count(self) -> int:
        return len(self.camera_ids)

    def as_dict(self) -> dict[str, object]:
        return {"shard": self.shard, "count": self.count, "cameras": list(self.camera_ids)}


def grown_shard_names(settings: ShardSettings, count: int) -> list[str]:
    """The shard list after growing (or shrinking) to ``count``: existing names kept, ``shard-<k>`` added."""
    if not 1 <= count <= 1000:
        raise ValueError(f"shard count must be 1..1000, got {count}")
    names = shard_names(settings)[:count]
    k = 0
    while len(names) < count:
        if f"shard-{k}" not in names:
            names.append(f"shard-{k}")
        k += 1
    return names


def shard_table(config: Config, shards: Sequence[str] | None = None) -> list[ShardAssignment]:
    """The assignment of all configured cameras to the configured shards (or to ``shards``)."""
    names = shard_names(config.shards) if shards is None else list(shards)
    table = assign_cameras([c.id for c in config.cameras], names)
    return [ShardAssignment(shard, ids) for shard, ids in table.items()]


def seed_checkpoints(store: StateStore, camera_ids: Iterable[str], now_ts: float, since_s: float) -> dict[str, str]:
    """Start cameras that have no checkpoint in ``store`` at ``now_ts - since_s``.

    A camera without a checkpoint is otherwise processed from its oldest retained frame: on a
    new box, or on the box a camera moves to when a shard is added, that would replay days of
    footage as fresh alerts. Cameras that already have a checkpoint are left alone. Returns
    ``{camera_id: seeded key}``.
    """
    if not since_s >= 0:
        raise ValueError(f"since_s must be >= 0, got {since_s}")
    seeded = {}
    for camera_id in camera_ids:
        if store.checkpoint(camera_id) is None:
            key = frame_key(camera_id, now_ts - since_s)
            store.commit_batch(camera_id, key, [], None)
            seeded[camera_id] = key
    return seeded


WATCH_ENTRYPOINT = "flows/watch.py:watch"


def check_watch_deployments(config: Config, prefect_yaml: dict) -> list[str]:
    """Problems between the configured shards and the watch deployments of a ``prefect.yaml``.

    Every shard needs exactly one deployment of the watch flow with ``parameters.shard`` set to it
    and its own work queue of the same name (so its runs land on the box holding its checkpoints);
    no deployment may name a shard the config does not define. Returns readable problems, [] if none.
    """
    names = shard_names(config.shards)
    problems: list[str] = []
    per_shard: dict[str, list[str]] = {n: [] for n in names}
    for dep in prefect_yaml.get("deployments") or []:
        if not isinstance(dep, dict) or dep.get("entrypoint") != WATCH_ENTRYPOINT:
            continue
        name = dep.get("name", "?")
        shard = (dep.get("parameters") or {}).get("shard")
        queue = (dep.get("work_pool") or {}).get("work_queue_name")
        if shard is None:
            problems.append(f"deployment {name}: watches every camera (no shard parameter) next to sharded ones")
        elif shard not in per_shard:
            problems.append(f"deployment {name}: shard {shard!r} is not configured (shards: {', '.join(names)})")
        else:
            per_shard[shard].append(name)
            if queue != shard:
                problems.append(f"deployment {name}: work queue {queue!r} should be {shard!r}, the shard's own queue")
    for shard, deps in per_shard.items():
        if not deps:
            problems.append(f"shard {shard}: no watch deployment (add one with parameters.shard: {shard})")
        elif len(deps) > 1:
            problems.append(f"shard {shard}: {len(deps)} watch deployments ({', '.join(deps)}) would process it twice")
    return problems

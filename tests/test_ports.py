"""The production I/O classes and the test fakes provide every member of the worker's Protocols
(:mod:`pipeline.processing.ports`) with a compatible signature; built without any server."""

from __future__ import annotations

import inspect

import pytest
from minio import Minio

from pipeline.alerts.evidence import EvidenceStore
from pipeline.config.settings import MqttSettings
from pipeline.delivery.publisher import MqttPublisher
from pipeline.frames.store import FrameStore
from pipeline.processing.ports import AlertPublisher, FrameSource, SnapshotStore
from pipeline.state.store import StateStore
from tests.fakes import InMemoryFrameSource, InMemorySnapshotStore, RecordingPublisher

PAIRS = [(FrameSource, FrameStore), (SnapshotStore, EvidenceStore), (AlertPublisher, MqttPublisher),
         (FrameSource, InMemoryFrameSource), (SnapshotStore, InMemorySnapshotStore),
         (AlertPublisher, RecordingPublisher)]


def protocol_members(protocol: type) -> list[str]:
    return sorted(name for name, value in vars(protocol).items()
                  if callable(value) and not name.startswith("_"))


def compatible(wanted: inspect.Signature, given: inspect.Signature) -> str | None:
    """Why ``given`` cannot be called every way ``wanted`` can (None if it can)."""
    params = list(given.parameters.values())
    for name, p in wanted.parameters.items():
        match = given.parameters.get(name)
        if match is None:
            return f"no parameter {name!r}"
        if match.kind != p.kind and not (p.kind is p.POSITIONAL_OR_KEYWORD and match.kind is p.POSITIONAL_OR_KEYWORD):
            return f"{name!r} is {match.kind.description}, wanted {p.kind.description}"
        if (p.default is not p.empty) and match.default is p.empty:
            return f"{name!r} has no default"
        if list(wanted.parameters).index(name) != params.index(match):
            return f"{name!r} is in another position"
    extra = [p for p in params if p.name not in wanted.parameters and p.default is p.empty
             and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    return f"extra required parameters {[p.name for p in extra]}" if extra else None


@pytest.mark.parametrize(("protocol", "cls"), PAIRS, ids=lambda x: x.__name__)
def test_every_protocol_member_exists_with_a_compatible_signature(protocol, cls):
    members = protocol_members(protocol)
    assert members, f"{protocol.__name__} lists no members"
    for name in members:
        assert hasattr(cls, name), f"{cls.__name__} has no {name}"
        problem = compatible(inspect.signature(getattr(protocol, name)), inspect.signature(getattr(cls, name)))
        assert problem is None, f"{cls.__name__}.{name}: {problem}"


def test_the_signature_check_catches_a_missing_or_reordered_parameter():
    def wanted(self, key: str, max_bytes: int) -> bytes: ...
    def swapped(self, max_bytes: int, key: str) -> bytes: ...
    def short(self, key: str) -> bytes: ...
    def needs_more(self, key: str, max_bytes: int, extra: int) -> bytes: ...
    def ok(self, key: str, max_bytes: int, extra: int = 0) -> bytes: ...
    sig = inspect.signature
    assert compatible(sig(wanted), sig(swapped)) is not None
    assert compatible(sig(wanted), sig(short)) is not None
    assert compatible(sig(wanted), sig(needs_more)) is not None
    assert compatible(sig(wanted), sig(ok)) is None


def test_real_instances_built_without_a_server_satisfy_the_protocols(tmp_path):
    client = Minio("127.0.0.1:1", access_key="a", secret_key="b", secure=False)  # never contacted
    state = StateStore(tmp_path / "state.db")
    try:
        publisher = MqttPublisher(MqttSettings(url="mqtt://127.0.0.1:1"), state, "worker-test")
        assert isinstance(FrameStore(client, "frames"), FrameSource)
        assert isinstance(EvidenceStore(client, "alerts", 3600), SnapshotStore)
        assert isinstance(publisher, AlertPublisher)
        assert not isinstance(FrameStore(client, "frames"), AlertPublisher)
    finally:
        state.close()

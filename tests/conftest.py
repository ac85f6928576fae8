"""Shared fixtures: real services on loopback (SeaweedFS's S3 server, Mosquitto) and a Prefect sandbox."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

# Prefect reads its settings at import: sandbox it before any test module imports it.
_PREFECT_HOME = tempfile.mkdtemp(prefix="citywatch-prefect-")
os.environ.setdefault("PREFECT_HOME", _PREFECT_HOME)
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_TO_API_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
for _var in ("CITYWATCH_S3_URL", "CITYWATCH_S3_ACCESS_KEY", "CITYWATCH_S3_SECRET_KEY",
             "CITYWATCH_MQTT_URL", "CITYWATCH_CONFIG"):
    os.environ.pop(_var, None)

import pytest  # noqa: E402
from minio import Minio  # noqa: E402  (fixture type)

from pipeline.app.embedded import EmbeddedS3, MosquittoProcess, port_open  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FOOTAGE = ROOT.parent / "shared" / "footage"

# Fixtures that start (or need) a real server: a test asking for any of them, directly or through
# another fixture, is an `integration` test. Files that start servers themselves say so with
# ``pytestmark = pytest.mark.integration``.
REAL_SERVICE_FIXTURES = frozenset({"s3_server", "s3_env", "minio_client", "mqtt_broker",
                                   "mosquitto_factory", "prefect_harness"})


def pytest_collection_modifyitems(config, items):
    """Mark every test that uses a real-service fixture, or runs on the PostgreSQL parameter of a
    backend-parametrized fixture, as ``integration``."""
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if (REAL_SERVICE_FIXTURES.intersection(getattr(item, "fixturenames", ()))
                or any(isinstance(v, str) and v == "postgresql" for v in params.values())):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """One SeaweedFS S3 server (``weed mini``, ~1 s to start) on a free loopback port for the whole
    session, with its admin, worker and ingest identities (:mod:`pipeline.app.embedded_s3`)."""
    from pipeline.app.embedded_s3 import S3Identity, default_identities
    from tests.faults_support import TESTER_ACCESS_KEY, TESTER_SECRET_KEY

    identities = {**default_identities(), "tester": S3Identity(
        "tester", TESTER_ACCESS_KEY, TESTER_SECRET_KEY, ("Admin", "Read", "List", "Tagging", "Write"))}
    server = EmbeddedS3(workdir=tmp_path_factory.mktemp("seaweedfs"), identities=identities).start()
    yield server
    server.stop()


@pytest.fixture
def s3_env(s3_server, monkeypatch):
    """CITYWATCH_S3_* pointing at the session's S3 server."""
    monkeypatch.setenv("CITYWATCH_S3_URL", s3_server.url)
    monkeypatch.setenv("CITYWATCH_S3_ACCESS_KEY", s3_server.access_key)
    monkeypatch.setenv("CITYWATCH_S3_SECRET_KEY", s3_server.secret_key)
    return s3_server


@pytest.fixture
def minio_client(s3_server) -> Minio:
    """The real minio client (admin identity) against the session's S3 server."""
    return s3_server.client("admin")


@pytest.fixture(scope="session")
def mqtt_broker():
    """The machine's Mosquitto at 127.0.0.1:1883 if it runs, else a private one. Yields its URL."""
    if port_open("127.0.0.1", 1883):
        yield "mqtt://127.0.0.1:1883"
        return
    broker = MosquittoProcess().start()
    yield broker.url
    broker.stop()


@pytest.fixture
def mosquitto_factory(tmp_path):
    """Start private Mosquitto brokers with their own config; all are stopped at teardown."""
    started: list[MosquittoProcess] = []

    def make(extra_config: str = "", allow_anonymous: bool = True, port: int | None = None) -> MosquittoProcess:
        broker = MosquittoProcess(port=port, extra_config=extra_config,
                                  workdir=tmp_path / f"mosquitto{len(started)}",
                                  allow_anonymous=allow_anonymous)
        started.append(broker)
        return broker.start()

    yield make
    for broker in started:
        broker.stop()


@pytest.fixture
def footage_dir() -> Path:
    """../shared/footage, or skip the test when it is absent."""
    if not (FOOTAGE / "labels.csv").exists():
        pytest.skip("../shared/footage is not present")
    return FOOTAGE


@pytest.fixture(scope="session")
def prefect_harness():
    """Prefect's test harness (a temporary SQLite-backed API) for the whole session (~15 s to start)."""
    from pipeline.app.prefect_env import prepare_prefect_env

    prepare_prefect_env()
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(autouse=True)
def _restore_logger_levels():
    """Commands run in-process (CliRunner) may quiet loggers; give the next test the levels back."""
    import logging

    loggers = logging.Logger.manager.loggerDict
    before = {name: lg.level for name, lg in loggers.items() if isinstance(lg, logging.Logger)}
    yield
    for name, lg in list(loggers.items()):
        if isinstance(lg, logging.Logger) and lg.level != before.get(name, logging.NOTSET):
            lg.setLevel(before.get(name, logging.NOTSET))

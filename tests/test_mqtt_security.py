"""The production Mosquitto config from deploy/ run for real: TLS with a throwaway CA, passwords, ACL.

The broker is deploy/mosquitto/mosquitto.conf with only its paths and port rewritten; the
passwd file is made with ``mosquitto_passwd`` and the certificates with ``cryptography``.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import re
import shutil
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from pipeline.app.embedded import MosquittoProcess, free_port, wait_port
from pipeline.config.settings import MqttSettings
from pipeline.delivery.mqtt import MqttSetupError, make_client
from pipeline.delivery.publisher import MqttPublisher
from pipeline.state.store import OutboxMessage, StateStore
from tests.test_publisher import RUN_AS_ME, Collector

DEPLOY = Path(__file__).resolve().parents[1] / "deploy" / "mosquitto"
PASSWORDS = {"worker-1": "w1-Secret-7f3a", "ioc": "ioc-Secret-91bc", "minio": "minio-Secret-5d2e"}

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(shutil.which("mosquitto_passwd") is None, reason="mosquitto_passwd missing")]


def _write_key(path: Path, key) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))


def _cert(subject: str, issuer_name: x509.Name | None, issuer_key, key, *, ca: bool, san: bool) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer_name or name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def make_pki(directory: Path) -> dict[str, Path]:
    """A throwaway CA, a server certificate for localhost/127.0.0.1 and a client certificate."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, server_key, client_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    ca = _cert("citywatch test CA", None, ca_key, ca_key, ca=True, san=False)
    files = {"ca": directory / "ca.crt", "server_cert": directory / "server.crt",
             "server_key": directory / "server.key", "client_cert": directory / "client.crt",
             "client_key": directory / "client.key"}
    files["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    for kind, key in (("server", server_key), ("client", client_key)):
        cert = _cert(f"{kind}.citywatch.test", ca.subject, ca_key, key, ca=False, san=kind == "server")
        files[f"{kind}_cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_key(files[f"{kind}_key"], key)
    return files


@pytest.fixture(scope="module")
def secure_broker(tmp_path_factory):
    """deploy/mosquitto/mosquitto.conf + acl on a free port, with a passwd file and test PKI."""
    work = tmp_path_factory.mktemp("secure-broker")
    etc = work / "etc"
    pki = make_pki(etc / "tls")  # file names as in mosquitto.conf: ca.crt, server.crt, server.key
    passwd = etc / "passwd"
    for i, (user, password) in enumerate(PASSWORDS.items()):
        subprocess.run(["mosquitto_passwd", "-b", *(["-c"] if i == 0 else []), str(passwd), user, password],
                       check=True, capture_output=True)
    shutil.copy(DEPLOY / "acl", etc / "acl")
    port = free_port()
    conf = (DEPLOY / "mosquitto.conf").read_text()
    assert "listener 8883\n" in conf and "allow_anonymous false" in conf
    assert int(re.search(r"^max_queued_messages (\d+)$", conf, re.M)[1]) > 1000
    conf = (conf.replace("/etc/mosquitto/citywatch/", f"{etc}/")
            .replace("/var/lib/mosquitto/", f"{work}/data/")
            .replace("listener 8883\n", f"listener {port} 127.0.0.1\n")
            .replace("log_dest stdout", "log_dest stderr")) + RUN_AS_ME + "\n"
    (work / "data").mkdir()
    broker = MosquittoProcess(port=port, workdir=work)
    broker.conf.write_text(conf)
    broker.start()
    yield {"port": port, "pki": pki, "url": f"mqtts://localhost:{port}", "log": work / "mosquitto.log"}
    broker.stop()


def settings(broker, user: str | None, password: str | None, **kw) -> MqttSettings:
    return MqttSettings(url=broker["url"], username=user, password=password, ca_file=broker["pki"]["ca"], **kw)


def publisher(broker, store: StateStore, user: str, password: str, **kw) -> MqttPublisher:
    return MqttPublisher(settings(broker, user, password), store, user, reconnect_min_s=0.2,
                         reconnect_max_s=1, client_id=f"p-{uuid.uuid4().hex[:8]}", **kw)


def test_tls_with_ca_connects_and_right_password_delivers(secure_broker, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    ioc = Collector(secure_broker["url"], ["citywatch/alerts/#"], username="ioc",
                    password=PASSWORDS["ioc"], ca_file=secure_broker["pki"]["ca"]).start()
    store = StateStore(tmp_path / "state.db")
    store.commit_batch("cam-1", "k", [OutboxMessage("citywatch/alerts/fire/cam-1", b"tls-1")], None)
    pub = publisher(secure_broker, store, "worker-1", PASSWORDS["worker-1"]).start()
    try:
        assert pub.flush(5) == 1
        assert ioc.wait_for(lambda p: p == ["tls-1"], 5)
    finally:
        pub.stop()
        ioc.stop()
    assert "MQTT connected to mqtts://localhost" in caplog.text
    assert all(pw not in caplog.text for pw in PASSWORDS.values())


def test_wrong_password_is_refused_with_a_clear_log_and_no_secret(secure_broker, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    wrong = "not-the-password-5521"
    store = StateStore(tmp_path / "state.db")
    store.commit_batch("cam-1", "k", [OutboxMessage("citywatch/alerts/fire/cam-1", b"x")], None)
    # Credentials inside the URL must not leak either.
    mqtt = MqttSettings(url=f"mqtts://worker-1:{wrong}@localhost:{secure_broker['port']}",
                        ca_file=secure_broker["pki"]["ca"])
    pub = MqttPublisher(mqtt, store, "worker-1", reconnect_min_s=0.2, client_id="p-wrong").start()
    try:
        assert not pub.wait_connected(1.5)
        assert pub.flush(0.5) == 0 and store.outbox_size() == 1
    finally:
        pub.stop()
    refusals = [r.getMessage() for r in caplog.records if "refused connection" in r.getMessage()]
    assert refusals and ("Bad user name or password" in refusals[0] or "Not authorized" in refusals[0])
    assert wrong not in caplog.text
    anonymous = Collector(secure_broker["url"], ["citywatch/#"], ca_file=secure_broker["pki"]["ca"])
    anonymous.sub.start()
    try:
        assert not anonymous.sub.wait_subscribed(1)
        assert anonymous.sub.refusal is not None
    finally:
        anonymous.stop()


def test_tls_without_the_ca_fails(secure_broker, tmp_path, caplog):
    mqtt = MqttSettings(url=secure_broker["url"], username="worker-1", password=PASSWORDS["worker-1"])
    pub = MqttPublisher(mqtt, StateStore(tmp_path / "s.db"), "worker-1", reconnect_min_s=0.2,
                        client_id="p-noca").start()
    try:
        assert not pub.wait_connected(2)
    finally:
        pub.stop()
    assert "TCP or TLS handshake failed" in caplog.text
    log_text = secure_broker["log"].read_text(errors="replace")
    assert "OpenSSL Error" in log_text or "alert" in log_text.lower() or "unknown ca" in log_text.lower()


def test_tls_files_are_checked(tmp_path):
    with pytest.raises(MqttSetupError, match="ca_file"):
        make_client(MqttSettings(url="mqtts://localhost:8883", ca_file=tmp_path / "missing.crt"), "c1")
    (tmp_path / "c.crt").write_text("x")
    with pytest.raises(MqttSetupError, match="together"):
        make_client(MqttSettings(url="mqtts://localhost:8883", cert_file=tmp_path / "c.crt"), "c1")
    with pytest.raises(MqttSetupError, match="mqtts"):
        make_client(MqttSettings(url="mqtt://localhost:1883", cert_file=tmp_path / "c.crt"), "c1")
    with pytest.raises(MqttSetupError, match="client id"):
        make_client(MqttSettings(), "bad/#")


def test_acl_worker_publishes_alerts_only_ioc_only_acks(secure_broker, tmp_path):
    ca = secure_broker["pki"]["ca"]
    ioc = Collector(secure_broker["url"], ["citywatch/#"], username="ioc", password=PASSWORDS["ioc"],
                    ca_file=ca).start()
    worker_reads = Collector(secure_broker["url"], ["citywatch/ack/#"], username="worker-1",
                             password=PASSWORDS["worker-1"], ca_file=ca).start()
    worker_store = StateStore(tmp_path / "worker.db")
    ioc_store = StateStore(tmp_path / "ioc.db")
    worker = publisher(secure_broker, worker_store, "worker-1", PASSWORDS["worker-1"]).start()
    ioc_pub = publisher(secure_broker, ioc_store, "ioc", PASSWORDS["ioc"]).start()
    try:
        worker_store.enqueue([
            OutboxMessage("citywatch/ack/inc-1", b"worker-ack"),                 # denied
            OutboxMessage("citywatch/workers/worker-2/status", b"impostor"),     # denied
            OutboxMessage("citywatch/alerts/fire/cam-1", b"worker-alert"),       # allowed
            OutboxMessage("citywatch/cameras/cam-1/status", b"worker-camera"),   # allowed
        ])
        ioc_store.enqueue([OutboxMessage("citywatch/alerts/fire/cam-1", b"ioc-alert"),  # denied
                           OutboxMessage("citywatch/ack/inc-1", b"ioc-ack")])           # allowed
        worker.flush(5)
        ioc_pub.flush(5)
        assert ioc.wait_for(lambda p: {"worker-alert", "worker-camera"} <= set(p), 5)
        assert worker_reads.wait_for(lambda p: "ioc-ack" in p, 5)
        time.sleep(0.3)
        seen = set(ioc.payloads()) | set(worker_reads.payloads())
        assert not seen & {"worker-ack", "impostor", "ioc-alert"}
        # Refused publishes are not retried forever: PUBACK "Not authorized" -> dead letter.
        assert worker_store.outbox_size() == 0 and ioc_store.outbox_size() == 0
        assert {t for _, t, _ in worker_store.dead_letters()} == {"citywatch/ack/inc-1",
                                                                   "citywatch/workers/worker-2/status"}
        assert [t for _, t, _ in ioc_store.dead_letters()] == ["citywatch/alerts/fire/cam-1"]
        assert all("Not authorized" in reason for _, _, reason in ioc_store.dead_letters())
    finally:
        for c in (worker, ioc_pub):
            c.stop()
        ioc.stop()
        worker_reads.stop()


def test_mutual_tls_needs_the_client_certificate(secure_broker, mosquitto_factory, tmp_path):
    """A listener with require_certificate: the configured client cert gets in, no cert does not."""
    pki = secure_broker["pki"]
    port = free_port()
    mosquitto_factory(extra_config=f"""{RUN_AS_ME}
listener {port} 127.0.0.1
cafile {pki['ca']}
certfile {pki['server_cert']}
keyfile {pki['server_key']}
require_certificate true
""")
    wait_port("127.0.0.1", port)
    url = f"mqtts://localhost:{port}"
    with_cert = MqttSettings(url=url, ca_file=pki["ca"], cert_file=pki["client_cert"], key_file=pki["client_key"])
    without = MqttSettings(url=url, ca_file=pki["ca"])
    good = MqttPublisher(with_cert, StateStore(tmp_path / "a.db"), "w-cert", client_id="p-cert").start()
    bad = MqttPublisher(without, StateStore(tmp_path / "b.db"), "w-nocert", client_id="p-nocert").start()
    try:
        assert good.wait_connected(5)
        assert not bad.wait_connected(1)
    finally:
        good.stop()
        bad.stop()


def test_console_as_ioc_sees_acknowledgements_under_the_shipped_acl(secure_broker, tmp_path):
    from starlette.testclient import TestClient

    from pipeline.app.console import create_app
    from pipeline.config.settings import config_from_dict
    from tests.test_console import alert_bytes, wait_until

    cfg = config_from_dict({
        "mqtt": {"url": secure_broker["url"], "username": "ioc", "password": PASSWORDS["ioc"],
                 "ca_file": str(secure_broker["pki"]["ca"]), "topic_prefix": "citywatch"},
        "cameras": [{"id": "cam-north", "name": "North", "location": {"lat": 10.9, "lon": 106.6, "district": "D"}}],
    }, env={})
    iid, topic, start = alert_bytes(cfg, started=time.time())
    store = StateStore(tmp_path / "worker.db")
    worker = publisher(secure_broker, store, "worker-1", PASSWORDS["worker-1"]).start()
    app = create_app(cfg, client_id=f"console-{uuid.uuid4().hex[:8]}", extra_hosts=["testserver"])
    try:
        with TestClient(app) as client:
            assert wait_until(lambda: client.get("/api/state").json()["meta"]["broker_connected"])
            time.sleep(0.5)  # SUBACK
            store.enqueue([OutboxMessage(topic, start)])
            worker.flush(5)
            assert wait_until(lambda: client.get("/api/state").json()["incidents"]), "alert not seen as ioc"
            resp = client.post(f"/api/incidents/{iid}/ack", json={"operator": "Ana", "note": "crew sent"})
            assert resp.status_code == 202, resp.text
            acked = wait_until(lambda: client.get("/api/state").json()["incidents"][0]["ack"])
            assert acked and acked["operator"] == "Ana", "the console (user ioc) never saw the acknowledgement"
    finally:
        worker.stop()


def test_new_frame_notices_under_the_shipped_acl_come_from_minio_only(secure_broker):
    """MinIO's MQTT user may announce frames and a worker hears them; the operations center may not."""
    from pipeline.frames.notices import FrameNotices, NoticePublisher, notice_payload

    key = "cam-1/2026/12/08/20261208T031500.250Z.jpg"
    notices = FrameNotices(settings(secure_broker, "worker-1", PASSWORDS["worker-1"]),
                           f"n-{uuid.uuid4().hex[:8]}", "frames", ["cam-1", "cam-2"]).start()
    minio = NoticePublisher(settings(secure_broker, "minio", PASSWORDS["minio"]), f"m-{uuid.uuid4().hex[:8]}",
                            "frames").start(5)
    ioc = make_client(settings(secure_broker, "ioc", PASSWORDS["ioc"]), f"i-{uuid.uuid4().hex[:8]}", clean_start=True)
    connected = threading.Event()
    ioc.on_connect = lambda *args: connected.set()
    ioc.loop_start()
    try:
        assert notices.wait_subscribed(10) and connected.wait(10)
        sent = ioc.publish("citywatch/frames/new", notice_payload("frames", key.replace("cam-1", "cam-2"), 1), qos=1)
        sent.wait_for_publish(5)  # acknowledged (MQTT 5: "not authorized"), never forwarded
        time.sleep(0.5)
        assert notices.take(0.1) == []  # the ioc user may not write there: the broker drops it
        minio(key, 1)
        assert notices.take(5) == ["cam-1"]
        assert minio.published == 1
    finally:
        notices.stop()
        minio.stop()
        ioc.disconnect()
        ioc.loop_stop()

"""The deployment files in deploy/: structure, cross-references and consistency with the code.

No Docker engine or systemd runs here, so these check what can be checked without them: every
file a compose service or unit mounts exists, the Prefect deployments match the configured
shards and the flows' signatures, the MinIO policies are least-privilege, and the bucket init
script drives `mc` as intended (run against a recording `mc` on PATH).
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from pipeline.config.settings import load_config
from pipeline.state.shards import shard_names

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"


def _compose() -> dict:
    return yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())


def _env_example() -> dict[str, str]:
    pairs = [line.split("=", 1) for line in (DEPLOY / ".env.example").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    return {k.strip(): v for k, v in pairs}


def test_compose_has_a_full_site():
    compose = _compose()
    services = compose["services"]
    # Health checks on every long-running service; one-shots are waited for by their exit. (The
    # console's own services are its deployment's to check: issue 15.)
    for name, service in services.items():
        if "console" in name:
            continue
        assert ("healthcheck" in service) == (service.get("restart") != "no"), name
    # Prefect's API and UI behind basic auth; every Prefect client logs in with the same string.
    auth = services["prefect-server"]["environment"]["PREFECT_SERVER_API_AUTH_STRING"]
    assert auth.startswith("${PREFECT_AUTH_STRING:?") and compose["x-citywatch-env"]["PREFECT_API_AUTH_STRING"] == auth
    for name in ("prefect-deploy", "citywatch-worker"):
        assert services[name]["environment"]["PREFECT_API_AUTH_STRING"] == auth, name
    worker_env = services["citywatch-worker"]["environment"]
    assert worker_env["CITYWATCH_METRICS_PORT"] == "9464" and "9464" in services["citywatch-worker"]["expose"]
    assert "--with-healthcheck" in services["citywatch-worker"]["command"][0]
    assert worker_env["PREFECT_WORKER_WEBSERVER_PORT"] in services["citywatch-worker"]["healthcheck"]["test"][-1]
    assert "deploy/notify_failed_runs.py" in services["prefect-deploy"]["command"][0]
    assert {"minio", "minio-init", "mosquitto", "postgres", "prefect-server", "prefect-deploy",
            "citywatch-worker"} <= set(services)
    server = services["prefect-server"]
    assert "postgresql+asyncpg://" in server["environment"]["PREFECT_API_DATABASE_CONNECTION_URL"]
    assert server["depends_on"]["postgres"]["condition"] == "service_healthy"
    worker = services["citywatch-worker"]
    assert worker["build"]["dockerfile"] == "deploy/Dockerfile"
    cmd = worker["command"][0].split()
    assert cmd[:3] == ["citywatch", "shards", "--seed"]
    start = cmd.index("prefect")
    assert cmd[start:start + 3] == ["prefect", "worker", "start"] and cmd[cmd.index("--pool") + 1] == "citywatch-edge"
    assert worker["depends_on"]["minio-init"]["condition"] == "service_completed_successfully"
    assert worker["environment"]["CITYWATCH_MQTT_URL"].startswith("mqtts://")  # TLS to the broker
    assert "init-buckets.sh" in " ".join(services["minio-init"]["entrypoint"])


def test_minio_announces_new_frames_to_the_workers_through_the_broker():
    """MinIO's MQTT notification target publishes on the topic the workers listen to, as the user
    the shipped ACL lets write there (and only when a password for it is set)."""
    from pipeline.frames.notices import notice_topic

    services = _compose()["services"]
    env = services["minio"]["environment"]
    assert env["MINIO_NOTIFY_MQTT_TOPIC_CITYWATCH"] == notice_topic("citywatch")
    assert env["MINIO_NOTIFY_MQTT_ENABLE_CITYWATCH"] == "${MINIO_MQTT_PASSWORD:+on}"
    assert env["MINIO_NOTIFY_MQTT_BROKER_CITYWATCH"].startswith("tls://mosquitto:")
    assert services["minio-init"]["environment"]["NOTIFY_TARGET"] == "${MINIO_MQTT_PASSWORD:+arn:minio:sqs::CITYWATCH:mqtt}"
    acl = (DEPLOY / "mosquitto" / "acl").read_text()
    user = env["MINIO_NOTIFY_MQTT_USERNAME_CITYWATCH"]
    assert f"user {user}\ntopic write {notice_topic('citywatch')}\n" in acl
    assert "MINIO_MQTT_PASSWORD=" in (DEPLOY / ".env.example").read_text()


def test_compose_mounts_only_files_that_exist():
    missing, secrets = [], set()
    for name, service in _compose()["services"].items():
        for volume in service.get("volumes", []):
            host = volume.split(":", 1)[0]
            host = re.sub(r"\$\{[A-Z_]+:-([^}]+)\}", r"\1", host)  # take the default of ${VAR:-default}
            if host.startswith("./secrets/"):  # made per site by deploy/make-secrets.sh
                secrets.add(host)
            elif host.startswith("."):
                if not (DEPLOY / host).exists():
                    missing.append(f"{name}: {host}")
        build = service.get("build")
        if build and not (DEPLOY / build["context"] / build["dockerfile"]).exists():
            missing.append(f"{name}: {build['dockerfile']}")
    assert not missing, f"compose references files that do not exist: {missing}"
    assert secrets == {"./secrets/mosquitto/passwd", "./secrets/mosquitto/tls", "./secrets/mosquitto/tls/ca.crt"}


def test_every_compose_variable_is_in_env_example():
    text = (DEPLOY / "docker-compose.yml").read_text()
    used = set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", text))
    missing = used - set(_env_example())
    assert not missing, f"deploy/.env.example lacks {sorted(missing)}"


def test_dockerfile_copies_existing_sources():
    text = (DEPLOY / "Dockerfile").read_text()
    for src in re.findall(r"^COPY (\S+(?: \S+)*) \S+$", text, flags=re.M):
        for path in src.split():
            assert (ROOT / path).exists(), f"Dockerfile copies {path}, which does not exist"
    assert "citywatch-edge" in text and "USER citywatch" in text


def test_example_config_is_valid_and_matches_the_watch_deployments():
    config = load_config(DEPLOY / "config.example.yaml", env={})
    doc = yaml.safe_load((DEPLOY / "prefect.yaml").read_text())
    watch = {d["name"]: d for d in doc["deployments"] if d["entrypoint"] == "flows/watch.py:watch"}
    assert sorted(watch) == sorted(f"watch-{s}" for s in shard_names(config.shards))
    for name, dep in watch.items():
        shard = name.removeprefix("watch-")
        assert dep["parameters"]["shard"] == shard
        assert dep["work_pool"] == {"name": "citywatch-edge", "work_queue_name": shard,
                                    "job_variables": {"stream_output": True}}
        assert dep["concurrency_limit"]["limit"] == 1
        interval = dep["schedules"][0]["interval"]
        assert 0 < interval - dep["parameters"]["window_s"] <= 0.1 * interval


def test_prefect_yaml_is_accepted_by_prefect_and_names_real_flows():
    from prefect.cli.deploy._models import PrefectYamlModel

    model = PrefectYamlModel.model_validate(yaml.safe_load((DEPLOY / "prefect.yaml").read_text()))
    names = {d.name for d in model.deployments}
    assert {"camera-health", "housekeeping"} <= names
    for dep in model.deployments:
        assert dep.work_pool.name == "citywatch-edge" and dep.schedules and dep.concurrency_limit
        path, func = dep.entrypoint.split(":")
        if not (ROOT / path).exists():
            pytest.fail(f"{dep.name}: entrypoint {path} does not exist")
        tree = ast.parse((ROOT / path).read_text())
        fn = next((n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == func), None)
        assert fn is not None, f"{dep.name}: {path} has no function {func}"
        args = {a.arg for a in fn.args.args + fn.args.kwonlyargs}
        assert set(dep.parameters) <= args, f"{dep.name}: unknown parameters {set(dep.parameters) - args}"


def test_automations_are_valid_prefect_automations():
    from prefect.events.schemas.automations import AutomationCore

    docs = yaml.safe_load((DEPLOY / "automations.yaml").read_text())["automations"]
    autos = [AutomationCore.model_validate(a) for a in docs]
    zombie = autos[0]
    assert zombie.trigger.posture == "Proactive" and "prefect.flow-run.heartbeat" in zombie.trigger.after
    assert zombie.actions[0].type == "change-flow-run-state" and zombie.actions[0].state == "CRASHED"
    # The heartbeat interval the workers set must fit three times into the silence allowed.
    freq = int(_compose()["x-citywatch-env"]["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"])
    assert "PREFECT_FLOWS_HEARTBEAT_FREQUENCY=30" in (DEPLOY / "systemd" / "citywatch-worker.env.example").read_text()
    assert 3 * freq <= zombie.trigger.within.total_seconds()


def test_minio_policies_are_least_privilege():
    docs = {p.stem: json.loads(p.read_text()) for p in (DEPLOY / "minio").glob("policy-*.json")}
    assert set(docs) == {"policy-worker", "policy-ingest", "policy-camera"}
    for name, doc in docs.items():
        for st in doc["Statement"]:
            assert st["Effect"] == "Allow"
            assert all(a != "s3:*" and not a.startswith("admin:") for a in st["Action"]), name
            assert all(r != "arn:aws:s3:::*" for r in st["Resource"]), name
    ingest = docs["policy-ingest"]["Statement"]
    assert [(s["Action"], s["Resource"]) for s in ingest] == [(["s3:PutObject"], ["arn:aws:s3:::frames/*"])]
    camera = docs["policy-camera"]["Statement"][0]
    assert camera["Resource"] == ["arn:aws:s3:::frames/${aws:username}/*"]
    worker_actions = {a for s in docs["policy-worker"]["Statement"] for a in s["Action"]}
    assert "s3:PutObject" in worker_actions and "s3:DeleteBucket" not in worker_actions
    frames_put = [s for s in docs["policy-worker"]["Statement"]
                  if "s3:PutObject" in s["Action"] and any("frames" in r for r in s["Resource"])]
    assert not frames_put, "the worker must not write frames"


FAKE_MC = """#!/bin/sh
echo "$*" >> "$MC_LOG"
case "$1 $2 $3" in
  "ilm rule import") cat > "$MC_LOG.ilm.$(echo "$4" | tr / _)" ;;
  "admin user info") echo "Policy: ${MC_ATTACHED:-none}" ;;
  "event ls "*) echo "${MC_EVENTS:-}" ;;
esac
exit 0
"""


def test_bucket_init_script_drives_mc(tmp_path):
    script = DEPLOY / "minio" / "init-buckets.sh"
    subprocess.run(["sh", "-n", str(script)], check=True)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "mc").write_text(FAKE_MC)
    (bindir / "mc").chmod(0o755)
    log = tmp_path / "mc.log"
    env = {"PATH": f"{bindir}:{os.environ['PATH']}", "MC_LOG": str(log), "MINIO_URL": "http://minio:9000",
           "MINIO_ROOT_USER": "root", "MINIO_ROOT_PASSWORD": "rootpass", "FRAMES_BUCKET": "city-frames",
           "CITYWATCH_WORKER_ACCESS_KEY": "wk", "CITYWATCH_WORKER_SECRET_KEY": "wsecret",
           "CAMERA_USERS": "cam-01:s1 cam-02:s2", "FRAME_RETENTION_DAYS": "14"}
    out = subprocess.run(["sh", str(script)], env=env, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    calls = log.read_text().splitlines()
    assert "mb --ignore-existing site/city-frames" in calls and "mb --ignore-existing site/alerts" in calls
    ilm = json.loads(Path(f"{log}.ilm.site_city-frames").read_text())
    assert ilm["Rules"][0]["Expiration"] == {"Days": 14} and ilm["Rules"][0]["Status"] == "Enabled"
    assert json.loads(Path(f"{log}.ilm.site_alerts").read_text())["Rules"][0]["Expiration"] == {"Days": 365}
    assert "admin policy attach site citywatch-worker --user wk" in calls
    assert "admin policy attach site citywatch-camera --user cam-02" in calls
    assert not any("citywatch-ingest --user" in c for c in calls)  # no ingest user configured
    assert not any(c.startswith("event") for c in calls)  # no notification target configured

    env["MC_ATTACHED"] = "citywatch-worker citywatch-camera"  # second run: already attached
    env["NOTIFY_TARGET"] = "arn:minio:sqs::CITYWATCH:mqtt"  # and frames announced on MQTT
    log.unlink()
    assert subprocess.run(["sh", str(script)], env=env, capture_output=True, timeout=30).returncode == 0
    calls = log.read_text().splitlines()
    assert not any("policy attach" in c for c in calls)
    assert "event add site/city-frames arn:minio:sqs::CITYWATCH:mqtt --event put --suffix .jpg" in calls
    env["MC_EVENTS"] = "arn:minio:sqs::CITYWATCH:mqtt   s3:ObjectCreated:*   Filter: suffix=\".jpg\""
    log.unlink()
    assert subprocess.run(["sh", str(script)], env=env, capture_output=True, timeout=30).returncode == 0
    assert not any(c.startswith("event add") for c in log.read_text().splitlines())  # already there

    env["FRAME_RETENTION_DAYS"] = "30d"
    bad = subprocess.run(["sh", str(script)], env=env, capture_output=True, text=True, timeout=30)
    assert bad.returncode == 2 and "whole numbers" in bad.stderr
    del env["CITYWATCH_WORKER_SECRET_KEY"]
    bad = subprocess.run(["sh", str(script)], env=env, capture_output=True, text=True, timeout=30)
    assert bad.returncode != 0 and "CITYWATCH_WORKER_SECRET_KEY" in bad.stderr


def check_systemd_unit(name: str, lines: list[str], command: str) -> None:
    """``deploy/systemd/<name>.service`` holds ``lines`` and ``command``, every variable it uses is
    in ``<name>.env.example``, and ``systemd-analyze verify`` (when installed) finds nothing."""
    unit = (DEPLOY / "systemd" / f"{name}.service").read_text()
    for line in lines:
        assert line in unit
    assert command in unit
    env_example = (DEPLOY / "systemd" / f"{name}.env.example").read_text()
    live = "\n".join(line for line in unit.splitlines() if not line.lstrip().startswith("#"))
    for var in set(re.findall(r"\$\{?([A-Z_]+)\}?", live)):
        assert f"{var}=" in env_example, f"{var} is used by the unit but not in the env example"
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    path = Path("/tmp") / f"{name}-{os.getpid()}.service"
    path.write_text(unit.replace("/opt/citywatch/.venv/bin/", f"{ROOT / '.venv' / 'bin'}/"))
    try:
        res = subprocess.run([analyze, "verify", str(path)], capture_output=True, text=True, timeout=60)
    finally:
        path.unlink()
    problems = [line for line in res.stderr.splitlines() if path.name in line or "citywatch" in line]
    assert not problems, problems


def test_systemd_unit():
    check_systemd_unit("citywatch-worker", ["Restart=always", "EnvironmentFile=/etc/citywatch/worker.env",
                                            "NoNewPrivileges=yes", "ProtectSystem=strict",
                                            "StateDirectory=citywatch", "User=citywatch"],
                       "prefect worker start --pool citywatch-edge")


def test_make_secrets_gives_a_working_tls_broker_login(tmp_path, mosquitto_factory):
    import ssl

    import paho.mqtt.client as mqtt

    if shutil.which("mosquitto_passwd") is None or shutil.which("openssl") is None:
        pytest.skip("mosquitto_passwd or openssl is not installed")
    out = tmp_path / "secrets"
    script = DEPLOY / "make-secrets.sh"
    res = subprocess.run(["sh", str(script), "-o", str(out), "worker-1", "ioc"], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    assert (out / ".gitignore").read_text().strip() == "*"
    clear = dict(line.split("=", 1) for line in (out / "mqtt-passwords.env").read_text().split())
    assert set(clear) == {"MQTT_PASSWORD_WORKER_1", "MQTT_PASSWORD_IOC"}
    assert (out / "mqtt-passwords.env").stat().st_mode & 0o077 == 0
    # Re-running keeps existing users and certificates.
    before = (out / "mosquitto" / "tls" / "server.crt").read_bytes()
    res = subprocess.run(["sh", str(script), "-o", str(out), "worker-1", "worker-2"], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0 and "worker-2" in res.stdout and "user worker-1" not in res.stdout
    assert (out / "mosquitto" / "tls" / "server.crt").read_bytes() == before
    bad = subprocess.run(["sh", str(script), "-o", str(out), "bad/name"], capture_output=True, text=True)
    assert bad.returncode == 2 and "may only hold" in bad.stderr

    tls = out / "mosquitto" / "tls"
    import getpass

    broker = mosquitto_factory(allow_anonymous=False, extra_config="\n".join([f"user {getpass.getuser()}",
        f"password_file {out / 'mosquitto' / 'passwd'}", f"cafile {tls / 'ca.crt'}",
        f"certfile {tls / 'server.crt'}", f"keyfile {tls / 'server.key'}"]))

    def connect(password: str) -> int:
        result: list[int] = []
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        client.tls_set(ca_certs=str(tls / "ca.crt"), cert_reqs=ssl.CERT_REQUIRED)
        client.username_pw_set("worker-1", password)
        client.on_connect = lambda c, u, f, rc, p: result.append(rc.value)
        client.connect("localhost", broker.port)  # the certificate names localhost
        deadline = time.monotonic() + 10
        while not result and time.monotonic() < deadline:
            client.loop(0.2)
        client.disconnect()
        return result[0] if result else -1

    assert connect(clear["MQTT_PASSWORD_WORKER_1"]) == 0
    assert connect("wrong-password") != 0

    # The compose health check of this broker, run for real: healthy while it answers, not after.
    check = _compose()["services"]["mosquitto"]["healthcheck"]["test"][1]
    check = check.replace("/etc/mosquitto/citywatch/tls/ca.crt", str(tls / "ca.crt")).replace("8883", str(broker.port))
    assert subprocess.run(["sh", "-c", check], timeout=30).returncode == 0
    broker.stop()
    assert subprocess.run(["sh", "-c", check], timeout=30).returncode != 0

"""The console's deployment files: its compose service behind the Caddy TLS proxy, the systemd unit
(``systemd-analyze verify`` when available) and its env example."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"


def test_compose_console_runs_behind_the_tls_proxy_with_postgres():
    services = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())["services"]
    console, proxy = services["citywatch-console"], services["console-proxy"]
    assert console["command"][:2] == ["citywatch", "console"] and "ports" not in console  # never exposed in clear
    env = console["environment"]
    assert env["CITYWATCH_CONSOLE_DB_URL"].startswith("postgresql://") and "@postgres:5432/" in env["CITYWATCH_CONSOLE_DB_URL"]
    assert env["CITYWATCH_MQTT_URL"].startswith("mqtts://") and env["CITYWATCH_MQTT_USERNAME"] == "ioc"
    assert env["CITYWATCH_CONSOLE_TOKEN"].startswith("${CITYWATCH_CONSOLE_TOKEN:?")
    assert console["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "/healthz" in console["healthcheck"]["test"][-1]
    assert "443:443" in proxy["ports"] and proxy["depends_on"]["citywatch-console"]["condition"] == "service_healthy"
    caddy = (DEPLOY / "caddy" / "Caddyfile").read_text()
    assert "reverse_proxy citywatch-console:8090" in caddy and "flush_interval -1" in caddy  # SSE unbuffered
    acl = (DEPLOY / "mosquitto" / "acl").read_text()
    assert "user ioc" in acl and "topic read citywatch/workers/#" in acl and "topic readwrite citywatch/ack/#" in acl


def test_console_env_example_and_db_url_override():
    from pipeline.config import config_from_dict

    env_text = (DEPLOY / "systemd" / "citywatch-console.env.example").read_text()
    env = dict(line.split("=", 1) for line in env_text.splitlines() if line and not line.startswith("#"))
    cfg = config_from_dict({}, env=env)
    assert cfg.console.store.url.get_secret_value() == env["CITYWATCH_CONSOLE_DB_URL"]
    assert "change-me" not in repr(cfg.console)  # the password never prints


def test_console_systemd_unit():
    unit = (DEPLOY / "systemd" / "citywatch-console.service").read_text()
    for line in ["Restart=always", "EnvironmentFile=/etc/citywatch/console.env", "NoNewPrivileges=yes",
                 "ProtectSystem=strict", "StateDirectory=citywatch-console", "User=citywatch"]:
        assert line in unit
    assert "citywatch console --host 127.0.0.1" in unit  # behind the proxy, never on a public address
    env_example = (DEPLOY / "systemd" / "citywatch-console.env.example").read_text()
    live = "\n".join(line for line in unit.splitlines() if not line.lstrip().startswith("#"))
    for var in set(re.findall(r"\$\{?([A-Z_]+)\}?", live)):
        assert f"{var}=" in env_example, f"{var} is used by the unit but not in the env example"
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    path = Path("/tmp") / f"citywatch-console-{os.getpid()}.service"
    path.write_text(unit.replace("/opt/citywatch/.venv/bin/", f"{ROOT / '.venv' / 'bin'}/"))
    try:
        res = subprocess.run([analyze, "verify", str(path)], capture_output=True, text=True, timeout=60)
    finally:
        path.unlink()
    problems = [line for line in res.stderr.splitlines() if path.name in line or "citywatch" in line]
    assert not problems, problems

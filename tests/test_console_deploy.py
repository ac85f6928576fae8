"""The console's deployment files: its compose service behind the Caddy TLS proxy, the systemd unit
(``systemd-analyze verify`` when available) and its env example."""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.test_deploy_files import check_systemd_unit

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
    from pipeline.config.settings import config_from_dict

    env_text = (DEPLOY / "systemd" / "citywatch-console.env.example").read_text()
    env = dict(line.split("=", 1) for line in env_text.splitlines() if line and not line.startswith("#"))
    cfg = config_from_dict({}, env=env)
    assert cfg.console.store.url.get_secret_value() == env["CITYWATCH_CONSOLE_DB_URL"]
    assert "change-me" not in repr(cfg.console)  # the password never prints


def test_console_systemd_unit():
    check_systemd_unit("citywatch-console", ["Restart=always", "EnvironmentFile=/etc/citywatch/console.env",
                                             "NoNewPrivileges=yes", "ProtectSystem=strict",
                                             "StateDirectory=citywatch-console", "User=citywatch"],
                       "citywatch console --host 127.0.0.1")  # behind the proxy, never on a public address

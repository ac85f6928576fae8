"""The two endpoints of the configuration: the object store (S3/MinIO) and the MQTT broker.

Credentials given in a URL (``http://key:secret@host``, ``mqtt://user:pass@host``) are moved
into the ``SecretStr`` fields and stripped from the URL, so ``config check``, logs and dumps never
show them; URL errors never echo the credentials either.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from pipeline.common.ids import BUCKET, NAME, TOPIC_PREFIX, anchored, full_match
from pipeline.common.text import PlainText

__all__ = ["MqttSettings", "S3Settings", "Strict"]


class Strict(BaseModel):
    """A settings model refusing unknown keys."""

    model_config = ConfigDict(extra="forbid")


def _check_port(parts) -> None:
    """A URL's port, if given, must be a number 1-65535 (the message never echoes the URL)."""
    try:
        port = parts.port
    except ValueError:
        raise ValueError("the port must be a number from 1 to 65535") from None
    if port == 0:
        raise ValueError("the port must be a number from 1 to 65535")


class S3Settings(Strict):
    """Object store (MinIO in production) holding frames and alert snapshots."""

    url: str = Field("http://127.0.0.1:9000", description="Endpoint, http:// or https://")
    access_key: SecretStr | None = Field(None, description="From CITYWATCH_S3_ACCESS_KEY")
    secret_key: SecretStr | None = Field(None, description="From CITYWATCH_S3_SECRET_KEY")
    region: PlainText = "us-east-1"
    frames_bucket: str = Field("frames", pattern=anchored(BUCKET))
    alerts_bucket: str = Field("alerts", pattern=anchored(BUCKET))
    presign_expiry_s: int = Field(7 * 24 * 3600, ge=60, le=7 * 24 * 3600, description="Snapshot URL lifetime")
    timeout_s: float = Field(5.0, gt=0, le=120)

    @field_validator("url")
    @classmethod
    def _check_url(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            shown = urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[-1]))  # never the credentials
            raise ValueError(f"must look like http://host:port, got {shown!r}")
        _check_port(parts)
        return url.rstrip("/")

    @model_validator(mode="after")
    def _credentials_from_url(self) -> S3Settings:
        parts = urlsplit(self.url)
        if parts.username and self.access_key is None:
            self.access_key = SecretStr(unquote(parts.username))
        if parts.password and self.secret_key is None:
            self.secret_key = SecretStr(unquote(parts.password))
        if "@" in parts.netloc:  # keep credentials out of the URL (and out of `config check`, logs, dumps)
            self.url = urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[-1]))
        return self

    @property
    def endpoint(self) -> str:
        """host:port as the minio client wants it."""
        parts = urlsplit(self.url)
        return parts.netloc

    @property
    def secure(self) -> bool:
        return urlsplit(self.url).scheme == "https"


class MqttSettings(Strict):
    """Broker the alerts go to. ``url`` is ``mqtt://user:pass@host:port`` or ``mqtts://`` for TLS."""

    url: str = Field("mqtt://127.0.0.1:1883", description="From CITYWATCH_MQTT_URL")
    username: PlainText | None = None
    password: SecretStr | None = None
    topic_prefix: str = Field("citywatch", description="Topics are <prefix>/alerts/<type>/<camera>")
    qos: int = Field(1, ge=1, le=2, description="QoS of alerts, their CAP copies and of subscriptions")
    ca_file: Path | None = Field(None, description="CA bundle for mqtts://")
    cert_file: Path | None = Field(None, description="Client certificate (optional)")
    key_file: Path | None = Field(None, description="Client key (optional)")
    keepalive_s: int = Field(30, ge=5, le=3600)
    client_id: str | None = Field(None, pattern=anchored(NAME))

    @field_validator("url")
    @classmethod
    def _check_url(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise ValueError("must look like mqtt://[user:pass@]host[:port] or mqtts://...")
        _check_port(parts)
        return url

    @field_validator("topic_prefix")
    @classmethod
    def _check_prefix(cls, prefix: str) -> str:
        if not full_match(TOPIC_PREFIX, prefix):
            raise ValueError("may hold only A-Z a-z 0-9 _ - and single '/' separators")
        return prefix

    @model_validator(mode="after")
    def _credentials_from_url(self) -> MqttSettings:
        parts = urlsplit(self.url)
        if parts.username and self.username is None:
            self.username = unquote(parts.username)
        if parts.password and self.password is None:
            self.password = SecretStr(unquote(parts.password))
        if "@" in parts.netloc:  # keep credentials out of the URL so repr/str/dumps never show them
            self.url = urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[-1]))
        return self

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or "127.0.0.1"

    @property
    def port(self) -> int:
        parts = urlsplit(self.url)
        return parts.port or (8883 if parts.scheme == "mqtts" else 1883)

    @property
    def tls(self) -> bool:
        return urlsplit(self.url).scheme == "mqtts"

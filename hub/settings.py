"""Every setting of the hub, read from ``HUB_*`` environment variables."""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import os
import secrets
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from connectors.whatsapp_cloud.versions import CURRENT_VERSION as CURRENT_GRAPH_VERSION


class SettingsError(ValueError):
    """A setting is missing or wrong; the message is one line meant for an operator."""


@dataclass(frozen=True)
class MasterKey:
    key_id: str
    key: bytes  # 32 bytes, AES-256

    def __repr__(self) -> str:  # never print key material
        return f"MasterKey({self.key_id!r})"


def parse_master_keys(raw: str) -> list[MasterKey]:
    """``kid:base64key,kid2:base64key`` (or bare base64 keys, whose id is derived
    from their hash). The first key is the active one; the others still open."""
    keys: list[MasterKey] = []
    for i, item in enumerate(part.strip() for part in raw.split(",")):
        if not item:
            continue
        key_id, sep, encoded = item.rpartition(":")
        if not sep:
            key_id, encoded = "", item
        try:
            key = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        except (ValueError, TypeError):
            raise SettingsError(f"HUB_MASTER_KEYS entry {i + 1} is not base64") from None
        if len(key) != 32:
            raise SettingsError(f"HUB_MASTER_KEYS entry {i + 1} must decode to 32 bytes, got {len(key)}")
        keys.append(MasterKey(key_id or hashlib.sha256(key).hexdigest()[:12], key))
    ids = [k.key_id for k in keys]
    if len(set(ids)) != len(ids):
        raise SettingsError("HUB_MASTER_KEYS has two keys with the same id")
    return keys


def new_master_key_entry() -> str:
    """A fresh ``kid:key`` entry for HUB_MASTER_KEYS."""
    key = secrets.token_bytes(32)
    return f"{hashlib.sha256(key).hexdigest()[:12]}:{base64.urlsafe_b64encode(key).decode().rstrip('=')}"


class Settings(BaseSettings):
    """The hub's configuration. See the README's configuration table."""

    model_config = SettingsConfigDict(env_prefix="HUB_", extra="ignore")

    env: Literal["development", "production"] = Field(
        "development", description="development (embedded, sandbox providers) or production"
    )
    database_url: str = Field("", description="SQLAlchemy URL; default a SQLite file under HUB_VAR_DIR")
    redis_url: str = Field("", description="Redis for broker, rate limits, caches; empty = embedded")
    redis_prefix: str = Field("hub:", description="prefix of every Redis key the hub writes")
    rate_limit_redis_url: str = Field("", description="Redis for the rate limits only; empty = HUB_REDIS_URL (a "
                                      "separate one keeps a broker outage from turning every request into a 503)")
    rate_limit_fail_open: bool = Field(False, description="when the rate-limit store is unreachable, let requests "
                                       "through unlimited (logged) instead of answering 503 rate_limit_unavailable")
    master_keys: SecretStr = Field(
        SecretStr(""), description="comma-separated kid:base64 AES-256 keys, first active"
    )
    public_url: str = Field("", description="URL providers call; default http://127.0.0.1:{PORT}")
    host: str = Field("127.0.0.1", description="address `hub serve` binds")
    port: int = Field(8000, ge=1, le=65535, description="port `hub serve` binds")
    log_level: str = Field("INFO", description="DEBUG, INFO, WARNING, ERROR")
    var_dir: Path = Field(Path("var"), description="where the embedded database and dev master key live")
    token_ttl_seconds: int = Field(900, ge=60, le=900, description="access token lifetime (at most 15 min)")
    token_rate_limit: int = Field(30, ge=1, description="token requests per minute per client IP")
    public_rate_limit: int = Field(300, ge=1, description="unauthenticated requests per minute per client IP")
    platform_rate_limit: int = Field(6000, ge=1, description="requests per minute per platform client")
    auth_failure_rate_limit: int = Field(30, ge=1, description="failed bearer authentications per minute per "
                                         "client IP; more get a 429 (and one audit row per IP per minute)")
    max_body_bytes: int = Field(1_048_576, ge=1024, le=100 * 1_048_576, description="largest request body of "
                                "an API route, in bytes (413 past it); provider webhooks have their own 1 MB cap")
    trusted_proxies: str = Field("", description="comma-separated IPs/CIDRs of the proxies whose "
                                 "X-Forwarded-For/-Proto are believed; empty = none (the peer address counts)")
    sandbox_url: str = Field("", description="base URL of a running sandbox; empty = start one in-process")
    delivery_max_attempts: int = Field(5, ge=1, le=50, description="provider attempts before a message is dead")
    delivery_retry_base_seconds: float = Field(
        2.0, gt=0, le=3600, description="backoff ceiling after a first failure; doubles per attempt (full jitter)"
    )
    delivery_retry_cap_seconds: float = Field(300.0, gt=0, le=86400, description="longest backoff between attempts")
    delivery_timeout_seconds: float = Field(
        10.0, gt=0, le=120, description="how long one provider call may take before it counts as a failure"
    )
    relay_interval_seconds: float = Field(0.5, gt=0, le=60, description="how often the relay looks for due work")
    events_retention_days: int = Field(7, ge=1, le=3650, description="days the event log keeps events for "
                                       "Last-Event-ID replay; older ones are swept hourly")
    events_heartbeat_seconds: float = Field(15.0, gt=0, le=300, description="idle time before an event "
                                            "stream sends a heartbeat comment (and catches up from the database)")
    events_max_streams_per_tenant: int = Field(10, ge=1, le=1000, description="event streams one tenant may "
                                               "hold open on one API process; more get a 429")
    events_retry_ms: int = Field(3000, ge=0, le=600000, description="the SSE retry: hint, how soon a client "
                                 "reconnects")
    embedded_worker: bool | None = Field(None, description="run a Celery worker inside `hub serve`; default: "
                                         "when HUB_REDIS_URL is empty")
    embedded_beat: bool | None = Field(None, description="run the periodic jobs (reminders, channel renewal, "
                                       "template sync, retention) inside `hub serve`; default: with the embedded "
                                       "worker")
    relay_in_process: bool | None = Field(
        None, description="run the relay (webhook dispatch, outbox) inside `hub serve`; default: when "
        "HUB_REDIS_URL is empty (with Redis, run `hub relay` beside the API)")
    sandbox: bool | None = Field(
        None, description="point every connector at the local sandbox; default: on in development"
    )
    whatsapp_graph_version: str = Field(
        CURRENT_GRAPH_VERSION, pattern=r"^v[0-9]+\.[0-9]+$",
        description="the Graph API version every WhatsApp Cloud API call uses (one for all tenants); "
        "`hub check` warns 90 days before Meta retires it")
    allow_private_targets: bool | None = Field(
        None, description="let tenant-supplied addresses (an SMTP host) be loopback, private, link-local or "
        "other non-public addresses; default: on in development, off in production")
    # Platform-level provider credentials (tenants bring their own per integration).
    twilio_account_sid: str = Field("", description="main Twilio account that provisions subaccounts")
    twilio_auth_token: SecretStr = Field(SecretStr(""), description="its auth token")
    google_client_id: str = Field("", description="OAuth client for the Google Calendar connect flow")
    google_client_secret: SecretStr = Field(SecretStr(""), description="its secret")
    smtp_url: SecretStr = Field(
        SecretStr(""), description="platform default SMTP for tenants without their own: "
        "smtp://user:pass@host:587 (STARTTLS; ?security=none for plain), smtps://…:465 (TLS)"
    )
    smtp_from: str = Field("", description="From address of the platform SMTP (default: the URL's user if an "
                           "address, else no-reply@host)")
    smtp_from_name: str = Field("", description="display name in From: of the platform SMTP")
    stripe_secret_key: SecretStr = Field(SecretStr(""), description="platform Stripe key")
    # operations: backups and the liveness of processes that serve no HTTP
    backup_dir: Path | None = Field(None, description="where `hub backup` writes and reads backups; default "
                                    "HUB_VAR_DIR/backups")
    worker_queues: str = Field("", description="comma-separated queues `hub worker` consumes (hub, calendar, "
                               "maintenance); empty = all of them")
    heartbeat_file: Path | None = Field(None, description="a file `hub relay`, `hub worker` and `hub beat` touch "
                                        "while healthy, for an exec liveness probe; empty = none")
    # observability
    metrics_enabled: bool = Field(True, description="count HTTP requests and webhooks for /metrics (off: only the "
                                  "state gauges; bench/ingest.py compares the two)")
    metrics_token: SecretStr = Field(SecretStr(""), description="bearer token GET /metrics requires; empty = open "
                                     "(the chart's NetworkPolicy limits who reaches the port)")
    metrics_port: int | None = Field(None, ge=1, le=65535, description="port where `hub worker`, `hub relay` and "
                                     "`hub beat` serve their own /metrics (counters only); empty = none")
    metrics_cache_seconds: float = Field(5.0, ge=0, le=300, description="how long /metrics reuses the state gauges "
                                         "it read from the database and Redis")
    audit_checkpoint_file: Path | None = Field(None, description="a file the minute's audit checkpoint job "
                                               "appends each signed checkpoint to (JSON lines), kept outside the "
                                               "database; empty = log them only")

    @field_validator("smtp_from_name")
    @classmethod
    def _one_line_from_name(cls, v: str) -> str:
        from connectors.smtp.headers import check_header_text

        return check_header_text(v) if v else v

    @field_validator("trusted_proxies")
    @classmethod
    def _trusted_proxies(cls, v: str) -> str:
        for item in (part.strip() for part in v.split(",")):
            if not item:
                continue
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"{item!r} is not an IP address or CIDR") from None
        return v

    @property
    def trusted_proxy_list(self) -> list[str]:
        return [part.strip() for part in self.trusted_proxies.split(",") if part.strip()]

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, v: str) -> str:
        v = v.upper()
        if v not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError("must be DEBUG, INFO, WARNING, ERROR or CRITICAL")
        return v

    @property
    def is_production(self) -> bool:
        return self.env == "production"

    @property
    def use_embedded_worker(self) -> bool:
        return self.embedded_worker if self.embedded_worker is not None else not self.redis_url

    @property
    def use_embedded_beat(self) -> bool:
        # beat publishes to the embedded broker: without the embedded worker nobody would run its tasks
        return self.use_embedded_worker and self.embedded_beat is not False

    @property
    def use_relay_in_process(self) -> bool:
        return self.relay_in_process if self.relay_in_process is not None else not self.redis_url

    @property
    def allows_private_targets(self) -> bool:
        if self.allow_private_targets is not None:
            return self.allow_private_targets
        return not self.is_production

    @property
    def use_sandbox(self) -> bool:
        return self.sandbox if self.sandbox is not None else not self.is_production

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.var_dir / 'hub.db').as_posix()}"

    @property
    def effective_backup_dir(self) -> Path:
        return self.backup_dir or self.var_dir / "backups"

    @property
    def effective_public_url(self) -> str:
        return (self.public_url or f"http://127.0.0.1:{self.port}").rstrip("/")

    @property
    def public_url_is_https(self) -> bool:
        """Providers that push only to HTTPS receivers (Google watch channels) need this."""
        return self.effective_public_url.lower().startswith("https://")

    @cached_property
    def master_key_ring(self) -> list[MasterKey]:
        """The master keys, generating a development key once if none is set."""
        raw = self.master_keys.get_secret_value()
        if not raw and not self.is_production:
            raw = _development_master_key(self.var_dir)
        keys = parse_master_keys(raw)
        if not keys:
            raise SettingsError("HUB_MASTER_KEYS is required in production")
        return keys

    def production_problems(self) -> list[str]:
        """One line per reason the hub must not start in production."""
        if not self.is_production:
            return []
        problems = []
        if not self.master_keys.get_secret_value().strip():
            problems.append("HUB_MASTER_KEYS is required in production (generate one: hub keys new)")
        else:
            try:
                parse_master_keys(self.master_keys.get_secret_value())
            except SettingsError as exc:
                problems.append(str(exc))
        if not self.effective_database_url.startswith("postgresql"):
            problems.append("HUB_DATABASE_URL must be a PostgreSQL URL in production (postgresql+psycopg://…)")
        if not self.redis_url:
            problems.append("HUB_REDIS_URL is required in production (broker, rate limits, caches)")
        if not self.public_url:
            problems.append("HUB_PUBLIC_URL is required in production (providers sign webhooks against it)")
        return problems


def _development_master_key(var_dir: Path) -> str:
    path = var_dir / "master.key"
    if path.exists():
        return path.read_text().strip()
    import structlog

    var_dir.mkdir(parents=True, exist_ok=True)
    entry = new_master_key_entry()
    # Written aside then hard-linked into place: two processes starting together
    # must agree on one key, and a reader never sees a half-written file.
    tmp = var_dir / f".master.key.{os.getpid()}"
    tmp.write_text(entry + "\n")
    os.chmod(tmp, 0o600)
    try:
        os.link(tmp, path)
    except FileExistsError:
        return path.read_text().strip()
    finally:
        tmp.unlink(missing_ok=True)
    structlog.get_logger("hub.settings").warning(
        "generated a development master key; set HUB_MASTER_KEYS in production", path=str(path)
    )
    return entry

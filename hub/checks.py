"""``hub check``: what is configured and what is missing, per setting and integration."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from sqlalchemy.engine import make_url

from connectors.whatsapp_cloud.versions import CURRENT_VERSION, expires_on
from hub.settings import Settings, SettingsError


@dataclass(frozen=True)
class CheckRow:
    name: str
    ok: bool
    detail: str


def _settings_rows(settings: Settings) -> list[CheckRow]:
    prod = settings.is_production
    rows = [CheckRow("HUB_ENV", True, settings.env)]
    url = make_url(settings.effective_database_url)
    rows.append(CheckRow(
        "HUB_DATABASE_URL",
        not prod or url.get_backend_name() == "postgresql",
        url.render_as_string(hide_password=True) + ("" if settings.database_url else " (default)"),
    ))
    if settings.redis_url:
        rows.append(CheckRow("HUB_REDIS_URL", True,
                             make_url(settings.redis_url).render_as_string(hide_password=True)))
    else:
        rows.append(CheckRow("HUB_REDIS_URL", not prod,
                             "required in production" if prod else "empty: embedded broker and memory limits"))
    if settings.master_keys.get_secret_value():
        try:
            keys = settings.master_key_ring
            rows.append(CheckRow("HUB_MASTER_KEYS", True, f"{len(keys)} key(s), active {keys[0].key_id}"))
        except SettingsError as exc:
            rows.append(CheckRow("HUB_MASTER_KEYS", False, str(exc)))
    else:
        rows.append(CheckRow("HUB_MASTER_KEYS", not prod,
                             "required in production" if prod
                             else f"unset: development key in {settings.var_dir / 'master.key'}"))
    rows.append(CheckRow("HUB_PUBLIC_URL", bool(settings.public_url) or not prod,
                         settings.effective_public_url + ("" if settings.public_url else " (default)")))
    return rows


# kind -> the platform settings it needs outside the sandbox (tenants bring the rest)
KNOWN_INTEGRATIONS: dict[str, list[tuple[str, str]]] = {
    "twilio": [("HUB_TWILIO_ACCOUNT_SID", "twilio_account_sid"), ("HUB_TWILIO_AUTH_TOKEN", "twilio_auth_token")],
    "whatsapp_cloud": [],
    "google_calendar": [("HUB_GOOGLE_CLIENT_ID", "google_client_id"),
                        ("HUB_GOOGLE_CLIENT_SECRET", "google_client_secret")],
    "smtp": [("HUB_SMTP_URL", "smtp_url")],
    "stripe": [("HUB_STRIPE_SECRET_KEY", "stripe_secret_key")],
}


def _value(settings: Settings, attr: str) -> str:
    value = getattr(settings, attr)
    return value.get_secret_value() if hasattr(value, "get_secret_value") else str(value)


def _integration_rows(settings: Settings) -> list[CheckRow]:
    rows = []
    for kind, needed in KNOWN_INTEGRATIONS.items():
        if settings.use_sandbox:
            rows.append(CheckRow(kind, True, "sandbox provider (HUB_SANDBOX)"))
            continue
        missing = [env for env, attr in needed if not _value(settings, attr)]
        if not needed:
            rows.append(CheckRow(kind, True, "per-tenant credentials only"))
        elif missing:
            rows.append(CheckRow(kind, False, "missing " + ", ".join(missing)))
        else:
            rows.append(CheckRow(kind, True, "platform credentials set"))
    return rows


def _push_rows(settings: Settings) -> list[CheckRow]:
    """Providers that deliver only to HTTPS receivers."""
    if settings.public_url_is_https:
        return [CheckRow("google_calendar push", True, "HUB_PUBLIC_URL is https")]
    if settings.is_production:
        return [CheckRow("google_calendar push", False,
                         "HUB_PUBLIC_URL is not https: Google delivers watch-channel notifications only to HTTPS "
                         "addresses, so the hub starts no watch (calendar changes wait for the nightly sync)")]
    return [CheckRow("google_calendar push", True, "http allowed outside production (the local sandbox)")]


# how long before Meta retires the configured Graph version `hub check` starts warning
GRAPH_VERSION_NOTICE = timedelta(days=90)


def _graph_version_rows(settings: Settings, today: date | None = None) -> list[CheckRow]:
    """The WhatsApp Cloud API's Graph version: a failure 90 days before Meta retires it."""
    version, today = settings.whatsapp_graph_version, today or datetime.now(UTC).date()
    ends = expires_on(version)
    name = "HUB_WHATSAPP_GRAPH_VERSION"
    if ends is None:
        return [CheckRow(name, True, f"{version}: no retirement announced by Meta")]
    if ends <= today:
        return [CheckRow(name, False, f"{version} was retired by Meta on {ends.isoformat()}: set {CURRENT_VERSION}")]
    if ends - today <= GRAPH_VERSION_NOTICE:
        return [CheckRow(name, False, f"{version} is retired by Meta on {ends.isoformat()} "
                                      f"({(ends - today).days} days): move to {CURRENT_VERSION}")]
    return [CheckRow(name, True, f"{version}: supported until {ends.isoformat()}")]


def configuration_report(settings: Settings, *, today: date | None = None) -> dict[str, list[CheckRow]]:
    return {"settings": _settings_rows(settings),
            "integrations": _integration_rows(settings) + _push_rows(settings) + _graph_version_rows(settings, today)}

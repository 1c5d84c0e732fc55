"""What the vault keeps per tenant, and the platform's own OAuth client."""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

SCOPE_EVENTS = "https://www.googleapis.com/auth/calendar.events"
SCOPE_CALENDAR_READONLY = "https://www.googleapis.com/auth/calendar.readonly"
# events read/write + calendar list, calendars.get (the account e-mail) and free/busy;
# narrower than the full ``calendar`` scope, which could delete whole calendars
DEFAULT_SCOPES: tuple[str, ...] = (SCOPE_EVENTS, SCOPE_CALENDAR_READONLY)

GOOGLE_AUTH_URI = "https://accounts.google.com/o/oauth2/v2/auth"
GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"
GOOGLE_REVOKE_URI = "https://oauth2.googleapis.com/revoke"
GOOGLE_API_BASE = "https://www.googleapis.com/calendar/v3/"

# The client the sandbox registers at start (connectors.sandbox.google); kept in two
# places so that production code never imports the sandbox.
SANDBOX_CLIENT_ID = "sandbox-client.apps.googleusercontent.com"
SANDBOX_CLIENT_SECRET = "sandbox-client-secret"


def _aware_utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    # google-auth works in naive UTC; accept that, store aware
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class GoogleCalendarCredentials(BaseModel):
    """One tenant's Google connection, sealed in the vault."""

    account_email: str = Field(title="Google account", description="The account that granted access.")
    refresh_token: SecretStr = Field(
        title="Refresh token", description="Long-lived; revoked by the user or after months unused."
    )
    access_token: SecretStr | None = Field(
        default=None, title="Access token", description="Short-lived bearer token; refreshed automatically."
    )
    expiry: datetime | None = Field(default=None, title="Access token expiry", description="Aware UTC.")
    scopes: list[str] = Field(
        default_factory=lambda: list(DEFAULT_SCOPES), title="Granted scopes", description="As Google reported."
    )
    channel_token: SecretStr = Field(
        title="Channel token",
        description="Given to Google with every watch channel and echoed in X-Goog-Channel-Token; "
        "verifies push notifications.",
    )

    @field_validator("expiry")
    @classmethod
    def _expiry_in_utc(cls, value: datetime | None) -> datetime | None:
        return _aware_utc(value)


class GoogleOAuthClient(BaseModel):
    """The platform's OAuth client (one per deployment, not per tenant)."""

    model_config = ConfigDict(frozen=True)

    client_id: str = Field(title="Client ID")
    client_secret: SecretStr = Field(title="Client secret")
    redirect_uri: str = Field(title="Redirect URI", description="The hub's OAuth callback, registered at Google.")
    auth_uri: str = GOOGLE_AUTH_URI
    token_uri: str = GOOGLE_TOKEN_URI
    revoke_uri: str = GOOGLE_REVOKE_URI
    api_base: str = Field(default=GOOGLE_API_BASE, description="Calendar v3 root, ending in /calendar/v3/.")
    scopes: tuple[str, ...] = DEFAULT_SCOPES
    # True only for the local emulator: lets oauthlib talk plain http to it
    sandbox: bool = False

    @classmethod
    def for_sandbox(
        cls,
        base_url: str,
        *,
        redirect_uri: str = "http://127.0.0.1/oauth/google/callback",
        client_id: str = SANDBOX_CLIENT_ID,
        client_secret: str = SANDBOX_CLIENT_SECRET,
    ) -> GoogleOAuthClient:
        """Every endpoint on the sandbox at ``base_url`` (Google's own paths)."""
        base = base_url.rstrip("/")
        return cls(
            client_id=client_id,
            client_secret=SecretStr(client_secret),
            redirect_uri=redirect_uri,
            auth_uri=f"{base}/o/oauth2/v2/auth",
            token_uri=f"{base}/token",
            revoke_uri=f"{base}/revoke",
            api_base=f"{base}/calendar/v3/",
            sandbox=True,
        )

"""What the vault keeps for a Twilio integration, and its non-secret configuration."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

ACCOUNT_SID_PATTERN = r"^AC[0-9a-fA-F]{32}$"
SERVICE_SID_PATTERN = r"^MG[0-9a-fA-F]{32}$"
E164 = re.compile(r"^\+[1-9]\d{6,14}$")


class TwilioCredentials(BaseModel):
    """A Twilio account (main or subaccount) and the token that signs its webhooks."""

    model_config = ConfigDict(title="Twilio credentials", frozen=True)

    account_sid: str = Field(
        title="Account SID",
        description="The account's SID: AC followed by 32 hexadecimal characters.",
        pattern=ACCOUNT_SID_PATTERN,
        examples=["AC0123456789abcdef0123456789abcdef"],
    )
    auth_token: SecretStr = Field(
        title="Auth token",
        description="The account's auth token. It authenticates API calls and signs Twilio's webhooks.",
        min_length=1,
    )


class TwilioConfig(BaseModel):
    """Which numbers and channels an integration uses; stored in clear on the integration."""

    model_config = ConfigDict(title="Twilio configuration")

    numbers: list[str] = Field(
        default_factory=list,
        title="Phone numbers",
        description="The account's numbers this integration sends from and receives on, in E.164.",
        examples=[["+5511999990000"]],
    )
    channels: list[Literal["sms", "whatsapp"]] = Field(
        default_factory=lambda: ["sms"],
        title="Channels",
        description="The channels enabled on these numbers.",
    )
    messaging_service_sid: str | None = Field(
        default=None,
        title="Messaging Service SID",
        description="Send through this Messaging Service (MG…) when a message names no sender.",
        pattern=SERVICE_SID_PATTERN,
    )
    provisioned: bool = Field(
        default=False,
        title="Provisioned by the hub",
        description="True when the hub created the subaccount and bought its numbers (onboarding).",
    )

    @field_validator("numbers")
    @classmethod
    def _e164(cls, numbers: list[str]) -> list[str]:
        bad = [n for n in numbers if not E164.match(n)]
        if bad:
            raise ValueError(f"not E.164 numbers: {', '.join(bad)}")
        return numbers

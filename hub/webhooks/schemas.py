"""What the webhook routes answer and accept, as documented in OpenAPI."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class WebhookReceipt(BaseModel):
    """The answer to a provider whose webhook protocol expects no particular body."""

    status: Literal["received"] = "received"
    stored: int = Field(description="events stored by this delivery")
    duplicates: int = Field(description="events already stored by an earlier delivery (ignored)")


# Twilio's form fields for incoming messages and status callbacks (all strings).
TWILIO_FORM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        name: {"type": "string"}
        for name in (
            "MessageSid", "SmsSid", "AccountSid", "MessagingServiceSid", "From", "To", "Body", "NumMedia",
            "MediaUrl0", "MediaContentType0", "ProfileName", "WaId", "MessageStatus", "ErrorCode",
            "ErrorMessage",
        )
    },
    "additionalProperties": {"type": "string"},
}

"""API shapes of onboarding."""

from __future__ import annotations

from typing import Any, Literal

import phonenumbers
from pydantic import BaseModel, ConfigDict, Field, field_validator


class ProvisionCreate(BaseModel):
    """What to provision: a Twilio subaccount with one number of ``country`` (and area)."""

    model_config = ConfigDict(extra="forbid")

    country: str = Field(description="ISO 3166 country of the number to buy", examples=["BR"],
                         pattern=r"^[A-Za-z]{2}$")
    area_code: str | None = Field(None, description="area code (DDD in Brazil) of the number",
                                  examples=["11"], pattern=r"^[0-9]{1,5}$")
    channels: list[Literal["sms", "whatsapp"]] = Field(
        min_length=1, description="channels to enable on the number", examples=[["sms", "whatsapp"]]
    )

    @field_validator("country")
    @classmethod
    def _known_country(cls, value: str) -> str:
        value = value.upper()
        if value not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f"{value!r} is not a country with a phone numbering plan (ISO 3166 code, e.g. BR)")
        return value

    @field_validator("channels")
    @classmethod
    def _distinct(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(value))

    def request(self) -> dict[str, Any]:
        """What a retry must repeat to resume this onboarding (the number's search terms)."""
        return {"country": self.country, "area_code": self.area_code}

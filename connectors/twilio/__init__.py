"""Twilio: SMS and WhatsApp, subaccounts and numbers, through the official SDK."""

from connectors.twilio.connector import TwilioAccount, TwilioConnector, bare_number
from connectors.twilio.schemas import TwilioConfig, TwilioCredentials

__all__ = ["TwilioAccount", "TwilioConfig", "TwilioConnector", "TwilioCredentials", "bare_number"]

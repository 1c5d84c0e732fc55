"""E-mail over SMTP: multipart text + HTML, one-click unsubscribe headers, no webhooks."""

from connectors.smtp.connector import SmtpConfig, SmtpConnector, SmtpCredentials

__all__ = ["SmtpConfig", "SmtpConnector", "SmtpCredentials"]

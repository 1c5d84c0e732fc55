"""WhatsApp through Meta's Cloud API: Graph API sends, signed ``messages`` webhooks."""

from connectors.whatsapp_cloud.connector import (
    DEFAULT_API_VERSION,
    GRAPH_URL,
    WhatsAppCloudConfig,
    WhatsAppCloudConnector,
    WhatsAppCloudCredentials,
)
from connectors.whatsapp_cloud.events import MalformedWebhook
from connectors.whatsapp_cloud.templates import ProviderTemplate

__all__ = [
    "DEFAULT_API_VERSION",
    "GRAPH_URL",
    "MalformedWebhook",
    "ProviderTemplate",
    "WhatsAppCloudConfig",
    "WhatsAppCloudConnector",
    "WhatsAppCloudCredentials",
]

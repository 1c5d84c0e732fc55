"""The Twilio connector as the hub sees it: registration, models, and the rule that
``connectors`` imports nothing from ``hub`` or ``tenants``."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from pydantic import ValidationError

import connectors
from connectors.registry import BUILTIN_CONNECTORS, ConnectorRegistry, _import
from connectors.twilio import TwilioConfig, TwilioConnector, TwilioCredentials

FORBIDDEN = ("hub", "tenants")


def _dynamic_import_target(call: ast.Call) -> str | None:
    name = getattr(call.func, "attr", getattr(call.func, "id", ""))
    if name in ("import_module", "__import__") and call.args:
        first = call.args[0]
        if isinstance(first, ast.Constant) and isinstance(first.value, str):
            return first.value
    return None


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Call) and _dynamic_import_target(node):
            # importlib.import_module("hub.x") would dodge the import statements above
            names.add(_dynamic_import_target(node) or "")
    return names


def test_connectors_import_nothing_from_hub_or_tenants() -> None:
    root = Path(connectors.__file__).parent
    sources = sorted(root.rglob("*.py"))
    assert root / "twilio" / "connector.py" in sources and root / "sandbox" / "twilio.py" in sources
    offenders = {
        str(path.relative_to(root)): sorted(
            name for name in imported_modules(path) if name.split(".")[0] in FORBIDDEN
        )
        for path in sources
    }
    assert {path: names for path, names in offenders.items() if names} == {}


def test_the_check_sees_a_forbidden_import(tmp_path: Path) -> None:
    module = tmp_path / "leaky.py"
    module.write_text("import json\nfrom hub.db import Base\nimportlib.import_module('tenants.vault')\n")
    assert {"hub.db", "tenants.vault"} <= imported_modules(module)


def test_registered_as_a_builtin() -> None:
    assert "connectors.twilio:TwilioConnector" in BUILTIN_CONNECTORS
    connector = _import("connectors.twilio:TwilioConnector")
    assert ConnectorRegistry([connector]).get("twilio") is TwilioConnector


class TestModels:
    def test_credentials_validate_the_account_sid(self) -> None:
        TwilioCredentials(account_sid="AC" + "a" * 32, auth_token="t")
        for bad in ("AC123", "SK" + "a" * 32, "AC" + "g" * 32):
            with pytest.raises(ValidationError):
                TwilioCredentials(account_sid=bad, auth_token="t")

    def test_token_never_shows_in_repr(self) -> None:
        credentials = TwilioCredentials(account_sid="AC" + "a" * 32, auth_token="s3cr3t-token")
        assert "s3cr3t-token" not in repr(credentials) and "s3cr3t-token" not in str(credentials.model_dump())

    def test_json_schemas_are_documented_forms(self) -> None:
        for model in (TwilioCredentials, TwilioConfig):
            schema = model.model_json_schema()
            for name, prop in schema["properties"].items():
                assert prop.get("title") and prop.get("description"), f"{model.__name__}.{name}"
        assert TwilioCredentials.model_json_schema()["properties"]["auth_token"]["writeOnly"] is True

    def test_config_validates_numbers_and_channels(self) -> None:
        config = TwilioConfig(numbers=["+5511930000001"], channels=["sms", "whatsapp"])
        assert config.provisioned is False and config.messaging_service_sid is None
        with pytest.raises(ValidationError):
            TwilioConfig(numbers=["11 93000-0001"])
        with pytest.raises(ValidationError):
            TwilioConfig(channels=["email"])
        with pytest.raises(ValidationError):
            TwilioConfig(messaging_service_sid="MG123")

    def test_class_attributes(self) -> None:
        assert TwilioConnector.kind == "twilio"
        assert TwilioConnector.channels == {"sms", "whatsapp"}
        assert TwilioConnector.webhook_secret_field == "auth_token"
        assert TwilioConnector.webhook_secret_field in TwilioCredentials.model_fields
        assert TwilioConnector.credentials_model is TwilioCredentials
        assert TwilioConnector.config_model is TwilioConfig

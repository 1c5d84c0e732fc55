"""Fixtures of the onboarding tests."""

from __future__ import annotations

import pytest

from tests.onboarding.helpers import Onboarding


@pytest.fixture
def onboarding(live_hub) -> Onboarding:
    """A live hub (real port, sandbox providers, worker, relay) and a tenant's calls to it."""
    return Onboarding(live_hub)

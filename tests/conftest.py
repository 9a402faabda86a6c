"""Shared test setup: hypothesis profiles, golden-file updates, integration policy."""

from __future__ import annotations

import os
import shutil

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile("fast", max_examples=60, deadline=None)
settings.register_profile("ci", max_examples=150, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("deep", max_examples=2000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "fast"))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-golden", action="store_true", default=False,
                     help="rewrite tests/golden/* from the current output (review the diff!)")


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    """True when golden files should be rewritten instead of compared."""
    return bool(request.config.getoption("--update-golden")
                or os.environ.get("SHADOWDIFF_UPDATE_GOLDEN") == "1")


def require_tool(name: str) -> str:
    """The path of a Debian tool an integration test needs; skip (or fail in CI) without it."""
    path = shutil.which(name)
    if path:
        return path
    reason = f"{name} is not installed (apt-get install it, or run .ci/run)"
    if os.environ.get("SHADOWDIFF_REQUIRE_INTEGRATION") == "1":
        pytest.fail(f"SHADOWDIFF_REQUIRE_INTEGRATION=1 but {reason}")
    pytest.skip(reason)

"""Shared test setup: hypothesis profiles, golden-file updates, integration policy."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

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


def _session_env(name: str, value: str) -> Iterator[None]:
    """`name=value` in the environment for the session (subprocesses inherit it), then as before."""
    before = os.environ.get(name)
    os.environ[name] = value
    yield
    if before is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = before


@pytest.fixture(autouse=True, scope="session")
def _private_history(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Runs record into a history store of the session, never the checkout's
    reports/history.sqlite (subprocesses inherit the variable too). Session-wide, so
    module-scoped fixtures that run shadowdiff are covered; a test that looks at
    "since last run" passes its own --history."""
    yield from _session_env("SHADOWDIFF_HISTORY",
                            str(tmp_path_factory.mktemp("history") / "history.sqlite"))


@pytest.fixture(autouse=True, scope="session")
def _private_redaction_key(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Capture-time redaction makes its key on first use: in the session's temp dir, never
    the user's ~/.config (subprocesses inherit the variable too)."""
    yield from _session_env("SHADOWDIFF_REDACT_KEY_FILE",
                            str(tmp_path_factory.mktemp("redact") / "redact.key"))


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

"""`[redact]` and `[auth]` (shadowdiff/config/secrets.py)."""

from __future__ import annotations

import pytest

from shadowdiff.config import config_from_dict
from shadowdiff.config.secrets import parse_auth
from shadowdiff.errors import ConfigError
from shadowdiff.scrub import SECRET_FIELDS


def test_redact_section_adds_to_the_defaults() -> None:
    cfg = config_from_dict({"redact": {"fields": ["PIN"], "patterns": ["^card"],
                                       "headers": ["X-Session"], "key_file": "/k"}}).redact
    assert "pin" in cfg.fields and set(SECRET_FIELDS) <= set(cfg.fields)
    assert "^card" in cfg.patterns and "x-session" in cfg.headers and "cookie" in cfg.headers
    assert cfg.key_file == "/k" and not cfg.keep_secrets


@pytest.mark.parametrize("table, message", [
    ({"patterns": ["("]}, "redact.patterns.*not a valid regex"),
    ({"fields": "pin"}, "redact.fields.*must be list"),
    ({"keep": True}, "redact.keep.*unknown key"),
])
def test_bad_redact_section_names_the_key(table, message) -> None:
    with pytest.raises(ConfigError, match=message):
        config_from_dict({"redact": table}, "x.toml")


def test_auth_headers_come_from_the_environment_per_target() -> None:
    auth = dict(parse_auth({"new": {"Authorization": "Bearer ${NEW_T}"},
                            "old": {"Authorization": "Bearer ${OLD_T}", "X-Env": "staging"}},
                           "x.toml", {"NEW_T": "n1", "OLD_T": "o1"}))
    assert auth["new"] == (("Authorization", "Bearer n1"),)
    assert auth["old_replica"] == auth["old"] == (("Authorization", "Bearer o1"), ("X-Env", "staging"))


def test_auth_replaces_the_same_header_given_to_every_target() -> None:
    cfg = config_from_dict({"replay": {"headers": {"Authorization": "Bearer all", "X-A": "1"}},
                            "auth": {"new": {"authorization": "Bearer new"}}})
    assert cfg.replay.for_role("new").headers == (("X-A", "1"), ("authorization", "Bearer new"))
    assert cfg.replay.for_role("old").headers == cfg.replay.headers


@pytest.mark.parametrize("table, message", [
    ({"new": {"Authorization": "Bearer ${NOT_SET_ANYWHERE_H15}"}}, "NOT_SET_ANYWHERE_H15 is not set"),
    ({"staging": {"A": "b"}}, "auth.staging.*unknown key"),
    ({"new": {"A": 1}}, "auth.new.*header"),
])
def test_bad_auth_section_names_the_key(table, message) -> None:
    with pytest.raises(ConfigError, match=message):
        config_from_dict({"auth": table}, "x.toml")

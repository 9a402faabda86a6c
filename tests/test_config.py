"""Configuration: TOML to frozen values; every mistake names the file and the key."""

from __future__ import annotations

import pytest

from shadowdiff.config import load_config
from shadowdiff.errors import ConfigError
from shadowdiff.normalize import DEFAULT_IGNORE_HEADERS


def write(tmp_path, text: str):
    path = tmp_path / "shadowdiff.toml"
    path.write_text(text)
    return path


def test_defaults_without_a_file():
    cfg = load_config(None)
    assert cfg.replay.methods == ("GET", "HEAD", "OPTIONS")
    assert cfg.rules.ignore_headers == DEFAULT_IGNORE_HEADERS
    assert not cfg.report.show_secrets


def test_full_file(tmp_path):
    cfg = load_config(write(tmp_path, r'''
[targets]
old = "http://old:1"
new = "http://new:2"
[replay]
concurrency = 8
rate = 100
timeout_s = 2.5
methods = ["get", "post"]
host_header = "target"
max_body_bytes = 1000
[replay.headers]
Authorization = "Bearer staging"
[normalize]
ignore_headers = ["X-Trace"]
ignore_paths = ["body.meta.request_id", "body.**.updated_at"]
unordered = ["body.items"]
[[normalize.masks]]
name = "uuid"
pattern = '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}'
[[endpoint]]
match = "GET /users/{id}"
ignore_paths = ["body.last_login"]
[rank]
min_relative_pct = 10
[report]
secret_headers = ["X-Session"]
'''))
    assert cfg.targets.old == "http://old:1"
    assert cfg.replay.methods == ("GET", "POST")
    assert cfg.replay.rate == 100.0 and cfg.replay.timeout_s == 2.5
    assert cfg.replay.headers == (("Authorization", "Bearer staging"),)
    assert "x-trace" in cfg.rules.ignore_headers and "date" in cfg.rules.ignore_headers
    assert cfg.rules.masks[0].name == "uuid"
    assert cfg.rank.min_relative_pct == 10
    assert "x-session" in cfg.report.secret_headers
    users = cfg.rules_for("GET /users/{id}")
    assert "body.last_login" in users.ignore_paths and "body.meta.request_id" in users.ignore_paths
    assert "body.last_login" not in cfg.rules_for("GET /orders/{id}").ignore_paths


def test_endpoint_match_wildcards_and_bare_paths(tmp_path):
    cfg = load_config(write(tmp_path, '''
[[endpoint]]
match = "/api/*"
ignore_paths = ["body.x"]
'''))
    assert "body.x" in cfg.rules_for("GET /api/users/{id}").ignore_paths
    assert "body.x" in cfg.rules_for("HEAD /api/a").ignore_paths
    assert "body.x" not in cfg.rules_for("GET /health").ignore_paths


@pytest.mark.parametrize("text,key", [
    ("[replay]\nconcurency = 3\n", "replay.concurency"),
    ("[nromalize]\n", "nromalize"),
    ("[replay]\nconcurrency = \"8\"\n", "replay.concurrency"),
    ("[replay]\nconcurrency = true\n", "replay.concurrency"),
    ("[replay]\nconcurrency = 0\n", "replay.concurrency"),
    ("[normalize]\nignore_paths = [\"body.[\"]\n", "normalize.ignore_paths"),
    ("[[normalize.masks]]\npattern = \"(unclosed\"\n", "normalize.masks[0].pattern"),
    ("[[normalize.masks]]\nname = \"x\"\n", "normalize.masks[0]"),
    ("[[normalize.masks]]\npattern = \"a\"\ncolour = 1\n", "normalize.masks[0].colour"),
    ("[[endpoint]]\nignore_paths = []\n", "endpoint[0]"),
    ("[report]\nshow_secrets = 1\n", "report.show_secrets"),
])
def test_mistakes_name_the_file_and_key(tmp_path, text, key):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in str(info.value)
    assert repr(key) in str(info.value)


def test_invalid_toml_names_the_file_and_line(tmp_path):
    path = write(tmp_path, "[replay\nx=1\n")
    with pytest.raises(ConfigError, match=r"shadowdiff.toml.*line 1"):
        load_config(path)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "nope.toml")

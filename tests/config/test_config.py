"""Configuration: TOML to frozen values; every mistake names the file and the key."""

from __future__ import annotations

import pytest

from testpaths import REPO
from shadowdiff.config import load_config
from shadowdiff.errors import ConfigError
from shadowdiff.compare.normalize import DEFAULT_IGNORE_HEADERS


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
    ("[[normalize.masks]]\nname = \"x\"\n", "normalize.masks[0].name"),
    ("[[normalize.masks]]\npattern = \"a\"\ncolour = 1\n", "normalize.masks[0].colour"),
    ("[[endpoint]]\nignore_paths = []\n", "endpoint[0]"),
    ("[normalize]\nmasks = [\"uuidd\"]\n", "normalize.masks[0].name"),
    ("[[endpoint]]\nmatch = \"/x\"\nmasks = [{ name = \"nope\", paths = [\"body\"] }]\n",
     "endpoint[0].masks[0].name"),
    ("[[normalize.masks]]\nname = \"a b\"\npattern = \"x\"\n", "normalize.masks[0].name"),
    ("[normalize]\nhtml = [\"body..x\"]\n", "normalize.html"),
    ("[normalize]\ncase_insensitive = [\"body[\"]\n", "normalize.case_insensitive"),
    ("[normalize]\nunordered = [{ path = \"body.items\" }]\n", "normalize.unordered[0]"),
    ("[normalize]\nunordered = [{ path = \"body.[\", key = \"id\" }]\n", "normalize.unordered[0].path"),
    ("[normalize]\ntolerance = [{ paths = [\"body.p\"] }]\n", "normalize.tolerance[0]"),
    ("[normalize]\ntolerance = [{ paths = [\"body.p\"], absolute = -1 }]\n", "normalize.tolerance[0]"),
    ("[normalize]\ntolerance = [{ paths = [\"body.p\"], relative = \"5%\" }]\n",
     "normalize.tolerance[0].relative"),
    ("[normalize]\nheader_sets = \"allow\"\n", "normalize.header_sets"),
    ("[targets]\nold_replica = \"http://a\"\nreplay_old_twice = true\n", "targets.replay_old_twice"),
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


def test_every_new_rule_key(tmp_path):
    cfg = load_config(write(tmp_path, r'''
[targets]
old = "http://old:1"
replay_old_twice = true
[normalize]
masks = ["uuid", { name = "iso-date", paths = ["body.when"] }]
unordered = ["body.tags", { path = "body.items", key = "id" }]
case_insensitive = ["body.name"]
whitespace_insensitive = ["body.bio"]
html = ["body"]
xml = ["body.feed"]
header_sets = ["Link"]
tolerance = [{ paths = ["body.**.price"], absolute = 0.01, relative = 0.001 }]
[[endpoint]]
match = "GET /x"
case_insensitive = ["body.city"]
'''))
    assert cfg.targets.noise_source == "replay_old_twice"
    rules = cfg.rules
    assert [m.name for m in rules.masks] == ["uuid", "iso-date"]
    assert rules.masks[1].paths == ("body.when",) and rules.masks[1].pattern.search("2024-01-02")
    assert rules.unordered == ("body.tags",) and rules.unordered_keys == (("body.items", "id"),)
    assert {"link", "allow", "vary"} <= rules.header_sets
    assert rules.tolerances[0].absolute == 0.01 and rules.tolerances[0].relative == 0.001
    assert cfg.rules_for("GET /x").case_insensitive == ("body.name", "body.city")
    assert cfg.rules_for("GET /y").case_insensitive == ("body.name",)


def test_the_configuration_doc_examples_load_and_name_every_preset():
    import re
    import tomllib

    from shadowdiff.config import config_from_dict
    from shadowdiff.compare.rules.presets import PRESETS
    doc = (REPO / "docs" / "configuration.md").read_text()
    blocks = re.findall(r"```toml\n(.*?)```", doc, re.S)
    assert len(blocks) >= 3
    for block in blocks:
        config_from_dict(tomllib.loads(block), "docs/configuration.md")
    for name in (*PRESETS, "header_sets", "case_insensitive", "whitespace_insensitive", "html",
                 "xml", "tolerance", "unordered", "replay_old_twice", "min_relative_pct"):
        assert f"`{name}`" in doc, name

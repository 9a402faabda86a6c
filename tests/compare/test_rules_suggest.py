"""`rules suggest`: the narrowest rule for each noisy location, as TOML the config accepts."""

from __future__ import annotations

import tomllib

from shadowdiff.config import config_from_dict
from shadowdiff.compare.rules.suggest import render_toml, suggest

U1, U2 = "0f8fad5b-d9cb-469f-a165-70867728950e", "1f8fad5b-d9cb-469f-a165-70867728950e"


def noisy(endpoint, location, kind, samples, *, reported=False, n=10):
    return {"endpoint": endpoint, "location": location, "kind": kind, "old_replica": n,
            "raw": n, "masked": n, "measured": n, "reported": reported, "samples": samples}


def record(noise=(), divergences=()):
    return {"format": "shadowdiff-noise", "version": 1, "source": "old_replica",
            "noise": list(noise), "divergences": list(divergences), "rules": []}


def test_each_kind_of_noise_gets_the_narrowest_rule():
    proposals = suggest(record([
        noisy("GET /a", "header.vary", "header_changed", [["Origin, Accept", "Accept, Origin"]]),
        noisy("GET /a", "header.x-host", "header_changed", [["h1", "h2"]]),
        noisy("GET /a", "body.id", "value_changed", [[U1, U2]]),
        noisy("GET /a", "body.tags", "order_changed", [[["a", "b"], ["b", "a"]]]),
        noisy("GET /a", "body.score", "value_changed", [[10.0, 10.2], [3.0, 3.01]]),
        noisy("GET /a", "body.name", "value_changed", [["Ann", "ANN"]]),
        noisy("GET /a", "body.blob", "value_changed", [["x", "y"]]),
        noisy("GET /a", "status", "status_changed", [[200, 503]]),
        noisy("GET /a", "body.flag", "value_changed", [["a", "b"]], reported=True),
    ]))
    (tolerance,) = [p.value for p in proposals if p.key == "tolerance"]
    assert tolerance["paths"] == ["body.score"]
    assert 0.2 / 10.2 <= tolerance["relative"] <= 2.5 * 0.2 / 10.2  # room for unseen values
    found = {(p.key, str(p.value)) for p in proposals if p.key != "tolerance"}
    assert found == {
        ("header_sets", "vary"), ("ignore_headers", "x-host"),
        ("masks", str({"name": "uuid", "paths": ["body.id"]})),
        ("unordered", "body.tags"),
        ("case_insensitive", "body.name"), ("ignore_paths", "body.blob")}


def test_without_a_replica_only_volatile_looking_values_are_proposed():
    proposals = suggest(record(divergences=[
        {"endpoint": "GET /a", "location": "body.request_id", "kind": "value_changed",
         "affected": 5, "replayed": 5, "reported": True, "samples": [[U1, U2]]},
        {"endpoint": "GET /a", "location": "body.price", "kind": "value_changed",
         "affected": 5, "replayed": 5, "reported": True, "samples": [[1, 2]]},
    ]))
    assert [(p.key, p.value) for p in proposals] == [
        ("masks", {"name": "uuid", "paths": ["body.request_id"]})]


def test_the_toml_loads_and_shared_rules_go_global():
    proposals = suggest(record([
        noisy("GET /a", "header.x-host", "header_changed", [["h1", "h2"]]),
        noisy("GET /b", "header.x-host", "header_changed", [["h1", "h2"]]),
        noisy("GET /b", 'body["odd\\u007f key"]', "value_changed", [[U1, U2]]),
    ]))
    text = render_toml(proposals, "reports/run-1", "old_replica")
    config = config_from_dict(tomllib.loads(text), "suggested.toml")
    assert "x-host" in config.rules.ignore_headers
    assert [e.match for e in config.endpoints] == ["GET /b"]
    assert config.endpoints[0].rules.masks[0].paths == ('body["odd\\u007f key"]',)
    assert "old vs old replica differed in 10/10" in text
    assert render_toml([], "r", None).count("Nothing to propose") == 1

"""Judging one trial: fast path, failures on one or both sides, the old replica's mask."""

from __future__ import annotations

from factories import make_exchange, make_response
from shadowdiff.config import Config, config_from_dict
from shadowdiff.compare.judge import judge
from shadowdiff.model import Failure, Trial
from shadowdiff.protocols.http.plugin import PROTOCOL


def trial(old, new, replica=None, target="/users/7"):
    outcomes = {"old": old, "new": new}
    if replica is not None:
        outcomes["old_replica"] = replica
    return Trial(make_exchange(target=target), outcomes)


def test_identical_bytes_take_the_fast_path_and_still_compare_headers():
    body = b'{"a": 1}'
    v = judge(trial(make_response(body=body), make_response(body=body, headers=(
        ("Content-Type", "application/json"), ("Cache-Control", "no-store")))), PROTOCOL, Config())
    assert v.state == "diverged"
    assert [(d.location, d.kind) for d in v.divergences] == [("header.cache-control", "header_added")]
    assert v.endpoint == "GET /users/{id}"


def test_same_json_different_bytes_is_identical():
    v = judge(trial(make_response(body=b'{"a": 1, "b": 2}'),
                    make_response(body=b'{ "b": 2,\n "a": 1 }')), PROTOCOL, Config())
    assert v.state == "identical" and v.divergences == ()


def test_failure_on_one_side_is_a_divergence():
    v = judge(trial(make_response(200), Failure("timeout", "slow")), PROTOCOL, Config())
    assert v.state == "diverged"
    (d,) = v.divergences
    assert (d.location, d.kind, d.old, d.new) == ("outcome", "failure", "status 200", "timeout")


def test_same_failure_on_both_sides_verifies_nothing():
    v = judge(trial(Failure("refused"), Failure("refused")), PROTOCOL, Config())
    assert v.state == "failed" and v.divergences == ()


def test_different_failures_diverge():
    v = judge(trial(Failure("refused"), Failure("timeout")), PROTOCOL, Config())
    assert v.state == "diverged" and v.divergences[0].new == "timeout"


def test_rules_come_from_the_endpoint():
    cfg = config_from_dict({"endpoint": [{"match": "GET /users/{id}", "ignore_paths": ["body.seen"]}]})
    v = judge(trial(make_response(body=b'{"seen": 1}'), make_response(body=b'{"seen": 2}')),
              PROTOCOL, cfg)
    assert v.state == "identical"
    v = judge(trial(make_response(body=b'{"seen": 1}'), make_response(body=b'{"seen": 2}'),
                    target="/orders/1"), PROTOCOL, cfg)
    assert v.state == "diverged"


def test_the_old_replica_masks_what_old_disagrees_with_itself_about():
    old = make_response(body=b'{"nonce": "a1", "price": 10}')
    replica = make_response(body=b'{"nonce": "b2", "price": 10}')
    new = make_response(body=b'{"nonce": "c3", "price": 12}')
    v = judge(trial(old, new, replica), PROTOCOL, Config())
    assert [(d.location, d.kind) for d in v.divergences] == [("body.price", "value_changed")]
    assert [d.location for d in v.suppressed] == ["body.nonce"]


def test_only_noise_means_identical():
    old = make_response(body=b'{"nonce": "a1"}')
    v = judge(trial(old, make_response(body=b'{"nonce": "c3"}'),
                    make_response(body=b'{"nonce": "b2"}')), PROTOCOL, Config())
    assert v.state == "identical" and len(v.suppressed) == 1


def test_a_type_change_at_a_noisy_location_is_still_reported():
    # the replica's value differs (noise), but new changed the type: that is no noise
    old = make_response(body=b'{"total": 10.5}')
    v = judge(trial(old, make_response(body=b'{"total": "10.50"}'),
                    make_response(body=b'{"total": 11.25}')), PROTOCOL, Config())
    assert [(d.location, d.kind) for d in v.divergences] == [("body.total", "type_changed")]
    assert [d.kind for d in v.noise] == ["value_changed"] and v.suppressed == ()


def test_audit_names_the_rule_behind_each_hidden_difference():
    cfg = config_from_dict({"normalize": {"ignore_paths": ["body.meta"], "masks": ["uuid"]}})
    old = make_response(body=b'{"meta": {"at": 1}, "id": "0f8fad5b-d9cb-469f-a165-70867728950e", "n": 1}')
    new = make_response(body=b'{"meta": {"at": 2}, "id": "1f8fad5b-d9cb-469f-a165-70867728950e", "n": 2}')
    v = judge(trial(old, new), PROTOCOL, cfg, audit=lambda endpoint: endpoint == "GET /users/{id}")
    assert [(d.location, d.kind) for d in v.divergences] == [("body.n", "value_changed")]
    assert {(d.location, rule) for d, rule in v.hidden} == {
        ("body.meta.at", 'ignore_paths "body.meta"'), ("body.id", 'mask "uuid"')}
    assert judge(trial(old, new), PROTOCOL, cfg).hidden is None  # not audited: not measured

"""Measured noise against real servers: old and its replica are two servers of the same app,
each stamping random ids and clocks; new changes some fields on purpose.

Plus the pure parts of noise.py: the per-exchange mask and Diffy's significance test.
"""

from __future__ import annotations

import datetime as dt
import secrets
import uuid

import pytest
from aiohttp import web
from click.testing import CliRunner

from factories import make_exchange
from servers import serve_app
from runs import run
from shadowdiff.capture.jsonl import write_capture
from shadowdiff.cli.main import main
from shadowdiff.model import Divergence
from shadowdiff.compare.noise import mask_noise, significance

RARE = 100    # requests to /rare/{n}; old and its replica disagree on one of them
ORDERS = 20


def shop(version: str, instance: str):
    """One instance of the app: random ids and clocks on every answer, deliberate changes in new."""
    def factory() -> web.Application:
        async def order(request: web.Request) -> web.Response:
            n = int(request.match_info["n"])
            body = {"order": {"id": n, "nonce": secrets.token_hex(8),
                              "status": "shipped" if version == "old" else "SHIPPED"},
                    "served_at": dt.datetime.now(dt.timezone.utc).isoformat(),
                    "request_id": str(uuid.uuid4())}
            return web.json_response(body, headers={"X-Instance": instance})

        async def rare(request: web.Request) -> web.Response:
            n = int(request.match_info["n"])
            # Old's instances disagree on `flag` for 1% of requests (a cache edge, say);
            # new changed the flag on every request.
            flag = "legacy" if version == "old" else "modern"
            if version == "old" and instance == "replica" and n % RARE == 0:
                flag = "stale"
            return web.json_response({"id": n, "flag": flag})

        app = web.Application()
        app.router.add_get("/orders/{n}", order)
        app.router.add_get("/rare/{n}", rare)
        return app
    return factory


@pytest.fixture(scope="module")
def capture(tmp_path_factory):
    path = tmp_path_factory.mktemp("noise") / "capture.jsonl"
    exchanges = [make_exchange(target=f"/orders/{i}") for i in range(1, ORDERS + 1)]
    exchanges += [make_exchange(target=f"/rare/{i}") for i in range(1, RARE + 1)]
    write_capture(path, exchanges)
    return path


@pytest.fixture(scope="module")
def replica_run(capture, tmp_path_factory):
    out = tmp_path_factory.mktemp("replica") / "run"
    with serve_app(shop("old", "old")) as old, serve_app(shop("old", "replica")) as replica, \
            serve_app(shop("new", "new")) as new:
        result, summary = run(capture, out, "--old", old, "--new", new, "--old-replica", replica)
    return result, out, summary


def _keys(entries) -> set[tuple[str, str, str]]:
    return {(e["endpoint"], e["location"], e["kind"]) for e in entries}


def test_random_fields_are_suppressed_and_real_changes_reported(replica_run):
    result, _, summary = replica_run
    assert result.exit_code == 1
    assert _keys(summary["signatures"]) == {
        ("GET /orders/{id}", "body.order.status", "value_changed"),
        ("GET /rare/{id}", "body.flag", "value_changed")}
    suppressed = _keys(summary["noise"]["suppressed"])
    for location in ("body.order.nonce", "body.served_at", "body.request_id"):
        assert ("GET /orders/{id}", location, "value_changed") in suppressed
    assert ("GET /orders/{id}", "header.x-instance", "header_changed") in suppressed


def test_a_change_beside_noise_in_the_same_object_is_reported(replica_run):
    _, _, summary = replica_run
    status = next(s for s in summary["signatures"] if s["location"] == "body.order.status")
    assert status["affected"] == ORDERS and status["rate"] == 1.0
    assert status["noise"]["significant"] and status["noise"]["old_replica"] == 0
    nonce = next(e for e in summary["noise"]["suppressed"] if e["location"] == "body.order.nonce")
    assert nonce["by"] == "measurement" and nonce["count"] == ORDERS == nonce["old_replica"]


def test_a_field_noisy_in_one_percent_but_changed_everywhere_is_reported(replica_run):
    _, _, summary = replica_run
    flag = next(s for s in summary["signatures"] if s["location"] == "body.flag")
    assert flag["noise"] == {"raw": RARE, "old_replica": 1, "measured": RARE,
                             "absolute_pct": pytest.approx(99.0), "relative_pct": pytest.approx(98.02),
                             "significant": True}
    assert flag["affected"] == RARE - 1  # the one request where old disagreed with itself
    masked = [e for e in summary["noise"]["suppressed"] if e["location"] == "body.flag"]
    assert [(e["by"], e["count"]) for e in masked] == [("replica", 1)]


def test_totals_count_exchanges_whose_only_differences_were_noise(replica_run):
    _, out, summary = replica_run
    totals, noise = summary["totals"], summary["noise"]
    assert noise["measured"] and noise["source"] == "old_replica"
    assert noise["exchanges"] == ORDERS + RARE
    assert totals["diverged"] == ORDERS + RARE - 1 and totals["noise_suppressed"] == 1
    assert totals["identical"] == 1
    md = (out / "report.md").read_text()
    assert "## Suppressed as noise" in md and "body.order.nonce" in md
    assert "Suppressed as noise" in (out / "report.html").read_text()


def test_rules_suggest_proposes_rules_that_remove_the_measured_noise(replica_run, capture, tmp_path):
    _, out, _ = replica_run
    result = CliRunner().invoke(main, ["rules", "suggest", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    text = (out / "suggested-rules.toml").read_text()
    assert '"x-instance"' in text and 'name = "uuid"' in text and 'name = "iso-datetime"' in text
    # with the proposed rules and no replica, only the real changes are left
    with serve_app(shop("old", "old")) as old, serve_app(shop("new", "new")) as new:
        _, summary = run(capture, tmp_path / "again", "--old", old, "--new", new,
                         config=out / "suggested-rules.toml")
    assert _keys(summary["signatures"]) == {
        ("GET /orders/{id}", "body.order.status", "value_changed"),
        ("GET /rare/{id}", "body.flag", "value_changed")}


def test_replay_old_twice_measures_noise_without_a_replica(capture, tmp_path):
    with serve_app(shop("old", "old")) as old, serve_app(shop("new", "new")) as new:
        result, summary = run(capture, tmp_path / "run", "--old", old, "--new", new,
                              "--replay-old-twice")
    assert result.exit_code == 1
    assert summary["noise"]["source"] == "replay_old_twice"
    assert summary["noise"]["exchanges"] == ORDERS + RARE
    locations = {s["location"] for s in summary["signatures"]}
    # the same server twice: its random fields are measured as noise; the instance header
    # is not (it is the same server), so it stays a divergence to review
    assert locations == {"body.order.status", "body.flag", "header.x-instance"}


def test_replica_and_replay_old_twice_together_is_a_usage_error(capture, tmp_path):
    result = CliRunner().invoke(main, ["run", str(capture), "--old", "http://127.0.0.1:9",
                                       "--new", "http://127.0.0.1:9", "--old-replica",
                                       "http://127.0.0.1:9", "--replay-old-twice"])
    assert result.exit_code == 2 and "replay_old_twice" in result.output


# -- the pure parts --------------------------------------------------------------------------


def div(location: str, kind: str = "value_changed", old="a", new="b") -> Divergence:
    return Divergence("GET /x", location, kind, old, new)


def test_the_mask_needs_the_same_location_and_kind():
    old_new = [div("body.a"), div("body.b", "type_changed", 1, "1")]
    old_replica = [div("body.a", old="a", new="c"), div("body.b", old=1, new=2)]
    kept, suppressed = mask_noise(old_new, old_replica, ({}, {}, {}))
    assert kept == [old_new[1]] and suppressed == [old_new[0]]


def test_a_text_body_is_masked_line_by_line():
    old = "a\nstamp 1\nprice 10\n"
    replica = "a\nstamp 2\nprice 10\n"
    new_noise_only, new_real = "a\nstamp 3\nprice 10\n", "a\nstamp 3\nprice 12\n"
    trees = [{"body": t} for t in (old, new_noise_only, replica)]
    noise = [div("body", "body_changed")]
    kept, suppressed = mask_noise([div("body", "body_changed")], noise, tuple(trees))
    assert kept == [] and len(suppressed) == 1
    trees[1] = {"body": new_real}
    kept, suppressed = mask_noise([div("body", "body_changed")], noise, tuple(trees))
    assert suppressed == [] and (kept[0].old, kept[0].new) == ("line 3: price 10", "line 3: price 12")


@pytest.mark.parametrize("raw,noise,measured,significant", [
    (99, 1, 100, True),        # rare noise, constant change
    (50, 48, 100, False),      # as often as noise: relative margin 2% < 20%
    (100, 100, 100, False),    # random field everywhere
    (3, 0, 10000, False),      # 0.03% absolute: not above noise enough
    (4, 0, 10000, True),       # 0.04%
    (6, 4, 100, False),        # relative 20% and absolute 2%: exactly at the margin is not above
    (0, 0, 100, False),
    (5, 0, 0, True),           # nothing measured: nothing to discount
])
def test_significance_follows_diffy(raw, noise, measured, significant):
    assert significance(raw, noise, measured, 20.0, 0.03).significant is significant

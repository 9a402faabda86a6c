"""The tally: weights, one count per signature per exchange, secrets, bounded latency samples."""

from __future__ import annotations

from factories import make_exchange, make_response
from shadowdiff.redact import ReportConfig
from shadowdiff.compare.judge import Verdict
from shadowdiff.model import Divergence, Failure, Trial
from shadowdiff.rank.tally import LATENCY_SAMPLES, Tally, display_body
from shadowdiff.redact import REDACTED


def div(location="body.items[0].price", kind="value_changed", old=1, new=2):
    return Divergence("GET /items", location, kind, old, new)


def test_counts_are_weighted_and_a_signature_counts_once_per_exchange():
    tally = Tally(ReportConfig())
    ex = make_exchange(target="/items", count=3)
    verdict = Verdict("GET /items", "diverged", (div("body.items[0].price"), div("body.items[1].price")))
    tally.add(Trial(ex, {"old": make_response(), "new": make_response()}), verdict)
    (sig, stats), = tally.signatures.items()
    assert sig.location == "body.items[*].price"
    assert stats.affected == 3
    ep = tally.endpoints["GET /items"]
    assert (ep.captured, ep.replayed, ep.diverged) == (3, 3, 3)


def test_skips_and_failures():
    tally = Tally(ReportConfig())
    tally.add_skip("POST /cart", make_exchange("POST", "/cart", count=2), "method POST")
    tally.add(Trial(make_exchange(), {"old": make_response(), "new": Failure("reset", "x" * 1000)}),
              Verdict("GET /users/{id}", "diverged", (div("outcome", "failure", "status 200", "reset"),)))
    assert tally.skipped == {"method POST": 2}
    (failure,) = tally.failures.values()
    assert failure["role"] == "new" and failure["kind"] == "reset" and len(failure["detail"]) == 300


def test_examples_hide_secrets_unless_asked():
    ex = make_exchange(target="/items?access_token=abc&page=2&api_key=k1", headers=(
        ("Authorization", "Bearer xyz"), ("Cookie", "sid=1"), ("Accept", "*/*")))
    resp = make_response(headers=(("Set-Cookie", "sid=2"), ("Content-Type", "application/json")))
    verdict = Verdict("GET /items", "diverged", (div("header.set-cookie", "header_changed", "a", "b"),))
    hidden, shown = Tally(ReportConfig()), Tally(ReportConfig(show_secrets=True))
    for tally in (hidden, shown):
        tally.add(Trial(ex, {"old": resp, "new": resp}), verdict)
    example = hidden.examples["GET /items header.set-cookie header_changed"]
    assert dict(map(tuple, example["request"]["headers"])) == {
        "Authorization": REDACTED, "Cookie": REDACTED, "Accept": "*/*"}
    assert example["request"]["target"] == f"/items?access_token={REDACTED}&page=2&api_key={REDACTED}"
    assert ["Set-Cookie", REDACTED] in example["old"]["headers"]
    assert example["divergences"][0]["old"] == REDACTED
    sig_example = next(iter(hidden.signatures.values())).example
    assert (sig_example["old"], sig_example["new"]) == (REDACTED, REDACTED)
    shown_example = shown.examples["GET /items header.set-cookie header_changed"]
    assert ["Authorization", "Bearer xyz"] in shown_example["request"]["headers"]


def test_latency_samples_stay_bounded():
    tally = Tally(ReportConfig())
    for i in range(LATENCY_SAMPLES + 500):
        tally.add(Trial(make_exchange(target="/items"), {"old": make_response(elapsed_s=0.001),
                                                         "new": make_response(elapsed_s=0.002)}),
                  Verdict("GET /items", "identical"))
    samples = tally.endpoints["GET /items"].latency
    assert len(samples["old"]) == LATENCY_SAMPLES and len(samples["new"]) == LATENCY_SAMPLES
    assert set(samples["new"]) == {2.0}


def test_display_body():
    assert display_body({"a": [1]}) == '{\n  "a": [\n    1\n  ]\n}'
    assert display_body("<p>hi</p>") == "<p>hi</p>"
    assert display_body({"$binary": {"sha256": "ab", "length": 3}}) == "<binary body: 3 bytes, sha256 ab>"


def test_settle_moves_exchanges_whose_every_signature_is_noise_and_is_idempotent():
    tally = Tally(ReportConfig())
    noisy, real = div("body.nonce"), div("body.price")
    for divs, count in (((noisy,), 3), ((noisy, real), 2)):
        tally.add(Trial(make_exchange(target="/items", count=count),
                        {"old": make_response(), "new": make_response()}),
                  Verdict("GET /items", "diverged", divs))
    for _ in range(2):
        tally.settle({noisy.signature})
        ep = tally.endpoints["GET /items"]
        assert (ep.identical, ep.diverged, tally.noise_suppressed) == (3, 2, 3)
    tally.settle(set())
    assert (tally.endpoints["GET /items"].diverged, tally.noise_suppressed) == (5, 0)

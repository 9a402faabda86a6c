"""Acceptance: NSD (old) and Knot (new) serve the same zone file; dig traffic to NSD is captured
with tcpdump, imported, and replayed to both by the unchanged pipeline.

What the two really do differently (seen with dig on this zone, NSD 4.6 and Knot 3.2), and
what the report must therefore show: NSD adds the zone's NS RRset to AUTHORITY and the name
servers' addresses to ADDITIONAL on positive answers, Knot does not; to ANY (RFC 8482) NSD
answers with the SOA, Knot with the NS RRset and glue; NSD serves AXFR to 127.0.0.1, Knot
refuses it. What both answer alike must not be reported: NXDOMAIN with the SOA (TTL from
the SOA minimum), NODATA, REFUSED outside the zone (EDE 20 from both), and Knot's
`answer-rotation` shuffling the three A records of www on every answer.
Setup as in RECIPES.md ("DNS servers"); .ci/run installs nsd, knot, dnsutils and tcpdump.
"""

from __future__ import annotations

import gzip
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import require_tool
from testpaths import DATA

ZONE = DATA / "dns" / "example.com.zone"
#: (dig arguments, how many times): what "production" asks the old server.
QUERIES = [
    (["www.example.com", "A"], 6), (["api.example.com", "A"], 1), (["www.example.com", "AAAA"], 1),
    (["example.com", "MX"], 1), (["nope.example.com", "A"], 2), (["www.example.com", "MX"], 2),
    (["other.org", "A"], 2), (["example.com", "ANY"], 1), (["example.com", "AXFR"], 1),
    (["big.example.com", "TXT", "+noedns"], 1), (["mail.example.com", "A", "+tcp"], 1),
    (["_sip._tcp.example.com", "SRV"], 1),
]


def _free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1 (the servers bind both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = udp.getsockname()[1]
            with socket.socket() as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
        return port
    raise RuntimeError("no free port")


def _wait_answering(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"name server exited: {log.read_text(errors='replace')[-2000:]}")
        out = subprocess.run(["dig", "-p", str(port), "@127.0.0.1", "+time=1", "+tries=1",
                              "+short", "example.com", "SOA"], capture_output=True, text=True)
        if out.stdout.strip():
            return
        time.sleep(0.2)
    pytest.fail(f"name server on {port} never answered: {log.read_text(errors='replace')[-2000:]}")


def _nsd_conf(d: Path, port: int) -> str:
    return f"""server:
  ip-address: 127.0.0.1@{port}
  username: ""
  chroot: ""
  zonesdir: "{d}"
  database: ""
  pidfile: "{d}/nsd.pid"
  xfrdfile: "{d}/xfrd.state"
  zonelistfile: "{d}/zone.list"
  server-count: 1
  hide-version: yes
  rrl-ratelimit: 0          # Debian builds NSD with RRL on (200 q/s per /24): it drops answers under load
remote-control:
  control-enable: no
zone:
  name: example.com
  zonefile: "{d}/example.com.zone"
  provide-xfr: 127.0.0.1 NOKEY
"""


def _knot_conf(d: Path, port: int) -> str:
    return f"""server:
  listen: 127.0.0.1@{port}
  rundir: "{d}/knot"
  answer-rotation: on
control:
  listen: "{d}/knot/knot.sock"
database:
  storage: "{d}/knot/db"
log:
  - target: stderr
    any: info
zone:
  - domain: example.com
    file: "{d}/example.com.zone"
    zonefile-sync: -1
    journal-content: none
"""


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, int, int]]:
    nsd, knotd = require_tool("nsd"), require_tool("knotd")
    require_tool("dig")
    d = tmp_path_factory.mktemp("dns-real")
    (d / "knot").mkdir()
    (d / "example.com.zone").write_text(ZONE.read_text())  # the same file for both
    old_port, new_port = _free_port(), _free_port()
    (d / "nsd.conf").write_text(_nsd_conf(d, old_port))
    (d / "knot.conf").write_text(_knot_conf(d, new_port))
    procs = []
    try:
        for cmd, port, log in (([nsd, "-d", "-c", str(d / "nsd.conf")], old_port, d / "nsd.log"),
                               ([knotd, "-c", str(d / "knot.conf")], new_port, d / "knot.log")):
            with open(log, "wb") as out:
                procs.append(subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT))
            _wait_answering(port, procs[-1], log)
        yield d, old_port, new_port
    finally:
        for proc in procs:
            _stop(proc)


def _capture(pcap: Path, port: int) -> None:
    tcpdump = require_tool("tcpdump")
    proc = subprocess.Popen([tcpdump, "-i", "lo", "-n", "-s", "0", "-U", "-B", "32768", "-Z", "root",
                             "-w", str(pcap), f"port {port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(1.0)  # tcpdump needs a moment before it sees packets
        for args, times in QUERIES:
            for _ in range(times):
                subprocess.run(["dig", "-p", str(port), "@127.0.0.1", "+norec", "+time=2",
                                "+tries=1", *args], capture_output=True, timeout=10)
        time.sleep(2.0)  # RECIPES.md: the last block arrives late
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(10)


def _shadowdiff(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(Path(os.sys.executable).parent / "shadowdiff"), *args],
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def report(servers: tuple[Path, int, int]) -> dict:
    d, old_port, new_port = servers
    pcap, capture = d / "prod.pcap", d / "prod.jsonl"
    _capture(pcap, old_port)
    imported = _shadowdiff("capture", "pcap", str(pcap), "-o", str(capture), "-q",
                           "--dns-port", str(old_port))
    assert imported.returncode == 0, imported.stderr
    (d / "shadowdiff.toml").write_text("[dns]\nttl_tolerance = 60\nzones = [\"example.com\"]\n")
    out = d / "run"
    run = _shadowdiff("run", str(capture), "--old", f"dns://127.0.0.1:{old_port}",
                      "--new", f"dns://127.0.0.1:{new_port}", "--dns-allow", "axfr",
                      "--config", str(d / "shadowdiff.toml"), "--out", str(out), "-q")
    assert run.returncode == 1, run.stdout + run.stderr  # real differences: the gate fails
    assert "Traceback" not in run.stderr
    targets = {}
    with open(capture, "rb") as f:
        for line in f.read().splitlines()[1:]:
            ex = json.loads(line)
            targets[ex["id"]] = (ex["request"]["method"], ex["request"]["target"])
    with gzip.open(out / "results.jsonl.gz") as f:
        results = [json.loads(line) for line in f]
    # `run` reads the pcap itself too, finding DNS on the high port by content
    direct = _shadowdiff("run", str(pcap), "--old", f"dns://127.0.0.1:{old_port}",
                         "--new", f"dns://127.0.0.1:{new_port}", "--dns-allow", "axfr",
                         "--config", str(d / "shadowdiff.toml"), "--out", str(d / "direct"), "-q")
    assert direct.returncode == 1 and "Traceback" not in direct.stderr, direct.stderr
    return {"summary": json.loads((out / "summary.json").read_text()), "results": results,
            "targets": targets, "md": (out / "report.md").read_text(),
            "direct": json.loads((d / "direct" / "summary.json").read_text())}


def _states(report: dict) -> dict[tuple[str, str], set[str]]:
    out: dict[tuple[str, str], set[str]] = {}
    for r in report["results"]:
        out.setdefault(report["targets"][r["id"]], set()).add(r["state"])
    return out


def test_every_dig_query_was_captured_and_replayed(report: dict) -> None:
    wanted = sum(times for _, times in QUERIES)
    # big TXT without EDNS: dig asks over UDP, gets TC, and asks again over TCP: two queries
    assert len(report["targets"]) == wanted + 1
    assert report["summary"]["totals"]["replayed"] == wanted + 1
    assert report["summary"]["totals"]["failed"] == {"old": 0, "new": 0, "old_replica": 0}
    direct = report["direct"]
    assert direct["totals"]["replayed"] == wanted + 1
    assert {s["key"] for s in direct["signatures"]} == {s["key"] for s in report["summary"]["signatures"]}


def test_what_both_answer_alike_is_not_reported(report: dict) -> None:
    states = _states(report)
    for key in [("A", "nope.example.com."), ("MX", "www.example.com."), ("A", "other.org.")]:
        assert states[key] == {"identical"}, key
    # www A: six answers, record order rotated by Knot; only the referral part differs
    www = [r for r in report["results"] if report["targets"][r["id"]] == ("A", "www.example.com.")]
    assert len(www) == 6
    for r in www:
        assert {loc.split("[")[0] for loc, _ in r["divergences"]} == {"body.authority", "body.additional"}


def test_the_real_differences_are_ranked(report: dict) -> None:
    sigs = {(s["endpoint"], s["location"], s["kind"]) for s in report["summary"]["signatures"]}
    assert ("A {host}.example.com", 'body.authority["example.com. NS"]', "field_missing") in sigs
    assert ("A {host}.example.com", 'body.additional["ns1.example.com. A"]', "field_missing") in sigs
    assert ("AXFR example.com", "status", "status_changed") in sigs
    assert ("ANY example.com", 'body.answer["example.com. SOA"]', "field_missing") in sigs
    assert ("ANY example.com", 'body.answer["example.com. NS"]', "field_added") in sigs
    assert not any(".ttl" in loc or "records" in loc or loc.startswith("body.opt")
                   for _, loc, _ in sigs), sigs
    assert "AXFR example.com" in report["md"]

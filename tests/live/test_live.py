"""Live mirror end to end: a real `shadowdiff mirror` process (mitmproxy in-process) between a
real client and real loopback servers; new hangs, refuses, crawls or answers differently."""

from __future__ import annotations

from testpaths import REPO
import asyncio
import http.client
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson
import pytest
from aiohttp import web
from click.testing import CliRunner

from servers import raw_server, refused_url, serve_app
from shadowdiff.capture import read_exchanges
from shadowdiff.capture.jsonl import read_header
from shadowdiff.errors import PluginError
from shadowdiff.live.queue import Mirror, MirrorSettings, sampled
from shadowdiff.model import Failure, Response

pytest.importorskip("mitmproxy")

# cli.py registers cli_live with one import line (added by the lead); until then, import it here.
_MAIN = "import shadowdiff.cli.live; from shadowdiff.cli.main import main; main()"


def service(name: str, *, delay: float = 0.0, hits: list[dict[str, str]] | None = None):
    """An aiohttp app answering every path with JSON naming itself; records what it got."""
    def factory() -> web.Application:
        async def handle(request: web.Request) -> web.Response:
            body = await request.read()
            if hits is not None:
                hits.append({"method": request.method, "target": request.path_qs,
                             "client": request.headers.get("X-Client", ""), "body": body.decode()})
            if delay:
                await asyncio.sleep(delay)
            return web.json_response({"system": name, "target": request.path_qs, "got": len(body)},
                                     headers={"X-System": name})
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handle)
        return app
    return factory


@pytest.fixture(scope="module")
def confdir(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(tmp_path_factory.mktemp("mitmconf"))  # mitmproxy makes its CA once per module


class MirrorProcess:
    """A `shadowdiff mirror` child: stdout read by a thread, stderr to a file, one PID."""

    def __init__(self, args: list[str], stderr_path: Path) -> None:
        self._stderr = open(stderr_path, "w+")
        self.proc = subprocess.Popen([sys.executable, "-c", _MAIN, "mirror", *args],
                                     stdout=subprocess.PIPE, stderr=self._stderr, text=True)
        self.lines: queue.Queue[str] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)

    def stop(self) -> str:
        """SIGTERM, as a supervisor would; returns the rest of stdout (the stats line)."""
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(30)
        self._reader.join(5)
        self._stderr.seek(0)
        assert code == 0, self._stderr.read()
        return "".join(self.lines.get_nowait() for _ in range(self.lines.qsize()))

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()  # this PID only: the one we started
                self.proc.wait(5)
        self._reader.join(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._stderr.close()


@contextmanager
def mirror(old: str, new: str, out: Path, confdir: str, *extra: str) -> Iterator[tuple[str, MirrorProcess]]:
    """Run `shadowdiff mirror` on 127.0.0.1:0; yields (its URL, the process)."""
    proc = MirrorProcess(["--listen", "127.0.0.1:0", "--old", old, "--new", new, "-o", str(out),
                          "--confdir", confdir, *extra], out.with_suffix(".stderr"))
    try:
        first = proc.lines.get(timeout=20)
        assert "listening on" in first, first
        yield f"http://{first.split()[-1]}", proc
    finally:
        proc.close()


def stop(proc: MirrorProcess) -> str:
    return proc.stop()


def get(url: str, target: str, method: str = "GET", body: bytes | None = None,
        headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes, float]:
    """One request on a fresh connection: status, headers, body, seconds."""
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    start = time.perf_counter()
    conn.request(method, target, body=body, headers=headers or {})
    resp = conn.getresponse()
    data = resp.read()
    elapsed = time.perf_counter() - start
    conn.close()
    return resp.status, dict(resp.getheaders()), data, elapsed


@pytest.mark.parametrize("fault,kind", [("hang", "timeout"), ("refused", "refused")])
def test_client_unaffected_when_new_hangs_or_refuses(tmp_path, confdir, fault, kind):
    out = tmp_path / "live.jsonl"
    timeout_s = 2.0
    targets = [f"/users/{i}?q={i}" for i in range(12)]
    with serve_app(service("old")) as old, \
            (raw_server("hang") if fault == "hang" else _nothing(refused_url())) as new:
        direct = [get(old, t) for t in targets]
        with mirror(old, new, out, confdir, "--timeout", str(timeout_s), "--drain", "8") as (url, proc):
            via = [get(url, t) for t in targets]
            final = stop(proc)
    for (d_status, d_headers, d_body, _), (status, headers, body, _) in zip(direct, via):
        assert (status, body, headers["X-System"]) == (d_status, d_body, d_headers["X-System"])
    worst = max(v[3] for v in via)
    # Had the proxy waited for new, each request would take the full new timeout.
    assert worst < timeout_s / 4, f"slowest client request took {worst:.3f} s"
    header = read_header(out)
    assert header["stats"]["mirrored"] == len(targets) == header["stats"]["new_failures"]
    assert f"new_failures {len(targets)}" in final
    exchanges = list(read_exchanges(out))
    assert sorted(ex.request.target for ex in exchanges) == sorted(targets)
    for ex in exchanges:
        observed = dict(ex.observed)
        assert isinstance(observed["old"], Response) and observed["old"].status == 200
        assert isinstance(observed["new"], Failure) and observed["new"].kind == kind
        assert orjson.loads(observed["old"].body)["target"] == ex.request.target


@contextmanager
def _nothing(url: str) -> Iterator[str]:
    yield url


def test_queue_full_drops_are_counted_honestly(tmp_path, confdir):
    out = tmp_path / "live.jsonl"
    new_hits: list[dict[str, str]] = []
    sent = 10
    with serve_app(service("old")) as old, serve_app(service("new", delay=0.8, hits=new_hits)) as new:
        with mirror(old, new, out, confdir, "--queue", "2", "--concurrency", "1",
                    "--timeout", "5", "--drain", "15") as (url, proc):
            via = [get(url, f"/items/{i}") for i in range(sent)]
            stop(proc)
    assert all(v[0] == 200 and b'"old"' in v[2] for v in via)
    assert max(v[3] for v in via) < 0.4  # new takes 0.8 s a copy; the client never waits for it
    stats = read_header(out)["stats"]
    assert stats["dropped_queue_full"] >= 1
    assert stats["mirrored"] + stats["dropped_queue_full"] == stats["requests"] == sent
    # Honest: every copy counted as mirrored reached new and was recorded, and no other did.
    recorded = [ex.request.target for ex in read_exchanges(out)]
    assert len(new_hits) == stats["mirrored"] == stats["recorded"] == len(recorded)
    assert sorted(h["target"] for h in new_hits) == sorted(recorded)


def test_mirrored_capture_reads_back_and_runs_without_targets(tmp_path, confdir):
    out = tmp_path / "live.jsonl"
    with serve_app(service("old")) as old, serve_app(service("new")) as new:
        with mirror(old, new, out, confdir, "--methods", "GET,PUT") as (url, proc):
            got = [get(url, "/a?x=1"), get(url, "/b", "PUT", b'{"v": 1}'),
                   get(url, "/c", "POST", b"form=1"), get(url, "/d", "HEAD")]
            final = stop(proc)
    assert [g[0] for g in got] == [200, 200, 200, 200]
    assert orjson.loads(got[2][2])["system"] == "old"  # POST reached old only
    assert "skipped_method 2" in final  # POST and HEAD are not in --methods
    exchanges = {ex.request.target: ex for ex in read_exchanges(out)}
    assert sorted(exchanges) == ["/a?x=1", "/b"]
    put = exchanges["/b"]
    assert (put.request.method, put.request.body) == ("PUT", b'{"v": 1}')
    old_resp, new_resp = dict(put.observed)["old"], dict(put.observed)["new"]
    assert isinstance(old_resp, Response) and isinstance(new_resp, Response)
    assert orjson.loads(old_resp.body) == {"system": "old", "target": "/b", "got": 8}
    assert orjson.loads(new_resp.body) == {"system": "new", "target": "/b", "got": 8}
    # A mirrored capture already holds both answers: `run` diffs it with no targets at all.
    from shadowdiff.cli.main import main
    result = CliRunner().invoke(main, ["run", str(out), "--out", str(tmp_path / "run"), "-q"])
    summary = orjson.loads((tmp_path / "run" / "summary.json").read_bytes())
    assert result.exit_code == 1, result.output
    assert summary["totals"]["diverged"] == 2


def test_sample_is_consistent_per_client(tmp_path, confdir):
    out = tmp_path / "live.jsonl"
    new_hits: list[dict[str, str]] = []
    clients = [f"198.51.100.{i}" for i in range(24)]
    with serve_app(service("old")) as old, serve_app(service("new", hits=new_hits)) as new:
        with mirror(old, new, out, confdir, "--sample", "0.5", "--sample-header", "X-Client") as (url, proc):
            for rnd in range(3):
                for c in clients:
                    get(url, f"/r{rnd}", headers={"X-Client": c})
            stop(proc)
    per_client = {c: sum(h["client"] == c for h in new_hits) for c in clients}
    expected = {c: 3 if sampled(c, 0.5) else 0 for c in clients}
    assert per_client == expected  # all of a client's requests, or none
    assert 0 < sum(1 for n in per_client.values() if n) < len(clients)
    stats = read_header(out)["stats"]
    assert stats["skipped_sample"] == 3 * sum(1 for n in per_client.values() if not n)


def test_sampled_fraction_and_stability():
    keys = [f"10.0.{i // 256}.{i % 256}" for i in range(4000)]
    chosen = [k for k in keys if sampled(k, 0.3)]
    assert 0.26 < len(chosen) / len(keys) < 0.34
    assert chosen == [k for k in keys if sampled(k, 0.3)]  # stable across calls
    assert set(chosen) <= {k for k in keys if sampled(k, 0.6)}  # a larger fraction keeps them
    assert all(sampled(k, 1.0) for k in keys[:50]) and not any(sampled(k, 0.0) for k in keys[:50])


def test_unanswered_by_old_is_counted_unfinished(tmp_path):
    out = tmp_path / "live.jsonl"
    from factories import make_request

    async def scenario(new: str) -> dict[str, int]:
        m = Mirror(MirrorSettings(new=new, output=str(out), drain_s=0.3))
        await m.start()
        answered = m.offer(make_request(target="/answered"), "127.0.0.1")
        m.offer(make_request(target="/never"), "127.0.0.1")  # old never answers this one
        assert answered is not None
        m.old_outcome(answered, Response(200, (), b"ok"))
        return await m.stop()

    with serve_app(service("new")) as new:
        stats = asyncio.run(scenario(new))
    assert (stats["mirrored"], stats["recorded"], stats["unfinished"]) == (2, 1, 1)
    assert [ex.request.target for ex in read_exchanges(out)] == ["/answered"]


def test_port_in_use_exits_2(tmp_path, confdir):
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    port = busy.getsockname()[1]
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _MAIN, "mirror", "--listen", f"127.0.0.1:{port}", "--old",
             "http://127.0.0.1:9", "--new", "http://127.0.0.1:9", "-o", str(tmp_path / "x.jsonl"),
             "--confdir", confdir], capture_output=True, text=True, timeout=30)
    finally:
        busy.close()
    assert proc.returncode == 2, proc.stderr
    assert "failed to start" in proc.stderr and not (tmp_path / "x.jsonl").exists()


def test_missing_mitmproxy_is_a_plugin_error(monkeypatch):
    from shadowdiff.live.mirror import _import_mitmproxy
    monkeypatch.setitem(sys.modules, "mitmproxy", None)
    with pytest.raises(PluginError, match=r"pip install shadowdiff\[mitm\]"):
        _import_mitmproxy()


def test_mirror_and_collect_have_help():
    import shadowdiff.cli.live  # noqa: F401 - registers the commands
    from shadowdiff.cli.main import main
    for name in ("mirror", "collect"):
        result = CliRunner().invoke(main, [name, "--help"])
        assert result.exit_code == 0 and "--listen" in result.output
    docs = (REPO / "docs" / "mirroring.md").read_text()
    assert "shadowdiff mirror --listen" in docs and "shadowdiff collect --listen" in docs


def test_mirrored_requests_keep_their_http_version() -> None:
    pytest.importorskip("mitmproxy", reason="needs the mitm extra (pip install shadowdiff[mitm])")
    from mitmproxy.test import tflow, tutils

    from shadowdiff.live.mirror import flow_request
    versions = [flow_request(tflow.tflow(req=tutils.treq(http_version=v))).http_version
                for v in (b"HTTP/2.0", b"HTTP/1.1", b"HTTP/1.0")]
    assert versions == ["HTTP/2", "HTTP/1.1", "HTTP/1.0"]   # new gets h2 where it offers it

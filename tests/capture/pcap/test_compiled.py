"""The compiled build of the pcap hot path (setup.py, mypyc) against its sources.

Both must behave the same: the capture tests pass against the sources too
(SHADOWDIFF_PURE=1), and both builds make the very same exchanges and counts from real
and synthesized captures.
"""

from __future__ import annotations

from testpaths import REPO
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from pcapflow import FIXTURES

from shadowdiff.capture.pcap import compiled

ROOT = REPO
IS_COMPILED = compiled.running_compiled()
PURE_ENV = {**os.environ, "SHADOWDIFF_PURE": "1"}

_DIGEST = """
import hashlib, json, sys
from shadowdiff.capture.pcap.compiled import running_compiled
from shadowdiff.capture.pcap.reader import read_pcap
out = {"compiled": running_compiled()}
for path in sys.argv[1:]:
    stats, h, n = {}, hashlib.sha256(), 0
    for ex in read_pcap(path, stats=stats):
        h.update(repr(ex).encode())
        n += 1
    out[path] = {"exchanges": n, "sha256": h.hexdigest(), "stats": stats}
print(json.dumps(out))
"""


def _digest(paths: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    run = subprocess.run([sys.executable, "-c", _DIGEST, *paths], capture_output=True,
                         text=True, check=True, timeout=300, cwd=ROOT, env=env)
    return json.loads(run.stdout)


def _synthesized(tmp_path: Path) -> Path:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import capture as bench  # benchmarks/capture.py
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    path = tmp_path / "synth.pcap"
    bench.synthesize(path, 2)
    return path


def test_hot_path_is_compiled_where_ci_builds_it() -> None:
    if not IS_COMPILED and not os.environ.get("SHADOWDIFF_REQUIRE_INTEGRATION"):
        pytest.skip("capture modules not compiled here (setup.py fell back to pure Python)")
    assert compiled.compiled() == dict.fromkeys(compiled.HOT_PATH, True)
    assert compiled.stale_builds() == []


def test_sources_and_build_make_the_same_exchanges(tmp_path: Path) -> None:
    paths = [str(p) for p in [*FIXTURES, _synthesized(tmp_path)]]
    built, pure = _digest(paths), _digest(paths, PURE_ENV)
    assert pure.pop("compiled") is False
    assert built.pop("compiled") is IS_COMPILED
    assert built == pure
    assert pure[paths[-1]]["exchanges"] >= 1000
    assert all(r["exchanges"] > 0 for r in pure.values())


@pytest.mark.skipif(not IS_COMPILED, reason="nothing compiled: the suite already ran the sources")
def test_capture_tests_pass_against_the_sources() -> None:
    tests = ["test_capture_pcap.py", "test_capture_http1.py", "test_pcap_smtp.py",
             "test_capture_order.py"]
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          *(f"tests/capture/pcap/{t}" for t in tests)],
                         capture_output=True, text=True, timeout=600, cwd=ROOT, env=PURE_ENV)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert " passed" in run.stdout and " failed" not in run.stdout


def test_a_source_newer_than_its_build_is_reported(tmp_path: Path) -> None:
    suffix = compiled.importlib.machinery.EXTENSION_SUFFIXES[0]
    shim, shared = tmp_path / f"tcp{suffix}", tmp_path / f"_compiled__mypyc{suffix}"
    shim.write_bytes(b"")
    shared.write_bytes(b"")  # the code of every module; no source of its own
    source = tmp_path / "tcp.py"
    source.write_text("")
    now = time.time()
    for path in (shim, shared):
        os.utime(path, (now - 10, now - 10))
    assert compiled.stale_builds(tmp_path) == ["tcp"]  # edited after the build
    with pytest.warns(RuntimeWarning, match="compiled tcp module"):
        compiled.warn_if_stale(tmp_path)
    os.utime(shim, (now - 30, now - 30))  # a rebuild rewrites the shared library only
    os.utime(source, (now - 20, now - 20))
    assert compiled.stale_builds(tmp_path) == []
    assert compiled.compiled(tmp_path) == {"frames": False, "packet": False, "tcp": True, "http1": False,
                                           "order": False, "reader": False}

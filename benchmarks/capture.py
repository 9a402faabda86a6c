"""Benchmark: the pcap importer beside tshark on the same (>= 100 MB) file.

    .venv/bin/python benchmarks/capture.py                # capture a fresh pcap, then measure
    .venv/bin/python benchmarks/capture.py --pcap F --port P   # measure an existing file

The pcap is a real loopback capture: tcpdump records `wrk` (keep-alive, 8 connections,
a Lua script cycling through four paths) against nginx serving static files of 120 B to
6 KB, in bounded 2-second rounds until the file passes --size-mb. Without tcpdump, nginx
or wrk it falls back to a pcap synthesized with struct (`--synthesize` forces it).

Each reader runs in its own subprocess, so its peak RSS (ru_maxrss) is its own:
  - shadowdiff: every exchange of `read_pcap(F)` (parsed, paired, built), as installed:
    the hot path compiled by mypyc (setup.py) when the build could compile it;
  - shadowdiff, sources: the same with SHADOWDIFF_PURE=1 (the modules' Python sources);
  - tshark: `tshark -r F -d tcp.port==P,http -Y http.request -T fields -e http.request.uri`.
The readers take turns, --repeat times (the machine's speed drifts: one run each is not
a measurement); each line gives the median run. Prints MB/s, packets/s, requests, peak
RSS, and the ratio of the median rates (target >= 5x, RSS < 500 MB).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

NGINX_CONF = """daemon off; worker_processes 1; pid {d}/nginx.pid; error_log {d}/error.log;
events {{ worker_connections 256; }}
http {{ access_log off; client_body_temp_path {d}/cb; proxy_temp_path {d}/px;
  fastcgi_temp_path {d}/fc; uwsgi_temp_path {d}/uw; scgi_temp_path {d}/sc;
  keepalive_requests 2000; default_type application/json;
  server {{ listen 127.0.0.1:{port}; root {d}/www; }} }}
"""
WRK_LUA = """local paths = {"/users/1.json", "/items.json", "/page.html", "/tiny.json"}
local i = 0
request = function() i = i + 1; return wrk.format(nil, paths[(i % #paths) + 1]) end
"""
FILES = {"users/1.json": 120, "items.json": 1400, "page.html": 6000, "tiny.json": 300}


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGINT) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def capture(out: Path, work: Path, size_mb: int) -> int:
    """A real loopback capture of wrk against nginx; returns the server port."""
    port = _free_port()
    work.chmod(0o755)  # nginx's worker (nobody) must read the files under the temp dir
    for name, size in FILES.items():
        (work / "www" / name).parent.mkdir(parents=True, exist_ok=True)
        (work / "www" / name).write_text(json.dumps({"pad": "x" * max(0, size - 12)}))
    (work / "nginx.conf").write_text(NGINX_CONF.format(d=work, port=port))
    (work / "paths.lua").write_text(WRK_LUA)
    nginx = subprocess.Popen(["nginx", "-c", str(work / "nginx.conf"), "-p", str(work)],
                             stderr=subprocess.DEVNULL)
    dump = subprocess.Popen(["tcpdump", "-i", "lo", "-n", "-s", "0", "-U", "-B", "65536",
                             "-Z", "root", "-w", str(out), f"tcp port {port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(1.0)
        for _ in range(60):  # bounded: at most 60 rounds of 2 s
            if out.exists() and out.stat().st_size >= size_mb << 20:
                break
            subprocess.run(["wrk", "-t1", "-c8", "-d2s", "-s", str(work / "paths.lua"),
                            f"http://127.0.0.1:{port}/"], stdout=subprocess.DEVNULL,
                           timeout=30, check=True)
        time.sleep(2.0)  # let tcpdump flush the kernel's last blocks (RECIPES.md)
    finally:
        _stop(dump)
        _stop(nginx, signal.SIGQUIT)
    return port


def synthesize(out: Path, size_mb: int) -> int:
    """A struct-built Ethernet/IPv4 pcap of keep-alive HTTP conversations; returns the port."""
    port, t = 8080, 1_700_000_000.0
    bodies = [b"x" * n for n in FILES.values()]

    def frame(src: int, dst: int, sp: int, dp: int, seq: int, ack: int, flags: int,
              data: bytes) -> bytes:
        ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 40 + len(data), 0, 0, 64, 6, 0,
                         bytes([127, 0, 0, src]), bytes([127, 0, 0, dst]))
        tcp = struct.pack(">HHIIHHHH", sp, dp, seq, ack, (5 << 12) | flags, 65535, 0, 0)
        return b"\0" * 12 + b"\x08\x00" + ip + tcp + data

    with open(out, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))
        n = 0
        while f.tell() < size_mb << 20:
            cport, cseq, sseq = 10000 + n % 50000, 1000, 5000
            pkts = [frame(1, 2, cport, port, cseq - 1, 0, 0x02, b""),
                    frame(2, 1, port, cport, sseq - 1, cseq, 0x12, b"")]
            for i in range(100):
                req = f"GET /r/{n}/{i} HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: bench\r\n\r\n".encode()
                body = bodies[i % len(bodies)]
                resp = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
                pkts.append(frame(1, 2, cport, port, cseq, sseq, 0x18, req))
                cseq += len(req)
                pkts.append(frame(2, 1, port, cport, sseq, cseq, 0x18, resp))
                sseq += len(resp)
                pkts.append(frame(1, 2, cport, port, cseq, sseq, 0x10, b""))
            for p in pkts:
                t += 0.00001
                f.write(struct.pack("<IIII", int(t), int(t % 1 * 1e6), len(p), len(p)) + p)
            n += 1
    return port


_READER = """
import json, resource, sys, time
from shadowdiff.capture.pcap.compiled import running_compiled
from shadowdiff.capture.pcap.reader import read_pcap
stats = {}
t = time.perf_counter()
n = sum(1 for _ in read_pcap(sys.argv[1], stats=stats))
dt = time.perf_counter() - t
print(json.dumps({"seconds": dt, "requests": n, "packets": stats["packets"],
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "compiled": running_compiled()}))
"""
_TSHARK = """
import json, resource, subprocess, sys, time
t = time.perf_counter()
out = subprocess.run(sys.argv[1:], capture_output=True, check=True).stdout
dt = time.perf_counter() - t
uris = [u for line in out.decode().splitlines() if line for u in line.split(",")]
print(json.dumps({"seconds": dt, "requests": len(uris),
                  "rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))
"""


def _run(argv: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    return json.loads(subprocess.run(argv, capture_output=True, check=True, timeout=1800,
                                     env=env).stdout)


def measure(pcap: Path, port: int, repeat: int) -> dict[str, dict[str, Any]]:
    """Each reader's median run (by seconds) over `repeat` turns; the sources run once."""
    ours = [sys.executable, "-c", _READER, str(pcap)]
    tshark = [sys.executable, "-c", _TSHARK, "tshark", "-r", str(pcap), "-d",
              f"tcp.port=={port},http", "-Y", "http.request", "-T", "fields", "-e",
              "http.request.uri"]
    runs: dict[str, list[dict[str, Any]]] = {"shadowdiff": [], "tshark": []}
    for _ in range(repeat):  # bounded: --repeat turns
        runs["shadowdiff"].append(_run(ours))
        runs["tshark"].append(_run(tshark))
    runs["sources"] = [_run(ours, {**os.environ, "SHADOWDIFF_PURE": "1"})]
    medians: dict[str, dict[str, Any]] = {}
    for name, done in runs.items():
        medians[name] = sorted(done, key=lambda r: r["seconds"])[(len(done) - 1) // 2]
        medians[name]["all"] = [round(r["seconds"], 2) for r in done]
    medians["tshark"]["packets"] = medians["shadowdiff"]["packets"]
    return medians


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pcap", type=Path, help="measure this file instead of capturing one")
    ap.add_argument("--port", type=int, help="the HTTP server port in --pcap")
    ap.add_argument("--size-mb", type=int, default=110)
    ap.add_argument("--synthesize", action="store_true", help="build the pcap with struct")
    ap.add_argument("--keep", type=Path, help="copy the generated pcap here")
    ap.add_argument("--repeat", type=int, default=3, help="turns per reader (median kept)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.pcap:
            pcap, port, how = args.pcap, args.port or 80, "given"
        elif args.synthesize or not all(map(shutil.which, ("tcpdump", "nginx", "wrk"))):
            pcap, how = work / "bench.pcap", "synthesized with struct"
            port = synthesize(pcap, args.size_mb)
        else:
            pcap, how = work / "bench.pcap", "tcpdump on lo: wrk -> nginx"
            port = capture(pcap, work, args.size_mb)
        if args.keep:
            shutil.copy(pcap, args.keep)
        size = pcap.stat().st_size / 1e6
        print(f"pcap: {size:.1f} MB ({how}), server port {port}")
        results = measure(pcap, port, max(1, args.repeat))
    results["sources"]["packets"] = results["shadowdiff"]["packets"]
    build = "compiled (mypyc)" if results["shadowdiff"]["compiled"] else "NOT compiled"
    for name, r in results.items():
        label = {"shadowdiff": f"shadowdiff, {build}", "sources": "shadowdiff, sources"}.get(
            name, name)
        print(f"{label:>29}: {size / r['seconds']:7.1f} MB/s  "
              f"{r['packets'] / r['seconds']:9.0f} packets/s  {r['requests']:7d} requests  "
              f"{r['seconds']:6.2f} s (runs: {r['all']})  peak RSS {r['rss_mb']:.0f} MB")
    ratio = results["tshark"]["seconds"] / results["shadowdiff"]["seconds"]
    pure = results["tshark"]["seconds"] / results["sources"]["seconds"]
    print(f"ratio: shadowdiff is {ratio:.1f}x tshark's rate ({pure:.1f}x from the sources); "
          "target >= 5x, RSS < 500 MB")


if __name__ == "__main__":
    main()

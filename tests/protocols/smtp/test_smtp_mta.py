"""Integration: real MTAs from Debian on loopback. Postfix is old, Exim is new.

smtplib sessions against Postfix are captured with tcpdump, imported (capture/smtp.py),
and replayed to both by the unchanged pipeline. The report must show their real
differences (EHLO capabilities, VRFY/EXPN/HELP, unknown-recipient and relay codes), and
by default neither MTA may receive a message. Setup as in RECIPES.md ("Mail servers");
.ci/run installs postfix, swaks and tcpdump and unpacks Exim into /opt/exim4.
"""

from __future__ import annotations

import os
import shutil
import signal
import smtplib
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import require_tool

from shadowdiff.capture.jsonl import write_capture
from shadowdiff.capture.pcap.smtp import read_smtp_pcap
from shadowdiff.config import Config
from shadowdiff.replay.options import ReplayConfig, Targets
from shadowdiff.pipeline.orchestrate import run
from shadowdiff.protocols.smtp.session import SAFE_COMMANDS
from shadowdiff.protocols.smtp.maillog import read_mail_usage

pytestmark = pytest.mark.integration

POSTFIX_MAIN = """\
compatibility_level = 3.6
queue_directory = {dir}/queue
data_directory = {dir}/data
myhostname = old.mx.test
mydomain = example.com
myorigin = example.com
mydestination = example.com
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 192.0.2.0/24
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
local_recipient_maps = inline:{{alice=ok, carol=ok, postmaster=ok}}
alias_maps =
alias_database =
local_transport = discard:
default_transport = error:no outside mail
relay_transport = error:no outside mail
maillog_file = /dev/stdout
maillog_file_prefixes = /dev/stdout
smtpd_banner = $myhostname ESMTP Postfix
biff = no
"""
POSTFIX_SERVICES = """\
pickup unix n - n 60 1 pickup
cleanup unix n - n - 0 cleanup
qmgr unix n - n 300 1 qmgr
rewrite unix - - n - - trivial-rewrite
bounce unix - - n - 0 bounce
defer unix - - n - 0 bounce
trace unix - - n - 0 bounce
verify unix - - n - 1 verify
proxymap unix - - n - - proxymap
showq unix n - n - - showq
error unix - - n - - error
retry unix - - n - - error
discard unix - - n - - discard
anvil unix - - n - 1 anvil
scache unix - - n - 1 scache
postlog unix-dgram n - n - 1 postlogd
"""
EXIM_CONF = """\
exim_path = {exim}
spool_directory = {dir}/spool
log_file_path = {dir}/log/%slog
pid_file_path = {dir}/exim.pid
primary_hostname = new.mx.test
qualify_domain = example.com
domainlist local_domains = example.com
exim_user = Debian-exim
exim_group = Debian-exim
keep_environment =
daemon_smtp_ports = {port}
local_interfaces = 127.0.0.1
acl_smtp_rcpt = acl_check_rcpt
host_lookup =
rfc1413_hosts =

begin acl
acl_check_rcpt:
  deny    !domains = +local_domains
          message = relay not permitted
  require verify = recipient
  accept

begin routers
localuser:
  driver = accept
  domains = +local_domains
  local_parts = alice : carol : postmaster
  transport = to_file

begin transports
to_file:
  driver = appendfile
  file = {dir}/mail/mailbox
  user = Debian-exim
  group = Debian-exim
  mode = 0666
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for_banner(port: int, proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{what} exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                if s.recv(64).startswith(b"220"):
                    return
        except OSError:
            time.sleep(0.2)
    pytest.fail(f"{what} did not greet on port {port} within 15 s")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop the process group we started (by its recorded PID), politely first."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


@pytest.fixture(scope="module")
def postfix() -> Iterator[tuple[int, Path]]:
    """Postfix on a loopback port with its own config and queue; yields (port, log)."""
    tool = require_tool("postfix")
    base = Path(tempfile.mkdtemp(prefix="shadowdiff-postfix-"))
    base.chmod(0o755)
    proc: subprocess.Popen[bytes] | None = None
    try:
        for sub in ("etc", "queue", "data"):
            (base / sub).mkdir()
        shutil.chown(base / "data", "postfix")
        port = _free_port()
        (base / "etc/main.cf").write_text(POSTFIX_MAIN.format(dir=base))
        (base / "etc/master.cf").write_text(
            f"127.0.0.1:{port} inet n - n - - smtpd\n" + POSTFIX_SERVICES)
        # `check` creates the queue's subdirectories with their owners and modes.
        subprocess.run([tool, "-c", str(base / "etc"), "check"], check=True, timeout=30)
        log = base / "maillog"
        with open(log, "wb") as out:
            proc = subprocess.Popen([tool, "-c", str(base / "etc"), "start-fg"], stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        _wait_for_banner(port, proc, "postfix")
        yield port, log
    finally:
        if proc is not None:
            subprocess.run([tool, "-c", str(base / "etc"), "stop"], check=False, timeout=30,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            _stop(proc)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def exim() -> Iterator[tuple[int, Path]]:
    """Exim (unpacked, not installed) on a loopback port; yields (port, its directory)."""
    binary = os.path.realpath(require_tool("exim4"))
    base = Path(tempfile.mkdtemp(prefix="shadowdiff-exim-"))
    base.chmod(0o755)
    proc: subprocess.Popen[bytes] | None = None
    try:
        for sub in ("spool", "log", "mail"):
            (base / sub).mkdir()
            shutil.chown(base / sub, "Debian-exim", "Debian-exim")
        port = _free_port()
        conf = base / "exim.conf"
        conf.write_text(EXIM_CONF.format(exim=binary, dir=base, port=port))
        proc = subprocess.Popen([binary, "-C", str(conf), "-bdf"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        _wait_for_banner(port, proc, "exim")
        yield port, base
    finally:
        if proc is not None:
            _stop(proc)
        shutil.rmtree(base, ignore_errors=True)


def _sessions(port: int) -> None:
    """What production did: probes, rejections, and one real message (to Postfix only)."""
    with smtplib.SMTP("127.0.0.1", port, local_hostname="client.test", timeout=10) as s:
        s.ehlo()
        s.mail("alice@sender.test")
        for rcpt in ("carol@example.com", "bob@example.com", "eve@elsewhere.org"):
            s.rcpt(rcpt)
        s.rset()
        s.verify("carol")
        s.expn("postmaster")
        s.docmd("HELP")
        s.noop()
    with smtplib.SMTP("127.0.0.1", port, local_hostname="client.test", timeout=10) as s:
        s.sendmail("alice@sender.test", ["carol@example.com"], b"Subject: hi\r\n\r\nhello\r\n")
    with smtplib.SMTP("127.0.0.1", port, local_hostname="client.test", timeout=10) as s:
        s.helo()


def _capture(port: int, pcap: Path) -> None:
    tcpdump = require_tool("tcpdump")
    proc = subprocess.Popen([tcpdump, "-i", "lo", "-n", "-s", "0", "-U", "-B", "32768", "-Z",
                             "root", "-w", str(pcap), f"tcp port {port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(1.0)  # tcpdump needs a moment before it sees packets
        _sessions(port)
        time.sleep(2.0)  # RECIPES.md: the last block arrives late
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(10)


def _delivered(postfix_log: Path, exim_dir: Path) -> tuple[int, int]:
    """Messages each MTA accepted, from their own logs (and Exim's mailbox)."""
    accepted = sum(1 for line in postfix_log.read_text(errors="replace").splitlines()
                   if "postfix/qmgr" in line and "from=<" in line)
    mainlog = exim_dir / "log" / "mainlog"
    exim_log = mainlog.read_text(errors="replace") if mainlog.exists() else ""
    mailbox = exim_dir / "mail" / "mailbox"
    return accepted, exim_log.count(" <= ") + (mailbox.stat().st_size if mailbox.exists() else 0)


def test_postfix_to_exim_shows_real_differences_and_delivers_nothing(
        postfix: tuple[int, Path], exim: tuple[int, Path], tmp_path: Path) -> None:
    (old_port, old_log), (new_port, exim_dir) = postfix, exim
    _capture(old_port, tmp_path / "mail.pcap")
    stats: dict[str, int] = {}
    exchanges = list(read_smtp_pcap(tmp_path / "mail.pcap", ports=[old_port], stats=stats))
    assert stats["smtp_sessions"] == 3, stats
    write_capture(tmp_path / "mail.jsonl", exchanges)
    accepted_before, _ = _delivered(old_log, exim_dir)
    assert accepted_before == 1  # the capture's own message
    config = Config(targets=Targets(old=f"smtp://127.0.0.1:{old_port}",
                                    new=f"smtp://127.0.0.1:{new_port}"),
                    replay=ReplayConfig(methods=tuple(sorted(SAFE_COMMANDS)), timeout_s=10))
    result = run((str(tmp_path / "mail.jsonl"),), config, tmp_path / "run")
    keys = {s["key"] for s in result.summary["signatures"]}
    for expected in ("RCPT TO:<{local}@elsewhere.org> status status_changed",
                     "EXPN {name} status status_changed",
                     "HELP status status_changed",
                     "RCPT TO:<{local}@example.com> body.text value_changed",
                     "EHLO {host} header.enhancedstatuscodes header_missing",
                     "MAIL FROM:<{local}@sender.test> body.enhanced field_missing"):
        assert expected in keys, sorted(keys)
    for quiet in ("MAIL", "RSET", "NOOP", "QUIT", "CONNECT", "RCPT TO:<{local}@example.com>"):
        assert not [k for k in keys if k.startswith(quiet) and " status status_changed" in k]
    time.sleep(1.0)
    assert _delivered(old_log, exim_dir) == (1, 0)  # nothing new: safe by default
    usage = read_mail_usage([old_log, exim_dir / "log" / "mainlog"])
    assert usage.counts["RCPT TO:<{local}@example.com>"] >= 2
    assert usage.outcomes["RCPT TO:<{local}@elsewhere.org>"]["rejected"] >= 1

"""Mail logs as usage (usage/maillog.py): Postfix maillog and Exim mainlog lines -> counts
per SMTP endpoint, keyed exactly like the capture's endpoints."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from shadowdiff.cli.console import load_usage
from shadowdiff.errors import ConfigError
from shadowdiff.protocols.smtp.plugin import PROTOCOL
from shadowdiff.protocols.smtp.session import Script, step_request
from shadowdiff.protocols.smtp.maillog import is_mail_log, read_mail_usage, sniff_maillog
from shadowdiff.rank.routing import usage_of_mail

POSTFIX = """\
Nov 25 17:58:30 mx postfix/smtpd[101]: connect from unknown[127.0.0.1]
Nov 25 17:58:30 mx postfix/smtpd[101]: 4FJ3kL1abcz: client=unknown[127.0.0.1]
Nov 25 17:58:30 mx postfix/qmgr[90]: 4FJ3kL1abcz: from=<alice@sender.test>, size=345, nrcpt=2 (queue active)
Nov 25 17:58:30 mx postfix/discard[102]: 4FJ3kL1abcz: to=<carol@example.com>, relay=none, delay=0.1, status=sent (example.com)
Nov 25 17:58:31 mx postfix/smtp[103]: 4FJ3kL1abcz: to=<dan@Example.com>, relay=none, delay=1, status=deferred (timeout)
Nov 25 18:08:31 mx postfix/qmgr[90]: 4FJ3kL1abcz: from=<alice@sender.test>, size=345, nrcpt=1 (queue active)
Nov 25 18:08:32 mx postfix/smtp[103]: 4FJ3kL1abcz: to=<dan@Example.com>, relay=none, delay=600, status=bounced (no)
Nov 25 18:08:32 mx postfix/qmgr[90]: 4FJ3kL1abcz: removed
Nov 25 18:09:00 mx postfix/smtpd[101]: NOQUEUE: reject: RCPT from unknown[127.0.0.1]: 550 5.1.1 <bob@example.com>: Recipient address rejected: User unknown in local recipient table; from=<alice@sender.test> to=<bob@example.com> proto=ESMTP helo=<c.test>
Nov 25 18:09:01 mx postfix/smtpd[101]: NOQUEUE: reject: RCPT from unknown[127.0.0.1]: 554 5.7.1 <eve@elsewhere.org>: Relay access denied; from=<alice@sender.test> to=<eve@elsewhere.org> proto=ESMTP helo=<c.test>
Nov 25 18:09:02 mx postfix/smtpd[101]: disconnect from unknown[127.0.0.1] ehlo=1 mail=1 rcpt=0/2 vrfy=1/2 quit=1 commands=4/7
"""

EXIM = """\
2026-11-25 17:58:30 SMTP connection from (c.test) [127.0.0.1]:40000 (TCP/IP connection count = 1)
2026-11-25 17:58:30 1vNQ3x-000ABC-Cd <= alice@sender.test H=(c.test) [127.0.0.1] P=esmtp S=345
2026-11-25 17:58:30 1vNQ3x-000ABC-Cd => carol <carol@example.com> R=local_user T=mail_spool
2026-11-25 17:58:30 1vNQ3x-000ABC-Cd -> dan@example.com R=local_user T=mail_spool
2026-11-25 17:58:30 1vNQ3x-000ABC-Cd Completed
2026-11-25 17:58:31 1vNQ3y-000ABD-De <= <> R=1vNQ3x-000ABC-Cd U=Debian-exim P=local S=1200
2026-11-25 17:58:31 1vNQ3y-000ABD-De ** bounce@elsewhere.org: Unrouteable address
2026-11-25 17:58:31 1vNQ3y-000ABD-De == late@example.com R=dnslookup defer (-1): host lookup did not complete
2026-11-25 17:58:32 H=(c.test) [127.0.0.1] F=<alice@sender.test> rejected RCPT <bob@example.com>: Unknown user
2026-11-25 17:58:33 garbage line that is not an event
"""


def test_postfix_maillog(tmp_path: Path) -> None:
    log = tmp_path / "mail.log"
    log.write_text(POSTFIX)
    usage = read_mail_usage([log])
    assert dict(usage.counts) == {"CONNECT": 1, "MAIL FROM:<{local}@sender.test>": 1,
                                  "RCPT TO:<{local}@example.com>": 3,
                                  "RCPT TO:<{local}@elsewhere.org>": 1,
                                  "EHLO {host}": 1, "VRFY {name}": 2, "QUIT": 1}
    assert dict(usage.outcomes["RCPT TO:<{local}@example.com>"]) == {
        "delivered": 1, "deferred": 1, "bounced": 1, "rejected": 1}
    assert dict(usage.outcomes["VRFY {name}"]) == {"accepted": 1, "rejected": 1}
    assert usage.formats == ["postfix"] and usage.lines == 11 and usage.matched == 10


def test_exim_mainlog_gzipped(tmp_path: Path) -> None:
    log = tmp_path / "mainlog.1.gz"
    log.write_bytes(gzip.compress(EXIM.encode()))
    usage = read_mail_usage([log])
    assert dict(usage.counts) == {"CONNECT": 1, "MAIL FROM:<{local}@sender.test>": 1,
                                  "MAIL FROM:<>": 1, "RCPT TO:<{local}@example.com>": 3,
                                  "RCPT TO:<{local}@elsewhere.org>": 1}
    assert usage.outcomes["RCPT TO:<{local}@example.com>"]["deferred"] == 1
    assert usage.formats == ["exim"]
    ranked = usage_of_mail(usage)
    assert ranked.total == 7 and ranked.files == (str(log),)


def test_log_endpoints_join_the_capture_endpoints() -> None:
    request = step_request(Script("s", ("EHLO c", "MAIL FROM:<x@Sender.test>",
                                        "RCPT TO:<Bob@EXAMPLE.com> NOTIFY=NEVER"), (1, 1, 1), (), 3))
    assert PROTOCOL.endpoint_key(request) == "RCPT TO:<{local}@example.com>"


def test_sniff() -> None:
    assert sniff_maillog(POSTFIX.splitlines()) == "postfix"
    assert sniff_maillog(EXIM.splitlines()) == "exim"
    assert sniff_maillog(['1.2.3.4 - - [x] "GET / HTTP/1.1" 200 1']) is None


def test_usage_flag_detects_mail_logs_by_content(tmp_path: Path) -> None:
    postfix, exim = tmp_path / "maillog", tmp_path / "mainlog.gz"
    postfix.write_text(POSTFIX)
    exim.write_bytes(gzip.compress(EXIM.encode()))
    access = tmp_path / "access.log"
    access.write_text('1.2.3.4 - - [25/Nov/2026:17:58:30 +0000] "GET / HTTP/1.1" 200 1 "-" "-"\n')
    assert is_mail_log(postfix) and is_mail_log(exim) and not is_mail_log(access)
    usage, _ = load_usage([str(postfix), str(exim)])
    assert usage is not None and usage.source == "mail_log" and usage.from_production
    assert usage.counts["RCPT TO:<{local}@example.com>"] == 6 and usage.counts["CONNECT"] == 2
    assert usage.counts["EHLO {host}"] == 1  # from Postfix's disconnect line
    assert usage.files == (str(postfix), str(exim))
    with pytest.raises(ConfigError, match="mixes mail logs"):
        load_usage([str(postfix), str(access)])
    usage, _ = load_usage([str(access)])
    assert usage is not None and usage.source == "access_log"

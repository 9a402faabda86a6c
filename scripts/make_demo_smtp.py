"""Regenerate the SMTP demo's bundled traffic: `captures/demo-smtp.jsonl` and
`captures/demo-maillog.log`.

The capture is what `shadowdiff demo --smtp` replays to the demo's old and new MTA
(`shadowdiff/demo/mail.py`), in the shadowdiff capture format (one exchange per session
step, docs/smtp.md); its recorded replies are OLD's. The maillog (Postfix format) is the
production usage it ranks by. Both are drawn with a fixed seed, so a rerun rewrites the
same bytes (except the capture header's `created` time). Run from anywhere:

    python scripts/make_demo_smtp.py [--out captures] [--seed 20261125]

The two mixes differ on purpose, as in the HTTP demo: the capture over-samples the rare
commands (VRFY, HELP) so each is exercised, while in production most sessions just
deliver to example.com.
"""

from __future__ import annotations

import argparse
import random
import sys
from collections.abc import Sequence
from pathlib import Path

from shadowdiff.capture.jsonl import write_capture
from shadowdiff.capture.pcap.smtp import Conversation, session_exchanges
from shadowdiff.demo.mail import LOCAL_DOMAINS, SIZE_LIMIT, UNKNOWN_USERS
from shadowdiff.model import Exchange
from shadowdiff.protocols.smtp.session import Reply, verb_of

SEED = 20261125
#: 2026-11-25T00:00:00Z: the day both files cover.
DAY_START = 1795564800
CAPTURE_SESSIONS = 60
LOG_SESSIONS = 1500
SENDERS = ("alice@shop.test", "orders@shop.test", "bob@sender.test", "news@lists.sender.test")
USERS = ("carol", "dan", "erin", "frank", "grace", "heidi")
#: Recipient domain weights: capture and production.
CAPTURE_RCPT = {"example.com": 60, "partner.test": 25, "outside.org": 8, "unknown": 7}
LOG_RCPT = {"example.com": 80, "partner.test": 12, "outside.org": 5, "unknown": 3}
MESSAGE = (b"From: shop <alice@shop.test>\r\nSubject: your order\r\n\r\n"
           b"Thanks for your order.\r\n")


def _recipient(rng: random.Random, weights: dict[str, int]) -> str:
    kind = rng.choices(list(weights), list(weights.values()))[0]
    if kind == "unknown":
        return f"{rng.choice(sorted(UNKNOWN_USERS))}@example.com"
    return f"{rng.choice(USERS)}@{kind}"


def old_reply(line: str) -> list[Reply]:
    """What OLD answers (the recorded replies; the demo replays to both anyway)."""
    verb = verb_of(line)
    if verb == "EHLO":
        return [Reply(250, ("mx.old.demo", f"SIZE {SIZE_LIMIT['old']}", "8BITMIME", "SMTPUTF8",
                            "HELP"))]
    if verb == "RCPT":
        address = line.split("<", 1)[1].split(">", 1)[0]
        local, _, domain = address.rpartition("@")
        if domain not in LOCAL_DOMAINS["old"]:
            return [Reply(554, (f"5.7.1 <{address}>: Relay access denied",))]
        if local in UNKNOWN_USERS:
            return [Reply(550, (f"5.1.1 <{address}>: Recipient address rejected: User unknown",))]
        return [Reply(250, ("2.1.5 Ok",))]
    if verb == "DATA":
        return [Reply(354, ("End data with <CR><LF>.<CR><LF>",)), Reply(250, ("2.0.0 Ok: queued",))]
    fixed = {"HELO": (250, "mx.old.demo"), "MAIL": (250, "OK"), "RSET": (250, "OK"),
             "NOOP": (250, "OK"), "QUIT": (221, "Bye"),
             "VRFY": (252, "2.0.0 Cannot VRFY user, but will accept message"),
             "HELP": (250, "Supported commands: DATA EHLO HELO HELP MAIL NOOP QUIT RCPT RSET VRFY")}
    code, text = fixed[verb]
    return [Reply(code, (text,))]


def session_commands(rng: random.Random) -> list[str]:
    """One client session: greeting name, maybe VRFY/HELP/NOOP, one message, QUIT."""
    commands = [rng.choice(("EHLO", "EHLO", "EHLO", "HELO")) + f" client{rng.randrange(50)}.shop.test"]
    if rng.random() < 0.25:
        commands.append(f"VRFY {rng.choice(USERS)}")
    if rng.random() < 0.2:
        commands.append("HELP")
    if rng.random() < 0.2:
        commands.append("NOOP")
    commands.append(f"MAIL FROM:<{rng.choice(SENDERS)}>")
    commands += [f"RCPT TO:<{_recipient(rng, CAPTURE_RCPT)}>" for _ in range(rng.randint(1, 3))]
    commands += ["DATA", "QUIT"]
    return commands


def build_exchanges(seed: int = SEED) -> list[Exchange]:
    """The capture: CAPTURE_SESSIONS sessions, one exchange per step."""
    rng = random.Random(seed)
    out: list[Exchange] = []
    for n in range(1, CAPTURE_SESSIONS + 1):
        commands = session_commands(rng)
        t = DAY_START + n * 600.0
        conv = Conversation(commands=commands, groups=[1] * len(commands),
                            messages=[MESSAGE + b".\r\n"],
                            replies=[[Reply(220, ("mx.old.demo ESMTP demo",))]]
                            + [old_reply(c) for c in commands],
                            times=[round(t + i * 0.05, 3) for i in range(len(commands) + 1)])
        out.extend(session_exchanges(conv, f"smtp-{n}", "demo:smtp"))
    return out


def maillog_lines(seed: int = SEED) -> list[str]:
    """A Postfix maillog of LOG_SESSIONS sessions (postfix/smtpd, qmgr, local)."""
    rng = random.Random(seed + 1)
    lines: list[str] = []
    for n in range(LOG_SESSIONS):
        t = DAY_START + n * 57
        stamp = f"Nov 25 {t // 3600 % 24:02d}:{t // 60 % 60:02d}:{t % 60:02d} mx postfix"
        pid, qid = 1000 + n % 50, f"4FJ{n:07X}"
        sender = rng.choice(SENDERS)
        rcpts = [_recipient(rng, LOG_RCPT) for _ in range(rng.randint(1, 3))]
        lines.append(f"{stamp}/smtpd[{pid}]: connect from client.shop.test[192.0.2.{n % 200 + 1}]")
        accepted = [r for r in rcpts if r.split("@")[1] in LOCAL_DOMAINS["old"]
                    and r.split("@")[0] not in UNKNOWN_USERS]
        for r in rcpts:
            if r not in accepted:
                code = "554 5.7.1" if r.split("@")[1] not in LOCAL_DOMAINS["old"] else "550 5.1.1"
                lines.append(f"{stamp}/smtpd[{pid}]: NOQUEUE: reject: RCPT from client.shop.test"
                             f"[192.0.2.1]: {code} <{r}>: rejected; from=<{sender}> to=<{r}> "
                             "proto=ESMTP helo=<client.shop.test>")
        if accepted:
            lines.append(f"{stamp}/qmgr[90]: {qid}: from=<{sender}>, size=1200, "
                         f"nrcpt={len(accepted)} (queue active)")
            lines += [f"{stamp}/local[77]: {qid}: to=<{r}>, relay=local, delay=0.1, "
                      "status=sent (delivered to mailbox)" for r in accepted]
            lines.append(f"{stamp}/qmgr[90]: {qid}: removed")
        extra = (" vrfy=1" if rng.random() < 0.02 else "") + (" help=1" if rng.random() < 0.01 else "")
        lines.append(f"{stamp}/smtpd[{pid}]: disconnect from client.shop.test[192.0.2.1] ehlo=1"
                     f"{extra} mail=1 rcpt={len(accepted)}/{len(rcpts)} data={int(bool(accepted))} "
                     "quit=1")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "captures")
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args(argv)
    capture, log = args.out / "demo-smtp.jsonl", args.out / "demo-maillog.log"
    n = write_capture(capture, build_exchanges(args.seed), source="demo:smtp",
                      stats={"generator": "scripts/make_demo_smtp.py", "seed": args.seed})
    log.write_text("\n".join(maillog_lines(args.seed)) + "\n")
    print(f"wrote {n} exchanges to {capture} and {LOG_SESSIONS} sessions to {log}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

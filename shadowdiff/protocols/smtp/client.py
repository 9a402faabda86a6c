"""The SMTP sender: replays each captured session once per target, command by command.

Every step of a session arrives as its own request (protocols/smtp.py explains why), so
the sender keeps the conversation per session: the first step to arrive starts it, the
others await the same task, and each gets its own reply. Memory stays bounded: a session
is forgotten once all its replayable steps were served, and at most `_MEMO_CAP` are kept.

Safe by default: DATA is never sent; a transaction ends with RSET in its place, so the
target delivers nothing, unless the targets are declared sinks (`smtp_deliver`). Pipelined
groups go in one write when the target advertised PIPELINING, one by one otherwise.
With `[smtp] starttls`, the sender upgrades to TLS after EHLO when the target offers it
(and says EHLO again), so the rest of the session takes the path real TLS clients take;
with `rewrite_domains`, production domains become test domains on the wire only.
Every fault (refused, silent server, over-long or non-SMTP reply, reset) becomes a
`Failure` on the steps it hit; nothing raises out of `send`.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import OrderedDict
from typing import Any
from urllib.parse import urlsplit

from shadowdiff.protocols.smtp.config import SmtpConfig
from shadowdiff.model import Failure, Outcome, Request
from shadowdiff.protocols.smtp.session import SAFE_COMMANDS
from shadowdiff.protocols.smtp.session import (
    Reply,
    Script,
    capabilities,
    parse_reply_line,
    script_of,
    step_response,
    verb_of,
)
from shadowdiff.protocols.smtp.rewrite import DomainRewriter

#: Longest reply line accepted; RFC 5321 allows 512 bytes, MTAs stay far below this.
MAX_LINE = 64 * 1024
#: Most lines in one reply (a HELP or EXPN list), against a server that never stops.
MAX_REPLY_LINES = 1000
_MEMO_CAP = 1024
_NOT_SENT = "not sent: DATA is replaced by RSET unless the targets are sinks (--smtp-deliver)"


class _Fault(Exception):
    """A classified failure inside a conversation; the steps it hits get a Failure."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind


class _Conversation:
    """One connection to the target, playing one session script."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 timeout: float, deliver: bool, rewriter: DomainRewriter | None = None,
                 tls: tuple[ssl.SSLContext, str] | None = None) -> None:
        self.reader, self.writer = reader, writer
        self.timeout, self.deliver = timeout, deliver
        self.rewriter = rewriter or DomainRewriter(())
        self.tls = tls  # (context, server name) when STARTTLS is wanted and not done yet
        self.offers_tls = False
        self.pipelining = False
        self.quit = False

    async def reply(self) -> Reply:
        """Read one complete (possibly multi-line) reply."""
        lines: list[str] = []
        first = 0
        for _ in range(MAX_REPLY_LINES):
            parsed = parse_reply_line((await self._line()).decode("utf-8", "replace"))
            if parsed is None or (lines and parsed[0] != first):
                raise _Fault("invalid", "not an SMTP reply" if not lines
                             else "reply line with a different code inside a multi-line reply")
            first, last, text = parsed
            lines.append(text)
            if last:
                return Reply(first, tuple(lines))
        raise _Fault("too_large", f"reply longer than {MAX_REPLY_LINES} lines")

    async def _line(self) -> bytes:
        try:
            async with asyncio.timeout(self.timeout):
                return await self.reader.readuntil(b"\n")
        except TimeoutError:
            raise _Fault("timeout", f"no reply in {self.timeout} s") from None
        except asyncio.LimitOverrunError:
            raise _Fault("too_large", f"reply line longer than {MAX_LINE} bytes") from None
        except asyncio.IncompleteReadError as exc:
            raise _Fault("reset", "connection closed before a complete reply"
                         + (f" (after {len(exc.partial)} bytes)" if exc.partial else "")) from None
        except OSError as exc:
            raise _Fault("reset", f"connection lost: {exc}") from None

    async def write(self, data: bytes) -> None:
        try:
            self.writer.write(data)
            await self.writer.drain()
        except OSError as exc:
            raise _Fault("reset", f"connection lost while sending: {exc}") from None

    async def play(self, script: Script, out: list[Outcome | None]) -> None:
        """Fill `out` (one slot per step) with what the target answered."""
        start = time.perf_counter()
        out[0] = step_response("CONNECT", [await self.reply()], time.perf_counter() - start)
        messages = iter(script.messages)
        index = 0
        if any(verb_of(c) == "STARTTLS" for c in script.commands):
            self.tls = None  # the captured client upgrades itself, and the capture ends there
        for size in script.groups:
            lines = script.commands[index:index + size]
            if size > 1 and self.pipelining:
                await self._group(lines, index + 1, out, messages)
            else:
                for offset, line in enumerate(lines):
                    await self._group((line,), index + 1 + offset, out, messages)
            index += size
            last = script.commands[index - 1]
            if verb_of(last) == "STARTTLS":
                return  # the capture ends here: what followed was encrypted
            if verb_of(last) == "EHLO" and self.tls is not None and self.offers_tls:
                await self._upgrade(last)

    async def _upgrade(self, ehlo: str) -> None:
        """STARTTLS, the TLS handshake, EHLO again; the EHLO step keeps its plaintext reply
        (what the capture recorded, and where a missing STARTTLS offer shows)."""
        assert self.tls is not None
        context, server_name = self.tls
        self.tls = None
        await self.write(b"STARTTLS\r\n")
        reply = await self.reply()
        if reply.code != 220:
            raise _Fault("error", f"STARTTLS refused: {reply.code} {' '.join(reply.lines)}")
        try:
            async with asyncio.timeout(self.timeout):
                await self.writer.start_tls(context, server_hostname=server_name)
        except TimeoutError:
            raise _Fault("timeout", f"no TLS handshake in {self.timeout} s") from None
        except (ssl.SSLError, OSError) as exc:
            raise _Fault("error", f"TLS handshake failed: {exc}") from None
        await self.write(f"{ehlo}\r\n".encode("utf-8"))
        again = await self.reply()
        if again.code == 250:
            self.pipelining = "pipelining" in capabilities(again.lines)

    async def _group(self, lines: tuple[str, ...], first_step: int, out: list[Outcome | None],
                     messages: Any) -> None:
        """Send lines in one write, then read one reply each (a single line is a group of 1)."""
        wire = [("RSET" if verb_of(line) == "DATA" and not self.deliver
                 else self.rewriter.line(line)) for line in lines]
        start = time.perf_counter()
        await self.write("".join(f"{line}\r\n" for line in wire).encode("utf-8"))
        for offset, line in enumerate(lines):
            verb = verb_of(line)
            replies = [await self.reply()]
            if verb == "DATA" and self.deliver:
                message = next(messages, b".\r\n")
                if replies[0].code == 354:
                    await self.write(self.rewriter.message(message))
                    replies.append(await self.reply())
            if verb == "EHLO" and replies[0].code == 250:
                offered = capabilities(replies[0].lines)
                self.pipelining, self.offers_tls = "pipelining" in offered, "starttls" in offered
            self.quit = self.quit or verb == "QUIT"
            out[first_step + offset] = (
                Failure("error", _NOT_SENT) if verb == "DATA" and not self.deliver
                else step_response(verb, replies, time.perf_counter() - start))

    async def close(self) -> None:
        """QUIT politely (when the script did not) and close, never waiting long."""
        try:
            if not self.quit and not self.writer.is_closing():
                self.writer.write(b"QUIT\r\n")
                async with asyncio.timeout(min(self.timeout, 1.0)):
                    await self.writer.drain()
                    await self.reader.readuntil(b"\n")
        except (TimeoutError, OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        self.writer.close()
        try:
            async with asyncio.timeout(1.0):
                await self.writer.wait_closed()
        except (TimeoutError, OSError):
            pass


class SmtpSender:
    """Replays sessions to one smtp://host:port target; answers each step from its session."""

    def __init__(self, target: str, options: Any) -> None:
        parts = urlsplit(target)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 25
        self.timeout = float(getattr(options, "timeout_s", 10.0))
        self.deliver = bool(getattr(options, "smtp_deliver", False))
        smtp: SmtpConfig = getattr(options, "smtp", None) or SmtpConfig()
        self.rewriter = DomainRewriter(smtp.rewrite_domains)
        self.tls = _tls_context(smtp.tls_verify) if smtp.starttls else None
        self._slots = asyncio.Semaphore(int(getattr(options, "concurrency", 8)))
        self._memo: OrderedDict[tuple[Any, ...], asyncio.Task[list[Outcome]]] = OrderedDict()
        self._served: dict[tuple[Any, ...], set[int]] = {}

    async def send(self, request: Request) -> Outcome:
        """The outcome of one step; the session is played once for all its steps."""
        try:
            script = script_of(request)
        except ValueError as exc:
            return Failure("error", f"request not sent: {exc}")
        key = script.key()
        task = self._memo.get(key)
        if task is None:
            task = self._memo[key] = asyncio.ensure_future(self._play(script))
            self._evict()
        outcomes = await asyncio.shield(task)
        self._served_step(key, script)
        return outcomes[script.step]

    def _served_step(self, key: tuple[Any, ...], script: Script) -> None:
        served = self._served.setdefault(key, set())
        served.add(script.step)
        wanted = SAFE_COMMANDS | ({"DATA"} if self.deliver else set())
        steps = {0} | {i + 1 for i, c in enumerate(script.commands) if verb_of(c) in wanted}
        if steps <= served:
            self._memo.pop(key, None)
            self._served.pop(key, None)

    def _evict(self) -> None:
        while len(self._memo) > _MEMO_CAP:
            key, _ = self._memo.popitem(last=False)  # waiters keep their own reference
            self._served.pop(key, None)

    async def _play(self, script: Script) -> list[Outcome]:
        out: list[Outcome | None] = [None] * (len(script.commands) + 1)
        async with self._slots:
            start = time.perf_counter()
            try:
                conv = await self._connect()
            except _Fault as fault:
                return [Failure(fault.kind, str(fault), time.perf_counter() - start)] * len(out)
            try:
                await conv.play(script, out)
            except _Fault as fault:
                _fill(out, fault, time.perf_counter() - start)
            except Exception as exc:  # noqa: BLE001 - one bad session must not stop the run
                _fill(out, _Fault("error", f"{exc.__class__.__name__}: {exc}"),
                      time.perf_counter() - start)
            finally:
                await conv.close()
        _fill(out, _Fault("error", "not sent: the session ended before this step"), 0.0)
        return [o for o in out if o is not None]

    async def _connect(self) -> _Conversation:
        try:
            async with asyncio.timeout(self.timeout):
                reader, writer = await asyncio.open_connection(self.host, self.port, limit=MAX_LINE)
        except TimeoutError:
            raise _Fault("timeout", f"no connection in {self.timeout} s") from None
        except ConnectionRefusedError as exc:
            raise _Fault("refused", f"connection refused: {exc}") from None
        except OSError as exc:
            raise _Fault("error", f"cannot connect: {exc}") from None
        return _Conversation(reader, writer, self.timeout, self.deliver, self.rewriter,
                             (self.tls, self.host) if self.tls is not None else None)

    async def close(self) -> None:
        """Stop sessions still playing (nobody waits for them any more)."""
        tasks = list(self._memo.values())
        self._memo.clear()
        self._served.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _tls_context(verify: bool) -> ssl.SSLContext:
    """The client context; `tls_verify = false` accepts the self-signed certificates of
    test MTAs (the targets are ours: confidentiality is not what is being tested)."""
    context = ssl.create_default_context()
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _fill(out: list[Outcome | None], fault: _Fault, elapsed: float) -> None:
    """The fault hit the first unanswered step; the later ones were never sent."""
    first = True
    for i, outcome in enumerate(out):
        if outcome is None:
            detail = str(fault) if first else f"not sent: the session broke earlier ({fault})"
            out[i] = Failure(fault.kind, detail, elapsed if first else 0.0)
            first = False

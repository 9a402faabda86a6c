"""Delivering a run's notification: an HTTP POST to each webhook (aiohttp), a mail to each
`mailto:` target (smtplib, STARTTLS), every target at once, each retried a bounded number
of times (tenacity).

A delivery never raises: it returns a `Delivery` saying whether it arrived, after how many
attempts, and why not, with the target's secrets hidden (redact.redact_url) from both the
target and the error. What may pass on a second try is retried (no connection, a timeout,
HTTP 408/425/429/5xx, an SMTP 4xx reply), what will not is not (a 4xx answer, an SMTP 5xx
reply, an untrusted certificate, STARTTLS required but not offered). Per target: at most
retries + 1 attempts, waiting 0.5 s, 1 s, 2 s... between them (or the receiver's
Retry-After, up to 10 s: Backoff), and none started after deadline_s; an HTTP attempt lasts at
most timeout_s, an SMTP one at most timeout_s per network operation.

SMTP credentials come only from the environment (SHADOWDIFF_SMTP_USER and
SHADOWDIFF_SMTP_PASSWORD), are sent only over STARTTLS, and never appear in a result.
"""

from __future__ import annotations

import asyncio
import os
import smtplib
import socket
import ssl
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

import aiohttp
import tenacity

from shadowdiff import __version__
from shadowdiff.nightly.config import SMTP_PASSWORD_ENV, SMTP_USER_ENV, NotifyConfig, mail_recipients
from shadowdiff.redact import HIDDEN, redact_url, url_secrets

USER_ENV, PASSWORD_ENV = SMTP_USER_ENV, SMTP_PASSWORD_ENV
_RETRY_STATUS = frozenset({408, 425, 429})
_SNIPPET = 200  # characters of a refusing receiver's answer kept in the error


@dataclass(frozen=True)
class Delivery:
    """How one target fared (summary.json `notifications.deliveries[]`)."""

    target: str              # secrets hidden
    kind: str                # "http" or "smtp"
    ok: bool
    attempts: int
    status: int | None       # the last HTTP status or SMTP reply code, None without one
    error: str | None        # why the last attempt failed; None when delivered
    elapsed_s: float

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


class _Failed(Exception):
    """One attempt failed; `retry` says whether another may succeed."""

    def __init__(self, message: str, *, retry: bool, status: int | None = None,
                 wait_s: float | None = None) -> None:
        super().__init__(message)
        self.message, self.retry, self.status, self.wait_s = message, retry, status, wait_s


@dataclass(frozen=True)
class Backoff:
    """The waits between attempts: `first_s`, doubling, or the receiver's Retry-After; never
    more than `max_s` (a hook asking for an hour is not waited for)."""

    first_s: float = 0.5
    max_s: float = 10.0


@dataclass(frozen=True)
class Mail:
    """What a mail target sends: the subject line and the plain text body."""

    subject: str
    body: str


def deliver(targets: Sequence[str], payload: bytes, mail: Mail, cfg: NotifyConfig, *,
            backoff: Backoff = Backoff()) -> list[Delivery]:
    """Send `payload` (JSON) to every webhook and `mail` to every mailto: target, at once;
    one Delivery per target, in the order given."""
    async def everything() -> list[Delivery]:
        return list(await asyncio.gather(*(_one(t, payload, mail, cfg, backoff)
                                           for t in targets)))
    return asyncio.run(everything())


async def _one(target: str, payload: bytes, mail: Mail, cfg: NotifyConfig,
               backoff: Backoff) -> Delivery:
    started = time.monotonic()
    recipients = mail_recipients(target)
    kind = "http" if recipients is None else "smtp"

    async def attempt() -> int:  # a coroutine function: tenacity awaits only those
        if recipients is None:
            return await _post(target, payload, cfg)
        return await asyncio.to_thread(_send_mail, recipients, mail, cfg)

    ok, attempts, status, error = await _attempts(attempt, cfg, backoff)
    for secret in url_secrets(target):  # an error may quote the URL it could not reach
        error = error.replace(secret, HIDDEN) if error else error
    return Delivery(redact_url(target), kind, ok, attempts, status, error,
                    round(time.monotonic() - started, 3))


async def _attempts(attempt: Callable[[], Awaitable[int]], cfg: NotifyConfig, backoff: Backoff
                    ) -> tuple[bool, int, int | None, str | None]:
    """Try until delivered, or `retries` more times, or until the next try would start past
    `deadline_s`: (ok, attempts, status, error of the last attempt). tenacity keeps the count,
    the waits and the clock; a failure that another try cannot fix (retry=False) ends it."""
    retrying = tenacity.AsyncRetrying(
        stop=(tenacity.stop_after_attempt(cfg.retries + 1)
              | tenacity.stop_before_delay(cfg.deadline_s)),
        wait=_Wait(backoff),
        retry=tenacity.retry_if_exception(lambda exc: isinstance(exc, _Failed) and exc.retry),
        reraise=True)
    try:
        status = await retrying(attempt)
    except _Failed as exc:
        return False, retrying.statistics["attempt_number"], exc.status, exc.message
    return True, retrying.statistics["attempt_number"], status, None


class _Wait(tenacity.wait.wait_base):
    """The receiver's Retry-After when it gave one, else exponential (Backoff)."""

    def __init__(self, backoff: Backoff) -> None:
        self.max_s = backoff.max_s
        self.exponential = tenacity.wait_exponential(multiplier=backoff.first_s, max=backoff.max_s)

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        if isinstance(exc, _Failed) and exc.wait_s is not None:
            return min(exc.wait_s, self.max_s)
        return float(self.exponential(retry_state))


def _tls_context(cfg: NotifyConfig) -> ssl.SSLContext:
    """Verifying, with `ca_file` instead of the system's CAs when given."""
    return ssl.create_default_context(cafile=cfg.ca_file)


# --- HTTP ---------------------------------------------------------------------------------

async def _post(url: str, payload: bytes, cfg: NotifyConfig) -> int:
    """One POST; the status when it is 2xx, else _Failed. Redirects are not followed (a
    webhook that moved should be fixed in the config, not chased with the message)."""
    timeout = aiohttp.ClientTimeout(total=cfg.timeout_s)
    headers = {"Content-Type": "application/json", "User-Agent": f"shadowdiff/{__version__}"}
    try:
        # trust_env: the HTTPS_PROXY/NO_PROXY of the job's environment apply
        async with aiohttp.ClientSession(timeout=timeout, trust_env=True) as session:
            async with session.post(url, data=payload, headers=headers, allow_redirects=False,
                                    ssl=_tls_context(cfg) if url[:6].lower() == "https:" else True
                                    ) as resp:
                status, reason = resp.status, resp.reason or ""
                answer = (await resp.content.read(_SNIPPET)).decode("utf-8", "replace")
                retry_after = resp.headers.get("Retry-After")
    except aiohttp.ClientConnectorCertificateError as exc:
        raise _Failed(f"TLS certificate not trusted: {exc.certificate_error}", retry=False) from exc
    except aiohttp.ClientSSLError as exc:
        raise _Failed(f"TLS failed: {exc.os_error}", retry=False) from exc
    except aiohttp.ClientConnectorError as exc:
        raise _Failed(f"cannot connect to {exc.host}:{exc.port}: "
                      f"{exc.os_error.strerror or exc.os_error}", retry=True) from exc
    except (asyncio.TimeoutError, aiohttp.ServerTimeoutError) as exc:
        raise _Failed(f"no answer within {cfg.timeout_s:g} s", retry=True) from exc
    except (aiohttp.ClientError, OSError) as exc:
        raise _Failed(f"{exc.__class__.__name__}: {exc}", retry=True) from exc
    if 200 <= status < 300:
        return status
    answer = " ".join(answer.split())
    raise _Failed(f"HTTP {status} {reason}".rstrip() + (f": {answer}" if answer else ""),
                  retry=status in _RETRY_STATUS or status >= 500, status=status,
                  wait_s=_seconds(retry_after))


def _seconds(retry_after: str | None) -> float | None:
    """Retry-After in seconds (the HTTP-date form is ignored: the usual backoff applies)."""
    try:
        return max(float(retry_after), 0.0) if retry_after else None
    except ValueError:
        return None


# --- SMTP ---------------------------------------------------------------------------------

def _send_mail(recipients: tuple[str, ...], mail: Mail, cfg: NotifyConfig) -> int:
    """One SMTP session (blocking: run in a thread); 250 when accepted, else _Failed."""
    host, port = cfg.smtp_host or "localhost", cfg.smtp_port or (587 if cfg.starttls else 25)
    try:
        refused = _session(host, port, recipients, mail, cfg)
    except smtplib.SMTPRecipientsRefused as exc:
        refused = exc.recipients
    except smtplib.SMTPResponseException as exc:
        raise _Failed(f"SMTP {exc.smtp_code} {_reply(exc.smtp_error)}",
                      retry=400 <= exc.smtp_code < 500, status=exc.smtp_code) from exc
    except ssl.SSLCertVerificationError as exc:
        raise _Failed(f"TLS certificate of {host} not trusted: {exc.verify_message}",
                      retry=False) from exc
    except ssl.SSLError as exc:
        raise _Failed(f"TLS failed with {host}: {exc.reason or exc}", retry=False) from exc
    except smtplib.SMTPServerDisconnected as exc:
        raise _Failed(f"{host}:{port} closed the connection: {exc}", retry=True) from exc
    except smtplib.SMTPException as exc:  # e.g. AUTH not offered: no second try helps
        raise _Failed(f"SMTP: {exc}", retry=False) from exc
    except TimeoutError as exc:
        raise _Failed(f"{host}:{port}: no answer within {cfg.timeout_s:g} s", retry=True) from exc
    except OSError as exc:
        raise _Failed(f"cannot connect to {host}:{port}: {exc.strerror or exc}", retry=True) from exc
    if refused:
        codes = {code for code, _ in refused.values()}
        raise _Failed("refused " + ", ".join(f"{rcpt} ({code} {_reply(text)})"
                                             for rcpt, (code, text) in refused.items()),
                      retry=all(400 <= c < 500 for c in codes), status=max(codes))
    return 250


def _session(host: str, port: int, recipients: tuple[str, ...], mail: Mail,
             cfg: NotifyConfig) -> dict[str, tuple[int, bytes]]:
    """EHLO, STARTTLS, AUTH when credentials are set, the message; the refused recipients."""
    user, password = _credentials()
    if user is not None and not cfg.starttls:
        raise _Failed(f"{USER_ENV} is set but [notify] starttls = false: credentials are "
                      "only sent over STARTTLS", retry=False)
    with smtplib.SMTP(host, port, timeout=cfg.timeout_s) as smtp:
        smtp.ehlo()
        if cfg.starttls:
            if not smtp.has_extn("starttls"):
                raise _Failed(f"{host}:{port} does not offer STARTTLS ([notify] starttls = "
                              "true requires it; false sends in the clear)", retry=False)
            smtp.starttls(context=_tls_context(cfg))
            smtp.ehlo()
        if user is not None:
            smtp.login(user, password or "")
        return smtp.send_message(_message(recipients, mail, cfg, host), to_addrs=list(recipients))


def _credentials() -> tuple[str | None, str | None]:
    """(user, password) from the environment, or (None, None); both or neither."""
    user, password = os.environ.get(USER_ENV) or None, os.environ.get(PASSWORD_ENV) or None
    if (user is None) != (password is None):
        raise _Failed(f"set both {USER_ENV} and {PASSWORD_ENV}, or neither", retry=False)
    return user, password


def _message(recipients: tuple[str, ...], mail: Mail, cfg: NotifyConfig,
             host: str) -> EmailMessage:
    sender = cfg.sender or f"shadowdiff@{socket.gethostname() or 'localhost'}"
    msg = EmailMessage()
    msg["Subject"], msg["From"], msg["To"] = mail.subject, sender, ", ".join(recipients)
    msg["Date"] = formatdate(usegmt=True)
    msg["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or host)
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies to a robot
    msg.set_content(mail.body)
    return msg


def _reply(text: bytes | str) -> str:
    text = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
    return " ".join(text.split())[:_SNIPPET]

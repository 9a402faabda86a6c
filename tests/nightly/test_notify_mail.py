"""mailto: notifications through real aiosmtpd servers on loopback: plain SMTP, STARTTLS
with a test certificate and AUTH from the environment, and the failures a job must hear of."""

from __future__ import annotations

import email
import email.policy
import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from aiosmtpd.smtp import AuthResult, LoginPassword

from servers import refused_url
from smtp_servers import MailHandler, self_signed_context, serve_smtp
from shadowdiff.nightly.config import NotifyConfig
from shadowdiff.nightly.deliver import PASSWORD_ENV, USER_ENV, Backoff, Mail, deliver

MAIL = Mail("[shadowdiff] FAIL: 2 divergence signatures (any)",
            "shadowdiff: FAIL: 2 divergence signatures (any)\nReport: /srv/r1/report.html")
PASSWORD = "correct horse battery staple"


@pytest.fixture(autouse=True)
def _no_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(USER_ENV, raising=False)
    monkeypatch.delenv(PASSWORD_ENV, raising=False)


def _send(url: str, target: str = "mailto:ops@example.com", host: str = "127.0.0.1",
          **cfg: Any) -> Any:
    config = NotifyConfig(urls=(target,), smtp_host=host, smtp_port=urlsplit(url).port,
                          timeout_s=3.0, sender="shadowdiff@ci.example.com", **cfg)
    [result] = deliver([target], b"{}", MAIL, config, backoff=Backoff(0.05))
    return result


def _received(handler: MailHandler) -> email.message.EmailMessage:
    [raw] = handler.delivered
    return email.message_from_bytes(raw, policy=email.policy.default)  # type: ignore[return-value]


def test_plain_smtp_delivers_the_text_with_the_verdict_as_subject() -> None:
    handler = MailHandler()
    with serve_smtp(handler, "mx.test") as url:
        result = _send(url, "mailto:ops@example.com,oncall@example.com", starttls=False)
    assert result.ok and result.kind == "smtp" and result.attempts == 1 and result.status == 250
    assert result.target == "mailto:ops@example.com,oncall@example.com"
    msg = _received(handler)
    assert msg["Subject"] == MAIL.subject and msg["From"] == "shadowdiff@ci.example.com"
    assert msg["To"] == "ops@example.com, oncall@example.com"
    assert msg["Auto-Submitted"] == "auto-generated" and msg["Message-ID"] and msg["Date"]
    assert msg.get_content().replace("\r\n", "\n").strip() == MAIL.body
    assert [e[1] for e in handler.envelopes] == ["ops@example.com", "oncall@example.com"]
    assert not any(tls for *_, tls in handler.envelopes)


def test_starttls_required_but_not_offered_fails_at_once_and_sends_nothing() -> None:
    handler = MailHandler()
    with serve_smtp(handler, "mx.test") as url:
        result = _send(url)  # starttls = true is the default
    assert not result.ok and result.attempts == 1  # no second try: the server will not change
    assert "does not offer STARTTLS" in result.error and handler.delivered == []


def test_starttls_with_a_trusted_certificate_and_auth_from_the_environment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    logins: list[tuple[str, bool]] = []

    def authenticator(server: Any, session: Any, envelope: Any, mechanism: str,
                      data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and data.password == PASSWORD.encode()
        logins.append((data.login.decode(), session.ssl is not None))
        return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd answers 535

    monkeypatch.setenv(USER_ENV, "shadowdiff")
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    handler = MailHandler()
    tls = self_signed_context(tmp_path, host="localhost")
    with serve_smtp(handler, "mx.test", tls=tls, authenticator=authenticator,
                    auth_required=True) as url:
        result = _send(url, host="localhost", ca_file=str(tmp_path / "cert.pem"))
        monkeypatch.setenv(PASSWORD_ENV, "wrong")
        refused = _send(url, host="localhost", ca_file=str(tmp_path / "cert.pem"))
    assert result.ok, result.error
    assert logins[0] == ("shadowdiff", True)  # authenticated, and only inside TLS
    assert handler.envelopes[0][2] is True and len(handler.delivered) == 1
    assert not refused.ok and refused.status == 535 and refused.attempts == 1
    assert PASSWORD not in json.dumps([result.as_dict(), refused.as_dict()])


def test_an_untrusted_certificate_is_not_retried(tmp_path: Path) -> None:
    handler = MailHandler()
    with serve_smtp(handler, "mx.test", tls=self_signed_context(tmp_path, host="localhost")) as url:
        result = _send(url, host="localhost")  # the system's CAs do not know the test one
    assert not result.ok and result.attempts == 1 and "not trusted" in result.error
    assert handler.delivered == []


def test_credentials_are_never_sent_in_the_clear(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(USER_ENV, "shadowdiff")
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    handler = MailHandler()
    with serve_smtp(handler, "mx.test") as url:
        result = _send(url, starttls=False)
    assert not result.ok and result.attempts == 1 and "only sent over STARTTLS" in result.error
    assert handler.commands == [] and handler.delivered == []
    monkeypatch.delenv(PASSWORD_ENV)
    with serve_smtp(handler, "mx.test", tls=None) as url:
        half = _send(url, starttls=False)
    assert not half.ok and f"set both {USER_ENV} and {PASSWORD_ENV}" in half.error


def test_a_refused_recipient_and_a_closed_port_are_reported() -> None:
    handler = MailHandler(unknown=frozenset({"nobody"}))
    with serve_smtp(handler, "mx.test") as url:
        refused = _send(url, "mailto:nobody@example.com", starttls=False)
        partly = _send(url, "mailto:nobody@example.com,ops@example.com", starttls=False)
    assert not refused.ok and refused.status == 550 and refused.attempts == 1
    assert "nobody@example.com (550" in refused.error
    assert not partly.ok and len(handler.delivered) == 1  # ops got it; the job still hears
    closed = _send(refused_url(), starttls=False, retries=1)
    assert not closed.ok and closed.attempts == 2 and "cannot connect to 127.0.0.1" in closed.error

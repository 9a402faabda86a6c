"""The nightly job's configuration: `[gate]`, `[gate.latency]`, `[history]` and `[notify]`.

Kept apart from config.py so the sections the nightly job adds (docs/nightly.md) are
read in one place; config.py only holds them as fields of `Config`. Same rules as
there: unknown keys and wrong types are errors naming the file and the key, because a
misspelt gate that is silently ignored would let a bad night through.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from shadowdiff.errors import ConfigError
from shadowdiff.redact import redact_url
from shadowdiff.tables import check_keys, str_list, typed

LATENCY_METRICS: tuple[str, ...] = ("p50", "p95", "p99")


@dataclass(frozen=True)
class LatencyGate:
    """What counts as a latency regression (latency.regression's options)."""

    metric: str = "p95"
    min_ratio: float = 1.2
    confidence: float = 0.95


@dataclass(frozen=True)
class GateConfig:
    """`--fail-on` conditions; the command line replaces `fail_on` as a whole."""

    fail_on: tuple[str, ...] = ("any",)
    latency: LatencyGate = field(default_factory=LatencyGate)


@dataclass(frozen=True)
class HistoryConfig:
    """Where the run history lives; `enabled` False is `--no-history`."""

    path: str | None = None   # None: $SHADOWDIFF_HISTORY, else reports/history.sqlite
    enabled: bool = True


def parse_gate(table: Any, src: str) -> GateConfig:
    """`[gate]` with its `[gate.latency]` sub-table; conditions are parsed to check them."""
    from shadowdiff.nightly.gates import parse_conditions

    check_keys(table, {"fail_on", "latency"}, "gate.", src)
    fail_on = table.get("fail_on", ["any"])
    if not isinstance(fail_on, list) or not all(isinstance(v, str) for v in fail_on):
        raise ConfigError("must be a list of strings", path=src, key="gate.fail_on")
    try:
        parse_conditions(fail_on, source="gate.fail_on")
    except ConfigError as exc:
        raise ConfigError(str(exc), path=src) from exc
    return GateConfig(fail_on=tuple(fail_on), latency=_latency(table.get("latency", {}), src))


def _latency(table: Any, src: str) -> LatencyGate:
    check_keys(table, {"metric", "min_ratio", "confidence"}, "gate.latency.", src)
    base = LatencyGate()
    metric = table.get("metric", base.metric)
    if metric not in LATENCY_METRICS:
        raise ConfigError(f"must be one of {', '.join(LATENCY_METRICS)}", path=src,
                          key="gate.latency.metric")
    min_ratio = _number(table, "min_ratio", base.min_ratio, src)
    confidence = _number(table, "confidence", base.confidence, src)
    if min_ratio < 1.0:
        raise ConfigError("must be at least 1 (new/old)", path=src, key="gate.latency.min_ratio")
    if not 0.5 < confidence < 1.0:
        raise ConfigError("must be between 0.5 and 1, e.g. 0.95", path=src,
                          key="gate.latency.confidence")
    return LatencyGate(metric, min_ratio, confidence)


def parse_history(table: Any, src: str) -> HistoryConfig:
    """`[history]`: only `path` (relative paths are relative to the working directory)."""
    check_keys(table, {"path"}, "history.", src)
    if "path" not in table:
        return HistoryConfig()
    path = table["path"]
    if not isinstance(path, str) or not path.strip():
        raise ConfigError("must be a file path", path=src, key="history.path")
    return HistoryConfig(path=path)


HISTORY_ENV = "SHADOWDIFF_HISTORY"
DEFAULT_HISTORY = "reports/history.sqlite"


def history_path(cfg: HistoryConfig) -> str:
    """`--history` or `[history] path`, else $SHADOWDIFF_HISTORY, else the default.

    The environment variable only moves the default, so a CI job (or the test suite)
    can keep every run's history out of the working tree without editing configs.
    """
    return cfg.path or os.environ.get(HISTORY_ENV) or DEFAULT_HISTORY


def _number(table: dict[str, Any], key: str, default: float, src: str) -> float:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"must be a number, not {type(value).__name__}", path=src,
                          key=f"gate.latency.{key}")
    return float(value)


# --- [notify] -----------------------------------------------------------------------------

#: When a notification goes out; `always` sends one after every run.
NOTIFY_EVENTS: tuple[str, ...] = ("gate-failed", "new-signatures", "always")
#: Where the SMTP login comes from: the environment, never a file or a flag.
SMTP_USER_ENV, SMTP_PASSWORD_ENV = "SHADOWDIFF_SMTP_USER", "SHADOWDIFF_SMTP_PASSWORD"
_CREDENTIAL_KEYS = {"user", "username", "login", "password", "smtp_user", "smtp_username",
                    "smtp_login", "smtp_password", "pass", "secret"}
_ADDRESS = re.compile(r"^[^@\s<>,;\"]+@[^@\s<>,;\"]+$")


@dataclass(frozen=True)
class NotifyConfig:
    """Where and when a finished run is announced (docs/nightly.md, "Notifications").

    `urls` are http(s) webhooks and `mailto:` addresses; `--notify` replaces the list.
    SMTP credentials are never here: they come from the environment (deliver.py).
    """

    urls: tuple[str, ...] = ()
    when: tuple[str, ...] = ("gate-failed", "new-signatures")
    smtp_host: str | None = None
    smtp_port: int | None = None      # None: 587 with STARTTLS, 25 without
    sender: str | None = None         # `from`; None: shadowdiff@<this host's name>
    starttls: bool = True             # required: a server that does not offer it fails
    ca_file: str | None = None        # CA bundle for HTTPS hooks and STARTTLS, instead of the system's
    timeout_s: float = 10.0           # per attempt (SMTP: per network operation)
    retries: int = 2                  # attempts after the first, for failures that may pass
    deadline_s: float = 60.0          # no attempt starts later than this after the first
    top: int = 5                      # signatures named in the message
    report_url: str | None = None     # prefix under which the run directories are served


def mail_recipients(url: str) -> tuple[str, ...] | None:
    """The addresses of a `mailto:` target (RFC 6068: comma-separated), None for a webhook.
    Raises ValueError for a target that is neither."""
    scheme = url.partition(":")[0].lower()
    if scheme == "mailto":
        rest = url.partition(":")[2]
        if "?" in rest or "#" in rest:
            raise ValueError(f"{url!r}: mailto: headers (?subject=...) are not supported")
        addresses = tuple(a.strip() for a in rest.split(",") if a.strip())
        bad = [a for a in addresses if not _ADDRESS.match(a)]
        if not addresses or bad:
            raise ValueError(f"{url!r}: not a mail address (mailto:ops@example.com)")
        return addresses
    parts = urlsplit(url)
    try:
        port_ok = parts.port is None or parts.port > 0
    except ValueError:
        port_ok = False
    if (scheme not in ("http", "https") or not parts.hostname or not port_ok
            or any(c in url for c in " \r\n")):
        # the URL may hold a webhook token: name it as every report does
        raise ValueError(f"{redact_url(url)!r}: a notification target is an http(s):// URL "
                         "or mailto:ADDRESS")
    return None


def parse_notify(table: Any, src: str) -> NotifyConfig:
    """`[notify]`; checked as a whole (check_notify), like the flags laid over it."""
    p = "notify."
    for key in table if isinstance(table, dict) else ():
        if key.lower() in _CREDENTIAL_KEYS:  # a password in a config file ends up in backups
            raise ConfigError(f"SMTP credentials are read from the environment only "
                              f"({SMTP_USER_ENV}, {SMTP_PASSWORD_ENV}), never from the file",
                              path=src, key=p + key)
    check_keys(table, {"urls", "when", "smtp_host", "smtp_port", "from", "starttls", "ca_file",
                       "timeout_s", "retries", "deadline_s", "top", "report_url"}, p, src)
    base = NotifyConfig()
    when = table.get("when")
    cfg = NotifyConfig(
        urls=str_list(table, "urls", p, src),
        # one event or a list of them
        when=((when,) if isinstance(when, str)
              else str_list(table, "when", p, src) if "when" in table else base.when),
        smtp_host=typed(table, "smtp_host", str, p, src, None),
        smtp_port=typed(table, "smtp_port", int, p, src, None),
        sender=typed(table, "from", str, p, src, None),
        starttls=typed(table, "starttls", bool, p, src, base.starttls),
        ca_file=typed(table, "ca_file", str, p, src, None),
        timeout_s=float(typed(table, "timeout_s", (int, float), p, src, base.timeout_s)),
        retries=typed(table, "retries", int, p, src, base.retries),
        deadline_s=float(typed(table, "deadline_s", (int, float), p, src, base.deadline_s)),
        top=typed(table, "top", int, p, src, base.top),
        report_url=typed(table, "report_url", str, p, src, None),
    )
    return check_notify(cfg, src)


def check_notify(cfg: NotifyConfig, src: str = "<flags>") -> NotifyConfig:
    """Reject what could only fail at the end of a long run: bad targets, a mailto: target
    without an SMTP host, unknown events, out-of-range numbers (file and flags alike)."""
    def bad(key: str, message: str) -> ConfigError:
        return ConfigError(message, path=src, key="notify." + key)

    for url in cfg.urls:
        try:
            if mail_recipients(url) is not None and not cfg.smtp_host:
                raise bad("smtp_host", f"{url} needs an SMTP server to send through")
        except ValueError as exc:
            raise bad("urls", str(exc)) from exc
    unknown = [w for w in cfg.when if w not in NOTIFY_EVENTS]
    if unknown or not cfg.when:
        raise bad("when", f"must be some of {', '.join(NOTIFY_EVENTS)}, not {unknown or 'nothing'}")
    checks = [("smtp_port", cfg.smtp_port is None or 0 < cfg.smtp_port < 65536, "a TCP port"),
              ("timeout_s", 0 < cfg.timeout_s <= 300, "between 0 and 300 seconds"),
              ("retries", 0 <= cfg.retries <= 10, "between 0 and 10"),
              ("deadline_s", 0 < cfg.deadline_s <= 3600, "between 0 and 3600 seconds"),
              ("top", 1 <= cfg.top <= 50, "between 1 and 50"),
              ("from", cfg.sender is None or bool(_ADDRESS.match(cfg.sender)), "a mail address"),
              ("ca_file", cfg.ca_file is None or os.path.isfile(cfg.ca_file), "a readable file"),
              ("report_url", cfg.report_url is None
               or urlsplit(cfg.report_url).scheme in ("http", "https", "file"), "a URL")]
    for key, ok, what in checks:
        if not ok:
            raise bad(key, f"must be {what}")
    return cfg

"""Capture stage, live mirror: a mitmproxy reverse proxy to old whose addon copies to new.

    client ──> mitmproxy reverse:OLD ──> old ──> client     (mitmproxy's own path, unchanged)
                  └─ MirrorAddon: request/response/error hooks ──> live_queue.Mirror ──> new
                                                                              └──> capture file

The addon only adapts flows into shadowdiff records; the queue, the workers and the capture
file live in `live_queue.py`. Its hooks are synchronous and never wait, so the client's
request is never held up by new.

Why mitmproxy runs in this process (a `Master` driven by `asyncio.run`) rather than as a
`mitmdump -s` subprocess: the counters, the queue and the capture writer share the proxy's
event loop, so the stats are exact and SIGINT/SIGTERM flush the file without any IPC or
signal forwarding, and there is one PID to supervise. The same addon still loads into a
stock mitmdump (`mitmdump -s shadowdiff/live.py --set shadowdiff_new=URL ...`), because
its settings are mitmproxy options prefixed `shadowdiff_`.

Needs the `mitm` extra (mitmproxy); without it `run_mirror` raises PluginError.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from shadowdiff.capture.mitm import flow_headers, flow_text
from shadowdiff.errors import PluginError, ShadowdiffError
from shadowdiff.live.queue import Mirror, MirrorSettings
from shadowdiff.model import Failure, Outcome, Request, Response, http_version
from shadowdiff.scrub import RedactConfig

ReadyFn = Callable[[str, int], None]

# option name -> (MirrorSettings field, type, default, help). One table feeds mitmproxy's
# loader and the settings, so `mitmdump -s` and `shadowdiff mirror` cannot drift apart.
_OPTIONS: dict[str, tuple[str, type, Any, str]] = {
    "shadowdiff_new": ("new", str, "", "URL of the new system: copies of requests go there."),
    "shadowdiff_output": ("output", str, "", "Capture file to write (.jsonl or .jsonl.gz)."),
    "shadowdiff_sample": ("sample", float, 1.0, "Fraction of clients mirrored (hash of the client)."),
    "shadowdiff_queue": ("queue", int, 1000, "Copies waiting for new; more are dropped and counted."),
    "shadowdiff_timeout": ("timeout_s", float, 10.0, "Seconds new gets per copy."),
    "shadowdiff_methods": ("methods", str, "GET,HEAD,OPTIONS", "Methods copied to new."),
    "shadowdiff_concurrency": ("concurrency", int, 16, "Copies in flight to new."),
    "shadowdiff_sample_header": ("sample_header", str, "",
                                 "Sample by this header's first value (X-Forwarded-For) "
                                 "instead of the peer address."),
    "shadowdiff_drain": ("drain_s", float, 5.0, "Seconds copies in flight may take at shutdown."),
    "shadowdiff_source": ("source", str, "mirror", "The capture's source name."),
    "shadowdiff_keep_secrets": ("keep_secrets", bool, False,
                                "Store credentials, cookies and tokens as seen (default: keyed hash)."),
    "shadowdiff_max_body_bytes": ("max_body_bytes", int, 10 * 1024 * 1024,
                                  "Larger request bodies are refused (413); larger answers of new "
                                  "are a too_large failure."),
}


def _import_mitmproxy() -> Any:
    try:
        from mitmproxy import addons, options
        from mitmproxy.master import Master
    except ImportError as exc:
        raise PluginError("live mirroring needs mitmproxy: pip install shadowdiff[mitm]") from exc
    return addons, options, Master


def flow_request(flow: Any) -> Request:
    """The client's request of a mitmproxy HTTP flow, as shadowdiff records it."""
    req = flow.request
    headers = flow_headers(req.headers.fields)
    if not any(k.lower() == "host" for k, _ in headers) and req.host_header:
        headers = (("Host", req.host_header),) + headers  # HTTP/2 keeps it in :authority
    return Request(protocol="http", method=flow_text(req.data.method),
                   target=flow_text(req.data.path),
                   headers=headers, body=req.raw_content or b"",
                   http_version=http_version(flow_text(req.data.http_version)))


def flow_outcome(flow: Any) -> Outcome:
    """What old answered the client: its response, or a Failure from the flow's error."""
    resp = flow.response
    start = flow.request.timestamp_start or 0.0
    if resp is not None:
        end = resp.timestamp_end or start
        return Response(status=int(resp.status_code), headers=flow_headers(resp.headers.fields),
                        body=resp.raw_content or b"", elapsed_s=max(0.0, end - start),
                        reason=flow_text(resp.data.reason))
    message = flow.error.msg if flow.error is not None else "no response"
    return Failure(_failure_kind(message), message)


def _failure_kind(message: str) -> str:
    lowered = message.lower()
    if "refused" in lowered or "connect call failed" in lowered:
        return "refused"
    if "timeout" in lowered or "timed out" in lowered:
        return "timeout"
    if "reset" in lowered:
        return "reset"
    return "error"


def settings_from_options(options: Any) -> MirrorSettings:
    """MirrorSettings from mitmproxy options (`shadowdiff_*`)."""
    values: dict[str, Any] = {}
    for name, (field_name, _, _, _) in _OPTIONS.items():
        values[field_name] = getattr(options, name)
    values["methods"] = tuple(m.strip().upper() for m in values["methods"].split(",") if m.strip())
    return MirrorSettings(**values)


def check_settings(settings: MirrorSettings) -> str | None:
    """Why these settings cannot work, or None."""
    if not settings.new or not settings.output:
        return "shadowdiff_new and shadowdiff_output must both be set"
    if not 0.0 <= settings.sample <= 1.0:
        return "shadowdiff_sample must be between 0 and 1"
    if settings.queue < 1 or settings.concurrency < 1:
        return "shadowdiff_queue and shadowdiff_concurrency must be at least 1"
    if settings.timeout_s <= 0 or settings.drain_s < 0:
        return "shadowdiff_timeout must be positive and shadowdiff_drain not negative"
    return None


class MirrorAddon:
    """mitmproxy addon: hands each flow to a `Mirror`; the proxy path itself is untouched."""

    def __init__(self, on_ready: ReadyFn | None = None,
                 redact: RedactConfig | None = None) -> None:
        self.on_ready = on_ready
        self.redact = redact  # `[redact]` of shadowdiff.toml, when run by `shadowdiff mirror`
        self.mirror: Mirror | None = None
        self.stats: dict[str, int] | None = None
        self.startup_error: str | None = None

    def load(self, loader: Any) -> None:
        for name, (_, typ, default, help_text) in _OPTIONS.items():
            loader.add_option(name, typ, default, help_text)

    async def running(self) -> None:
        from mitmproxy import ctx
        addrs = ctx.master.addons.get("proxyserver").listen_addrs()
        settings = settings_from_options(ctx.options)
        if self.redact is not None:
            settings = replace(settings, redact=self.redact)
        self.startup_error = check_settings(settings) or (None if addrs else "no listening socket")
        if self.startup_error:
            logging.getLogger(__name__).error("shadowdiff mirror not started: %s", self.startup_error)
            ctx.master.shutdown()
            return
        mirror = Mirror(settings)
        try:
            await mirror.start()
        except (ShadowdiffError, OSError) as exc:  # unknown scheme for new, unwritable output
            self.startup_error = str(exc)
            logging.getLogger(__name__).error("shadowdiff mirror not started: %s", exc)
            ctx.master.shutdown()
            return
        self.mirror = mirror
        if self.on_ready is not None:
            self.on_ready(str(addrs[0][0]), int(addrs[0][1]))

    def request(self, flow: Any) -> None:
        if self.mirror is None:
            return
        if flow.request.stream:  # past max_body_bytes: streamed to old, not kept or copied
            self.mirror.skip_large()
            return
        job = self.mirror.offer(flow_request(flow), str(flow.client_conn.peername[0]),
                                flow.request.timestamp_start)
        if job is not None:
            flow.metadata["shadowdiff_job"] = job

    def response(self, flow: Any) -> None:
        job = flow.metadata.pop("shadowdiff_job", None)
        if job is not None and self.mirror is not None:
            self.mirror.old_outcome(job, flow_outcome(flow))

    def error(self, flow: Any) -> None:
        self.response(flow)  # same bookkeeping: flow_outcome turns the error into a Failure

    async def done(self) -> None:
        if self.mirror is not None:
            self.stats = await self.mirror.stop()


class _ErrorLog(logging.Handler):
    """Keeps mitmproxy's error lines, so a failed start (port in use) explains itself."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if len(self.messages) < 10:  # it stays installed for the whole run: keep it bounded
            self.messages.append(record.getMessage())


async def run_mirror(listen_host: str, listen_port: int, old: str, settings: MirrorSettings, *,
                     confdir: str = "~/.mitmproxy", on_ready: ReadyFn | None = None,
                     handle_signals: bool = True) -> dict[str, int]:
    """Serve old on listen_host:listen_port, mirror to new, until SIGINT/SIGTERM; the stats.

    >>> asyncio.run(run_mirror("0.0.0.0", 8080, "http://old:8080",
    ...                        MirrorSettings(new="http://new:8080", output="live.jsonl")))  # doctest: +SKIP
    """
    addons, options, master_cls = _import_mitmproxy()
    master = master_cls(options.Options(mode=[f"reverse:{old}@{listen_host}:{listen_port}"],
                                        confdir=confdir))
    addon = MirrorAddon(on_ready, settings.redact)
    master.addons.add(*addons.default_addons(), addon)
    _set_options(master, settings)
    errors = _ErrorLog()
    logging.getLogger().addHandler(errors)
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM) if handle_signals else ()
    for sig in signals:
        loop.add_signal_handler(sig, master.shutdown)
    try:
        await master.run()
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
        logging.getLogger().removeHandler(errors)
    if addon.stats is None:
        detail = "; ".join(errors.messages) or addon.startup_error or "stopped before it started"
        raise ShadowdiffError(f"mirror on {listen_host}:{listen_port} failed to start: {detail}")
    return addon.stats


def _set_options(master: Any, settings: MirrorSettings) -> None:
    values = {name: getattr(settings, field_name) for name, (field_name, *_) in _OPTIONS.items()}
    values["shadowdiff_methods"] = ",".join(settings.methods)
    # keep_host_header: old sees the Host the client sent, as behind any reverse proxy.
    # block_global: mitmproxy refuses clients with public addresses by default, which a
    # production reverse proxy must not do.
    # stream_large_bodies: a body past the limit streams through to old (production must not
    # break) and is never buffered here; such a request is not mirrored (MirrorAddon.request).
    master.options.update(keep_host_header=True, block_global=False,
                          stream_large_bodies=str(settings.max_body_bytes), **values)


# `mitmdump -s shadowdiff/live.py --mode reverse:http://old:8080 --set shadowdiff_new=... `
addons = [MirrorAddon()]

__all__ = ["MirrorAddon", "flow_outcome", "flow_request", "run_mirror", "settings_from_options"]

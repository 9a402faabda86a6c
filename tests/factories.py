"""Record factories: one place that knows how to build a plausible record."""

from __future__ import annotations

from shadowdiff.model import Exchange, Request, Response

_counter = iter(range(1, 10**9))


def make_request(method: str = "GET", target: str = "/users/1", *,
                 headers: tuple[tuple[str, str], ...] = (("Host", "api.example.com"),),
                 body: bytes = b"") -> Request:
    return Request("http", method, target, headers, body)


def make_exchange(method: str = "GET", target: str = "/users/1", *, count: int = 1,
                  recorded: Response | None = None, marks: tuple[str, ...] = (),
                  headers: tuple[tuple[str, str], ...] = (("Host", "api.example.com"),),
                  body: bytes = b"", id: str | None = None) -> Exchange:
    n = next(_counter)
    return Exchange(id=id or f"t-{n}", request=make_request(method, target, headers=headers, body=body),
                    recorded=recorded, source=f"test#{n}", seen_at=1_700_000_000.0 + n,
                    count=count, marks=marks)


def make_response(status: int = 200, body: bytes = b"{}", *,
                  headers: tuple[tuple[str, str], ...] = (("Content-Type", "application/json"),),
                  elapsed_s: float = 0.01) -> Response:
    return Response(status, headers, body, elapsed_s)

"""What stands between a client and `serve --http`'s routes: Host and Origin checks, the JSON
Content-Type of POSTs, the body limit (ASGI middleware, outermost first) and the bearer token
(a FastAPI dependency each data route declares).

A page on another site can make a browser send requests to a loopback server; these checks are
what refuse them, before any handler runs and before a body is read. `http.py` declares the
routes and wraps them with `guarded`.
"""

from __future__ import annotations

import hmac
import ipaddress
import re
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import Depends
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from slmsql_cli.errors import UserError

MAX_BODY_BYTES = 64 * 1024  # a question, its evidence or a query is far smaller; 413 beyond

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


# ---- the bearer token ---------------------------------------------------------------------------


class Unauthorized(Exception):
    """No bearer token, or not the server's (http.py answers it 401)."""


def token_check(token: str | None) -> Callable[..., None]:
    """The dependency every /v1 route and /healthz declares: with a token, the request must carry
    `Authorization: Bearer TOKEN` (compared in constant time); without one, anything passes."""
    bearer = HTTPBearer(auto_error=False, description="The server's --token")

    # Depends as a default, not in Annotated: postponed annotations cannot see the local `bearer`.
    def authorized(credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
        if token is None:
            return
        given = credentials.credentials if credentials is not None else ""
        if not hmac.compare_digest(given.encode(), token.encode()):
            raise Unauthorized()

    return authorized


# ---- Host and Origin ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Guard:
    """Who may talk to the server from a browser: the `Host` values it answers to and the web
    origins it trusts. A page on another site can make a browser send requests to a loopback
    server; this is what refuses them (as Jupyter and Ollama do):

    * DNS rebinding: a site that points its own name at 127.0.0.1 sends `Host: its.name`. Only the
      names the server was started for pass (127.0.0.1, localhost, [::1] and `--host`), each with
      the server's port (no port means 80); on a wildcard `--host` (0.0.0.0, ::) any IP-address
      Host with that port passes too, since a rebound name is never an address. The Host is
      parsed (`parse_host`): a name, or an IPv6 address in brackets, then `:` and digits only, so
      `127.0.0.1:8000.evil` or `127.0.0.1:8001` is refused.
    * Cross-site requests: a browser names the page's origin in `Origin` (and says `cross-site` in
      `Sec-Fetch-Site`) on anything but a plain navigation. The server's own origin passes, and
      so do the `--allow-origin` ones (they also get CORS headers, so their pages can read the
      replies); anything else is refused on every route that holds data.
    """

    names: frozenset[str]  # lower case; an IPv6 address in brackets
    port: int
    wildcard: bool = False
    allow_origins: tuple[str, ...] = ()

    @classmethod
    def for_server(cls, host: str, port: int, allow_origins: Sequence[str] = ()) -> Guard:
        names = {"127.0.0.1", "localhost", "[::1]", f"[{host}]" if ":" in host else host}
        wildcard = host in ("0.0.0.0", "::", "")
        return cls(
            frozenset(n.lower() for n in names),
            port,
            wildcard,
            tuple(o.rstrip("/").lower() for o in allow_origins),
        )

    def host_ok(self, host: str) -> bool:
        parsed = parse_host(host)
        if parsed is None or parsed[1] != self.port:
            return False
        name = parsed[0]
        return name in self.names or (self.wildcard and _is_address(name))

    def origin_ok(self, origin: str | None, host: str) -> bool:
        return origin is None or origin.lower() in (f"http://{host.lower()}", *self.allow_origins)


_PORT = re.compile(r"[0-9]{1,5}")
_NAME = re.compile(r"[a-z0-9._-]+")  # a DNS name or an IPv4 address, lower case


def parse_host(value: str) -> tuple[str, int] | None:
    """A Host header as (name, port), name lower case (an IPv6 address keeps its brackets), port
    80 when none is given; None unless it is exactly `name[:port]` or `[IPv6][:port]`."""
    value = value.lower()
    if value.startswith("["):
        end = value.find("]")
        if end < 0 or not _is_address(value[: end + 1]):
            return None
        name, rest = value[: end + 1], value[end + 1 :]
        if rest and not rest.startswith(":"):
            return None
        port_text = rest[1:] if rest else None
    else:
        name, colon, port_text_or_empty = value.partition(":")
        if not _NAME.fullmatch(name):
            return None
        port_text = port_text_or_empty if colon else None
    if port_text is None:
        return name, 80
    if not _PORT.fullmatch(port_text) or int(port_text) > 65535:
        return None
    return name, int(port_text)


def _is_address(name: str) -> bool:
    """An IPv4 address, or an IPv6 address in brackets."""
    bracketed = name.startswith("[") and name.endswith("]")
    try:
        address = ipaddress.ip_address(name[1:-1] if bracketed else name)
    except ValueError:
        return False
    return bracketed == (address.version == 6)


def check_origin(origin: str) -> str:
    """An --allow-origin value: scheme://host[:port], nothing else (UserError otherwise)."""
    from urllib.parse import urlsplit

    parts = urlsplit(origin)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path.strip("/") or parts.query:
        raise UserError(
            f"--allow-origin {origin!r} is not a web origin",
            "give scheme, host and port only, e.g. --allow-origin http://localhost:3000",
        )
    return f"{parts.scheme}://{parts.netloc}".lower()


# ---- the middleware, written by hand because Starlette has none for these two small jobs --------


def guarded(app: ASGIApp, guard: Guard | None, limit: int = MAX_BODY_BYTES) -> ASGIApp:
    """`app` behind the checks: Host, Origin and Content-Type first (`guard`; None checks only the
    Content-Type, for an in-process test client), then the body limit, then CORS headers for the
    `--allow-origin` origins."""
    inner: ASGIApp = app
    if guard is not None and guard.allow_origins:
        from starlette.middleware.cors import CORSMiddleware

        inner = CORSMiddleware(
            app,
            allow_origins=list(guard.allow_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
        )
    return _Guarded(_LimitBody(inner, limit), guard)


class _LimitBody:
    """413 for a request body over `limit` bytes, by Content-Length or as it streams in. Past the
    limit the app is told the client left (so it stops reading) and whatever it answers is dropped."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return await _too_large(self.limit, send)
        seen, refused = 0, False

        async def limited() -> Message:
            nonlocal seen, refused
            message = await receive()
            if message["type"] == "http.request" and not refused:
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    refused = True
                    await _too_large(self.limit, send)
                    return {"type": "http.disconnect"}
            return message

        async def unless_refused(message: Message) -> None:
            if not refused:
                await send(message)

        await self.app(scope, limited, unless_refused)


_DATA_PATHS = ("/v1/", "/healthz", "/openapi.json")


class _Guarded:
    """Refuses what `Guard` does not allow (403), and any POST whose body is not labelled
    `application/json` (415): a cross-site form or `text/plain` POST never reaches a handler."""

    def __init__(self, app: ASGIApp, guard: Guard | None) -> None:
        self.app, self.guard = app, guard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = _headers(scope)
        refusal = self._refusal(scope, headers)
        if refusal is not None:
            status, doc = refusal
            scope.setdefault("slmsql_log", {})["outcome"] = f"refused {status}"
            return await JSONResponse(doc, status_code=status)(scope, _no_receive, send)
        await self.app(scope, receive, send)

    def _refusal(self, scope: Scope, headers: dict[str, str]) -> tuple[int, dict[str, str]] | None:
        guard = self.guard
        data = scope["path"].startswith(_DATA_PATHS)
        if guard is not None:
            host = headers.get("host", "")
            if not guard.host_ok(host):
                return 403, {
                    "error": f"this server does not answer to Host {host!r}",
                    "hint": "use the address on the server's start line (e.g. http://127.0.0.1:PORT)",
                }
            origin = headers.get("origin")
            site = headers.get("sec-fetch-site", "")
            cross = not guard.origin_ok(origin, host) or (
                data and origin is None and site in ("cross-site", "same-site")
            )
            if cross:
                return 403, {
                    "error": f"requests from the web page at {origin or 'another site'} are refused",
                    "hint": "start the server with --allow-origin ORIGIN to let that page use it",
                }
        if scope["method"] == "POST":
            kind = headers.get("content-type", "").split(";", 1)[0].strip().lower()
            if kind != "application/json":
                return 415, {
                    "error": f"the body must be JSON, sent as Content-Type: application/json (got {kind or 'none'!r})",
                    "hint": "curl --json '{...}' URL, or curl -H 'Content-Type: application/json' -d '{...}' URL",
                }
        return None


def _headers(scope: Scope) -> dict[str, str]:
    """The request's headers by lower-case name (the first of repeated ones), decoded as Latin-1."""
    found: dict[str, str] = {}
    for key, value in scope.get("headers", []):
        found.setdefault(key.decode("latin-1").lower(), value.decode("latin-1"))
    return found


async def _too_large(limit: int, send: Send) -> None:
    doc = {
        "error": f"the request body is over this server's {limit // 1024} KiB limit",
        "hint": "send a shorter question",
    }
    await JSONResponse(doc, status_code=413)({"type": "http"}, _no_receive, send)


async def _no_receive() -> Message:
    return {"type": "http.disconnect"}

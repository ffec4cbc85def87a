"""`slmsql serve --http`: the local HTTP API (FastAPI on uvicorn) over `service.Service`.

Routes (JSON in, JSON out; errors are {"error": ..., "hint": ...}):

    POST /v1/ask                     {"database", "question", "evidence"?, "stream"?} → ask --json's document
                                     ("stream": true → server-sent events: queued, started, progress,
                                     tokens, round (a voted round's candidates), then answer or error)
    GET  /v1/databases               {"databases": [{"name", "tables"}]}
    GET  /v1/databases/{name}/schema {"name", "tables", "schema"}: the schema as the model sees it
    POST /v1/sql                     {"database", "sql"} → the result (read-only, as candidates run)
    POST /v1/saved                   {"database", "question", "sql", "evidence"?} → the saved answer
                                     (asked again exactly, /v1/ask answers from it; "fresh": true does not)
    GET  /healthz                    model, load time, queue length
    GET  /docs, /openapi.json        OpenAPI docs (Swagger UI served by the package, no CDN)
    GET  /                           the web app (files in slmsql_cli/serve/static/)

With a token, every /v1 route and /healthz needs `Authorization: Bearer TOKEN`; the docs and the
web app's files hold no data and stay open, so a browser can load them and then send the token.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hmac
import ipaddress
import json
import re
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel, Field
from sse_starlette import EventSourceResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from slmsql_cli import __version__
from slmsql_cli.errors import UserError
from slmsql_cli.answer import Answer
from slmsql_cli.render import answer_dict
from slmsql_cli.serve.registry import UnknownDatabase
from slmsql_cli.serve.requestlog import RequestLog, answer_fields
from slmsql_cli.serve.service import (
    Cancelled,
    Event,
    Job,
    QueueFull,
    RequestTimeout,
    Service,
    ShuttingDown,
    TooLarge,
)

STATIC_DIR = Path(__file__).parent / "static"
MAX_BODY_BYTES = 64 * 1024  # a question, its evidence or a query is far smaller; 413 beyond
SHUTDOWN_GRACE = 5  # seconds the running question may go on after SIGTERM before it is cancelled

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class AskRequest(BaseModel):
    database: str | None = Field(
        None, description="A name from GET /v1/databases (optional with one database)."
    )
    question: str = Field(..., description="The question in plain language.")
    evidence: str = Field("", description="Optional hints (BIRD's 'evidence'), e.g. what a term means.")
    stream: bool = Field(False, description="Answer with server-sent events: progress, then the answer.")
    fresh: bool = Field(False, description="Ask the model even when the question has a saved answer.")


class SaveRequest(BaseModel):
    database: str | None = Field(None, description="A name from GET /v1/databases.")
    question: str = Field(..., description="The question the SQL answers.")
    evidence: str = Field("", description="The evidence asked with it, if any.")
    sql: str = Field(..., description="The SQL to keep for the question (one read-only statement).")


class SqlRequest(BaseModel):
    database: str = Field(..., description="A name from GET /v1/databases.")
    sql: str = Field(..., description="One read-only query in SQLite SQL (SELECT, WITH … SELECT, VALUES).")


def create_app(
    service: Service,
    *,
    token: str | None = None,
    log: RequestLog | None = None,
    guard: Guard | None = None,
) -> FastAPI:
    """The ASGI app: API routes, OpenAPI docs and the static web app, with body limits and logs.

    `guard` checks Host and Origin (`Guard.for_server`; `serve` always passes one). Without it
    (an in-process test client) nothing is checked but the JSON Content-Type of POSTs."""
    log = log or RequestLog()
    app = FastAPIOffline(
        title="slmsql",
        version=__version__,
        description="Plain-language questions to SQL, answered by a small local Text-to-SQL model.",
    )
    bearer = HTTPBearer(auto_error=False, description="The server's --token")

    # Depends as a default, not in Annotated: postponed annotations cannot see the local `bearer`.
    def authorized(credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
        if token is None:
            return
        given = credentials.credentials if credentials is not None else ""
        if not hmac.compare_digest(given.encode(), token.encode()):
            raise _Unauthorized()

    auth = [Depends(authorized)]

    @app.post("/v1/ask", dependencies=auth, summary="Answer a question (the document of `ask --json`)")
    async def ask(body: AskRequest, request: Request) -> Any:
        _note(request, database=body.database)
        check_text(database=body.database, question=body.question, evidence=body.evidence)
        loop = asyncio.get_running_loop()
        events: asyncio.Queue[Event] = asyncio.Queue()

        def emit(event: Event) -> None:  # from the model thread
            with contextlib.suppress(RuntimeError):  # the loop is gone: nobody is listening
                loop.call_soon_threadsafe(events.put_nowait, event)

        job = service.ask(
            body.database, body.question, body.evidence, emit if body.stream else None, fresh=body.fresh
        )
        if body.stream:
            # on SIGTERM the stream ends by itself (the service cancels the job after SHUTDOWN_GRACE);
            # sse-starlette would otherwise cut it at once
            stream = _stream(service, job, events, request)
            return EventSourceResponse(stream, ping=15, shutdown_grace_period=SHUTDOWN_GRACE + 10)
        waiter = asyncio.ensure_future(service.wait(job))
        gone = asyncio.ensure_future(_disconnect(request))
        await asyncio.wait({waiter, gone}, return_when=asyncio.FIRST_COMPLETED)
        if not waiter.done():  # the client hung up: stop decoding for it
            waiter.cancel()
            with contextlib.suppress(asyncio.CancelledError, Cancelled):
                await waiter
            _note(request, outcome="disconnected", **_job_times(job))
            return JSONResponse({"error": "client disconnected"}, status_code=499)
        gone.cancel()
        _note(request, **_job_times(job))
        answer: Answer = waiter.result()
        _note(request, **answer_fields(answer))
        return answer_dict(answer)

    @app.get("/v1/databases", dependencies=auth, summary="The databases this server may query")
    async def databases() -> dict[str, Any]:
        return {"databases": service.databases()}

    @app.get("/v1/databases/{name}/schema", dependencies=auth, summary="The schema as the model sees it")
    async def schema(name: str, request: Request) -> dict[str, Any]:
        _note(request, database=name)
        check_text(database=name)
        return service.describe(name)

    @app.post("/v1/sql", dependencies=auth, summary="Run one read-only query")
    async def sql(body: SqlRequest, request: Request) -> dict[str, Any]:
        _note(request, database=body.database)
        check_text(database=body.database, sql=body.sql)
        doc = await run_sql_within(service, body.database, body.sql)
        _note(request, outcome="error" if doc["error"] or doc["timed_out"] else "ok", rows=doc["row_count"])
        return doc

    @app.post("/v1/saved", dependencies=auth, summary="Keep a question's SQL as its saved answer")
    async def save(body: SaveRequest, request: Request) -> dict[str, Any]:
        _note(request, database=body.database)
        return await run_in_threadpool(service.save, body.database, body.question, body.sql, body.evidence)

    @app.get("/healthz", dependencies=auth, summary="Model, load time, queue length")
    async def healthz() -> dict[str, Any]:
        return service.health()

    _add_error_handlers(app)
    app.mount("/", StaticFiles(directory=STATIC_DIR, html=True), name="static")
    inner: ASGIApp = app
    if guard is not None and guard.allow_origins:
        from starlette.middleware.cors import CORSMiddleware

        inner = CORSMiddleware(
            app,
            allow_origins=list(guard.allow_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
        )
    return _LogRequests(_Guarded(_LimitBody(inner, MAX_BODY_BYTES), guard), log)  # type: ignore[return-value]


async def _stream(
    service: Service, job: Job, events: asyncio.Queue[Event], request: Request
) -> AsyncIterator[dict]:
    """Server-sent events for one streamed ask; leaving early (the client hung up) cancels the job."""
    waiter = asyncio.ensure_future(service.wait(job))
    getter: asyncio.Future[Event] | None = None
    try:
        yield _sse({"event": "queued", "queue_length": service.health()["queue_length"]})
        while not (waiter.done() and events.empty()):
            getter = asyncio.ensure_future(events.get())
            await asyncio.wait({getter, waiter}, return_when=asyncio.FIRST_COMPLETED)
            if getter.done():
                yield _sse(getter.result())
            else:
                getter.cancel()
        _note(request, **_job_times(job))
        try:
            answer: Answer = waiter.result()
        except Exception as exc:
            status, doc, _headers = _error_response(exc)
            _note(request, outcome=f"error {status}")
            yield _sse({"event": "error", "status": status, **doc})
        else:
            _note(request, **answer_fields(answer))
            yield _sse({"event": "answer", **answer_dict(answer)})
    finally:
        if getter is not None:
            getter.cancel()
        if not waiter.done():
            waiter.cancel()
            _note(request, outcome="disconnected")


def _sse(event: Event) -> dict[str, str]:
    event = dict(event)
    name = event.pop("event")
    return {"event": name, "data": json.dumps(event, ensure_ascii=False, default=str)}


async def _disconnect(request: Request) -> None:
    """Returns when the client closes its connection (the body has been read by then)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _job_times(job: Job) -> dict[str, float]:
    return {"queue_s": job.queue_seconds, "run_s": job.run_seconds}


def _note(request: Request, **fields: Any) -> None:
    """Fields for this request's log line (written by _LogRequests when the response ends)."""
    request.scope.setdefault("slmsql_log", {}).update(fields)


# ---- errors -------------------------------------------------------------------------------------


class _Unauthorized(Exception):
    pass


def check_text(**texts: str | None) -> None:
    """A UserError (400) for text that cannot be encoded: JSON's `\\ud800` escapes decode to a
    lone surrogate, which no database, prompt or log line can hold."""
    for what, text in texts.items():
        if text is not None and _SURROGATE.search(text):
            raise UserError(
                f"the {what} holds a lone UTF-16 surrogate (a \\ud800-\\udfff escape without its pair)",
                "send text that is valid Unicode",
            )


_SURROGATE = re.compile("[\ud800-\udfff]")


async def run_sql_within(service: Service, database: str, sql: str) -> dict[str, Any]:
    """`service.run_sql` bounded by the server's --request-timeout too (RequestTimeout past it);
    the query itself stops at --timeout, killed by the executor."""
    try:
        return await asyncio.wait_for(
            run_in_threadpool(service.run_sql, database, sql), service.request_timeout
        )
    except TimeoutError:
        raise RequestTimeout(f"no answer within the server's {service.request_timeout:g}s limit") from None


def is_timeout(exc: BaseException) -> bool:
    """A RequestTimeout, or the job's own Cancelled("timeout"): the model thread can notice the
    deadline a moment before the waiter does, and either way the request timed out (504)."""
    return isinstance(exc, RequestTimeout) or (isinstance(exc, Cancelled) and str(exc) == "timeout")


def _error_response(exc: BaseException) -> tuple[int, dict[str, Any], dict[str, str]]:
    """(status, body, headers) of an error: one mapping for plain and streamed responses."""
    if isinstance(exc, _Unauthorized):
        return (
            401,
            {
                "error": "missing or wrong bearer token",
                "hint": "send 'Authorization: Bearer TOKEN' (the server's --token)",
            },
            {"WWW-Authenticate": "Bearer"},
        )
    if isinstance(exc, QueueFull):
        return (
            503,
            {"error": str(exc), "hint": f"retry after {exc.retry_after}s"},
            {"Retry-After": str(exc.retry_after)},
        )
    if is_timeout(exc):
        return (
            504,
            {
                "error": str(exc)
                if isinstance(exc, RequestTimeout)
                else "no answer within the server's time limit",
                "hint": "ask something simpler, or start the server with a larger --request-timeout",
            },
            {},
        )
    if isinstance(exc, ShuttingDown | Cancelled):
        return 503, {"error": f"the request was cancelled: {exc}"}, {}
    if isinstance(exc, UserError):
        status = 404 if isinstance(exc, UnknownDatabase) else 413 if isinstance(exc, TooLarge) else 400
        return status, {"error": exc.message, "hint": exc.hint}, {}
    raise exc


def _add_error_handlers(app: FastAPI) -> None:
    async def handle(request: Request, exc: Exception) -> JSONResponse:
        status, doc, headers = _error_response(exc)
        _note(request, outcome=f"error {status}", error=doc["error"])
        return JSONResponse(doc, status_code=status, headers=headers)

    for kind in (_Unauthorized, QueueFull, ShuttingDown, Cancelled, RequestTimeout, UserError):
        app.add_exception_handler(kind, handle)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # Starlette's own errors (no such route, wrong method) in the same {"error"} shape
        _note(request, outcome=f"error {exc.status_code}")
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            doc = {
                "error": "the body is not valid JSON",
                "hint": 'send e.g. {"database": "sales", "question": "..."}',
            }
            status = 400
        else:
            where = ", ".join(".".join(str(p) for p in e.get("loc", ())[1:]) or "body" for e in errors)
            doc = {
                "error": f"bad request body: {errors[0].get('msg', 'invalid')} ({where})",
                "hint": "see /docs",
            }
            status = 422
        _note(request, outcome=f"error {status}")
        return JSONResponse(doc, status_code=status)


# ---- ASGI middleware, written by hand because Starlette has none for these two small jobs ----


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


@dataclass(frozen=True)
class Guard:
    """Who may talk to the server from a browser: the `Host` values it answers to and the web
    origins it trusts. A page on another site can make a browser send requests to a loopback
    server; this is what refuses them (as Jupyter and Ollama do):

    * DNS rebinding: a site that points its own name at 127.0.0.1 sends `Host: its.name`. Only the
      names the server was started for pass (127.0.0.1, localhost, [::1] and `--host`, each with
      the port); on a wildcard `--host` (0.0.0.0, ::) any IP-address Host passes too, since a
      rebound name is never an address.
    * Cross-site requests: a browser names the page's origin in `Origin` (and says `cross-site` in
      `Sec-Fetch-Site`) on anything but a plain navigation. The server's own origin passes, and
      so do the `--allow-origin` ones (they also get CORS headers, so their pages can read the
      replies); anything else is refused on every route that holds data.
    """

    hosts: frozenset[str]
    wildcard: bool = False
    allow_origins: tuple[str, ...] = ()

    @classmethod
    def for_server(cls, host: str, port: int, allow_origins: Sequence[str] = ()) -> Guard:
        names = {"127.0.0.1", "localhost", "[::1]", f"[{host}]" if ":" in host else host}
        hosts = {f"{name}:{port}".lower() for name in names}
        if port == 80:
            hosts |= {name.lower() for name in names}
        wildcard = host in ("0.0.0.0", "::", "")
        return cls(frozenset(hosts), wildcard, tuple(o.rstrip("/").lower() for o in allow_origins))

    def host_ok(self, host: str) -> bool:
        host = host.lower()
        if host in self.hosts:
            return True
        if not self.wildcard:
            return False
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        with contextlib.suppress(ValueError):
            ipaddress.ip_address(name.strip("[]"))
            return True
        return False

    def origin_ok(self, origin: str | None, host: str) -> bool:
        return origin is None or origin.lower() in (f"http://{host.lower()}", *self.allow_origins)


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


class _LogRequests:
    """One log line per request: method, path, status, seconds and what the handler noted."""

    def __init__(self, app: ASGIApp, log: RequestLog) -> None:
        self.app, self.log = app, log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        status = [0]

        async def watch(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            fields = scope.get("slmsql_log", {})
            self.log.write(
                method=scope["method"],
                path=scope["path"],
                status=status[0] or None,
                seconds=time.perf_counter() - start,
                **fields,
            )


# ---- running it -----------------------------------------------------------------------------------


def is_loopback(host: str) -> bool:
    """Whether every address `host` names is a loopback address (only those need no token)."""
    try:
        infos = socket.getaddrinfo(host, None)
    except socket.gaierror:
        return False
    return all(ipaddress.ip_address(info[4][0]).is_loopback for info in infos)


MIN_TOKEN_CHARS = 16


def listen(host: str, port: int, token: str | None) -> socket.socket:
    """The listening socket, bound before the model loads so that a taken port fails at once.
    A host other machines can reach needs a token; a token needs MIN_TOKEN_CHARS characters (not
    counting surrounding spaces); a taken port is a one-line UserError."""
    if token is not None and len(token.strip()) < MIN_TOKEN_CHARS:
        raise UserError(
            f"--token is too short to guess-proof: it needs at least {MIN_TOKEN_CHARS} characters",
            "make one with: python -c 'import secrets; print(secrets.token_urlsafe(24))'",
        )
    if not token and not is_loopback(host):
        raise UserError(
            f"--host {host} is reachable from other machines: it needs --token",
            "pass --token SECRET (or SLMSQL_TOKEN), or keep the default --host 127.0.0.1",
        )
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    except socket.gaierror as exc:
        raise UserError(
            f"cannot resolve --host {host}: {exc.strerror}", "use an address such as 127.0.0.1"
        ) from None
    try:
        return socket.create_server((host, port), family=family)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise UserError(
                f"{host}:{port} is already in use (another slmsql serve?)", "stop it, or pick another --port"
            ) from None
        raise UserError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def banner(sock: socket.socket, service: Service, token: str | None) -> str:
    """The line the server prints at start: where it listens and whether it needs a token."""
    host, port = sock.getsockname()[:2]
    where = f"[{host}]" if ":" in host else host
    auth = "a bearer token is required on every API route" if token else "no token: loopback only"
    return (
        f"slmsql serve: listening on http://{where}:{port} ({len(service.registry.names())} "
        f"database(s), model {service.model_name}); {auth}"
    )


def serve(app: Any, sock: socket.socket, service: Service) -> None:
    """Serve until SIGINT or SIGTERM. On SIGTERM the waiting questions are answered 503 at once,
    the running one gets SHUTDOWN_GRACE seconds to finish and is then cancelled (its client gets
    503, or an `error` event), and the process exits 0: uvicorn re-raises the signal it caught
    after shutting down, into the no-op handler installed here."""
    import signal

    import uvicorn

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            super().handle_exit(sig, frame)
            service.stop(SHUTDOWN_GRACE)

    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,  # _LogRequests writes the one line per request
        timeout_graceful_shutdown=SHUTDOWN_GRACE + 30,  # a backstop: cancelled jobs end in seconds
        lifespan="off",
    )
    previous = signal.signal(signal.SIGTERM, lambda _sig, _frame: None)
    try:
        Server(config).run(sockets=[sock])
    finally:
        signal.signal(signal.SIGTERM, previous)

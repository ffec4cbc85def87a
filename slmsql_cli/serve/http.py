"""`slmsql serve --http`: the local HTTP API (FastAPI on uvicorn) over `service.Service`.

Routes (JSON in, JSON out; errors are {"error": ..., "hint": ...}):

    POST /v1/ask                     {"database", "question", "evidence"?, "stream"?, "turns"?,
                                     "conversation"?} → ask --json's document and its "conversation"
                                     ("stream": true → server-sent events: queued, started, progress,
                                     tokens, round (a voted round's candidates), then answer or error;
                                     a follow-up: "turns" [{"question", "sql"}] oldest first, or the
                                     "conversation" id an earlier answer returned)
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
The checks that run before any route (Host, Origin, Content-Type, body size, token) are guard.py's.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import json
import math
import mimetypes
import re
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel, Field, field_validator
from pydantic_core import PydanticCustomError
from sse_starlette import EventSourceResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from slmsql_cli import __version__
from slmsql_cli.answer import Answer
from slmsql_cli.conversation import MAX_TURNS, Turn
from slmsql_cli.errors import UserError
from slmsql_cli.serve.guard import (
    ASGIApp,
    Guard,
    Message,
    Receive,
    Scope,
    Send,
    Unauthorized,
    guarded,
    token_check,
)
from slmsql_cli.serve.registry import UnknownDatabase
from slmsql_cli.serve.requestlog import RequestLog, answer_fields, route_server_logs
from slmsql_cli.serve.service import (
    Cancelled,
    Event,
    Job,
    QueueFull,
    RequestTimeout,
    Service,
    ShuttingDown,
    TooLarge,
    UnknownConversation,
    answer_document,
)

STATIC_DIR = Path(__file__).parent / "static"
# The web app's scripts are ES modules, which a browser runs only when served as JavaScript; some
# systems' MIME tables (the Windows registry among them) map .js to text/plain.
mimetypes.add_type("text/javascript", ".js")
SHUTDOWN_GRACE = 5  # seconds the running question may go on after SIGTERM before it is cancelled


class _Body(BaseModel):
    """A JSON body: every text in it must be valid Unicode. JSON's `\\ud800` escapes decode to a
    lone surrogate, which no database, prompt or log line can hold: 400, whatever the route."""

    @field_validator("*", mode="after")
    @classmethod
    def _no_lone_surrogate(cls, value: Any) -> Any:
        if isinstance(value, str) and _SURROGATE.search(value):
            raise PydanticCustomError(SURROGATE_ERROR, "holds a lone UTF-16 surrogate")
        return value


class TurnBody(_Body):
    question: str = Field(..., description="An earlier question of the conversation.")
    sql: str | None = Field(None, description="The SQL that answered it (null: it had no answer).")


class AskRequest(_Body):
    database: str | None = Field(
        None, description="A name from GET /v1/databases (optional with one database)."
    )
    question: str = Field(..., description="The question in plain language.")
    evidence: str = Field("", description="Optional hints (BIRD's 'evidence'), e.g. what a term means.")
    stream: bool = Field(False, description="Answer with server-sent events: progress, then the answer.")
    fresh: bool = Field(False, description="Ask the model even when the question has a saved answer.")
    turns: list[TurnBody] = Field(
        default_factory=list,
        description=f"A follow-up: the earlier questions and their SQL, oldest first (at most {MAX_TURNS}).",
    )
    conversation: str | None = Field(
        None,
        description="A follow-up of the conversation an earlier answer named (its `conversation`), "
        "instead of `turns`; kept by the server in memory.",
    )


class SaveRequest(_Body):
    database: str | None = Field(None, description="A name from GET /v1/databases.")
    question: str = Field(..., description="The question the SQL answers.")
    evidence: str = Field("", description="The evidence asked with it, if any.")
    sql: str = Field(..., description="The SQL to keep for the question (one read-only statement).")


class SqlRequest(_Body):
    database: str = Field(..., description="A name from GET /v1/databases.")
    sql: str = Field(..., description="One read-only query in SQLite SQL (SELECT, WITH … SELECT, VALUES).")


def create_app(
    service: Service,
    *,
    token: str | None = None,
    log: RequestLog | None = None,
    guard: Guard | None = None,
) -> FastAPI:
    """The ASGI app: API routes, OpenAPI docs and the static web app, behind guard.py's checks
    (body limit, token), with one log line per request.

    `guard` checks Host and Origin (`Guard.for_server`; `serve` always passes one). Without it
    (an in-process test client) nothing is checked but the JSON Content-Type of POSTs."""
    log = log or RequestLog()
    app = FastAPIOffline(
        title="slmsql",
        version=__version__,
        description="Plain-language questions to SQL, answered by a small local Text-to-SQL model.",
    )
    auth = [Depends(token_check(token))]

    @app.post("/v1/ask", dependencies=auth, summary="Answer a question (the document of `ask --json`)")
    async def ask(body: AskRequest, request: Request) -> Any:
        _note(request, database=body.database)
        loop = asyncio.get_running_loop()
        events: asyncio.Queue[Event] = asyncio.Queue()

        def emit(event: Event) -> None:  # from the model thread
            with contextlib.suppress(RuntimeError):  # the loop is gone: nobody is listening
                loop.call_soon_threadsafe(events.put_nowait, event)

        job = service.ask(
            body.database,
            body.question,
            body.evidence,
            emit if body.stream else None,
            fresh=body.fresh,
            turns=[Turn(t.question, t.sql) for t in body.turns],
            conversation=body.conversation,
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
        return answer_document(job, answer)

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
    return _LogRequests(guarded(app, guard), log)  # type: ignore[return-value]


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
            yield _sse({"event": "answer", **answer_document(job, answer)})
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


def check_text(**texts: str | None) -> None:
    """A UserError (400) for text that cannot be encoded (a path parameter; bodies are `_Body`s)."""
    for what, text in texts.items():
        if text is not None and _SURROGATE.search(text):
            raise _surrogate_error(what)


def _surrogate_error(what: str) -> UserError:
    return UserError(
        f"the {what} holds a lone UTF-16 surrogate (a \\ud800-\\udfff escape without its pair)",
        "send text that is valid Unicode",
    )


_SURROGATE = re.compile("[\ud800-\udfff]")
SURROGATE_ERROR = "lone_surrogate"


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
    if isinstance(exc, Unauthorized):
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
        not_found = isinstance(exc, UnknownDatabase | UnknownConversation)
        status = 404 if not_found else 413 if isinstance(exc, TooLarge) else 400
        return status, {"error": exc.message, "hint": exc.hint}, {}
    raise exc


def _add_error_handlers(app: FastAPI) -> None:
    async def handle(request: Request, exc: Exception) -> JSONResponse:
        status, doc, headers = _error_response(exc)
        _note(request, outcome=f"error {status}", error=doc["error"])
        return JSONResponse(doc, status_code=status, headers=headers)

    for kind in (Unauthorized, QueueFull, ShuttingDown, Cancelled, RequestTimeout, UserError):
        app.add_exception_handler(kind, handle)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # Starlette's own errors (no such route, wrong method) in the same {"error"} shape
        _note(request, outcome=f"error {exc.status_code}")
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def bug(request: Request, exc: Exception) -> JSONResponse:
        # a bug: the client gets JSON, and the traceback goes to the log (uvicorn logs it as
        # the exception leaves the app, through requestlog.LogLines)
        _note(request, outcome="error 500", error=f"{type(exc).__name__}: {exc}")
        doc = {"error": "internal error in slmsql serve", "hint": "the server's log says more"}
        return JSONResponse(doc, status_code=500)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        surrogate = next((e for e in errors if e.get("type") == SURROGATE_ERROR), None)
        if surrogate is not None:
            error = _surrogate_error(".".join(str(p) for p in surrogate.get("loc", ())[1:]) or "body")
            doc = {"error": error.message, "hint": error.hint or ""}
            status = 400
        elif any(e.get("type") == "json_invalid" for e in errors):
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


# ---- the request log ------------------------------------------------------------------------------


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
    counting surrounding spaces), all printable ASCII (a client sends it in an HTTP header, which
    carries no other text: any other token could never match); a taken port is a one-line
    UserError."""
    if token is not None and not (token.isascii() and token.isprintable()):
        raise UserError(
            "--token must be printable ASCII (letters, digits, punctuation): "
            "a client sends it in an HTTP header, so any other character could never match",
            "make one with: python -c 'import secrets; print(secrets.token_urlsafe(24))'",
        )
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


def serve(app: Any, sock: socket.socket, service: Service, log: RequestLog | None = None) -> None:
    """Serve until SIGINT or SIGTERM. On SIGTERM the waiting questions are answered 503 at once;
    the running question and queries get SHUTDOWN_GRACE seconds (at most half the request
    timeout) to finish, then they are cancelled, queries included (their clients get 503, or an
    `error` event), and the process exits 0 within --request-timeout: uvicorn re-raises the
    signal it caught after shutting down, into the no-op handler installed here.

    uvicorn's own log lines (warnings, a traceback) go through `log` as well (`route_server_logs`):
    with --json-logs every line on stderr is JSON."""
    import signal

    import uvicorn

    grace = min(SHUTDOWN_GRACE, service.request_timeout / 2)

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            super().handle_exit(sig, frame)
            service.stop(grace)

    route_server_logs(log or RequestLog())
    config = uvicorn.Config(
        app,
        log_config=None,  # route_server_logs configured uvicorn's loggers
        log_level="warning",
        access_log=False,  # _LogRequests writes the one line per request
        # a backstop: once cancelled, requests end in a moment
        timeout_graceful_shutdown=max(1, math.floor(min(grace + 30, service.request_timeout))),
        lifespan="off",
    )
    previous = signal.signal(signal.SIGTERM, lambda _sig, _frame: None)
    try:
        Server(config).run(sockets=[sock])
    finally:
        signal.signal(signal.SIGTERM, previous)

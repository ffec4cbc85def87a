"""`slmsql serve --mcp`: the service as MCP tools over stdio, with the official MCP Python SDK.

Tools: `ask`, `list_databases`, `describe_database`, `run_sql`. Each returns a JSON object (MCP
structured content); a failure (unknown database, a busy server, a refused or failing query) is a
tool error whose text says why, so the assistant can correct itself. The `ask` answer is
`ask --json`'s document without the candidates' completion text.

The transport (`run_stdio`) is slmsql's own, not the SDK's `stdio_server`, which reads each line
whole (one 300 MB line took the server to 3.35 GB), drops a line it cannot parse, and takes JSON
with an `id` it cannot use (an object, a float, a bool) for a notification, which gets no reply.
Here stdin is read in bounded chunks and every line gets a JSON-RPC 2.0 answer or goes to the
server as a message:

* a line over MAX_MESSAGE_BYTES is dropped as it streams in, up to its newline: -32600;
* a line that is not JSON (nor UTF-8): -32700;
* JSON that is not a request, a notification or a response MCP takes (`"hello"`, `null`, an
  `id` that is not a string or an integer, `params` that is not an object, a string holding a
  lone surrogate (`"\\ud800"`: valid JSON to Python, refused by the SDK's parser)): -32600, with
  the request's id when it has a usable one, else `id: null`;
* a blank line is skipped.

Like the SDK's transport, it reads and writes private copies of file descriptors 0 and 1 while
it serves, and points 0 at /dev/null and 1 at stderr meanwhile, so that a child process or a
stray print can neither read nor write the protocol stream.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, BinaryIO, cast

import anyio
import anyio.to_thread
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from slmsql_cli import __version__
from slmsql_cli.conversation import Turn
from slmsql_cli.errors import UserError
from slmsql_cli.serve.requestlog import RequestLog, answer_fields, route_server_logs
from slmsql_cli.serve.service import (
    Cancelled,
    QueueFull,
    RequestTimeout,
    Service,
    ShuttingDown,
    answer_document,
)

INSTRUCTIONS = (
    "Answers questions about the databases (SQLite, DuckDB, PostgreSQL) this server was started with, using a small local "
    "Text-to-SQL model. Call list_databases first, describe_database to see a schema, ask for a "
    "plain-language question, and run_sql to check or refine a query (read-only)."
)


class PreviousTurn(BaseModel):
    """An earlier turn of the conversation, for `ask`'s `turns`."""

    question: str = Field(description="An earlier question.")
    sql: str | None = Field(None, description="The SQL that answered it (null: no answer).")


def build(service: Service, log: RequestLog) -> MCPServer:
    """The MCP server with slmsql's four tools bound to `service`."""
    server = MCPServer("slmsql", version=__version__, instructions=INSTRUCTIONS, log_level="WARNING")

    async def logged(
        tool: str, database: str | None, call: Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
    ) -> dict[str, Any]:
        fields: dict[str, Any] = {"tool": tool, "database": database}
        start = time.perf_counter()
        try:
            doc = await call(fields)
        except (UserError, QueueFull, ShuttingDown, Cancelled, RequestTimeout) as exc:
            fields["outcome"] = f"error: {exc}"
            raise ToolError(str(exc)) from None
        finally:
            log.write(**fields, seconds=time.perf_counter() - start)
        return doc

    @server.tool()
    async def ask(
        question: str,
        database: str | None = None,
        evidence: str = "",
        save: bool = False,
        turns: list[PreviousTurn] | None = None,
        conversation: str | None = None,
    ) -> dict[str, Any]:
        """Answer a question in plain language about one database: the SQL the model wrote, the
        result's columns and rows, how many of the sampled candidates agreed (votes), the SQL
        explained in sentences (explanation) and how sure the answer is (confidence, with flags).
        `database` is a name from list_databases (optional when there is only one); `evidence`
        is an optional hint such as what a term means. `save` keeps the question and its SQL:
        asked again exactly, it is answered from them without the model (saved_answer).
        A follow-up ("only the rock ones") passes the earlier `turns` (questions and their SQL,
        oldest first, at most 8) or the `conversation` id an earlier answer returned; the
        answer's `context` says which earlier turns the model read."""

        async def call(fields: dict[str, Any]) -> dict[str, Any]:
            earlier = [Turn(t.question, t.sql) for t in turns or []]
            job = service.ask(database, question, evidence, turns=earlier, conversation=conversation)
            answer = await service.wait(job)
            fields.update(queue_s=job.queue_seconds, run_s=job.run_seconds, **answer_fields(answer))
            doc = answer_document(job, answer, texts=False)
            if save and answer.saved_id is None:
                note = await run_in_threadpool(service.keep, database, question, evidence, answer)
                doc["notes"] = [*doc["notes"], note]
            return doc

        return await logged("ask", database, call)

    @server.tool()
    async def list_databases() -> dict[str, Any]:
        """The databases this server may query: their names (use them in the other tools) and tables."""

        async def call(_fields: dict[str, Any]) -> dict[str, Any]:
            return {"databases": service.databases()}

        return await logged("list_databases", None, call)

    @server.tool()
    async def describe_database(database: str) -> dict[str, Any]:
        """The schema of one database as the model sees it: CREATE TABLE statements with column
        comments and example values."""

        async def call(_fields: dict[str, Any]) -> dict[str, Any]:
            return service.describe(database)

        return await logged("describe_database", database, call)

    @server.tool()
    async def run_sql(database: str, sql: str) -> dict[str, Any]:
        """Run one read-only SQLite SQL query (SELECT, WITH … SELECT, VALUES) on a database and return
        its columns and rows. Writes and several statements are refused; a time limit applies."""

        async def call(fields: dict[str, Any]) -> dict[str, Any]:
            doc = await run_in_threadpool(service.run_sql, database, sql)
            if doc["error"] or doc["timed_out"]:
                why = doc["error"] or "the query ran past its time limit"
                fields["outcome"] = f"refused: {why}"
                raise ToolError(f"the query did not run: {why}")
            fields.update(outcome="ok", rows=doc["row_count"])
            return doc

        return await logged("run_sql", database, call)

    return server


def serve(service: Service, log: RequestLog) -> None:
    """Answer MCP requests on stdin/stdout until the client closes stdin."""
    log.say(f"MCP over stdio: {len(service.registry.names())} database(s), model {service.model_name}")
    server = build(service, log)
    route_server_logs(log)  # after build: the SDK's own logging setup must not take the SDK's lines
    anyio.run(run_stdio, server, log)


MAX_MESSAGE_BYTES = 1024 * 1024  # one JSON-RPC message (a line); a tool call is far smaller
CHUNK_BYTES = 64 * 1024  # read from stdin at a time


async def run_stdio(
    server: MCPServer,
    log: RequestLog,
    stdin: BinaryIO | None = None,
    stdout: BinaryIO | None = None,
    limit: int = MAX_MESSAGE_BYTES,
) -> None:
    """Serve MCP over newline-delimited JSON-RPC (the module docstring) until stdin ends.
    `stdin`/`stdout` (binary files; `stdin` with `read1`) replace the process's own.
    Deviation: reaches the SDK's low-level server (`_lowlevel_server`) as its own `run_stdio_async` does."""
    with contextlib.ExitStack() as claims:
        wire_in = stdin if stdin is not None else claims.enter_context(_claimed(0, "rb"))
        wire_out = stdout if stdout is not None else claims.enter_context(_claimed(1, "wb"))
        await _serve_lines(server, log, wire_in, wire_out, limit)


async def _serve_lines(
    server: MCPServer, log: RequestLog, stdin: BinaryIO, stdout: BinaryIO, limit: int
) -> None:
    from mcp.shared._context_streams import create_context_streams
    from mcp.shared.message import SessionMessage

    lowlevel = server._lowlevel_server
    to_server, from_client = create_context_streams[SessionMessage | Exception](0)
    to_client, replies = create_context_streams[SessionMessage](0)

    async def write() -> None:
        async with replies:
            async for reply in replies:
                data = reply.message.model_dump_json(by_alias=True, exclude_unset=True).encode() + b"\n"
                await anyio.to_thread.run_sync(_write, stdout, data, abandon_on_cancel=True)

    async def read() -> None:
        answers = to_client.clone()  # the server closes its own when it stops
        async with to_server, answers:
            async for line in _lines(stdin, limit):
                if line is not None and not line.strip():
                    continue
                try:
                    message = read_message(line, limit)
                except InvalidMessage as exc:
                    log.write(tool=None, outcome=f"error {exc.code}: {exc.message}")
                    await answers.send(SessionMessage(exc.reply()))
                else:
                    await to_server.send(SessionMessage(message))

    async with anyio.create_task_group() as group:
        group.start_soon(write)
        group.start_soon(read)
        await lowlevel.run(from_client, to_client, lowlevel.create_initialization_options())


def _write(stdout: BinaryIO, data: bytes) -> None:
    stdout.write(data)
    stdout.flush()


async def _lines(stdin: BinaryIO, limit: int) -> AsyncIterator[bytes | None]:
    """The lines of `stdin`, without their newline, read CHUNK_BYTES at a time; a line over
    `limit` bytes is dropped as it comes in (never held whole) and yields None instead."""
    pending = bytearray()
    dropping = False
    while chunk := await anyio.to_thread.run_sync(_read, stdin, abandon_on_cancel=True):
        start = 0
        while (end := chunk.find(b"\n", start)) >= 0:
            piece = chunk[start:end]
            if dropping or len(pending) + len(piece) > limit:
                yield None
            else:
                pending += piece
                yield bytes(pending)
            pending.clear()
            dropping = False
            start = end + 1
        if not dropping:
            pending += chunk[start:]
            if len(pending) > limit:
                pending.clear()
                dropping = True
    if dropping:
        yield None
    elif pending:
        yield bytes(pending)


def _read(stdin: BinaryIO) -> bytes:
    read1 = getattr(stdin, "read1", None)
    return read1(CHUNK_BYTES) if read1 is not None else stdin.read(CHUNK_BYTES)


@contextlib.contextmanager
def _claimed(fd: int, mode: str) -> Iterator[BinaryIO]:
    """Descriptor `fd` (0 or 1) as a private binary file while it serves; `fd` itself points at
    /dev/null (stdin) or at stderr (stdout) meanwhile and is restored after. The private copy
    is never closed: a reading thread may still wait on it (as in the SDK's transport)."""
    private = os.dup(fd)  # 0, 1 and 2 are open: the copy lands above them; not inherited
    diversion = os.open(os.devnull, os.O_RDONLY) if fd == 0 else os.dup(2)
    try:
        os.dup2(diversion, fd)
    finally:
        os.close(diversion)
    try:
        yield cast(BinaryIO, os.fdopen(private, mode, closefd=False))
    finally:
        os.dup2(private, fd)


class InvalidMessage(Exception):
    """A line that is not a JSON-RPC message MCP takes: the error to answer it with."""

    def __init__(self, code: int, message: str, request_id: int | str | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.request_id = code, message, request_id

    def reply(self) -> Any:
        from mcp_types import ErrorData, JSONRPCError

        return JSONRPCError(
            jsonrpc="2.0", id=self.request_id, error=ErrorData(code=self.code, message=self.message)
        )


PARSE_ERROR, INVALID_REQUEST = -32700, -32600


def read_message(line: bytes | None, limit: int = MAX_MESSAGE_BYTES) -> Any:
    """The JSON-RPC message on one line (as the SDK's parser reads it), or InvalidMessage; None
    stands for a line over `limit` bytes."""
    import json

    from mcp_types import jsonrpc_message_adapter
    from pydantic import ValidationError

    if line is None:
        raise InvalidMessage(
            INVALID_REQUEST, f"Invalid Request: the message is over this server's {limit:,}-byte limit"
        )
    try:
        message = json.loads(line.decode("utf-8"), parse_constant=_no_constant)
    except RecursionError:
        raise InvalidMessage(INVALID_REQUEST, "Invalid Request: nested too deeply") from None
    except ValueError:  # not UTF-8, not JSON, NaN or Infinity, an integer of over 4300 digits
        raise InvalidMessage(PARSE_ERROR, "Parse error") from None
    request_id, why = framing(message)
    if why is not None:
        raise InvalidMessage(INVALID_REQUEST, f"Invalid Request: {why}", request_id)
    try:
        return jsonrpc_message_adapter.validate_json(line, by_name=False)
    except ValidationError:
        raise InvalidMessage(
            INVALID_REQUEST, "Invalid Request: not a JSON-RPC 2.0 message MCP takes", request_id
        ) from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def framing(message: Any) -> tuple[int | str | None, str | None]:
    """(the id to answer with, why `message` is not a JSON-RPC 2.0 message; None when it is one).
    The id is the message's own when it is a string (valid Unicode) or an integer, else None."""
    if not isinstance(message, dict):
        return None, "a message is a JSON object"
    has_id = "id" in message
    found = message.get("id")
    usable = isinstance(found, int | str) and not isinstance(found, bool)
    request_id = found if usable and not _has_surrogate(found) else None
    if has_id and not usable:
        return None, "the id must be a string or an integer"
    if message.get("jsonrpc") != "2.0":
        return request_id, '"jsonrpc" must be "2.0"'
    if "method" in message:
        if not isinstance(message["method"], str):
            return request_id, "the method must be a string"
        if message.get("params") is not None and not isinstance(message["params"], dict):
            return request_id, "params must be an object"
    elif not has_id or ("result" in message) == ("error" in message):
        return request_id, "neither a request, a notification nor a response"
    if _has_surrogate(message):
        return request_id, "a string holds a lone UTF-16 surrogate"
    return request_id, None


def _has_surrogate(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if any("\ud800" <= c <= "\udfff" for c in item):
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False

"""`slmsql serve --mcp`: the service as MCP tools over stdio, with the official MCP Python SDK.

Tools: `ask`, `list_databases`, `describe_database`, `run_sql`. Each returns a JSON object (MCP
structured content); a failure (unknown database, a busy server, a refused or failing query) is a
tool error whose text says why, so the assistant can correct itself. The `ask` answer is
`ask --json`'s document without the candidates' completion text.

The transport edge (`serve`): the SDK's stdio transport hands a line it cannot parse to the
server as an exception, which the server drops, so the client would wait for its own timeout.
Here such a line gets its JSON-RPC error at once: -32700 for a line that is not JSON, -32600
(with the request's id) for JSON that is not a valid message, which includes a string holding a
lone surrogate (`"\\ud800"`: valid JSON to Python, refused by the SDK's parser).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from starlette.concurrency import run_in_threadpool

from slmsql_cli import __version__
from slmsql_cli.errors import UserError
from slmsql_cli.render import answer_dict
from slmsql_cli.serve.requestlog import RequestLog, answer_fields
from slmsql_cli.serve.service import Cancelled, QueueFull, RequestTimeout, Service, ShuttingDown

INSTRUCTIONS = (
    "Answers questions about the databases (SQLite, DuckDB, PostgreSQL) this server was started with, using a small local "
    "Text-to-SQL model. Call list_databases first, describe_database to see a schema, ask for a "
    "plain-language question, and run_sql to check or refine a query (read-only)."
)


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
        question: str, database: str | None = None, evidence: str = "", save: bool = False
    ) -> dict[str, Any]:
        """Answer a question in plain language about one database: the SQL the model wrote, the
        result's columns and rows, how many of the sampled candidates agreed (votes), the SQL
        explained in sentences (explanation) and how sure the answer is (confidence, with flags).
        `database` is a name from list_databases (optional when there is only one); `evidence`
        is an optional hint such as what a term means. `save` keeps the question and its SQL:
        asked again exactly, it is answered from them without the model (saved_answer)."""

        async def call(fields: dict[str, Any]) -> dict[str, Any]:
            job = service.ask(database, question, evidence)
            answer = await service.wait(job)
            fields.update(queue_s=job.queue_seconds, run_s=job.run_seconds, **answer_fields(answer))
            doc = answer_dict(answer, texts=False)
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
    anyio.run(run_stdio, build(service, log), log)


async def run_stdio(server: MCPServer, log: RequestLog, stdin: Any = None, stdout: Any = None) -> None:
    """`MCPServer.run("stdio")` with every unparsable line answered (see the module docstring);
    `stdin`/`stdout` (anyio async text files) replace the process's own, as in the SDK.
    Deviation: reaches the SDK's low-level server (`_lowlevel_server`) as its own `run_stdio_async` does."""
    from mcp.server.stdio import stdio_server
    from mcp.shared._context_streams import create_context_streams
    from mcp.shared.message import SessionMessage

    lowlevel = server._lowlevel_server
    async with stdio_server(stdin, stdout) as (read_stream, write_stream):
        send, receive = create_context_streams[SessionMessage | Exception](0)

        async def forward() -> None:
            async with send:
                async for item in read_stream:
                    if isinstance(item, Exception):
                        error = protocol_error(item)
                        log.write(tool=None, outcome=f"error {error.error.code}: {error.error.message}")
                        await write_stream.send(SessionMessage(error))
                    else:
                        await send.send(item)

        async with anyio.create_task_group() as group:
            group.start_soon(forward)
            await lowlevel.run(receive, write_stream, lowlevel.create_initialization_options())


def protocol_error(exc: Exception) -> Any:
    """The JSON-RPC error for a line the transport could not read as a message."""
    import json

    from mcp_types import ErrorData, JSONRPCError
    from pydantic import ValidationError

    given: Any = None
    if isinstance(exc, ValidationError) and exc.errors():
        given = exc.errors()[0].get("input")  # the line, or what it parsed to
    unreadable = object()
    request: Any = unreadable
    if isinstance(given, str | bytes):
        try:
            request = json.loads(given)
        except (ValueError, RecursionError):
            pass
    elif given is not None:
        request = given
    if request is unreadable:
        return JSONRPCError(jsonrpc="2.0", id=None, error=ErrorData(code=-32700, message="Parse error"))
    found = request.get("id") if isinstance(request, dict) else None
    request_id = found if isinstance(found, int | str) and not isinstance(found, bool) else None
    if isinstance(request_id, str) and _has_surrogate(request_id):
        request_id = None
    why = (
        "a string holds a lone UTF-16 surrogate" if _has_surrogate(request) else "not a JSON-RPC 2.0 message"
    )
    return JSONRPCError(
        jsonrpc="2.0", id=request_id, error=ErrorData(code=-32600, message=f"Invalid Request: {why}")
    )


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

"""`slmsql serve`: one loaded model for many clients, over MCP (stdio) or a local HTTP API."""

from __future__ import annotations

import time

import typer
from rich.markup import escape

from slmsql_cli.cli import options as opt
from slmsql_cli.cli.app import app
from slmsql_cli.cli.common import err, load_pipeline, user_errors
from slmsql_cli.config import AskConfig, ModelSource

SERVER = "Server"


@app.command("serve")
@user_errors
@opt.ask_options()
def serve(
    *,
    db: opt.ServeDb,
    mcp: bool = typer.Option(
        False,
        "--mcp",
        metavar="",
        help="Speak MCP over stdin/stdout (AI assistants, editors).",
        rich_help_panel=SERVER,
    ),
    http: bool = typer.Option(
        False,
        "--http",
        metavar="",
        help="Serve the HTTP API, its docs (/docs) and the web app (/).",
        rich_help_panel=SERVER,
    ),
    host: str = typer.Option(
        "127.0.0.1",
        "--host",
        metavar="ADDRESS",
        show_default=False,
        help="Address to listen on (default 127.0.0.1); another needs --token.",
        rich_help_panel=SERVER,
    ),
    port: int = typer.Option(
        8000,
        "--port",
        callback=opt.bounded(0, 65535),
        metavar="PORT",
        show_default=False,
        help="Port to listen on (default 8000); 0 picks a free one.",
        rich_help_panel=SERVER,
    ),
    token: str | None = typer.Option(
        None,
        "--token",
        envvar="SLMSQL_TOKEN",
        metavar="TOKEN",
        help="Require 'Authorization: Bearer TOKEN' on every API route; at least 16 characters.",
        rich_help_panel=SERVER,
    ),
    allow_origin: list[str] = typer.Option(
        [],
        "--allow-origin",
        metavar="ORIGIN",
        show_default=False,
        help="A web origin (e.g. http://localhost:3000) whose pages may call the API. Repeatable.",
        rich_help_panel=SERVER,
    ),
    queue: int = typer.Option(
        8,
        "--queue",
        callback=opt.bounded(1, 1024),
        metavar="N",
        show_default=False,
        help="Questions that may wait for the model (default 8); more get 503.",
        rich_help_panel=SERVER,
    ),
    max_queries: int = typer.Option(
        4,
        "--max-queries",
        callback=opt.bounded(1, 64),
        metavar="N",
        show_default=False,
        help="SQL queries that may run at once across the server, on any engine (default 4; a "
        "SQLite query runs in a worker process of up to 2 GiB); more wait, up to --timeout, then get 503.",
        rich_help_panel=SERVER,
    ),
    request_timeout: float = typer.Option(
        300.0,
        "--request-timeout",
        callback=opt.bounded(1.0),
        metavar="SECONDS",
        show_default=False,
        help="Seconds a question may wait and run (default 300).",
        rich_help_panel=SERVER,
    ),
    json_logs: bool = typer.Option(
        False,
        "--json-logs",
        metavar="",
        help="Log one JSON object per request (default: key=value words).",
        rich_help_panel=SERVER,
    ),
    source: ModelSource,
    config: AskConfig,
    import_timeout: opt.ImportTimeout = opt.IMPORT_TIMEOUT,
) -> None:
    """Keep the model loaded and answer questions from MCP clients or over HTTP.

    One model serves every client; questions run one at a time (a bounded queue waits in front),
    and the schema part of the prompt stays cached, so a second question on the same database
    evaluates only what differs. ask's model and sampling options are the server's settings.
    The log (stderr) has one line per request.

    Examples:

      slmsql serve --mcp -d shop=shop.sqlite
      slmsql serve --http -d books=slmsql_cli/data/bookshop.sqlite --port 8000
      curl -s localhost:8000/v1/ask \\
          --json '{"database": "books", "question": "How many books are there?"}'
    """
    from slmsql_cli.errors import UserError
    from slmsql_cli.serve import require_extra
    from slmsql_cli.serve.registry import Registry
    from slmsql_cli.serve.requestlog import RequestLog
    from slmsql_cli.serve.service import Service

    if mcp == http:
        raise UserError("choose one of --mcp and --http", "slmsql serve --http --db NAME=PATH")
    front = "mcp" if mcp else "http"
    require_extra(front)
    log = RequestLog(json_lines=json_logs)

    def say(message: str) -> None:
        """The command's own lines (loading, listening, stopped): with --json-logs JSON lines as
        well (event "server"), so that a log reader meets nothing else once the server starts."""
        if json_logs:
            log.say(message)
        else:
            err.print(escape(message), highlight=False)

    if http:
        from slmsql_cli.serve import http as http_front
        from slmsql_cli.serve.guard import Guard, check_origin

        origins = [check_origin(o) for o in allow_origin]
        sock = http_front.listen(host, port, token)
        guard = Guard.for_server(host, sock.getsockname()[1], origins)
    registry = Registry.open(db)
    start = time.perf_counter()
    pipeline = load_pipeline(source.model, source.merge_model, config, say=log.say if json_logs else None)
    service = Service(
        pipeline,
        registry,
        model_name=pipeline.engine.path.name,
        load_seconds=time.perf_counter() - start,
        queue_size=queue,
        request_timeout=request_timeout,
        max_queries=max_queries,
    )
    try:
        if http:
            say(http_front.banner(sock, service, token))
            http_front.serve(
                http_front.create_app(service, token=token, log=log, guard=guard), sock, service, log
            )
        else:
            from slmsql_cli.serve import mcp_server

            mcp_server.serve(service, log)
    finally:
        service.close()
    say("slmsql serve: stopped")

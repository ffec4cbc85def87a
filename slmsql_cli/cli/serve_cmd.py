"""`slmsql serve`: one loaded model for many clients, over MCP (stdio) or a local HTTP API."""

from __future__ import annotations

import time

import typer
from rich.markup import escape

from quantize import cached_gguf
from slmsql_cli.cli import app
from slmsql_cli.cli import options as opt
from slmsql_cli.cli.common import err, user_errors


@app.command("serve")
@user_errors
def serve(
    ctx: typer.Context,
    db: list[str] = typer.Option(
        ...,
        "--db",
        "-d",
        help="A database to serve, as NAME=PATH or PATH (named after the file). Repeat for several; clients name them, never paths.",
    ),
    mcp: bool = typer.Option(
        False, "--mcp", help="Speak MCP over stdin/stdout (for AI assistants and editors)."
    ),
    http: bool = typer.Option(
        False, "--http", help="Serve the HTTP API, its docs (/docs) and the web app (/)."
    ),
    host: str = typer.Option(
        "127.0.0.1", "--host", help="Address to listen on (--http). Not loopback: --token is required."
    ),
    port: int = typer.Option(
        8000, "--port", min=0, max=65535, help="Port to listen on (--http); 0 picks a free one."
    ),
    token: str | None = typer.Option(
        None,
        "--token",
        envvar="SLMSQL_TOKEN",
        help="Require 'Authorization: Bearer TOKEN' on every API route (--http).",
    ),
    queue: int = typer.Option(
        8,
        "--queue",
        min=1,
        max=1024,
        help="Questions that may wait for the model; more get 503 and Retry-After.",
    ),
    request_timeout: float = typer.Option(
        300.0,
        "--request-timeout",
        min=1.0,
        callback=opt.finite,
        help="Seconds a question may wait and run before it is cancelled.",
    ),
    json_logs: bool = typer.Option(
        False, "--json-logs", help="Log one JSON object per request (default: key=value words)."
    ),
    model: opt.Model = None,
    merge_model: opt.MergeModel = None,
    no_merge: opt.NoMerge = False,
    n: opt.Samples = opt.DEFAULTS.n,
    merge_n: opt.MergeSamples = opt.DEFAULTS.merge_n,
    temperature: opt.Temperature = opt.DEFAULTS.temperature,
    max_tokens: opt.MaxTokens = opt.DEFAULTS.max_tokens,
    seed: opt.Seed = opt.DEFAULTS.seed,
    threads: opt.Threads = None,
    gpu_layers: opt.GpuLayers = None,
    context: opt.Context = None,
    prompt_budget: opt.PromptBudget = opt.DEFAULTS.prompt_budget,
    timeout: opt.Timeout = opt.DEFAULTS.timeout,
    no_values: opt.NoValues = False,
    no_prompt_cache: opt.NoPromptCache = False,
    endpoint: opt.Endpoint = None,
    served_model: opt.ServedModel = None,
    merge_endpoint: opt.MergeEndpoint = None,
    merge_served_model: opt.MergeServedModel = None,
    endpoint_timeout: opt.EndpointTimeout = None,
) -> None:
    """Keep the model loaded and answer questions from MCP clients or over HTTP.

    One model serves every client; questions run one at a time (a bounded queue waits in front),
    and the schema part of the prompt stays cached, so a second question on the same database
    evaluates only what differs. ask's model and sampling options are the server's settings.
    The log (stderr) has one line per request.

    Examples:

      slmsql serve --mcp --db shop=shop.sqlite

      slmsql serve --http --db sales=shop.sqlite --db music=chinook.sqlite --port 8000

      curl -s localhost:8000/v1/ask -d '{"database": "sales", "question": "How many orders?"}'
    """
    from slmsql_cli.errors import UserError
    from slmsql_cli.pipeline import Pipeline
    from slmsql_cli.serve import require_extra
    from slmsql_cli.serve.registry import Registry
    from slmsql_cli.serve.requestlog import RequestLog
    from slmsql_cli.serve.service import Service

    if mcp == http:
        raise UserError("choose one of --mcp and --http", "slmsql serve --http --db NAME=PATH")
    front = "mcp" if mcp else "http"
    require_extra(front)
    log = RequestLog(json_lines=json_logs)
    if http:
        from slmsql_cli.serve import http as http_front

        sock = http_front.listen(host, port, token)
    registry = Registry.open(db)
    config = opt.ask_config(ctx.params)
    start = time.perf_counter()
    with err.status("loading the model…") as status:
        pipeline = Pipeline.load(
            model, merge_model, config, progress=lambda m: status.update(m + "…"), export=cached_gguf
        )
    service = Service(
        pipeline,
        registry,
        model_name=pipeline.engine.path.name,
        load_seconds=time.perf_counter() - start,
        queue_size=queue,
        request_timeout=request_timeout,
    )
    try:
        if http:
            err.print(escape(http_front.banner(sock, service, token)), highlight=False)
            http_front.serve(http_front.create_app(service, token=token, log=log), sock, service)
        else:
            from slmsql_cli.serve import mcp_server

            mcp_server.serve(service, log)
    finally:
        service.close()
    err.print("slmsql serve: stopped", highlight=False)

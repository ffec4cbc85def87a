"""The core of `slmsql serve`: one loaded model, many clients, requests run one at a time.

Both front ends (`http.py`, `mcp_server.py`) call this module and nothing else of the pipeline:

* `Service.ask` puts a question on a bounded queue; one worker thread runs the queued jobs on the
  one `Pipeline`, in order. A full queue raises `QueueFull` (HTTP 503 with Retry-After). The
  engine keeps the last prompt in its KV cache, so a second question on the same database
  evaluates only the tokens after the shared schema prefix (`prompt_tokens_evaluated`).
* A job stops decoding between two tokens, or reading its prompt between two 512-token chunks,
  once it is cancelled (its client went away) or its deadline passed: the pipeline's `on_token`
  and `on_prompt` callbacks raise `Cancelled`.
* One cap, `max_queries` (`serve --max-queries`), bounds the queries running at once across the
  server on every engine: a SQLite query in its worker (each may use 2 GiB), a DuckDB query in
  its worker (320 MB), a PostgreSQL query on its database's one connection, waiting for it
  included: a query over it
  waits for one to finish, up to one query timeout, then the request gets 503 with Retry-After
  (QueriesBusy).
* A question may follow earlier ones (issue 29): the request carries its earlier turns (questions
  and their SQL, at most conversation.MAX_TURNS, each capped) or the id of a conversation the
  server keeps (`Conversations`: in memory, the MAX_CONVERSATIONS used last). Every answer names
  its conversation, so the next request can follow it by id alone; queued requests on one
  conversation run in order, each reading the turns when it runs.
* `run_sql` needs no model: it runs in the caller's thread through `Database.run`, the same door
  the model's candidates go through (read-only, deadline, row and size caps; transpiled for a
  DuckDB or PostgreSQL database), on the registered database only. Its deadline is the query
  timeout or the request timeout, whichever is shorter: no query outlives its request.
* Stopping (SIGTERM, `stop`): waiting jobs get ShuttingDown at once; after a grace period the
  running job is cancelled and so is every running query, on every engine (the worker pool's
  `cancel_all`: SQLite workers killed, DuckDB interrupted, PostgreSQL cancelled), and no new one
  starts; each client gets its answer or ShuttingDown, none waits for a query's own timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import queue
import secrets
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, InvalidStateError
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from slmsql_cli import saved
from slmsql_cli.answer import Answer, SamplingRound
from slmsql_cli.chart import chart_spec
from slmsql_cli.conversation import MAX_TURNS, Turn
from slmsql_cli.database import check_question
from slmsql_cli.errors import UserError
from slmsql_cli.explain import check_query, explain_sql
from slmsql_cli.pipeline import Pipeline
from slmsql_cli.prompt_builder import schema_block
from slmsql_cli.render import answer_dict, result_dict
from slmsql_cli.serve.registry import Registry
from slmsql_cli.targets import worker
from slmsql_cli.vote import candidate_dicts

MAX_QUESTION_CHARS = 4_000  # question and evidence each; longer is refused (HTTP 413)
MAX_TURN_SQL_CHARS = 8_000  # an earlier turn's SQL; its question is capped like a question
MAX_CONVERSATIONS = 256  # conversations kept in memory; the one used longest ago goes first
SQL_MAX_ROWS = 10_000  # rows run_sql returns; the result says when it was cut
MAX_QUERIES = 4  # queries (any engine; SQLite's in their own processes) running at once, server-wide
TOKEN_EVENT_EVERY = 16  # streaming: one "tokens" event per this many sampled tokens

Event = dict[str, Any]
Events = Callable[[Event], None]


class QueueFull(Exception):
    """Every queue slot is taken; try again after `retry_after` seconds."""

    def __init__(self, capacity: int, retry_after: int) -> None:
        super().__init__(f"the server is busy: {capacity} question(s) are already waiting")
        self.retry_after = retry_after


class QueriesBusy(QueueFull):
    """Every query worker the server may run (`--max-queries`) stayed busy; try again later."""

    def __init__(self, capacity: int, retry_after: int) -> None:
        Exception.__init__(self, f"the server is busy: all {capacity} query worker(s) are running")
        self.retry_after = retry_after


class ShuttingDown(Exception):
    """The server is stopping and takes no more questions."""


class Cancelled(Exception):
    """The job was stopped: its client went away, its deadline passed or the server is stopping."""


class RequestTimeout(Exception):
    """The request ran past the server's per-request timeout and was cancelled."""


class TooLarge(UserError):
    """A question, evidence or body over the server's size limit (HTTP 413)."""


class UnknownConversation(UserError):
    """A conversation id the server does not have (never made, or dropped: HTTP 404)."""


class Conversations:
    """The conversations the server keeps: id → (database, earlier turns), at most `capacity`,
    the one used longest ago dropped first, each holding its last MAX_TURNS turns. Ids are random
    (128 bits): one client cannot guess another's. Thread-safe (request threads and the model's)."""

    def __init__(self, capacity: int = MAX_CONVERSATIONS) -> None:
        self.capacity = capacity
        self._kept: OrderedDict[str, tuple[str, list[Turn]]] = OrderedDict()
        self._lock = threading.Lock()

    def start(self, database: str, turns: Sequence[Turn] = ()) -> str:
        """A new conversation on `database` after `turns`; its id."""
        cid = secrets.token_urlsafe(16)
        with self._lock:
            self._kept[cid] = (database, list(turns)[-MAX_TURNS:])
            while len(self._kept) > self.capacity:
                self._kept.popitem(last=False)
        return cid

    def turns(self, cid: str, database: str) -> list[Turn]:
        """The earlier turns of conversation `cid`, which must be about `database`."""
        with self._lock:
            found = self._kept.get(cid)
            if found is not None:
                self._kept.move_to_end(cid)
        if found is None:
            raise UnknownConversation(
                "no such conversation (it was never started here, or the server has let it go)",
                "ask without `conversation` to start one, or send the earlier `turns` themselves",
            )
        if found[0] != database:
            raise UserError(
                f"this conversation is about the database {found[0]}, not {database}",
                "ask without `conversation` to start one on this database",
            )
        return list(found[1])

    def add(self, cid: str, turn: Turn) -> None:
        """`turn` after the conversation's others (nothing when the server has let it go)."""
        with self._lock:
            found = self._kept.get(cid)
            if found is not None:
                found[1].append(turn)
                del found[1][:-MAX_TURNS]
                self._kept.move_to_end(cid)


def check_turns(turns: Sequence[Turn]) -> None:
    """A request's earlier turns: at most MAX_TURNS, each question a question within
    MAX_QUESTION_CHARS and each SQL within MAX_TURN_SQL_CHARS (TooLarge, or UserError)."""
    if len(turns) > MAX_TURNS:
        raise TooLarge(
            f"{len(turns)} earlier turns; this server takes at most {MAX_TURNS}",
            "send the latest ones: the prompt carries at most these anyway",
        )
    for number, turn in enumerate(turns, start=1):
        if len(turn.question) > MAX_QUESTION_CHARS:
            raise TooLarge(
                f"the question of turn {number} is {len(turn.question):,} characters; this server "
                f"takes at most {MAX_QUESTION_CHARS:,}",
                "shorten it",
            )
        if turn.sql is not None and len(turn.sql) > MAX_TURN_SQL_CHARS:
            raise TooLarge(
                f"the SQL of turn {number} is {len(turn.sql):,} characters; this server takes at "
                f"most {MAX_TURN_SQL_CHARS:,}",
                "send a shorter one, or none (null)",
            )
        try:
            check_question(turn.question)
        except UserError as exc:
            raise UserError(f"turn {number}: {exc.message}", exc.hint) from None


@dataclass
class Job:
    """One queued request: what to run, its deadline, and the future its client waits on."""

    run: Callable[[Job], Any]
    deadline: float  # time.monotonic()
    future: Future = field(default_factory=Future)
    queued_at: float = field(default_factory=time.monotonic)
    started_at: float | None = None
    finished_at: float | None = None
    reason: str = ""
    conversation: str | None = None  # the id an ask's answer continues (Conversations)
    _stop: threading.Event = field(default_factory=threading.Event)

    def cancel(self, reason: str) -> None:
        if not self._stop.is_set():
            self.reason = reason
            self._stop.set()

    def check(self) -> None:
        """Raise Cancelled when the job should stop (called between tokens)."""
        if not self._stop.is_set() and time.monotonic() > self.deadline:
            self.cancel("timeout")
        if self._stop.is_set():
            raise Cancelled(self.reason)

    @property
    def queue_seconds(self) -> float:
        return (self.started_at or time.monotonic()) - self.queued_at

    @property
    def run_seconds(self) -> float:
        if self.started_at is None:
            return 0.0
        return (self.finished_at or time.monotonic()) - self.started_at


class Service:
    """The databases, the loaded pipeline and the queue in front of it."""

    def __init__(
        self,
        pipeline: Pipeline,
        registry: Registry,
        *,
        model_name: str,
        load_seconds: float,
        queue_size: int = 8,
        request_timeout: float = 300.0,
        max_queries: int = MAX_QUERIES,
    ) -> None:
        self.pipeline = pipeline
        self.registry = registry
        self.model_name = model_name
        self.load_seconds = load_seconds
        self.queue_size = queue_size
        self.request_timeout = request_timeout
        self._queue: queue.Queue[Job | None] = queue.Queue(maxsize=queue_size)
        self._current: Job | None = None
        self._closing = False
        self._recent: deque[float] = deque(maxlen=20)  # run seconds of recent jobs: Retry-After
        self.conversations = Conversations()
        self._started = time.monotonic()
        # one cap on query workers for the whole server: run_sql from many clients and the model's
        # candidates together; a query over it waits up to one query timeout, then 503
        self.max_queries = max_queries
        worker.default_pool().limit(max_queries, busy_wait=pipeline.config.timeout)
        self._thread = threading.Thread(target=self._work, name="slmsql-model", daemon=True)
        self._thread.start()

    # ---- the queue -----------------------------------------------------------------------------
    def submit(self, run: Callable[[Job], Any]) -> Job:
        """Queue `run(job)` for the model thread; QueueFull or ShuttingDown when it cannot wait."""
        if self._closing:
            raise ShuttingDown("the server is shutting down")
        job = Job(run, deadline=time.monotonic() + self.request_timeout)
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            raise QueueFull(self.queue_size, self.retry_after()) from None
        return job

    def retry_after(self) -> int:
        """Seconds until a slot is likely free: the recent mean run time times the jobs ahead."""
        mean = sum(self._recent) / len(self._recent) if self._recent else 5.0
        return max(1, math.ceil(mean * (self._queue.qsize() + 1)))

    def _work(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            if not job.future.set_running_or_notify_cancel():
                continue  # its client gave up while it waited
            try:
                job.check()
                self._current = job
                job.started_at = time.monotonic()
                result = job.run(job)
            except BaseException as exc:  # handed to the waiting client, never lost
                self._finished(job)
                with contextlib.suppress(InvalidStateError):  # stop() answered it already
                    job.future.set_exception(exc)
            else:
                self._finished(job)
                with contextlib.suppress(InvalidStateError):
                    job.future.set_result(result)

    def _finished(self, job: Job) -> None:
        """Record the job's end before its client hears of it (its log line reads the times)."""
        self._current = None
        if job.started_at is not None:
            job.finished_at = time.monotonic()
            self._recent.append(job.run_seconds)

    async def wait(self, job: Job) -> Any:
        """The job's result, awaited from an event loop. Past the per-request timeout the job is
        cancelled and RequestTimeout raised; a cancelled waiter (client gone) cancels the job."""
        result = asyncio.wrap_future(job.future)
        # read once done, so that the outcome of a job nobody waits for any more is not reported
        # as "never retrieved"
        result.add_done_callback(lambda f: f.cancelled() or f.exception())
        try:
            return await asyncio.wait_for(asyncio.shield(result), max(job.deadline - time.monotonic(), 0))
        except TimeoutError:
            job.cancel("timeout")
            raise RequestTimeout(f"no answer within the server's {self.request_timeout:g}s limit") from None
        except asyncio.CancelledError:
            job.cancel("client disconnected")
            job.future.cancel()  # still queued: skipped; already running: stops at the next token
            raise

    def stop(self, grace: float) -> None:
        """Begin shutting down (SIGTERM): refuse new jobs and drop the waiting ones now; the
        running one and the running queries may finish within `grace` seconds, then they are
        cancelled (`_cancel_running`). Each client gets its answer or a clean "shutting down"
        error at once, not when a cancelled query or decode notices."""
        self._closing = True
        self._drop_waiting()
        timer = threading.Timer(grace, self._cancel_running, kwargs={"answer": True})
        timer.daemon = True
        timer.start()

    def close(self) -> None:
        """Refuse new jobs, cancel the waiting and the running ones, stop the thread, free the model."""
        self._closing = True
        self._drop_waiting()
        self._cancel_running()
        self._queue.put(None)
        self._thread.join()
        worker.default_pool().limit(None)
        self.pipeline.close()

    def _drop_waiting(self) -> None:
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                return
            if job is not None:
                job.cancel("server shutting down")
                if job.future.set_running_or_notify_cancel():
                    job.future.set_exception(ShuttingDown("the server is shutting down"))

    def _cancel_running(self, answer: bool = False) -> None:
        """Cancel the running job and every running query (SQLite workers killed, DuckDB
        interrupted, PostgreSQL cancelled; no new one starts); with `answer`, its client gets
        ShuttingDown now rather than when the model thread notices."""
        current = self._current
        if current is not None:
            current.cancel("server shutting down")
            if answer:
                with contextlib.suppress(InvalidStateError):
                    current.future.set_exception(ShuttingDown("the server is shutting down"))
        worker.default_pool().cancel_all()

    # ---- what clients can ask ----------------------------------------------------------------
    def ask(
        self,
        database: str | None,
        question: str,
        evidence: str = "",
        events: Events | None = None,
        *,
        fresh: bool = False,
        turns: Sequence[Turn] = (),
        conversation: str | None = None,
    ) -> Job:
        """Check the request now (unknown database, empty or oversized question, earlier turns,
        conversation id), then queue it. The question follows `turns` or the turns of
        `conversation` (read when the job runs), not both; the job's `conversation` is the id
        that continues it (a new one without `conversation`). The job's result is the pipeline's
        Answer (a saved answer's for an exact repeat of a question asked alone, unless `fresh`);
        `events` gets progress as it happens."""
        entry = self.registry.get(database)
        for what, text in (("question", question), ("evidence", evidence)):
            if len(text) > MAX_QUESTION_CHARS:
                raise TooLarge(
                    f"the {what} is {len(text):,} characters; this server takes at most {MAX_QUESTION_CHARS:,}",
                    "shorten it",
                )
        check_question(question, evidence)
        check_turns(turns)
        if conversation is not None and turns:
            raise UserError(
                "a question follows either `turns` or a `conversation`, not both",
                "send the conversation's id alone: the server has its turns",
            )
        if conversation is not None:
            self.conversations.turns(conversation, entry.name)  # known, and about this database
            cid = conversation
        else:
            cid = self.conversations.start(entry.name, turns)
        emit = events or (lambda _event: None)

        def run(job: Job) -> Answer:
            tokens = [0]

            def on_token(_candidate: int) -> None:
                job.check()
                tokens[0] += 1
                if tokens[0] % TOKEN_EVENT_EVERY == 0:
                    emit({"event": "tokens", "generated": tokens[0]})

            def on_prompt(_read: int, _total: int, _cached: int) -> None:
                job.check()  # between two chunks of a long prompt: a cancelled job stops there

            def on_round(step: str, sampled: SamplingRound) -> None:
                emit({"event": "round", "step": step, **round_dict(sampled)})

            emit({"event": "started", "queue_seconds": round(job.queue_seconds, 3)})
            # a conversation's turns as they are now: with the answers to the requests queued before
            earlier = list(turns) if conversation is None else self.conversations.turns(cid, entry.name)
            model_only = fresh or bool(earlier)  # a saved answer stands alone: a follow-up is the model's
            found = saved.Lookup() if model_only else saved.lookup(entry.database, question, evidence)
            if found.answer is not None:
                self.conversations.add(cid, found.answer.turn)
                return found.answer
            with self._queries():
                answer = self.pipeline.ask(
                    entry.database,
                    question,
                    evidence,
                    progress=lambda message: emit({"event": "progress", "message": message}),
                    on_token=on_token,
                    on_prompt=on_prompt,
                    on_round=on_round,
                    turns=earlier,
                )
            answer.notes = found.notes
            self.conversations.add(cid, answer.turn)
            return answer

        job = self.submit(run)
        job.conversation = cid
        return job

    def run_sql(self, database: str, sql: str) -> dict[str, Any]:
        """A read-only query (SQLite SQL, as the model writes it) on the registered database; the
        result document (`error` set when the database or the guard refused it). Blocking: call
        it from a worker thread. The query stops at the query timeout or the request timeout,
        whichever comes first; one stopped because the server is stopping is ShuttingDown."""
        if self._closing:
            raise ShuttingDown("the server is shutting down")
        entry = self.registry.get(database)
        timeout = min(self.pipeline.config.timeout, self.request_timeout)
        with self._queries():
            result = entry.database.run(sql, timeout=timeout, max_rows=SQL_MAX_ROWS)
        if self._closing and (result.error or result.timed_out):
            raise ShuttingDown("the server is shutting down: the query was stopped")
        doc = result_dict(result)
        assert doc is not None
        spec = chart_spec(result)
        return {
            "database": entry.name,
            "sql": sql,
            **doc,
            "explanation": explain_sql(sql).text,
            "chart": spec.as_dict() if spec else None,
        }

    def save(self, database: str | None, question: str, sql: str, evidence: str = "") -> dict[str, Any]:
        """Keep `sql` as the answer to `question` (the web page's "Keep this answer"); the saved
        entry. The SQL is checked as `slmsql saved import` checks it. Blocking: a worker thread."""
        entry = self.registry.get(database)
        check_query(entry.database, sql)
        return {**saved.save(entry.database, question, sql, evidence).as_dict(), "database": entry.name}

    def keep(self, database: str | None, question: str, evidence: str, answer: Answer) -> str:
        """The MCP `ask` tool's `save`: keep the answer's SQL; the line that says what happened."""
        return saved.keep(self.registry.get(database).database, question, evidence, answer)

    @contextmanager
    def _queries(self) -> Iterator[None]:
        """Turn "every query worker stayed busy" into the documented 503 (QueriesBusy), and a
        query refused because the server is stopping into ShuttingDown."""
        try:
            yield
        except worker.PoolStopped:
            raise ShuttingDown("the server is shutting down") from None
        except worker.PoolBusy:
            raise QueriesBusy(self.max_queries, max(1, math.ceil(self.pipeline.config.timeout))) from None

    def describe(self, database: str) -> dict[str, Any]:
        """The schema as the model sees it: the prompt's "Database Schema" block with sample values."""
        entry = self.registry.get(database)
        return {**entry.summary(), "schema": schema_block(entry.database, {})}

    def databases(self) -> list[dict[str, Any]]:
        return [e.summary() for e in self.registry.entries()]

    def health(self) -> dict[str, Any]:
        return {
            "status": "stopping" if self._closing else "ok",
            "model": self.model_name,
            "model_load_seconds": round(self.load_seconds, 3),
            "queue_length": self._queue.qsize(),
            "queue_capacity": self.queue_size,
            "busy": self._current is not None,
            "databases": self.registry.names(),
            "uptime_seconds": round(time.monotonic() - self._started, 1),
        }


def answer_document(job: Job, answer: Answer, *, texts: bool = True) -> dict[str, Any]:
    """ask --json's document (`render.answer_dict`) and the id of the conversation it continues:
    the next question follows it with that `conversation`."""
    return {**answer_dict(answer, texts=texts), "conversation": job.conversation}


def round_dict(sampled: SamplingRound) -> dict[str, Any]:
    """A finished sampling round for a progress event: its candidates (no completion text) and votes."""
    return {
        "candidates": candidate_dicts(sampled.candidates, sampled.groups, text=False),
        "generation": sampled.stats.as_dict(),
    }

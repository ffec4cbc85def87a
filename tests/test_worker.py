"""Candidate SQL runs in a worker process: hard deadline, memory cap, byte cap, Ctrl-C, reuse.

Deadline assertions use a generous margin (timeout + 1 s, as the executor promises); they hold on
a loaded machine because the worker is killed, not asked to stop.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import REPO, Slmsql
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from slmsql_cli.render import result_dict, rows_table
from slmsql_cli.targets import executor, worker
from slmsql_cli.targets.executor import execute, execute_many
from slmsql_cli.targets.result import MAX_RESULT_BYTES

TIMEOUT = 1.0
MARGIN = 1.0
TEST_CAP = 256 * 1024**2

# One C-level call each: SQLite's progress handler never runs while they do.
QUADRATIC_INSTR = "SELECT instr(printf('%.*c', 4000000, 'a') || 'b', printf('%.*c', 2000000, 'a') || 'c')"
EXPENSIVE = [
    QUADRATIC_INSTR,
    "SELECT printf('%.*c', 1000000000, 'x')",
    "SELECT length(replace(hex(randomblob(40000000)), 'A', 'BB'))",
    "SELECT zeroblob(99999999) FROM (WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c "
    "LIMIT 20) SELECT x FROM c)",
    "SELECT count(*) FROM t a, t b, t c, t d, t e, t f",
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c",
]


@pytest.fixture()
def db(tmp_path: Path) -> Path:
    path = tmp_path / "w" / "w.sqlite"
    path.parent.mkdir()
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT)")
    conn.executemany("INSERT INTO t VALUES (?, ?)", [(i, f"name {i}") for i in range(200)])
    conn.commit()
    conn.close()
    return path


@pytest.fixture()
def capped_pool() -> Iterator[worker.WorkerPool]:
    """The executor's default pool, with a smaller memory cap for the test."""
    pool = worker.configure(memory_cap=TEST_CAP)
    yield pool
    worker.configure()


def _peak_kib(pid: int) -> int | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return None


def _worker_pids() -> list[int]:
    """This process's child processes that are query workers."""
    pids = []
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        try:
            pids += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            continue
    return [p for p in pids if b"slmsql_cli.targets.worker" in _cmdline(p)]


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


class PeakSampler:
    """Samples the workers' peak resident memory (VmHWM) while a query runs; a killed worker's
    last sample is its peak up to (almost) the kill."""

    def __init__(self) -> None:
        self.peak_kib = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for pid in _worker_pids():
                self.peak_kib = max(self.peak_kib, _peak_kib(pid) or 0)
            time.sleep(0.02)

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


needs_proc = pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")


@pytest.mark.slow  # each waits out its deadline
@pytest.mark.parametrize("sql", EXPENSIVE)
def test_expensive_expressions_return_within_the_deadline(db: Path, sql: str) -> None:
    worker.default_pool().start(wait=True)  # a new worker's start is not part of a query
    t = time.perf_counter()
    result = execute(db, sql, timeout=TIMEOUT)
    elapsed = time.perf_counter() - t
    assert elapsed < TIMEOUT + MARGIN, (sql, elapsed)
    assert result.timed_out or result.error or result.truncated or result.ok
    assert execute(db, "SELECT count(*) FROM t").rows == [(200,)]  # the pool still answers


@pytest.mark.slow
def test_the_instr_query_is_killed_not_finished(db: Path) -> None:
    """The case the progress handler cannot stop: it comes back as a timeout, not as an answer."""
    result = execute(db, QUADRATIC_INSTR, timeout=TIMEOUT)
    assert result.timed_out and not result.ok and result.error is None


# Pieces of expressions that are each one long C call or one huge value.
_SIZES = st.sampled_from([10**5, 10**6, 10**7, 4 * 10**7, 10**8, 10**9])
_EXPRESSIONS = st.one_of(
    st.builds(
        lambda n, m: f"instr(printf('%.*c', {n}, 'a') || 'b', printf('%.*c', {m}, 'a') || 'c')",
        _SIZES,
        _SIZES,
    ),
    st.builds(lambda n: f"length(replace(hex(randomblob({n})), 'A', 'BB'))", _SIZES),
    st.builds(lambda n: f"length(printf('%.*c', {n}, 'x'))", _SIZES),
    st.builds(lambda n: f"zeroblob({n})", _SIZES),
    st.builds(lambda n: f"upper(hex(zeroblob({n})))", _SIZES),
    st.builds(lambda n: f"length(group_concat(printf('%.*c', {n}, 'y')))", _SIZES),
)


@pytest.mark.slow
@needs_proc
@settings(
    max_examples=12,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(expression=_EXPRESSIONS, rows=st.sampled_from([1, 3, 20]))
@example(expression="upper(hex(zeroblob(40000000)))", rows=1)  # about 450 MB resident without the cap
def test_property_deadline_and_memory_cap(
    db: Path, capped_pool: worker.WorkerPool, expression: str, rows: int
) -> None:
    sql = (
        f"SELECT {expression} FROM (WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c "
        f"LIMIT {rows}) SELECT x FROM c)"
    )
    capped_pool.start(wait=True)
    with PeakSampler() as sampler:
        t = time.perf_counter()
        result = execute(db, sql, timeout=TIMEOUT)
        elapsed = time.perf_counter() - t
    assert elapsed < TIMEOUT + MARGIN, (sql, elapsed)
    assert 0 < sampler.peak_kib * 1024 < TEST_CAP, (sql, sampler.peak_kib)
    if result.error:
        assert "Traceback" not in result.error


def test_a_memory_cap_breach_is_an_error_not_a_crash(db: Path) -> None:
    worker.configure(memory_cap=160 * 1024**2)
    try:
        result = execute(db, "SELECT length(replace(hex(randomblob(30000000)), 'A', 'BB'))", timeout=10)
        assert not result.ok and result.error and "memory" in result.error, result
        assert execute(db, "SELECT 1").rows == [(1,)]
    finally:
        worker.configure()


def test_a_result_past_the_byte_cap_is_truncated(db: Path) -> None:
    executor.clear_cache()
    sql = (
        "SELECT zeroblob(10000000) FROM (WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 "
        "FROM c LIMIT 20) SELECT x FROM c)"
    )
    result = execute(db, sql, timeout=20)
    assert result.ok and result.truncated
    assert len(result.rows) == MAX_RESULT_BYTES // 10_000_000
    doc = result_dict(result)
    assert doc is not None and doc["truncated"] is True  # what `ask --json` reports
    assert "cut" in str(rows_table(result).caption)


def test_a_small_result_is_not_truncated(db: Path) -> None:
    result = execute(db, "SELECT * FROM t")
    assert result.ok and not result.truncated and len(result.rows) == 200
    capped = execute(db, "SELECT * FROM t", max_rows=10)
    assert capped.truncated and len(capped.rows) == 10
    assert "cut" in str(rows_table(capped, max_rows=50).caption)


def test_run_query_counts_bytes(db: Path) -> None:
    """The byte cap itself, in this process: rows stop at the first one that would pass it."""
    result = executor.run_query(db, "SELECT name FROM t ORDER BY id", 5.0, 1000, 60)
    assert result.truncated and [r[0] for r in result.rows] == [f"name {i}" for i in range(10)]


def test_the_worker_is_reused_and_replaced_after_a_kill(db: Path) -> None:
    pool = worker.configure()  # a fresh default pool: no idle worker left by other tests
    execute(db, "SELECT 1")
    (first,) = pool.idle_pids()
    execute(db, "SELECT 2")
    assert pool.idle_pids() == [first]
    # two queries of one call run side by side: a second worker joins, none is started per query
    execute_many(db, ["SELECT 3", "SELECT 4", None, "SELECT 7", "SELECT 8"])
    before = pool.idle_pids()
    assert first in before and len(before) == executor.PARALLEL
    assert execute(db, QUADRATIC_INSTR, timeout=0.5).timed_out
    after = pool.idle_pids()
    (killed,) = set(before) - set(after)
    assert len(set(after) - set(before)) == 1  # its replacement
    assert _cmdline(killed) == b""  # killed and reaped
    assert execute(db, "SELECT 5").rows == [(5,)]
    assert sorted(pool.idle_pids()) == sorted(after)


def test_a_worker_killed_from_outside_is_an_error_and_is_replaced(db: Path) -> None:
    pool = worker.default_pool()
    pool.start(wait=True)
    pid = pool.idle_pids()[-1]  # the one the next call takes
    threading.Timer(0.5, os.kill, (pid, signal.SIGKILL)).start()
    result = execute(db, QUADRATIC_INSTR, timeout=30)
    assert not result.ok and result.error and "SIGKILL" in result.error
    os.kill(pool.idle_pids()[0], signal.SIGKILL)  # dies while idle: the next call takes a new one
    time.sleep(0.1)
    assert execute(db, "SELECT 6").rows == [(6,)]


def test_function_errors_come_back_and_keep_the_worker(db: Path) -> None:
    pool = worker.WorkerPool()
    try:
        with pytest.raises(ZeroDivisionError):
            pool.call(divmod, 1, 0, timeout=5)
        (pid,) = pool.idle_pids()
        assert pool.call(divmod, 7, 2, timeout=5) == (3, 1)
        assert pool.idle_pids() == [pid]
    finally:
        pool.close()


def test_a_user_error_keeps_its_hint_across_the_process(tmp_path: Path) -> None:
    from slmsql_cli.errors import UserError

    pool = worker.WorkerPool()
    try:
        with pytest.raises(UserError) as caught:
            pool.call(execute, tmp_path / "gone.sqlite", "SELECT 1", timeout=30)
        assert "not found" in caught.value.message and caught.value.hint
    finally:
        pool.close()


def test_closing_the_pool_lets_the_worker_remove_its_private_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A WAL database with a leftover -wal is read through a private copy in the worker; a worker
    that is closed (not killed) removes it on exit."""
    db = tmp_path / "data" / "wal.sqlite"
    db.parent.mkdir()
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA journal_mode=wal")
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    code = (
        f"import os, sqlite3; c = sqlite3.connect({str(db)!r}, isolation_level=None); "
        "c.execute('PRAGMA wal_autocheckpoint=0'); c.execute('INSERT INTO t VALUES (7)'); os._exit(0)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)  # dies without a checkpoint
    Path(f"{db}-shm").unlink()
    assert Path(f"{db}-wal").stat().st_size > 0
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setenv("TMPDIR", str(temp))  # the worker's temporary folder
    pool = worker.configure()
    try:
        assert execute(db, "SELECT x FROM t").rows == [(7,)]
        assert list(temp.glob("slmsql-snapshot-*"))  # the copy the worker reads
    finally:
        pool.close()
        worker.configure()
    assert list(temp.iterdir()) == []


def test_the_training_judge_runs_queries_in_pool_processes(db: Path) -> None:
    """SqlJudge's spawn pool processes are daemonic; each still gets its own query worker."""
    rewards = pytest.importorskip("slmsql_cli.training.rewards")
    with rewards.SqlJudge(workers=2, timeout=TIMEOUT, grace=5.0) as judge:
        t = time.perf_counter()
        outcomes = judge.outcomes([(str(db), "SELECT count(*) FROM t"), (str(db), QUADRATIC_INSTR)])
        assert time.perf_counter() - t < 30
    assert outcomes[0].ok and outcomes[1].timed_out


def test_the_worker_runs_this_copy_of_slmsql_cli(tmp_path: Path, db: Path) -> None:
    """Started from a folder that holds another `slmsql_cli` (an old checkout), the worker still
    imports the parent's copy."""
    (tmp_path / "slmsql_cli").mkdir()
    (tmp_path / "slmsql_cli" / "__init__.py").write_text("raise ImportError('the wrong copy')\n")
    code = (
        f"from slmsql_cli.targets.executor import execute; print(execute({str(db)!r}, 'SELECT 41 + 1').rows)"
    )
    run = subprocess.run(
        [sys.executable, "-c", f"import sys; sys.path.insert(0, {str(REPO)!r}); {code}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0 and run.stdout.strip() == "[(42,)]", run.stderr


@pytest.mark.slow
@needs_proc
def test_ctrl_c_during_a_query_exits_130(slmsql: Slmsql, tmp_path: Path, db: Path) -> None:
    """The real CLI, no model: `eval --predictions` with a prediction that never finishes in time.
    SIGINT goes to the whole process group, as a terminal's Ctrl-C does."""
    questions = tmp_path / "dev.json"
    questions.write_text(json.dumps([{"question": "how many?", "query": "SELECT 1", "db_id": "w"}]))
    predictions = tmp_path / "pred.sql"
    predictions.write_text(QUADRATIC_INSTR.replace("4000000", "40000000") + "\n")
    proc = slmsql.start(
        "eval", "-q", questions, "--db-dir", db.parent, "--predictions", predictions, "--timeout", "120",
        start_new_session=True,
    )  # fmt: skip
    try:
        busy = _wait_for_busy_worker(proc.pid)
        t = time.perf_counter()
        os.killpg(proc.pid, signal.SIGINT)
        _, stderr = proc.communicate(timeout=10)
        elapsed = time.perf_counter() - t
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    assert elapsed < 3.0
    assert b"Traceback" not in stderr and b"interrupted" in stderr
    deadline = time.monotonic() + 5
    while _cmdline(busy) and time.monotonic() < deadline:  # the worker went with its parent
        time.sleep(0.05)
    assert _cmdline(busy) == b""


def _descendants(parent: int) -> list[int]:
    """Every process below `parent` (the `slmsql` launcher's command, and its query workers)."""
    found: list[int] = []
    todo = [parent]
    while todo:
        pid = todo.pop()
        for task in Path(f"/proc/{pid}/task").glob("*"):
            try:
                children = [int(p) for p in (task / "children").read_text().split()]
            except OSError:
                continue
            found += children
            todo += children
    return found


def _wait_for_busy_worker(parent: int) -> int:
    """The pid of a query worker below `parent` once it has spent a second of CPU on the query."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for pid in _descendants(parent):
            if b"slmsql_cli.targets.worker" in _cmdline(pid) and _cpu_seconds(pid) > 1.0:
                return pid
        time.sleep(0.05)
    raise AssertionError("the query worker never got busy")


def _cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

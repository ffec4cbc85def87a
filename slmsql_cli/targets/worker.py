"""Run a function in a long-lived worker process that the caller can always stop.

SQLite's progress handler only runs between virtual-machine instructions, so one long C-level
call (a quadratic `instr()` over huge strings, `zeroblob(99999999)` rows, a `printf` padding to a
gigabyte) never reaches it: the query outlives its deadline and ignores Ctrl-C. A separate process
can be killed at any moment. `WorkerPool.call` sends one call to an idle worker and waits for the
answer until a hard deadline; when the deadline passes or the caller is interrupted (Ctrl-C
raises KeyboardInterrupt in the waiting parent), the worker is killed with SIGKILL, a replacement
starts in the background and the caller gets `WorkerTimeout` (or its KeyboardInterrupt back).

Why a plain subprocess with a pipe, not `multiprocessing`:

* it works inside daemonic `multiprocessing` pool processes (training's `SqlJudge` runs the
  executor in a spawn pool, whose processes may not start `multiprocessing` children);
* `spawn` re-imports the parent's `__main__` (the CLI, or a training script) in every child, and
  `fork`/`forkserver` copy or share a parent that may hold a llama.cpp model and its threads;
  the worker (`python -c` running `_serve`) imports only what the calls need (the executor);
* the protocol is tiny: length-prefixed pickle frames on the worker's stdin and stdout.

Workers stay alive between calls (a small pool of idle ones), so thousands of queries pay one
process start, not one each. Each worker has an address-space cap (`RLIMIT_AS`, Linux; on macOS
`RLIMIT_AS` is accepted but not enforced, so the cap is a documented no-op there): an allocation
beyond it fails inside the worker and comes back as `WorkerOutOfMemory`, or, when the allocation
kills the interpreter, as `WorkerDied`; the parent never shares the damage. A pool may cap the
data segment instead (`RLIMIT_DATA`: the memory a process allocates, not the address space it
reserves), which DuckDB's query workers need: DuckDB reserves some 800 MB of address space before
its first query. A worker runs in a
process group of its own, so the terminal's Ctrl-C (sent to the foreground group) never reaches
it, not even while its interpreter starts (a KeyboardInterrupt traceback then, before `_serve`
could ignore SIGINT); it ignores SIGINT too (the parent decides) and exits when its parent dies or
closes the pipe. A closed worker exits normally, so its exit handlers remove
its private database copies (`sqlite_open`); a killed one leaves them to the next copy's sweep.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import os
import pickle
import selectors
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

DEFAULT_MEMORY_CAP = 2 * 1024**3  # bytes of address space per worker
# What a worker's cap limits: its address space (SQLite's workers), or its data segment, the
# memory it allocates (DuckDB's, which reserves some 800 MB of address space before any query).
ADDRESS_SPACE, DATA = "RLIMIT_AS", "RLIMIT_DATA"
MAX_IDLE = 4  # idle workers kept for the next call; more only while calls run in parallel threads
START_TIMEOUT = 60.0  # seconds a new worker may take to import what it needs
DEFAULT_BUSY_WAIT = 30.0  # seconds a call over the pool's max_busy waits for a free worker
_EXIT_WAIT = 2.0  # seconds an idle worker may take to exit when closed
_HEADER = struct.Struct(">Q")
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[1])
# The worker imports this very copy of slmsql_cli: its folder replaces the current directory that
# `-c` (and `-m`) would put first on sys.path, where another checkout may sit.
_BOOT = "import sys; sys.path[0] = sys.argv[1]; from slmsql_cli.targets.worker import _serve; _serve(sys.argv[2:])"


class WorkerError(Exception):
    """The call did not come back with an answer."""


class WorkerTimeout(WorkerError):
    """The call ran past its hard deadline; the worker was killed."""


class WorkerOutOfMemory(WorkerError):
    """The call needed more memory than the worker's cap."""


class WorkerDied(WorkerError):
    """The worker process ended without answering (a crash, or killed from outside)."""


class PoolBusy(Exception):
    """Every worker the pool may run at once (`max_busy`) stayed busy for `busy_wait` seconds."""


class PoolStopped(PoolBusy):
    """The pool was stopped (`WorkerPool.cancel_all`: the server is shutting down): no call runs."""


def command(memory_cap: int, limit: str = ADDRESS_SPACE, preload: tuple[str, ...] = ()) -> list[str]:
    """The command line that starts a worker (`_serve` reads its arguments)."""
    return [sys.executable, "-c", _BOOT, _PACKAGE_ROOT, str(memory_cap), limit, *preload]


class _Worker:
    """One child process and its two pipe ends."""

    def __init__(self, memory_cap: int, preload: tuple[str, ...], limit: str = ADDRESS_SPACE) -> None:
        self.proc = subprocess.Popen(
            command(memory_cap, limit, preload),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            bufsize=0,
            process_group=0,
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self._in: IO[bytes] = self.proc.stdin
        self._out: IO[bytes] = self.proc.stdout
        self.ready = False
        self.owner = os.getpid()
        self._fd = self._out.fileno()
        self._buf = bytearray()
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._fd, selectors.EVENT_READ)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_ready(self) -> None:
        if not self.ready:
            try:
                self._read_frame(time.monotonic() + START_TIMEOUT, starting=True)  # the "ready" frame
            except WorkerDied as exc:  # a broken installation, not a query's fault
                raise WorkerError(f"the query worker could not start: {exc}") from None
            self.ready = True

    def send(self, request: bytes) -> None:
        self.wait_ready()
        data = memoryview(_HEADER.pack(len(request)) + request)
        try:
            while data:  # an idle worker reads the request at once
                data = data[self._in.write(data) or 0 :]
        except BrokenPipeError:
            raise WorkerDied(_death(self.proc.wait())) from None

    def receive(self, deadline: float | None) -> Any:
        status, payload = pickle.loads(self._read_frame(deadline))
        if status == "ok":
            return payload
        if status == "oom":
            raise WorkerOutOfMemory(payload)
        raise _rebuild(payload)  # the function's own exception, raised again here

    def _read_frame(self, deadline: float | None, starting: bool = False) -> memoryview:
        self._fill(_HEADER.size, deadline, starting)
        size = _HEADER.size + _HEADER.unpack_from(self._buf)[0]
        self._fill(size, deadline, starting)
        frame, self._buf = memoryview(self._buf)[_HEADER.size : size], self._buf[size:]
        return frame

    def _fill(self, n: int, deadline: float | None, starting: bool) -> None:
        """Read until the buffer holds `n` bytes, or raise at the deadline or the worker's end."""
        while len(self._buf) < n:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise WorkerError("the worker did not start") if starting else WorkerTimeout()
            if not self._selector.select(left):
                continue
            chunk = os.read(self._fd, max(1 << 16, n - len(self._buf)))
            if not chunk:
                raise WorkerDied(_death(self.proc.wait()))
            self._buf += chunk

    def kill(self) -> None:
        if self.owner != os.getpid():  # inherited through fork: the parent's worker, not ours
            return
        if self.proc.returncode is None:
            self.proc.kill()
            self.proc.wait()
        self._selector.close()
        self._in.close()
        self._out.close()

    def close(self) -> None:
        """Ask an idle worker to exit (end of input), so that its exit handlers run (private
        copies of databases are removed then); kill it if it does not."""
        if self.owner != os.getpid():
            return
        self._in.close()
        try:
            self.proc.wait(timeout=_EXIT_WAIT)
        except subprocess.TimeoutExpired:
            pass
        self.kill()


def _rebuild(parts: tuple[type[BaseException], tuple, dict]) -> BaseException:
    """An exception from its class, args and attributes: pickling an exception keeps only its args,
    which would lose e.g. a UserError's hint."""
    cls, args, attrs = parts
    exc = cls.__new__(cls, *args)
    exc.args = args
    exc.__dict__.update(attrs)
    return exc


def _death(code: int) -> str:
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"the worker process was killed by {name}"
    return f"the worker process exited with code {code}"


class WorkerPool:
    """Idle workers waiting for calls; each call borrows one and gives it back if it answered."""

    def __init__(
        self, memory_cap: int = DEFAULT_MEMORY_CAP, preload: tuple[str, ...] = (), limit: str = ADDRESS_SPACE
    ) -> None:
        self.memory_cap = memory_cap
        self.preload = preload
        self.limit_kind = limit  # ADDRESS_SPACE or DATA: what memory_cap caps
        self._idle: list[_Worker] = []
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self.started = 0  # workers started so far (tests and diagnostics)
        self.max_busy: int | None = None  # calls running at once, all threads together (None: no cap)
        self.busy_wait = DEFAULT_BUSY_WAIT
        self._slots: threading.BoundedSemaphore | None = None
        self.busy = 0  # calls running now (tests and diagnostics)
        self._stopped = False  # cancel_all: every call refused until `limit` is set again
        self._stoppers: dict[int, Callable[[], None]] = {}  # how to stop each running call

    def limit(self, max_busy: int | None, busy_wait: float = 0.0) -> None:
        """Run at most `max_busy` calls at once across all threads (`serve --max-queries`); a call
        over the cap waits up to `busy_wait` seconds for one to finish, then PoolBusy. Set it
        before the calls start (the count of running calls starts again from the new cap, and a
        pool that `cancel_all` stopped takes calls again)."""
        self.max_busy, self.busy_wait = max_busy, busy_wait or DEFAULT_BUSY_WAIT
        self._slots = threading.BoundedSemaphore(max_busy) if max_busy else None
        self._stopped = False

    def cancel_all(self) -> None:
        """Stop every running call now and refuse new ones (PoolStopped) until `limit` is set
        again: `serve` on SIGTERM. A worker's call is stopped by killing the worker (its caller
        gets WorkerDied; no replacement starts); a query held outside the workers by its
        engine's interrupt (`held(interrupt=...)`)."""
        with self._lock:
            self._stopped = True
            stoppers = list(self._stoppers.values())
        for stop in stoppers:
            with contextlib.suppress(Exception):
                stop()

    def _track(self, key: int, stop: Callable[[], None]) -> None:
        """Remember how to stop a running call; stop it now when the pool is stopped already."""
        with self._lock:
            if not self._stopped:
                self._stoppers[key] = stop
                return
        with contextlib.suppress(Exception):
            stop()

    def _untrack(self, key: int) -> None:
        with self._lock:
            self._stoppers.pop(key, None)

    def _take_slot(self, wait: bool) -> tuple[bool, threading.BoundedSemaphore | None]:
        """(taken, the semaphore to give the slot back to: None without a cap). Not taken when
        none is free and not `wait`; with `wait`, PoolBusy after `busy_wait` seconds."""
        if self._stopped:
            raise PoolStopped("the query workers are stopping: the server is shutting down")
        slots = self._slots
        if slots is None:
            return True, None
        if slots.acquire(timeout=self.busy_wait if wait else 0):
            if self._stopped:  # stopped while it waited: the freed slot is no leave to run
                slots.release()
                raise PoolStopped("the query workers are stopping: the server is shutting down")
            return True, slots
        if not wait:
            return False, None
        raise PoolBusy(f"all {self.max_busy} query workers stayed busy for {self.busy_wait:g} s")

    @contextmanager
    def held(self, interrupt: Callable[[], None] | None = None) -> Iterator[None]:
        """One of the `max_busy` slots, held by a query that runs outside the workers (a DuckDB or
        PostgreSQL query on its connection), so that every engine's queries count against
        `serve --max-queries`: over the cap it waits as `submit` does, then PoolBusy.
        `interrupt` stops the query from another thread (`cancel_all`)."""
        _, slot = self._take_slot(wait=True)
        with self._lock:
            self.busy += 1
        key = object()
        if interrupt is not None:
            self._track(id(key), interrupt)
        try:
            yield
        finally:
            self._untrack(id(key))
            self._done(slot)

    def call(self, func: Callable[..., Any], *args: Any, timeout: float | None = None) -> Any:
        """`func(*args)` in a worker; `func` must be importable by name (a module-level function).

        Raises what `func` raises, or WorkerTimeout after `timeout` seconds of waiting for the
        answer (not counting a new worker's start), WorkerOutOfMemory, or WorkerDied.
        """
        return self.submit(func, *args, timeout=timeout).result()

    def submit(self, func: Callable[..., Any], *args: Any, timeout: float | None = None) -> Pending:
        """Send `func(*args)` to a worker of its own and return at once; `Pending.result()` waits.
        Calls submitted one after another run at the same time, each in its own worker. Over the
        pool's `max_busy`, it waits for a running call to finish (PoolBusy after `busy_wait`)."""
        pending = self.try_submit(func, *args, timeout=timeout, wait=True)
        assert pending is not None
        return pending

    def try_submit(
        self, func: Callable[..., Any], *args: Any, timeout: float | None = None, wait: bool = False
    ) -> Pending | None:
        """`submit`, or None at once when `max_busy` calls are running and not `wait`: a caller that
        holds running calls collects one of its own instead of waiting for others (no deadlock)."""
        taken, slot = self._take_slot(wait)
        if not taken:
            return None
        request = pickle.dumps((func, args), protocol=pickle.HIGHEST_PROTOCOL)
        try:
            worker = self._acquire()
        except BaseException:
            _give(slot)
            raise
        try:
            worker.send(request)
        except BaseException:
            _give(slot)
            self._replace(worker)
            raise
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            self.busy += 1
        pending = Pending(self, worker, deadline, slot)
        # only the process is killed: its caller, reading the pipe, gets WorkerDied
        self._track(id(pending), worker.proc.kill)
        return pending

    def _done(self, slot: threading.BoundedSemaphore | None) -> None:
        with self._lock:
            self.busy -= 1
        _give(slot)

    def idle_pids(self) -> list[int]:
        with self._lock:
            return [w.pid for w in self._idle]

    def start(self, wait: bool = False) -> None:
        """Have an idle worker ready, starting one in the background if none is idle; with
        `wait`, return once it is ready to take a call."""
        worker = self._acquire()
        try:
            if wait:
                worker.wait_ready()
        except BaseException:
            worker.kill()
            raise
        self._release(worker)

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for w in idle:
            w.close()

    def _replace(self, worker: _Worker) -> None:
        """Kill a worker that is past its deadline, out of memory, dead or interrupted mid-call,
        and keep a fresh one starting in its place."""
        worker.kill()
        if not self._stopped:
            self._release(self._new())

    def _new(self) -> _Worker:
        self.started += 1
        return _Worker(self.memory_cap, self.preload, self.limit_kind)

    def _acquire(self) -> _Worker:
        with self._lock:
            self._forget_if_forked()
            while self._idle:
                worker = self._idle.pop()
                if worker.proc.poll() is None:
                    return worker
                worker.close()  # died while idle (killed from outside)
            return self._new()

    def _release(self, worker: _Worker) -> None:
        with self._lock:
            if worker.owner == self._pid and len(self._idle) < MAX_IDLE:
                self._idle.append(worker)
                return
        worker.close()

    def _forget_if_forked(self) -> None:
        if self._pid != os.getpid():  # a forked child shares the parent's pipes: never use them
            self._idle, self._pid = [], os.getpid()


def _give(slot: threading.BoundedSemaphore | None) -> None:
    if slot is not None:
        slot.release()


class Pending:
    """A call sent to a worker (`WorkerPool.submit`) whose answer has not been read yet."""

    def __init__(
        self,
        pool: WorkerPool,
        worker: _Worker,
        deadline: float | None,
        slot: threading.BoundedSemaphore | None = None,
    ) -> None:
        self._pool, self._worker, self._deadline, self._slot = pool, worker, deadline, slot
        self._open = True

    def result(self) -> Any:
        """The call's return value; raises what the call raised, or WorkerTimeout at the
        deadline, WorkerOutOfMemory or WorkerDied (the worker is then replaced)."""
        try:
            value = self._worker.receive(self._deadline)
        except BaseException as exc:
            if isinstance(exc, Exception) and not isinstance(exc, WorkerError):
                self._pool._release(self._worker)  # func itself raised: the worker is fine
            else:
                self._pool._replace(self._worker)
            self._finish()
            raise
        self._pool._release(self._worker)
        self._finish()
        return value

    def _finish(self) -> None:
        if self._open:
            self._open = False
            self._pool._untrack(id(self))
            self._pool._done(self._slot)

    def kill(self) -> None:
        """Kill the worker from another thread; the thread waiting in `result` gets WorkerDied."""
        with contextlib.suppress(OSError):
            self._worker.proc.kill()

    def cancel(self) -> None:
        """Stop the call now (its worker is killed and replaced); used when the caller gives up."""
        self._pool._replace(self._worker)
        self._finish()


# --- the child ---------------------------------------------------------------------------------


def _serve(argv: list[str]) -> None:
    """The worker's main loop: `argv` is the memory cap in bytes, the rlimit it sets (ADDRESS_SPACE
    or DATA), then modules to import first.
    A parent that has gone (exited, killed, or closed its end of the pipe) ends the worker
    quietly: its answer has nobody to read it, which is no error of the worker's."""
    memory_cap, limit, preload = int(argv[0]), argv[1], argv[2:]
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # The protocol owns the real stdout; anything printed by the called code goes to stderr.
    requests = os.fdopen(os.dup(0), "rb", buffering=0)
    replies = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)
    try:
        _answer(requests, replies, memory_cap, limit, preload)
    except _ParentGone:  # return normally: exit handlers still run (private copies removed)
        with contextlib.suppress(OSError):
            replies.close()


class _ParentGone(BaseException):
    """A reply could not be written: nobody reads the pipe any more. A BaseException, so that the
    loop's `except Exception` (the called function's errors, sent back) never takes it for one."""


def _answer(requests: IO[bytes], replies: IO[bytes], memory_cap: int, limit: str, preload: list[str]) -> None:
    """Say "ready", then answer each request until the parent closes its pipe."""
    for name in preload:
        importlib.import_module(name)
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()
    _cap_memory(memory_cap, limit)
    _send(replies, ("ready", None))
    while True:
        header = _read(requests, _HEADER.size)
        if header is None:
            return  # the parent closed the pipe
        frame = _read(requests, _HEADER.unpack(header)[0])
        if frame is None:
            return
        try:
            func, args = pickle.loads(frame)
            _send(replies, ("ok", func(*args)))
        except MemoryError:
            _send(replies, ("oom", f"the worker's {memory_cap // 1024**2} MB memory cap was reached"))
        except Exception as exc:  # the caller raises it again
            try:
                _send(replies, ("raise", (type(exc), exc.args, exc.__dict__)))
            except Exception:
                _send(replies, ("raise", (RuntimeError, (f"{type(exc).__name__}: {exc}",), {})))


def _cap_memory(memory_cap: int, kind: str = ADDRESS_SPACE) -> None:
    try:
        import resource
    except ImportError:  # not a POSIX system: no cap
        return
    which = getattr(resource, kind)
    soft, hard = resource.getrlimit(which)
    limit = memory_cap if hard == resource.RLIM_INFINITY else min(memory_cap, hard)
    try:
        resource.setrlimit(which, (limit, hard))
    except (ValueError, OSError):  # macOS refuses or ignores RLIMIT_AS: documented no-op
        pass


def _exit_with_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(0)  # the parent died while this worker was busy; nobody waits for the answer


def _read(stream: IO[bytes], n: int) -> bytes | None:
    chunks = []
    while n:
        chunk = stream.read(n)
        if not chunk:
            return None
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def _send(stream: IO[bytes], reply: tuple[str, Any]) -> None:
    data = pickle.dumps(reply, protocol=pickle.HIGHEST_PROTOCOL)
    try:
        if len(data) < 1 << 16:  # one write, so that the parent wakes once
            stream.write(_HEADER.pack(len(data)) + data)
        else:
            stream.write(_HEADER.pack(len(data)))
            stream.write(data)
    except BrokenPipeError:
        raise _ParentGone from None


_default: WorkerPool | None = None
_default_lock = threading.Lock()


def default_pool() -> WorkerPool:
    """The process-wide pool of query workers (the executor's), created on first use."""
    global _default
    with _default_lock:
        if _default is None:
            _default = WorkerPool(preload=("slmsql_cli.targets.executor",))
        return _default


def configure(memory_cap: int = DEFAULT_MEMORY_CAP) -> WorkerPool:
    """Replace the default pool with one whose workers have `memory_cap` bytes of address space."""
    global _default
    with _default_lock:
        old, _default = _default, WorkerPool(memory_cap, preload=("slmsql_cli.targets.executor",))
    if old is not None:
        old.close()
    return _default


@atexit.register
def _close_default() -> None:
    if _default is not None:
        _default.close()

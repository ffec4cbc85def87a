"""K pieces of work in flight at once, results as they finish: `eval --concurrency` over a model server.

Threads, not processes: the work waits on an HTTP server (`remote_engine.py`) and on the query
worker processes (`executor.py`), both of which take concurrent callers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def in_flight(items: Iterable[T], work: Callable[[T], R], k: int) -> Iterator[R]:
    """`work(item)` for every item, at most `k` running at once, each result yielded as soon as it
    is ready (in completion order; k=1 runs in order in the caller's thread). The first exception
    (or the consumer stopping, e.g. Ctrl-C) cancels the work not yet started; the running pieces
    finish in their threads."""
    if k <= 1:
        for item in items:
            yield work(item)
        return
    pool = ThreadPoolExecutor(k, thread_name_prefix="slmsql-inflight")
    running: set[Future[R]] = set()
    source = iter(items)
    try:
        for item in source:
            running.add(pool.submit(work, item))
            if len(running) >= k:
                done, running = _wait_some(running)
                yield from _results(done)
        while running:
            done, running = _wait_some(running)
            yield from _results(done)
    finally:
        for future in running:
            future.cancel()
        pool.shutdown(wait=False, cancel_futures=True)


def _wait_some(running: set[Future[R]]) -> tuple[set[Future[R]], set[Future[R]]]:
    done, pending = wait(running, return_when=FIRST_COMPLETED)
    return set(done), set(pending)


def _results(done: set[Future[R]]) -> Iterator[R]:
    """The finished results, then the first failure raised: work that succeeded is never lost."""
    failed = [f for f in done if f.exception() is not None]
    for future in done:
        if future.exception() is None:
            yield future.result()
    if failed:
        failed[0].result()

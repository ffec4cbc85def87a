"""`inflight.in_flight`: K pieces of work at once (eval --concurrency), results as they finish."""

from __future__ import annotations

import threading
import time

import pytest

from slmsql_cli.inflight import in_flight


def test_at_most_k_run_at_once_and_every_result_comes_back() -> None:
    running, peak, lock = [0], [0], threading.Lock()

    def work(i: int) -> int:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.05 if i % 2 else 0.01)
        with lock:
            running[0] -= 1
        return i * i

    assert sorted(in_flight(range(10), work, 3)) == [i * i for i in range(10)]
    assert peak[0] == 3


def test_k_of_one_runs_in_order_in_the_callers_thread() -> None:
    threads = set()

    def work(i: int) -> int:
        threads.add(threading.get_ident())
        return i

    assert list(in_flight(range(5), work, 1)) == [0, 1, 2, 3, 4]
    assert threads == {threading.get_ident()}


def test_a_failure_is_raised_after_the_results_that_finished_with_it() -> None:
    def work(i: int) -> int:
        if i == 1:
            raise ValueError("bad question")
        return i

    got: list[int] = []
    with pytest.raises(ValueError, match="bad question"):
        for result in in_flight([0, 1, 2], work, 3):
            got.append(result)
    assert 1 not in got and set(got) <= {0, 2}

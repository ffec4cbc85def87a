"""Execution accuracy the way BIRD and Spider define it: whether two results are the same answer.

Two metrics, because the benchmarks disagree and published numbers follow their own:

* **BIRD EX** (official `evaluation.py`, CSC-SQL, OmniSQL): correct when
  `set(pred_rows) == set(gold_rows)`. Row order and duplicate rows are ignored, column order
  counts (rows are tuples).
* **Spider execution match** (test-suite `exec_eval.py`, which OmniSQL's Spider numbers use):
  `DISTINCT` is removed from both queries; rows compare as multisets, in order only when the gold
  SQL contains `order by` (upstream tests the text, so a subquery's ORDER BY counts too); columns
  may come in any order (a permutation search, pruned and bounded here - see `spider_match`).
  Only the database itself is used: this is EX, not the test-suite (TS) metric over
  distilled database copies.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator, Sequence

MAX_PERMUTATIONS = 10_000  # column permutations tried per comparison before giving up


def bird_match(gold_rows: Sequence[tuple], pred_rows: Sequence[tuple]) -> bool:
    """BIRD EX: the same set of rows."""
    return set(pred_rows) == set(gold_rows)


def spider_match(gold_rows: Sequence[tuple], pred_rows: Sequence[tuple], order_matters: bool) -> bool:
    """Test-suite `result_eq`: equal as bags of rows (as lists if `order_matters`), up to a column permutation.

    Upstream prunes the permutation search with 20 random rows; pruning never changes the answer,
    only the work, so here every row prunes (deterministic) and at most MAX_PERMUTATIONS
    permutations are tried (upstream has no bound; only results with many columns holding
    identical value sets can reach it, and they then count as different).
    """
    gold, pred = list(gold_rows), list(pred_rows)
    if not gold and not pred:
        return True
    if len(gold) != len(pred):
        return False
    ncols = len(gold[0])
    if len(pred[0]) != ncols:
        return False
    if not _quick_rej(gold, pred, order_matters):
        return False
    gold_cols = [{row[i] for row in gold} for i in range(ncols)]
    pred_cols = [{row[j] for row in pred} for j in range(ncols)]
    allowed = [[j for j in range(ncols) if pred_cols[j] == gold_cols[i]] for i in range(ncols)]
    gold_set = set(gold)
    for tried, perm in enumerate(_permutations(allowed)):
        if tried >= MAX_PERMUTATIONS:
            return False
        permuted = pred if ncols == 1 else [tuple(row[j] for j in perm) for row in pred]
        if order_matters:
            if permuted == gold:
                return True
        elif set(permuted) == gold_set and Counter(permuted) == Counter(gold):
            return True
    return False


def _unorder_row(row: tuple) -> tuple:
    return tuple(sorted(row, key=lambda x: str(x) + str(type(x))))


def _quick_rej(gold: list[tuple], pred: list[tuple], order_matters: bool) -> bool:
    """Upstream's cheap necessary condition: the same rows once each row's values are sorted."""
    a, b = [_unorder_row(r) for r in gold], [_unorder_row(r) for r in pred]
    return a == b if order_matters else set(a) == set(b)


def _permutations(allowed: list[list[int]]) -> Iterator[tuple[int, ...]]:
    """Injective choices perm[i] in allowed[i], depth first."""
    n = len(allowed)
    perm: list[int] = []
    used: set[int] = set()

    def walk(i: int) -> Iterator[tuple[int, ...]]:
        if i == n:
            yield tuple(perm)
            return
        for j in allowed[i]:
            if j not in used:
                used.add(j)
                perm.append(j)
                yield from walk(i + 1)
                perm.pop()
                used.discard(j)

    return walk(0)


_DISTINCT = re.compile(r"\bdistinct\b", re.IGNORECASE)
_CUR_YEAR = re.compile(r"YEAR\s*\(\s*CURDATE\s*\(\s*\)\s*\)\s*", re.IGNORECASE)


def spider_sql(sql: str) -> str:
    """What the test-suite evaluator executes: `> =` fixed, current year plugged in, DISTINCT removed
    (outside string literals and quoted names)."""
    sql = sql.replace("> =", ">=").replace("< =", "<=").replace("! =", "!=")
    sql = _CUR_YEAR.sub("2020", sql)
    parts = re.split(r"""('(?:[^']|'')*'|"(?:[^"]|"")*"|`[^`]*`|\[[^\]]*\])""", sql)
    return "".join(p if i % 2 else _DISTINCT.sub("", p) for i, p in enumerate(parts))


def spider_order_matters(gold_sql: str) -> bool:
    return "order by" in spider_sql(gold_sql).lower()


FLOAT_DIGITS = 12  # significant digits compared when gold and prediction ran on different engines


def rounded(rows: Sequence[tuple]) -> list[tuple]:
    """Rows with every float rounded to FLOAT_DIGITS significant digits: a sum of doubles differs
    in its last bits between engines (another summation order), which is not a different answer.
    Only `eval --engine duckdb|postgres` compares this way; SQLite against SQLite stays exact."""
    return [tuple(float(f"{v:.{FLOAT_DIGITS}g}") if isinstance(v, float) else v for v in row) for row in rows]

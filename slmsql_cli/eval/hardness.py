"""Spider hardness: the Spider evaluator's rules, on dev.json's parsed "sql" field.

Spider's own evaluator keeps hardness apart from execution, and so does slmsql.
"""

from __future__ import annotations

_WHERE_LIKE = 9  # WHERE_OPS.index('like')


def spider_level(sql: dict | None) -> str | None:
    if not isinstance(sql, dict):
        return None
    try:
        return spider_hardness(sql)
    except (KeyError, TypeError, IndexError):
        return None


def spider_hardness(sql: dict) -> str:
    """`Evaluator.eval_hardness` from taoyds/spider evaluation.py, quirks included (a NOT and an
    AND/OR token in HAVING count as aggregations, as upstream's `has_agg` reads them)."""
    comp1, comp2, others = _count_component1(sql), len(_nested(sql)), _count_others(sql)
    if comp1 <= 1 and others == 0 and comp2 == 0:
        return "easy"
    if (others <= 2 and comp1 <= 1 and comp2 == 0) or (comp1 <= 2 and others < 2 and comp2 == 0):
        return "medium"
    if (
        (others > 2 and comp1 <= 2 and comp2 == 0)
        or (2 < comp1 <= 3 and others <= 2 and comp2 == 0)
        or (comp1 <= 1 and others == 0 and comp2 <= 1)
    ):
        return "hard"
    return "extra"


def _conds(sql: dict) -> list:
    return sql["from"]["conds"][::2] + sql["where"][::2] + sql["having"][::2]


def _nested(sql: dict) -> list[dict]:
    nested = [v for cond in _conds(sql) for v in (cond[3], cond[4]) if isinstance(v, dict)]
    return nested + [sql[k] for k in ("intersect", "except", "union") if sql[k] is not None]


def _count_agg(units: list) -> int:
    return sum(1 for unit in units if unit[0] != 0)  # AGG_OPS.index('none') == 0


def _count_component1(sql: dict) -> int:
    count = sum(
        [len(sql["where"]) > 0, len(sql["groupBy"]) > 0, len(sql["orderBy"]) > 0, sql["limit"] is not None]
    )
    if sql["from"]["table_units"]:
        count += len(sql["from"]["table_units"]) - 1
    connectives = sql["from"]["conds"][1::2] + sql["where"][1::2] + sql["having"][1::2]
    count += sum(1 for tok in connectives if tok == "or")
    count += sum(1 for cond in _conds(sql) if cond[1] == _WHERE_LIKE)
    return count


def _count_others(sql: dict) -> int:
    agg = _count_agg(sql["select"][1]) + _count_agg(sql["where"][::2]) + _count_agg(sql["groupBy"])
    if sql["orderBy"]:
        units = sql["orderBy"][1]
        agg += _count_agg([u[1] for u in units if u[1]] + [u[2] for u in units if u[2]])
    agg += _count_agg(sql["having"])
    return sum([agg > 1, len(sql["select"][1]) > 1, len(sql["where"]) > 1, len(sql["groupBy"]) > 1])

"""FINER-SQL atomic operations: decomposition, alias normalization, Jaccard and the S3 shaping."""

from __future__ import annotations

import pytest

from slmsql_cli.training.atomic import atomic_ops, jaccard, shaped, similarity, sql_to_ops

BIRD_GOLD = (
    "SELECT T2.major_name FROM member AS T1 INNER JOIN major AS T2 ON T1.link_to_major = T2.major_id "
    "WHERE T1.first_name = 'Angela' AND T1.last_name = 'Sanders'"
)


def test_decomposition_of_a_bird_query() -> None:
    assert sql_to_ops(BIRD_GOLD) == [
        "FROM(member)",
        "FROM(major)",
        "ON_EQ(major.major_id, member.link_to_major)",
        "SELECT_COL(major_name)",
        "WHERE_PRED(EQ, first_name, VALUE('Angela'))",
        "WHERE_PRED(EQ, last_name, VALUE('Sanders'))",
    ]


@pytest.mark.parametrize(
    "other",
    [
        # other aliases, other join order, swapped ON sides, swapped conjuncts, literal on the left
        "select major.major_name from major join member on major.major_id = member.link_to_major "
        "where last_name = 'Sanders' and 'Angela' = first_name",
        # implicit join in WHERE
        "SELECT b.major_name FROM member a, major b WHERE a.link_to_major = b.major_id "
        "AND a.first_name = 'Angela' AND a.last_name = 'Sanders'",
        # upper-case identifiers, parentheses, trailing semicolon
        "SELECT T2.MAJOR_NAME FROM MEMBER AS T1 JOIN MAJOR AS T2 ON (T2.MAJOR_ID = T1.LINK_TO_MAJOR) "
        "WHERE (T1.FIRST_NAME = 'Angela' AND T1.LAST_NAME = 'Sanders');",
    ],
)
def test_equivalent_spellings_have_equal_op_sets(other: str) -> None:
    assert atomic_ops(other) == atomic_ops(BIRD_GOLD)
    assert similarity(other, BIRD_GOLD) == 1.0


def test_near_miss_wrong_value() -> None:
    # One of six ops differs ('Angel' for 'Angela'): |A∩B| = 5, |A∪B| = 7.
    pred = BIRD_GOLD.replace("'Angela'", "'Angel'")
    assert similarity(pred, BIRD_GOLD) == pytest.approx(5 / 7)


def test_near_miss_missing_predicate_and_extra_column() -> None:
    # Missing last_name predicate: 5 shared of 6 → 5/6.
    pred = "SELECT T2.major_name FROM member AS T1 JOIN major AS T2 ON T1.link_to_major = T2.major_id WHERE T1.first_name = 'Angela'"
    assert similarity(pred, BIRD_GOLD) == pytest.approx(5 / 6)
    # An extra selected column: 6 shared, 7 in the union.
    pred = BIRD_GOLD.replace("SELECT T2.major_name", "SELECT T2.major_name, T1.first_name")
    assert similarity(pred, BIRD_GOLD) == pytest.approx(6 / 7)


def test_aggregates_grouping_order_limit() -> None:
    gold = "SELECT T1.name, count(*) AS cnt FROM t AS T1 JOIN u AS T2 ON T1.id = T2.tid GROUP BY T1.name ORDER BY cnt DESC LIMIT 1"
    assert sql_to_ops(gold) == [
        "FROM(t)",
        "FROM(u)",
        "ON_EQ(t.id, u.tid)",
        "SELECT_COL(name)",
        "SELECT_AGG(COUNT, *)",
        "GROUP_BY(name)",
        "ORDER_BY(COUNT(*), DESC)",
        "LIMIT(1)",
    ]
    # ORDER BY the alias and ORDER BY the expression are the same operation; ASC vs DESC is not.
    assert similarity(gold.replace("ORDER BY cnt", "ORDER BY count(*)"), gold) == 1.0
    assert similarity(gold.replace("DESC", "ASC"), gold) == pytest.approx(7 / 9)


def test_nesting_and_set_operations() -> None:
    ops = sql_to_ops(
        "SELECT name FROM singer WHERE age > (SELECT avg(age) FROM singer) UNION SELECT name FROM singer_old"
    )
    assert ops == [
        "FROM(singer)",
        "SELECT_COL(name)",
        "ENTER_SUBQUERY(WHERE_SCALAR)",
        "FROM(singer)",
        "SELECT_AGG(AVG, age)",
        "EXIT_SUBQUERY",
        "WHERE_PRED(GT, age, SUBQUERY)",
        "UNION",
        "ENTER_SUBQUERY(SET_RIGHT)",
        "FROM(singer_old)",
        "SELECT_COL(name)",
        "EXIT_SUBQUERY",
    ]
    assert "WHERE_PRED(IN_SUBQ, id, SUBQUERY)" in sql_to_ops(
        "SELECT a FROM t WHERE id IN (SELECT tid FROM u)"
    )
    assert "WHERE_PRED(IN, x, [VALUE(1), VALUE(2)])" in sql_to_ops("SELECT a FROM t WHERE x IN (2, 1)")
    assert "JOIN(u, LEFT)" in sql_to_ops("SELECT a FROM t LEFT JOIN u ON t.id = u.id")
    assert sql_to_ops("SELECT a.x FROM t a JOIN t b ON a.p = b.id")[:3] == [
        "FROM(t)",
        "FROM(t#2)",
        "ON_EQ(t#2.id, t.p)",
    ]


def test_unparsable_or_multiple_statements_give_empty_set() -> None:
    assert atomic_ops("SELEC name FRM singer ((") == frozenset()
    assert atomic_ops("SELECT 1; SELECT 2") == frozenset()
    assert atomic_ops("DROP TABLE singer") == frozenset()
    with pytest.raises(ValueError):
        sql_to_ops("SELECT 1; SELECT 2")
    assert similarity("garbage ((", BIRD_GOLD) == 0.0


def test_jaccard() -> None:
    assert jaccard({"a", "b"}, {"b", "c"}) == pytest.approx(1 / 3)
    assert jaccard(set(), set()) == 0.0


def test_s3_shaping_values() -> None:
    # e·s + (1−e)·β·s^γ with e=0.05, β=0.79, γ=0.20
    assert shaped(1.0) == pytest.approx(0.05 + 0.95 * 0.79)  # 0.8005
    assert shaped(0.0) == 0.0
    assert shaped(0.5) == pytest.approx(0.025 + 0.7505 * 0.5**0.2)  # 0.678348
    assert shaped(0.5) == pytest.approx(0.678348, abs=1e-6)
    # γ < 1 lifts small overlaps: a fifth of the ops right already earns more than half the maximum.
    assert shaped(0.2) / shaped(1.0) > 0.5
    # The class defaults of FINER-SQL (e=0.30, β=0.71, γ=5) are reachable through the parameters.
    assert shaped(1.0, e=0.30, beta=0.71, gamma=5.0) == pytest.approx(0.30 + 0.70 * 0.71)

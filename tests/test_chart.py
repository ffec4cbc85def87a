"""Charts (`slmsql_cli/chart.py`): which results chart and how, and `ask --chart` at 80 columns."""

from __future__ import annotations

from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from slmsql_cli.chart import MAX_ROWS, chart_spec, terminal_bars
from slmsql_cli.cli import app, ask_cmd
from slmsql_cli.targets.result import ExecResult

DEMO = Path(__file__).resolve().parents[1] / "slmsql_cli" / "data" / "bookshop.sqlite"
PER_AUTHOR = (
    "SELECT a.name, count(*) AS books, sum(b.price) AS price FROM authors AS a "
    "JOIN books AS b ON b.author_id = a.author_id GROUP BY a.author_id ORDER BY books DESC"
)


def said(sql: str) -> str:
    return f"<think>\nGroup them.\n</think>\n<answer>\n{sql}\n</answer>"


@pytest.mark.parametrize(
    "columns, rows, expected",
    [
        (["name", "n"], [("a", 1), ("b", 2)], ("bar", 0, [1])),
        (["year", "n"], [(2020, 1), (2021, 2)], ("line", 0, [1])),  # numbers only, rising: a line
        (["n", "m"], [(3, 1), (1, 2)], ("bar", 0, [1])),  # numbers only, not rising: bars
        (["month", "n", "m"], [("2024-01", 1, 2.5), ("2024-02", None, 3)], ("line", 0, [1, 2])),
        (["n", "name"], [(1, "a")], ("bar", 1, [0])),  # the text column is the label wherever it is
        (["name", "city", "n"], [("a", "x", 1)], None),  # two label columns
        (["n"], [(1,)], None),  # nothing to plot it against
        (["name", "n"], [], None),  # no rows
        (["name", "n"], [("a", None)], None),  # nothing but NULLs
        (["name", "n"], [(str(i), i) for i in range(MAX_ROWS + 1)], None),  # too many rows
    ],
)
def test_chart_spec(columns: list[str], rows: list[tuple], expected: tuple | None) -> None:
    spec = chart_spec(ExecResult(columns=columns, rows=rows))
    assert (None if spec is None else (spec.kind, spec.label, spec.values)) == expected


def test_bars_fit_the_width_and_scale_with_the_values() -> None:
    result = ExecResult(
        columns=["who", "n"], rows=[("a" * 100, 10), ("b", 5), ("c", None), ("d", -2.5), ("e", 0)]
    )
    spec = chart_spec(result)
    assert spec is not None
    lines = terminal_bars(result, spec, width=80)
    assert all(len(line) <= 80 for line in lines) and len(lines) == 5
    assert lines[0].startswith("a" * 25 + "…") and lines[0].endswith(" 10")
    assert lines[0].count("█") == 2 * lines[1].count("█") and lines[0].count("█") > 40
    assert lines[2].endswith("NULL") and "█" not in lines[2]
    assert abs(lines[3].count("░") - lines[0].count("█") / 4) <= 1 and lines[3].endswith("-2.50")
    assert "█" not in lines[4]


def test_ask_chart_in_80_columns(
    scripted_engine, isolated_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ask_cmd, "out", Console(width=80, soft_wrap=True, no_color=True))
    scripted_engine([said(PER_AUTHOR)] * 2 + [said("SELECT title, isbn FROM books")] * 2)
    args = ["ask", "--db", str(DEMO), "-m", "scripted", "-n", "2", "--no-merge", "--chart", "--max-rows", "3"]
    result = CliRunner().invoke(app, [*args, "How many books per author?"])
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == PER_AUTHOR  # the SQL whole, on one line, off a terminal (never cropped)
    assert all(len(line) <= 80 for line in lines[1:]), [line for line in lines if len(line) > 80]
    start = lines.index("books")  # one block per numeric column, named
    bars = lines[start + 1 : lines.index("price")]
    assert len(bars) >= 3 and all("█" in line for line in bars)  # every row, not only --max-rows
    lengths = [line.count("█") for line in bars]
    assert lengths == sorted(lengths, reverse=True) and lengths[0] > 30  # ORDER BY books DESC

    result = CliRunner().invoke(app, [*args, "List the books"])
    assert "no chart: it needs one label column and numeric columns" in result.stdout

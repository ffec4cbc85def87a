"""The SQL of an answer is printed whole in the table view: plain on one line in a pipe or a file
(whatever COLUMNS says), wrapped at word boundaries on a terminal (issue 27: it was cropped at
the console's width, 80 in a pipe).

Each case runs the real CLI in a child process whose stdout is a pipe or a pseudo-terminal, with
the scripted engine (tests/scripted_cli.py) writing one long query on the demo database.
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import sqlite3
import struct
import subprocess
import termios
from pathlib import Path

import scripted_cli

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "slmsql_cli" / "data" / "bookshop.sqlite"
LONG_SQL = (
    "SELECT g.name AS genre_name, count(*) AS number_of_books, round(avg(b.price), 2) AS average_price "
    "FROM books AS b JOIN genres AS g ON g.genre_id = b.genre_id WHERE b.published_year >= 1900 "
    "GROUP BY g.name ORDER BY number_of_books DESC, genre_name LIMIT 3"
)
QUESTION = "How many books are there per genre?"

ASK = ["ask", "--db", str(DEMO), "-m", "scripted", "-n", "1", "--no-merge", QUESTION]
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def env(cache: Path, **extra: str) -> dict[str, str | None]:
    unset: dict[str, str | None] = dict.fromkeys(("COLUMNS", "LINES", "FORCE_COLOR", "NO_COLOR"))
    return {**unset, "SLMSQL_CACHE_DIR": str(cache), "TERM": "xterm", **extra}


def in_a_pipe(
    args: list[str], cache: Path, sql: str = LONG_SQL, **extra: str
) -> subprocess.CompletedProcess[str]:
    return scripted_cli.run(sql, *args, env=env(cache, **extra))


def on_a_terminal(args: list[str], cache: Path, columns: int = 80) -> tuple[int, str]:
    """(exit code, what the terminal showed without its colour codes), stdout a `columns`-wide pty."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    proc = subprocess.Popen(
        scripted_cli.argv(LONG_SQL, *args),
        stdin=subprocess.DEVNULL,
        stdout=slave,
        stderr=subprocess.DEVNULL,
        cwd=REPO,
        env=scripted_cli.environ(env(cache)),
    )
    os.close(slave)
    shown = bytearray()
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        shown += chunk
    os.close(master)
    code = proc.wait(timeout=300)
    return code, ANSI.sub("", shown.decode("utf-8", "replace").replace("\r\n", "\n"))


def test_the_sql_is_one_whole_line_in_a_pipe(tmp_path: Path) -> None:
    assert len(LONG_SQL) > 200
    for extra in ({}, {"COLUMNS": "60"}):
        proc = in_a_pipe(ASK, tmp_path / "cache", **extra)
        assert proc.returncode == 0, proc.stderr
        lines = proc.stdout.splitlines()
        assert lines[0] == LONG_SQL, (extra, proc.stdout)
        assert "\x1b[" not in proc.stdout  # plain text: no colour codes in a file
        assert "genre_name" in lines[2]  # then the result table
        assert "Traceback" not in proc.stderr


def test_the_sql_wraps_at_word_boundaries_on_an_80_column_terminal(tmp_path: Path) -> None:
    code, shown = on_a_terminal(ASK, tmp_path / "cache", columns=80)
    assert code == 0, shown
    lines = shown.splitlines()
    sql_lines = lines[: next(i for i, line in enumerate(lines) if line.startswith("┏"))]
    assert len(sql_lines) >= 3 and all(len(line) <= 80 for line in sql_lines), sql_lines
    # every word whole and in order: the lines joined with spaces are the query again
    assert " ".join(line.strip() for line in sql_lines) == LONG_SQL, sql_lines


def test_explain_and_saved_show_print_the_sql_whole_in_a_pipe(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    explained = in_a_pipe(["explain", "--db", str(DEMO), LONG_SQL], cache, COLUMNS="60")
    assert explained.returncode == 0, explained.stderr
    assert explained.stdout.splitlines()[0] == LONG_SQL
    saved = in_a_pipe([*ASK[:-1], "--save", QUESTION], cache)
    assert saved.returncode == 0 and "saved as answer #1" in saved.stderr, saved.stderr
    shown = in_a_pipe(["saved", "show", "1"], cache, COLUMNS="60")
    assert shown.returncode == 0, shown.stderr
    assert LONG_SQL in shown.stdout.splitlines()


def test_long_values_wrap_in_their_cells_and_cut_rows_name_the_flag(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    everything = "SELECT group_concat(title, ' / ') AS every_title FROM books"
    proc = in_a_pipe(ASK, cache, sql=everything, COLUMNS="60")
    assert proc.returncode == 0, proc.stderr
    cells = [line.strip("│ ") for line in proc.stdout.splitlines() if line.startswith("│")]
    assert all(len(line) <= 60 for line in proc.stdout.splitlines()[1:])
    con = sqlite3.connect(DEMO)
    (titles,) = con.execute(everything).fetchone()
    con.close()
    assert " ".join(cells) == " ".join(titles.split()), cells  # whole, wrapped between words

    proc = in_a_pipe([*ASK[:-1], "--max-rows", "2", QUESTION], cache, sql="SELECT title FROM books")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    below = lines[next(i for i, line in enumerate(lines) if line.startswith("└")) + 1 :]
    caption = " ".join(line.strip() for line in below)  # wrapped to the table's width
    assert caption == "… 49 more rows; --max-rows N shows more, --csv or --json all", below

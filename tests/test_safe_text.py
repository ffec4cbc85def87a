"""Terminal and log injection (issue 31): untrusted text is printed through `safe_text` only.

A file name, an imported question or SQL, a database's values and a log field can carry ESC
(colours, a window title through OSC, a cleared screen), a newline or a carriage return (a forged
line), a right-to-left override or the Arabic letter mark U+061C (text shown in another order).
Each is shown as an escape; everything else, non-ASCII text included, is printed as it is.
"""

from __future__ import annotations

import io
import json
import unicodedata
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_fuzz_edges import FUZZ
from typer.testing import CliRunner

from slmsql_cli.cli import app
from slmsql_cli.safe_text import json_escaped, unsafe, visible

runner = CliRunner()
# what an attacker puts in a name: a forged line, a terminal title (OSC), red, an override, ALM
PAYLOAD = "x\nerror: FORGED\r\x1b]0;pwned\x07\x1b[31mred\u202egnp.exe\u061c\u2028\U000e0041\ud800"
RAW = ("\x1b", "\x07", "\r", "\u202e", "\u061c", "\u2028", "\U000e0041", "\ud800")


def test_each_unsafe_character_is_shown_as_an_escape() -> None:
    assert visible(PAYLOAD) == (
        "x\\nerror: FORGED\\r\\x1b]0;pwned\\x07\\x1b[31mred\\u202egnp.exe\\u061c\\u2028\\U000e0041\\ud800"
    )
    assert (
        visible("a\x9b2J\x7f\u200b\ufeff\u00ad\u2066\u2069")
        == "a\\x9b2J\\x7f\\u200b\\ufeff\\xad\\u2066\\u2069"
    )


@pytest.mark.parametrize(
    "text",
    [
        "How many pets?",
        "Combien d'élèves ? ½ — “quoted”",
        "كم عدد الحيوانات؟",  # right-to-left by its letters, not by an override
        "چند\u200cتا",  # Persian needs the zero-width non-joiner
        "👩\u200d👩\u200d👧",  # an emoji sequence joined by ZWJ
        "no\u00a0break\u3000space",
        "a\\x1b is a backslash, not ESC",
    ],
)
def test_ordinary_text_is_unchanged(text: str) -> None:
    assert visible(text) == text and visible(text, lines=True) == text and json_escaped(text) == text


def test_sql_keeps_its_lines_but_not_a_lone_carriage_return() -> None:
    sql = "SELECT name\r\nFROM pets\n\tWHERE kind = '\x1b[2J'\rDROP"
    assert visible(sql, lines=True) == "SELECT name\r\nFROM pets\n\tWHERE kind = '\\x1b[2J'\\rDROP"


@FUZZ
@given(st.text(alphabet=st.characters(codec=None), max_size=40))
def test_no_unsafe_character_survives_and_json_keeps_the_value(text: str) -> None:
    for shown in (visible(text), visible(text, lines=True)):
        assert not any(unsafe(c) for c in shown if c not in "\n\t\r"), repr(shown)
    assert "\n" not in visible(text) and "\r" not in visible(text) and "\t" not in visible(text)
    dumped = json_escaped(json.dumps({"v": text}, ensure_ascii=False))
    assert not any(unsafe(c) for c in dumped) and json.loads(dumped) == {"v": text}


def test_the_unsafe_set_is_the_unicode_categories() -> None:
    kinds = {unicodedata.category(chr(c)) for c in range(0x110000) if unsafe(chr(c))}
    assert kinds == {"Cc", "Cf", "Cs", "Zl", "Zp"}
    assert not unsafe("\u200c") and not unsafe("\u200d") and unsafe("\u061c") and unsafe("\u2066")


# ---- where it is used: the error line, saved list/show/import, the result table -------------------


def test_a_file_name_in_an_error_line_is_one_line_with_escapes(tmp_path: Path) -> None:
    name = str(tmp_path / f"{PAYLOAD.replace(chr(0xD800), '')}.sqlite")
    result = runner.invoke(app, ["prompt", "--db", name, "How many?"])
    assert result.exit_code == 2, result.output
    err = result.stderr
    assert not any(c in err for c in RAW), repr(err)
    lines = err.splitlines()
    assert lines[0].startswith("error: ") and "\\x1b]0;pwned\\x07" in lines[0] and "\\u202e" in lines[0]
    assert all(line.startswith(("error: ", "hint: ")) for line in lines), lines  # no forged line


def test_saved_list_show_and_import_print_an_imported_question_escaped(pets_db: Path, tmp_path: Path) -> None:
    """A shared team.jsonl carries ESC in a question and in its SQL."""
    question = "\x1b]0;pwned\x07How many pets\x1b[2J?\u202e"
    sql = "SELECT count(*) FROM pets WHERE name != '\x1b[31m'"
    team = tmp_path / "team.jsonl"
    team.write_text(
        json.dumps({"question": question, "sql": sql})
        + "\n"
        + json.dumps({"question": "\x1b[5mbad", "sql": 'SELECT * FROM "no\x1b[5mpe"'})
        + "\n",
        encoding="utf-8",
    )
    imported = runner.invoke(app, ["saved", "import", str(team), "--db", str(pets_db)])
    assert imported.exit_code == 1 and "\x1b" not in imported.stderr, repr(imported.stderr)
    assert "skipped line 2" in imported.stderr
    listed = runner.invoke(app, ["saved", "list"], env={"COLUMNS": "200"})
    assert listed.exit_code == 0 and "\\x1b]0;pwned\\x07How many pets\\x1b[2J?\\u202e" in listed.stdout
    shown = runner.invoke(app, ["saved", "show", "1"])
    assert shown.exit_code == 0 and not any(c in shown.stdout for c in RAW), repr(shown.stdout)
    assert "question: \\x1b]0;pwned" in shown.stdout and "name != '\\x1b[31m'" in shown.stdout
    exact = json.loads(runner.invoke(app, ["saved", "show", "1", "--json"]).stdout)
    assert (exact["question"], exact["sql"]) == (question, sql)  # --json keeps the text exact
    removed = runner.invoke(app, ["saved", "rm", "1"])
    assert removed.exit_code == 0 and "\x1b" not in removed.stderr


def test_a_result_table_shows_the_datas_escapes_as_text(tmp_path: Path, scripted_engine) -> None:
    import sqlite3

    db = tmp_path / "evil.sqlite"
    with sqlite3.connect(db) as con:
        con.execute('CREATE TABLE t ("n\x1b[31mame" TEXT)')
        con.execute("INSERT INTO t VALUES (?)", ["\x1b]0;pwned\x07\u202eexe.txt"])
    con.close()
    sql = "SELECT * FROM t"
    scripted_engine([f"<think>\nx\n</think>\n<answer>\n{sql}\n</answer>"] * 2)
    result = runner.invoke(app, ["ask", "--db", str(db), "-m", "scripted", "-n", "2", "--no-merge", "Show t"])
    assert result.exit_code == 0, result.output
    assert not any(c in result.stdout for c in RAW), repr(result.stdout)
    assert "n\\x1b[31mame" in result.stdout and "\\x1b]0;pwned\\x07\\u202eexe.txt" in result.stdout


def test_a_log_line_escapes_the_arabic_letter_mark() -> None:
    from slmsql_cli.serve.requestlog import RequestLog

    for json_lines in (False, True):
        out = io.StringIO()
        RequestLog(json_lines=json_lines, stream=out).write(database="a\u061cb\u2066c\U000e0041")
        line = out.getvalue()
        assert line.isascii() and line.count("\n") == 1, line
        assert "\\u061c" in line and "\\u2066" in line and "\\udb40\\udc41" in line

"""Data files as `--db`: CSV, TSV, JSON, JSON Lines, Parquet and Excel become one cached SQLite file.

Every file is written in tmp_path by the test with the format's own library (csv text, json,
pyarrow, openpyxl) and read back through the real CLI or `files.as_sqlite` (what `--db` calls).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import openpyxl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import REPO, Slmsql
from typer.testing import CliRunner

from slmsql_cli import files
from slmsql_cli.cli import app
from slmsql_cli.errors import UserError

runner = CliRunner()


def prompt(*args: str | Path) -> tuple[int, str, str]:
    result = runner.invoke(app, ["prompt", *map(str, args)])
    return result.exit_code, result.stdout, result.stderr


def tables(db: Path) -> dict[str, str]:
    """{table: CREATE statement} of an imported database."""
    with sqlite3.connect(db) as conn:
        return dict(conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table' ORDER BY rowid"))


def rows(db: Path, sql: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


PEOPLE_CSV = (
    "id,full name,price,born,zip,mixed,empty\n"
    "1,Ann,2.5,2020-01-02,02134,7,\n"
    '2,"Smith, J",,2021-03-04,10001,seven,\n'
    "3,Bob,7,,,8,\n"
)


def test_csv_prompt_is_the_prompt_of_the_same_data_loaded_by_hand(
    tmp_path: Path, isolated_cache: Path
) -> None:
    csv_file = write(tmp_path / "people.csv", PEOPLE_CSV)
    by_hand = tmp_path / "people.sqlite"
    with sqlite3.connect(by_hand) as conn:
        conn.execute(
            'CREATE TABLE people (id INTEGER, "full name" TEXT, price REAL, born TEXT, zip TEXT, mixed TEXT, empty TEXT)'
        )
        conn.executemany(
            "INSERT INTO people VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (1, "Ann", 2.5, "2020-01-02", "02134", "7", None),
                (2, "Smith, J", None, "2021-03-04", "10001", "seven", None),
                (3, "Bob", 7.0, None, None, "8", None),
            ],
        )
    conn.close()
    question = "What does Ann pay?"
    code, from_csv, err = prompt("--db", csv_file, question)
    assert code == 0, err
    assert prompt("--db", by_hand, question)[1] == from_csv
    assert "`full name` text" in from_csv


# (values of one CSV column, the type it gets): the inference rules of files/writer.py
TYPE_CASES = [
    (["1", "-2", "+3", "0"], "INTEGER"),
    (["1", "2.5", "1e5", ".5", "-1."], "REAL"),
    (["2024-01-02", "2024-02-03"], "TEXT"),  # ISO dates stay text: SQLite's date functions read them
    (["007", "12"], "TEXT"),  # leading zeros: a code, not a number
    (["1_000", "5"], "TEXT"),
    (["1,000", "5"], "TEXT"),
    (["nan", "1.5"], "TEXT"),
    (["inf", "2"], "TEXT"),
    ([" 12", "3"], "TEXT"),
    (["99999999999999999999", "1"], "TEXT"),  # beyond 64 bits
    (["9223372036854775807", "1"], "INTEGER"),
    (["1", "x"], "TEXT"),  # mixed
    (["", ""], "TEXT"),  # no values at all
    (["", "4"], "INTEGER"),  # an empty cell is NULL, not a value
]


def test_column_types_are_inferred_from_every_value(tmp_path: Path, isolated_cache: Path) -> None:
    header = ",".join(f"c{i}" for i in range(len(TYPE_CASES)))
    lines = [",".join(f'"{values[r]}"' for values, _ in TYPE_CASES) for r in range(2)]
    db = files.as_sqlite(write(tmp_path / "types.csv", "\n".join([header, *lines]) + "\n"))
    declared = {name: type_ for _, name, type_, *_ in sqlite3.connect(db).execute("PRAGMA table_info(types)")}
    assert declared == {f"c{i}": expected for i, (_, expected) in enumerate(TYPE_CASES)}
    stored = rows(db, "SELECT c0, c1, c4, c12, c13 FROM types ORDER BY rowid")
    assert stored == [(1, 1.0, "1_000", None, None), (-2, 2.5, "5", None, 4)]


def test_a_type_is_decided_by_the_whole_file_not_its_first_rows(tmp_path: Path, isolated_cache: Path) -> None:
    lines = ["n"] + [str(i) for i in range(5000)] + ["n/a"]
    db = files.as_sqlite(write(tmp_path / "late.csv", "\n".join(lines) + "\n"))
    assert tables(db)["late"] == 'CREATE TABLE "late" ("n" TEXT)'
    assert rows(db, "SELECT count(*), max(n) FROM late") == [(5001, "n/a")]


def test_tsv_and_semicolon_separated_csv(tmp_path: Path, isolated_cache: Path) -> None:
    tsv = write(tmp_path / "scores.tsv", "name\tscore\nAnn, the first\t3\n")
    semi = write(tmp_path / "prices.csv", "item;price\npen;1.5\nink;2\n")
    db = files.as_sqlite([tsv, semi])
    assert rows(db, "SELECT * FROM scores") == [("Ann, the first", 3)]
    assert rows(db, "SELECT * FROM prices") == [("pen", 1.5), ("ink", 2.0)]


def test_column_names_are_kept_and_made_unique(tmp_path: Path, isolated_cache: Path) -> None:
    db = files.as_sqlite(
        write(tmp_path / "Sales 2024.csv", 'Unit Price,"unit price",,"say ""hi"""\n1,2,3,4\n')
    )
    assert tables(db) == {
        "Sales 2024": 'CREATE TABLE "Sales 2024" ("Unit Price" INTEGER, "unit price_2" INTEGER, '
        '"column_3" INTEGER, "say ""hi""" INTEGER)'
    }


def test_json_array_flattens_objects_and_keeps_lists_as_json(tmp_path: Path, isolated_cache: Path) -> None:
    records = [
        {"id": 1, "who": {"name": "Ann", "age": 30}, "tags": ["a", "b"], "vip": True},
        {"id": 2, "who": {"name": "Bob"}, "vip": False, "note": "late"},
    ]
    db = files.as_sqlite(write(tmp_path / "orders.json", json.dumps(records)))
    assert tables(db)["orders"] == (
        'CREATE TABLE "orders" ("id" INTEGER, "who.name" TEXT, "who.age" INTEGER, "tags" TEXT, '
        '"vip" INTEGER, "note" TEXT)'
    )
    assert rows(db, "SELECT * FROM orders") == [
        (1, "Ann", 30, '["a", "b"]', 1, None),
        (2, "Bob", None, None, 0, "late"),
    ]


@pytest.mark.parametrize("name", ["events.jsonl", "events.ndjson", "events.json"])
def test_json_lines_add_columns_as_new_keys_appear(name: str, tmp_path: Path, isolated_cache: Path) -> None:
    lines = ['{"a": 1, "b": "x"}', "", '{"a": 2.5, "c": null}'] + [f'{{"a": {i}}}' for i in range(3000)]
    lines.append('{"a": 0, "late": "key"}')  # a new column after the first batch of rows
    db = files.as_sqlite(write(tmp_path / name, "\n".join(lines) + "\n"))
    assert tables(db)["events"] == 'CREATE TABLE "events" ("a" REAL, "b" TEXT, "c" TEXT, "late" TEXT)'
    assert rows(db, "SELECT count(*), count(late), sum(b IS NULL) FROM events") == [(3003, 1, 3002)]


def test_parquet_types_structs_flattened_lists_as_json(tmp_path: Path, isolated_cache: Path) -> None:
    table = pa.table(
        {
            "id": pa.array([1, 2, None], pa.int32()),
            "price": [1.5, None, 3.0],
            "ok": [True, False, None],
            "day": pa.array([dt.date(2024, 5, 1), None, dt.date(2024, 5, 3)]),
            "at": pa.array([dt.datetime(2024, 5, 1, 13, 45), None, None], pa.timestamp("s")),
            "who": pa.array([{"name": "Ann", "home": {"city": "Oslo"}}, None, {"name": "Cy", "home": None}]),
            "tags": [["a"], [], None],
            "city": pa.array(["Oslo", "Rome", "Oslo"]).dictionary_encode(),
            "raw": [b"\x00\x01", None, b""],
        }
    )
    path = tmp_path / "visits.parquet"
    pq.write_table(table, path)
    db = files.as_sqlite(path)
    assert tables(db)["visits"] == (
        'CREATE TABLE "visits" ("id" INTEGER, "price" REAL, "ok" INTEGER, "day" TEXT, "at" TEXT, '
        '"who.name" TEXT, "who.home.city" TEXT, "tags" TEXT, "city" TEXT, "raw" BLOB)'
    )
    assert rows(db, "SELECT * FROM visits") == [
        (1, 1.5, 1, "2024-05-01", "2024-05-01 13:45:00", "Ann", "Oslo", '["a"]', "Oslo", b"\x00\x01"),
        (2, None, 0, None, None, None, None, "[]", "Rome", None),
        (None, 3.0, None, "2024-05-03", None, "Cy", None, None, "Oslo", b""),
    ]


def test_excel_one_table_per_sheet_with_merged_headers(tmp_path: Path, isolated_cache: Path) -> None:
    book = openpyxl.Workbook()
    sales = book.active
    sales.title = "Sales"
    sales.append(["Region", "Sales", None, "Note"])
    sales.append([None, "Q1", "Q2", None])
    sales.merge_cells("A1:A2")  # one header cell over two rows
    sales.merge_cells("B1:C1")  # a group title over Q1 and Q2
    sales.append(["North", 10, 20.5, "ok"])
    sales.append([None, None, None, None])  # a blank row inside the data
    sales.append(["South", 5, 7, dt.datetime(2024, 5, 1)])
    people = book.create_sheet("People")
    people.append(["name", "seen"])
    people.append(["Ann", dt.datetime(2024, 5, 1, 13, 45)])
    book.create_sheet("Empty")
    path = tmp_path / "report.xlsx"
    book.save(path)
    db = files.as_sqlite(path)
    assert tables(db) == {
        "Sales": 'CREATE TABLE "Sales" ("Region" TEXT, "Sales Q1" INTEGER, "Sales Q2" REAL, "Note" TEXT)',
        "People": 'CREATE TABLE "People" ("name" TEXT, "seen" TEXT)',
    }
    assert rows(db, "SELECT * FROM Sales") == [("North", 10, 20.5, "ok"), ("South", 5, 7.0, "2024-05-01")]
    assert rows(db, "SELECT * FROM People") == [("Ann", "2024-05-01 13:45:00")]


def test_a_large_workbook_is_streamed_without_merges(
    tmp_path: Path, isolated_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from slmsql_cli.files import excel

    monkeypatch.setattr(excel, "MERGES_MAX_BYTES", 0)  # every workbook counts as large
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["Sales", None])
    sheet.append(["Q1", "Q2"])
    sheet.merge_cells("A1:B1")
    sheet.append([1, 2.5])
    book.save(tmp_path / "big.xlsx")
    db = tmp_path / "big.sqlite"  # imported in this process (as_sqlite's worker would not see the patch)
    files.import_files([tmp_path / "big.xlsx"], db, None)
    assert tables(db) == {"big": 'CREATE TABLE "big" ("Sales" TEXT, "column_2" TEXT)'}
    assert rows(db, "SELECT * FROM big") == [("Q1", "Q2"), ("1", "2.5")]


def test_a_workbook_with_one_sheet_is_named_after_its_file(tmp_path: Path, isolated_cache: Path) -> None:
    book = openpyxl.Workbook()
    book.active.append(["a"])
    book.active.append([1])
    book.save(tmp_path / "budget.xlsx")
    assert list(tables(files.as_sqlite(tmp_path / "budget.xlsx"))) == ["budget"]


def test_folder_and_several_files_make_one_database(tmp_path: Path, isolated_cache: Path) -> None:
    folder = tmp_path / "exports"
    folder.mkdir()
    write(folder / "orders.csv", "id,customer\n1,7\n")
    write(folder / "customers.jsonl", '{"id": 7, "name": "Ann"}\n')
    write(folder / "README.txt", "not data")
    write(folder / ".hidden.csv", "x\n1\n")
    assert list(tables(files.as_sqlite(folder))) == ["customers", "orders"]  # name order

    extra = write(tmp_path / "returns.csv", "order_id\n1\n")
    db = files.as_sqlite([folder / "orders.csv", folder / "customers.jsonl", extra])
    assert list(tables(db)) == ["orders", "customers", "returns"]  # --db order
    assert db.name == "orders+2.sqlite"


def test_ask_reads_the_imported_tables(tmp_path: Path, isolated_cache: Path, scripted_engine) -> None:
    orders = write(tmp_path / "orders.csv", "id,customer,total\n1,7,9.5\n2,7,0.5\n3,8,1\n")
    customers = write(
        tmp_path / "customers.json", json.dumps([{"id": 7, "name": "Ann"}, {"id": 8, "name": "Bo"}])
    )
    sql = "SELECT c.name, sum(o.total) FROM orders AS o JOIN customers AS c ON c.id = o.customer GROUP BY c.name"
    scripted_engine([f"<think>join</think><answer>{sql}</answer>"] * 2)
    args = ["ask", "--db", str(orders), "--db", str(customers), "--model", "scripted", "-n", "2", "--json"]
    result = runner.invoke(app, [*args, "Who spent how much?"])
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["rows"] == [["Ann", 10.0], ["Bo", 1.0]]
    assert [c["group"] for c in doc["candidates"]] == [0, 0]


def test_chat_opens_data_files(tmp_path: Path, isolated_cache: Path, scripted_engine) -> None:
    scripted_engine([])
    csv_file = write(tmp_path / "stock.csv", "item,count\npen,3\n")
    result = runner.invoke(app, ["chat", "--db", str(csv_file), "--model", "scripted"], input="exit\n")
    assert result.exit_code == 0, result.stderr
    assert "slmsql chat on stock.csv" in result.stderr


# ---- the cache --------------------------------------------------------------------------------


def test_the_import_is_reused_until_a_file_changes(tmp_path: Path, isolated_cache: Path) -> None:
    csv_file = write(tmp_path / "stock.csv", "item,count\npen,3\n")
    first = files.as_sqlite(csv_file)
    assert first.is_relative_to(isolated_cache)
    built = first.stat().st_mtime_ns
    assert files.as_sqlite(csv_file) == first and first.stat().st_mtime_ns == built  # not rebuilt

    write(csv_file, "item,count\npen,3\nink,4\n")
    os.utime(csv_file, ns=(built + 10**9, built + 10**9))  # a new mtime even on a coarse clock
    assert rows(files.as_sqlite(csv_file), "SELECT * FROM stock") == [("pen", 3), ("ink", 4)]

    folder = tmp_path / "dir"
    folder.mkdir()
    write(folder / "a.csv", "x\n1\n")
    assert list(tables(files.as_sqlite(folder))) == ["a"]
    write(folder / "b.csv", "y\n2\n")  # a file added to the folder is a change
    assert list(tables(files.as_sqlite(folder))) == ["a", "b"]


def test_without_a_writable_cache_the_import_lives_in_a_temporary_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    blocked = write(tmp_path / "not-a-folder", "")
    monkeypatch.setenv("SLMSQL_CACHE_DIR", str(blocked))
    db = files.as_sqlite(write(tmp_path / "stock.csv", "item\npen\n"))
    assert not db.is_relative_to(tmp_path) and rows(db, "SELECT * FROM stock") == [("pen",)]
    assert "running without a cache" in capsys.readouterr().err


def test_large_imports_show_progress(
    tmp_path: Path, isolated_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(files, "PROGRESS_MIN_BYTES", 0)
    # rich draws its bar on an interactive terminal only: FORCE_COLOR makes stderr one, and TERM must
    # not be "dumb" (as it is in some CI shells) or rich keeps the bar to itself
    monkeypatch.setenv("FORCE_COLOR", "1")
    monkeypatch.setenv("TERM", "xterm-256color")
    monkeypatch.delenv("TTY_INTERACTIVE", raising=False)
    csv_file = write(tmp_path / "stock.csv", "item,count\n" + "pen,3\n" * 30_000)
    code, _, err = prompt("--db", csv_file, "How many pens?")
    assert code == 0, err
    assert "importing stock.csv" in err


# ---- bad input: one error line naming the file (and the line) -----------------------------------

BAD_FILES = [
    ("empty.csv", "", "empty.csv is empty"),
    ("blank.csv", "\n\n", "blank.csv is empty"),
    ("ragged.csv", "a,b\n1,2\n3,4,5\n", "ragged.csv line 3: 3 fields, the header has 2"),
    ("short.csv", "a,b\n1,2\n\n3\n", "short.csv line 4: 1 fields, the header has 2"),
    ("quote.csv", 'a,b\n1,"x"y\n', "quote.csv line 2: ',' expected after '\"'"),
    ("bad.json", '[{"a": 1},\n {"a": 2,}]', "bad.json line 2 column 10: Expecting property name"),
    ("object.json", '"text"', "object.json is not an array of records"),
    ("wrapped.json", '{"data": [\n  {"a": 1}\n]}', "wrapped.json is not an array of records"),
    ("none.json", "[]", "none.json holds no records"),
    ("items.json", "[1, 2]", "items.json: item 1 of the array is int, not a record"),
    ("bad.jsonl", '{"a": 1}\n{"a": }\n', "bad.jsonl line 2 column 7: Expecting value"),
    ("list.jsonl", '{"a": 1}\n[1]\n', "list.jsonl line 2 is list, not a record"),
    ("none.jsonl", "\n", "none.jsonl holds no records"),
    ("fake.xlsx", "not a zip", "cannot read"),
    ("fake.parquet", "not parquet", "cannot read"),
]


@pytest.mark.parametrize("name, content, message", BAD_FILES, ids=[c[0] for c in BAD_FILES])
def test_a_malformed_file_is_one_error_naming_file_and_line(
    name: str, content: str, message: str, tmp_path: Path, isolated_cache: Path
) -> None:
    code, out, err = prompt("--db", write(tmp_path / name, content), "q?")
    assert code == 2 and not out
    assert message in err, err
    assert "Traceback" not in err and err.startswith("error:")


def test_text_that_is_not_utf8_names_its_line(tmp_path: Path, isolated_cache: Path) -> None:
    path = tmp_path / "latin.csv"
    path.write_bytes("city\nOslo\nS\u00e3o Paulo\n".encode("latin-1"))
    code, _, err = prompt("--db", path, "q?")
    assert code == 2 and "line 3 of" in err and "is not UTF-8 text" in err and "iconv" in err


def test_two_sources_of_the_same_table_name_are_refused(tmp_path: Path, isolated_cache: Path) -> None:
    folder = tmp_path / "dir"
    folder.mkdir()
    write(folder / "Orders.csv", "a\n1\n")
    write(folder / "orders.jsonl", '{"a": 1}\n')
    with pytest.raises(UserError, match="would both become the table 'orders'") as info:
        files.as_sqlite(folder)
    assert "Orders.csv" in info.value.message and "orders.jsonl" in info.value.message


@pytest.mark.parametrize(
    "make, message",
    [
        (
            lambda t: [write(t / "a.csv", "x\n1\n"), REPO / "slmsql_cli/data/bookshop.sqlite"],
            "is not a data file",
        ),
        (lambda t: [t / "missing.csv"], "file not found"),
        (lambda t: [write(t / "a.csv", "x\n1\n"), t / "missing.json"], "file not found"),
        (lambda t: [t], "holds no data files"),
    ],
    ids=["sqlite-among-files", "missing", "one-missing", "folder-without-data"],
)
def test_wrong_db_arguments(make: Any, message: str, tmp_path: Path, isolated_cache: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    code, _, err = prompt(*[a for p in make(folder) for a in ("--db", p)], "q?")
    assert code == 2 and message in err, err


@pytest.mark.parametrize("module, suffix", [("pyarrow", ".parquet"), ("openpyxl", ".xlsx")])
def test_a_missing_extra_is_named(slmsql: Slmsql, module: str, suffix: str, tmp_path: Path) -> None:
    data = tmp_path / f"data{suffix}"
    data.write_bytes(b"anything")
    hide = f"import sys\nsys.modules[{module!r}] = None"
    proc = slmsql(
        "prompt", "--db", data, "q?", code=hide, cache=tmp_path / "cache", env={"COLUMNS": "200"}, timeout=120
    )
    assert proc.returncode == 2
    assert f"needs the {module} package" in proc.stderr and "slmsql[files]" in proc.stderr


# ---- a large file: bounded memory (slow) -----------------------------------------------------------

PEAK_RSS = """
import resource, sys
from slmsql_cli.files import as_sqlite
as_sqlite(sys.argv[1])
# the import runs in a worker process: the larger of this process and its children
print(max(resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)))
"""


def _peak_rss_kb(csv_file: Path, cache: Path) -> int:
    proc = subprocess.run(
        [sys.executable, "-c", PEAK_RSS, str(csv_file)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "SLMSQL_CACHE_DIR": str(cache)},
        check=True,
        timeout=900,
    )
    return int(proc.stdout.split()[-1])


@pytest.mark.slow
def test_a_large_csv_is_imported_in_bounded_memory(tmp_path: Path) -> None:
    """Ten times the rows cost (almost) no more memory: the file is streamed, not loaded."""
    line = "{i},customer {i},{amount},2024-05-{day:02d},note with some words in it\n"

    def make(path: Path, n: int) -> Path:
        with path.open("w") as fh:
            fh.write("id,name,amount,day,note\n")
            for i in range(n):
                fh.write(line.format(i=i, amount="" if i % 13 == 0 else i / 7, day=i % 28 + 1))
        return path

    small = _peak_rss_kb(make(tmp_path / "small.csv", 60_000), tmp_path / "c1")
    large_csv = make(tmp_path / "large.csv", 600_000)
    assert large_csv.stat().st_size > 40 * 1024 * 1024
    large = _peak_rss_kb(large_csv, tmp_path / "c2")
    assert large - small < 20 * 1024, f"peak RSS {small} KiB for 60k rows, {large} KiB for 600k"


# ---- the real model (slow through the gemma_gguf fixture) ---------------------------------------


def test_ask_and_bench_with_the_test_model_on_a_csv(slmsql: Slmsql, gemma_gguf: Path, tmp_path: Path) -> None:
    books = write(
        tmp_path / "books.csv", "id,title,author,year\n1,Dubliners,Joyce,1914\n2,Ulysses,Joyce,1922\n"
    )
    cache = tmp_path / "cache"
    proc = slmsql(
        "ask",
        "--db",
        str(books),
        "--model",
        str(gemma_gguf),
        "-n",
        "3",
        "--max-tokens",
        "48",
        "--no-merge",
        "--json",
        "How many books are there?",
        cache=cache,
    )
    # Gemma 270M is a base model: it may or may not write SQL. Exit 0 with an answer, 1 without one.
    assert proc.returncode in (0, 1), proc.stderr
    doc = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(doc["candidates"]) == 3 and doc["generation"]["generated_tokens"] > 0
    for candidate in doc["candidates"]:  # every SQL the model wrote was executed on the imported table
        assert (candidate["sql"] is None) == (candidate["error"] == "no SQL")

    proc = slmsql("bench", "--db", books, "--model", gemma_gguf, "-n", "1", "--max-tokens", "4", cache=cache)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1])


def test_eval_scores_predictions_on_a_data_file(tmp_path: Path, isolated_cache: Path) -> None:
    csv_file = write(tmp_path / "people.csv", PEOPLE_CSV)
    questions = tmp_path / "dev.json"
    gold = "SELECT count(*) FROM people"
    questions.write_text(json.dumps([{"db_id": "people", "question": "How many people?", "query": gold}]))
    preds = write(tmp_path / "pred.sql", "SELECT count(*) + 0 FROM people\n")
    result = runner.invoke(
        app, ["eval", "-q", str(questions), "--db-dir", str(csv_file), "--predictions", str(preds), "--json"]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert (summary["correct"], summary["total"], summary["gold_errors"]) == (1, 1, 0)

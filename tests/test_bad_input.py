"""Bad input gives one clear line, a hint and a non-zero exit through the real CLI; never a traceback.

One test per case of issue 10 (items 4 and 6) and of the hostile pass that preceded the fixes.
Bytes that are not UTF-8 and pipes need a real process (subprocess); the rest use CliRunner.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from pathlib import Path

import pytest
from conftest import Slmsql
from typer.testing import CliRunner

from slmsql_cli.cli import app

runner = CliRunner()


def make_db(path: Path) -> Path:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE albums (id INTEGER PRIMARY KEY, title TEXT)")
    conn.executemany("INSERT INTO albums VALUES (?, ?)", [(1, "Blue"), (2, "Kind of Blue")])
    conn.commit()
    conn.close()
    return path


def invoke(*args: object, tmp_path: Path):  # type: ignore[no-untyped-def]
    return runner.invoke(app, [str(a) for a in args], env={"SLMSQL_CACHE_DIR": str(tmp_path / "cache")})


def assert_one_line(code: int | None, stderr: str, *needles: str) -> str:
    """A non-zero exit, no traceback, exactly one `error:` line holding the needles, and a hint."""
    assert code not in (0, None), stderr
    assert "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, stderr
    for needle in needles:
        assert needle in errors[0], stderr
    assert any(line.startswith("hint:") for line in stderr.splitlines()), stderr
    return errors[0]


def assert_usage_error(result, option: str) -> None:  # type: ignore[no-untyped-def]
    """Typer's own refusal of an option value: exit 2, the option named, no traceback."""
    assert result.exit_code == 2, result.output
    assert (
        "Traceback" not in result.output
        and result.exception is None
        or isinstance(result.exception, SystemExit)
    )
    assert f"Invalid value for '{option}'" in result.output, result.output


# --- text that is not UTF-8 --------------------------------------------------------------------


@pytest.mark.parametrize("command", ["ask", "prompt"])
def test_question_that_is_not_utf8(slmsql: Slmsql, command: str, tmp_path: Path) -> None:
    db = make_db(tmp_path / "music.sqlite")
    proc = slmsql(
        command,
        "--db",
        str(db),
        b"how many \xff\xfe albums",
        cwd=tmp_path,
        cache=tmp_path / "cache",
        timeout=300,
    )
    assert_one_line(proc.returncode, proc.stderr, "question is not valid UTF-8")
    assert proc.stdout == ""


def test_evidence_that_is_not_utf8(slmsql: Slmsql, tmp_path: Path) -> None:
    db = make_db(tmp_path / "music.sqlite")
    proc = slmsql(
        "prompt",
        "--db",
        str(db),
        "-e",
        b"blue = \xe9",
        "how many albums",
        cwd=tmp_path,
        cache=tmp_path / "cache",
        timeout=300,
    )
    assert_one_line(proc.returncode, proc.stderr, "evidence is not valid UTF-8")


@pytest.mark.slow
def test_chat_input_that_is_not_utf8(slmsql: Slmsql, gemma_gguf: Path, tmp_path: Path) -> None:
    db = make_db(tmp_path / "music.sqlite")
    proc = slmsql(
        "chat",
        "--db",
        str(db),
        "--model",
        str(gemma_gguf),
        "-n",
        "1",
        stdin=b"how many \xff albums\n",
        cwd=tmp_path,
        cache=tmp_path / "cache",
        timeout=300,
    )
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "the question is not valid UTF-8 text" in proc.stderr
    assert "1 question(s) failed" in proc.stderr


def test_database_name_that_is_not_utf8_still_opens(slmsql: Slmsql, tmp_path: Path) -> None:
    db = make_db(tmp_path / "music.sqlite")
    odd = os.path.join(os.fsencode(tmp_path), b"caf\xe9.sqlite")
    try:
        os.rename(os.fsencode(db), odd)
    except OSError:
        pytest.skip("this file system refuses names that are not UTF-8")
    proc = slmsql(
        "prompt", "--db", odd, "how many albums", cwd=tmp_path, cache=tmp_path / "cache", timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    assert "CREATE TABLE albums" in proc.stdout


# --- pipes as --db -----------------------------------------------------------------------------


def _pipe_from(data: bytes) -> int:
    """The read end of a pipe that a thread fills with `data` and then closes."""
    r, w = os.pipe()

    def feed() -> None:
        try:
            with os.fdopen(w, "wb") as fh:
                fh.write(data)
        except BrokenPipeError:  # the reader stopped early, as it should
            pass

    threading.Thread(target=feed, daemon=True).start()
    return r


def test_process_substitution_is_read_into_a_temporary_copy(slmsql: Slmsql, tmp_path: Path) -> None:
    db = make_db(tmp_path / "music.sqlite")
    r = _pipe_from(db.read_bytes())
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    try:
        proc = slmsql(
            "prompt", "--db", f"/dev/fd/{r}", "how many albums",
            cwd=tmp_path, cache=tmp_path / "cache", timeout=300, pass_fds=(r,), env={"TMPDIR": str(tmp)},
        )  # fmt: skip
    finally:
        os.close(r)
    assert proc.returncode == 0, proc.stderr
    assert "CREATE TABLE albums" in proc.stdout
    assert list(tmp.iterdir()) == []  # the copy is gone


def test_pipe_that_does_not_carry_sqlite(slmsql: Slmsql, tmp_path: Path) -> None:
    r = _pipe_from(b"id,title\n1,Blue\n")
    try:
        proc = slmsql(
            "prompt",
            "--db",
            f"/dev/fd/{r}",
            "how many",
            cwd=tmp_path,
            cache=tmp_path / "cache",
            timeout=300,
            pass_fds=(r,),
        )
    finally:
        os.close(r)
    assert_one_line(proc.returncode, proc.stderr, "does not carry a SQLite database")


def test_endless_device_is_refused_at_its_first_bytes(slmsql: Slmsql, tmp_path: Path) -> None:
    proc = slmsql(
        "prompt", "--db", "/dev/zero", "how many", cwd=tmp_path, cache=tmp_path / "cache", timeout=60
    )
    assert_one_line(proc.returncode, proc.stderr, "/dev/zero does not carry a SQLite database")


@pytest.mark.slow  # waits out the 10 s idle bound
@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes here")
def test_named_pipe_without_a_writer_does_not_hang(slmsql: Slmsql, tmp_path: Path) -> None:
    fifo = tmp_path / "db.fifo"
    os.mkfifo(fifo)
    proc = slmsql(
        "prompt", "--db", str(fifo), "how many", cwd=tmp_path, cache=tmp_path / "cache", timeout=120
    )
    assert_one_line(proc.returncode, proc.stderr, "nothing was written to", "db.fifo")


# --- eval --------------------------------------------------------------------------------------


@pytest.fixture()
def bench(tmp_path: Path) -> dict[str, Path]:
    """A one-question Spider-style benchmark: questions, databases and a correct predictions file."""
    (tmp_path / "dbs" / "music").mkdir(parents=True)
    make_db(tmp_path / "dbs" / "music" / "music.sqlite")
    questions = tmp_path / "dev.json"
    questions.write_text(
        json.dumps(
            [{"question": "How many albums?", "query": "SELECT count(*) FROM albums", "db_id": "music"}]
        )
    )
    pred = tmp_path / "pred.sql"
    pred.write_text("SELECT count(*) FROM albums\n")
    binary = tmp_path / "blob.bin"
    binary.write_bytes(bytes(range(256)) * 4)
    return {"q": questions, "dbs": tmp_path / "dbs", "pred": pred, "binary": binary}


def test_eval_works_on_the_fixture(bench: dict[str, Path], tmp_path: Path) -> None:
    result = invoke(
        "eval", "-q", bench["q"], "--db-dir", bench["dbs"], "-p", bench["pred"], tmp_path=tmp_path
    )
    assert result.exit_code == 0, result.output
    assert "100.00" in result.stdout


def test_eval_numeric_db_id(bench: dict[str, Path], tmp_path: Path) -> None:
    bench["q"].write_text(json.dumps([{"question": "How many?", "query": "SELECT 1", "db_id": 5}]))
    result = invoke(
        "eval", "-q", bench["q"], "--db-dir", bench["dbs"], "-p", bench["pred"], tmp_path=tmp_path
    )
    assert_one_line(result.exit_code, result.stderr, "db_id is 5, not text")


@pytest.mark.parametrize("suffix", [".sql", ".json"])
def test_eval_binary_predictions(suffix: str, bench: dict[str, Path], tmp_path: Path) -> None:
    pred = tmp_path / f"pred{suffix}"
    pred.write_bytes(bench["binary"].read_bytes())
    result = invoke("eval", "-q", bench["q"], "--db-dir", bench["dbs"], "-p", pred, tmp_path=tmp_path)
    assert_one_line(result.exit_code, result.stderr, "is not text")


def test_eval_predictions_json_with_keys_that_are_not_numbers(bench: dict[str, Path], tmp_path: Path) -> None:
    pred = tmp_path / "pred.json"
    pred.write_text(json.dumps({"first": "SELECT 1\t----- bird -----\tmusic"}))
    result = invoke("eval", "-q", bench["q"], "--db-dir", bench["dbs"], "-p", pred, tmp_path=tmp_path)
    assert_one_line(result.exit_code, result.stderr, "the key 'first' is not a question number")


def test_eval_binary_out_file_is_refused_and_left_alone(bench: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "results.jsonl"
    out.write_bytes(bench["binary"].read_bytes())
    result = invoke(
        "eval",
        "-q",
        bench["q"],
        "--db-dir",
        bench["dbs"],
        "-p",
        bench["pred"],
        "--out",
        out,
        tmp_path=tmp_path,
    )
    assert_one_line(result.exit_code, result.stderr, "is not a results file")
    assert out.read_bytes() == bench["binary"].read_bytes()  # not truncated at its last newline


def test_eval_out_that_is_a_folder(bench: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "results"
    out.mkdir()
    result = invoke(
        "eval",
        "-q",
        bench["q"],
        "--db-dir",
        bench["dbs"],
        "-p",
        bench["pred"],
        "--out",
        out,
        tmp_path=tmp_path,
    )
    assert_one_line(result.exit_code, result.stderr, "is a folder")


def test_eval_db_dir_of_text_files(bench: dict[str, Path], tmp_path: Path) -> None:
    fake = tmp_path / "fake" / "music"
    fake.mkdir(parents=True)
    (fake / "music.sqlite").write_text("album,title\n1,Blue\n")
    (fake.parent / "notes.txt").write_text("not a database")
    result = invoke("eval", "-q", bench["q"], "--db-dir", fake.parent, "-p", bench["pred"], tmp_path=tmp_path)
    assert_one_line(result.exit_code, result.stderr, "is not a SQLite database")


def test_eval_db_dir_that_is_a_text_file(bench: dict[str, Path], tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not a database")
    result = invoke("eval", "-q", bench["q"], "--db-dir", text, "-p", bench["pred"], tmp_path=tmp_path)
    assert_one_line(result.exit_code, result.stderr, "notes.txt is not a SQLite database")


def test_eval_compare_of_files_that_are_not_results(bench: dict[str, Path], tmp_path: Path) -> None:
    result = invoke("eval", "compare", bench["q"], bench["binary"], tmp_path=tmp_path)
    assert_one_line(result.exit_code, result.stderr, "is not a result of slmsql eval")


# --- train --data ------------------------------------------------------------------------------


@pytest.fixture()
def train_extra() -> None:
    from slmsql_cli.cli.train_cmd import _TRAIN_PACKAGES

    for package in _TRAIN_PACKAGES:
        pytest.importorskip(package)


def _train(data: Path, tmp_path: Path):  # type: ignore[no-untyped-def]
    return invoke(
        "train", "--stage", "sft", "--base", "owner/model", "--data", data, "--out", tmp_path / "run",
        tmp_path=tmp_path,
    )  # fmt: skip


@pytest.mark.slow  # runs the train command (torch, datasets)
@pytest.mark.usefixtures("train_extra")
@pytest.mark.parametrize("suffix", [".json", ".jsonl", ".csv"])
def test_train_binary_data(suffix: str, tmp_path: Path) -> None:
    data = tmp_path / f"train{suffix}"
    data.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
    result = _train(data, tmp_path)
    assert_one_line(result.exit_code, result.stderr, "is not text")


@pytest.mark.slow  # runs the train command (torch, datasets)
@pytest.mark.usefixtures("train_extra")
def test_train_csv_with_an_unclosed_quote_names_the_line(tmp_path: Path) -> None:
    data = tmp_path / "train.csv"
    data.write_text('question,query,db_id\nHow many?,SELECT 1,music\n"Which one?,SELECT 2,music\n')
    result = _train(data, tmp_path)
    assert_one_line(result.exit_code, result.stderr, "train.csv line 3", "quoted field is never closed")


@pytest.mark.slow  # runs the train command (torch, datasets)
@pytest.mark.usefixtures("train_extra")
def test_train_jsonl_with_a_broken_line_names_it(tmp_path: Path) -> None:
    data = tmp_path / "train.jsonl"
    data.write_text('{"question": "a", "query": "SELECT 1", "db_id": "x"}\n{"question": \n')
    result = _train(data, tmp_path)
    assert_one_line(result.exit_code, result.stderr, "train.jsonl line 2 is not JSON")


# --- option values -----------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "-0.5"])
@pytest.mark.parametrize("command", ["ask", "chat", "eval"])
def test_temperature_that_is_not_a_usable_number(command: str, value: str, tmp_path: Path) -> None:
    db = make_db(tmp_path / "music.sqlite")
    args = {"ask": ["--db", db, "How many?"], "chat": ["--db", db], "eval": ["-q", "q.json", "--db-dir", db]}
    result = invoke(command, "--temperature", value, *args[command], tmp_path=tmp_path)
    assert_usage_error(result, "--temperature")


@pytest.mark.parametrize("value", ["inf", "nan"])
def test_timeout_that_is_not_finite(value: str, tmp_path: Path) -> None:
    db = make_db(tmp_path / "music.sqlite")
    result = invoke("ask", "--db", db, "--timeout", value, "How many?", tmp_path=tmp_path)
    assert_usage_error(result, "--timeout")


@pytest.mark.parametrize(
    ("command", "option", "value"),
    [("ask", "--seed", "-1"), ("ask", "--threads", "100000000"), ("bench", "-n", "1,100000")],
)
def test_numbers_that_crashed_the_engine(command: str, option: str, value: str, tmp_path: Path) -> None:
    db = make_db(tmp_path / "music.sqlite")
    result = invoke(
        command, "--db", db, option, value, *(["How many?"] if command == "ask" else []), tmp_path=tmp_path
    )
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and "Invalid value" in result.output


def test_tables_json_of_the_wrong_shape(tmp_path: Path) -> None:
    db = make_db(tmp_path / "music.sqlite")
    tables = tmp_path / "tables.json"
    tables.write_text(json.dumps([{"db_id": "music", "question": "not a schema"}]))
    result = invoke("prompt", "--db", db, "--tables", tables, "How many?", tmp_path=tmp_path)
    assert_one_line(result.exit_code, result.stderr, "is not in Spider/BIRD tables.json form")


# --- errors that tell the truth (item 6) -------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["--csv", "--sql-only"])
def test_ask_without_usable_sql_says_why(slmsql: Slmsql, mode: str, gemma_gguf: Path, tmp_path: Path) -> None:
    # Gemma 270M is a base model: in 16 tokens it writes no <answer>SQL</answer>.
    db = make_db(tmp_path / "music.sqlite")
    proc = slmsql(
        "ask", "--db", str(db), "--model", str(gemma_gguf), "-n", "1", "--no-merge",
        "--max-tokens", "16", "--temperature", "0", mode, "How many albums are there?",
        cwd=tmp_path, cache=tmp_path / "cache", timeout=300,
    )  # fmt: skip
    assert_one_line(proc.returncode, proc.stderr, "the model wrote no SQL")
    assert proc.stdout == ""  # no blank line pretending to be an answer


@pytest.mark.slow
def test_question_too_long_for_the_context_is_blamed_on_the_question(
    gemma_gguf: Path, tmp_path: Path
) -> None:
    db = make_db(tmp_path / "music.sqlite")
    question = "How many albums are there in the shop? " * 80  # about 800 tokens
    result = invoke(
        "ask", "--db", db, "--model", gemma_gguf, "--context", "512", "--max-tokens", "16", question,
        tmp_path=tmp_path,
    )  # fmt: skip
    line = assert_one_line(
        result.exit_code, result.stderr, "the question is too long for the model's context"
    )
    assert "table" not in line


@pytest.mark.slow
def test_max_tokens_larger_than_the_context_is_blamed_on_max_tokens(gemma_gguf: Path, tmp_path: Path) -> None:
    db = make_db(tmp_path / "music.sqlite")
    result = invoke(
        "ask", "--db", db, "--model", gemma_gguf, "--max-tokens", "10000000", "How many albums?",
        tmp_path=tmp_path,
    )  # fmt: skip
    assert_one_line(result.exit_code, result.stderr, "--max-tokens 10000000 leaves no room")


def test_eval_db_dir_whose_databases_are_empty(bench: dict[str, Path], tmp_path: Path) -> None:
    empty = tmp_path / "empty" / "music"
    empty.mkdir(parents=True)
    (empty / "music.sqlite").write_bytes(b"")  # a valid, empty SQLite database: no gold query runs
    result = invoke(
        "eval", "-q", bench["q"], "--db-dir", empty.parent, "-p", bench["pred"], tmp_path=tmp_path
    )
    assert_one_line(result.exit_code, result.stderr, "none of the 1 gold queries ran", "no such table")


def test_eval_questions_file_without_questions(bench: dict[str, Path], tmp_path: Path) -> None:
    bench["q"].write_text("[]")
    result = invoke(
        "eval", "-q", bench["q"], "--db-dir", bench["dbs"], "-p", bench["pred"], tmp_path=tmp_path
    )
    assert_one_line(result.exit_code, result.stderr, "holds no questions")


def test_eval_plot_where_no_file_can_be_written(bench: dict[str, Path], tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    plot = bench["binary"] / "chart.png"  # inside a file
    result = invoke(
        "eval",
        "-q",
        bench["q"],
        "--db-dir",
        bench["dbs"],
        "-p",
        bench["pred"],
        "--plot",
        plot,
        tmp_path=tmp_path,
    )
    assert_one_line(result.exit_code, result.stderr, "cannot write the chart")


def test_tables_that_is_a_folder(tmp_path: Path) -> None:
    db = make_db(tmp_path / "music.sqlite")
    result = invoke("prompt", "--db", db, "--tables", tmp_path, "How many?", tmp_path=tmp_path)
    assert_one_line(result.exit_code, result.stderr, "is a folder, not a tables.json")


def test_pipe_copy_is_bounded_in_size_and_in_waiting(tmp_path: Path) -> None:
    """The two bounds of `pipe_copy` with small limits: too many bytes, and a writer that stalls."""
    from slmsql_cli.database import SQLITE_HEADER
    from slmsql_cli.errors import UserError
    from slmsql_cli.targets.pipe_copy import copy_stream

    r = _pipe_from(SQLITE_HEADER + bytes(64 * 1024))
    try:
        with pytest.raises(UserError, match="sent more than"):
            copy_stream(Path(f"/dev/fd/{r}"), SQLITE_HEADER, max_bytes=4096)
    finally:
        os.close(r)
    r, w = os.pipe()
    os.write(w, SQLITE_HEADER)  # then nothing more, and the write end stays open
    try:
        with pytest.raises(UserError, match="the writer stopped sending"):
            copy_stream(Path(f"/dev/fd/{r}"), SQLITE_HEADER, idle_seconds=0.5)
    finally:
        os.close(r)
        os.close(w)


def test_eval_empty_question_is_named(bench: dict[str, Path], tmp_path: Path) -> None:
    bench["q"].write_text(json.dumps([{"question": "  ", "query": "SELECT 1", "db_id": "music"}]))
    result = invoke(
        "eval", "-q", bench["q"], "--db-dir", bench["dbs"], "-p", bench["pred"], tmp_path=tmp_path
    )
    assert_one_line(result.exit_code, result.stderr, "question 0 in", "is empty")


@pytest.mark.slow  # runs the train command (torch, datasets)
@pytest.mark.usefixtures("train_extra")
def test_train_csv_with_a_header_and_no_rows(tmp_path: Path) -> None:
    data = tmp_path / "train.csv"
    data.write_text("question,query,db_id\n")
    result = _train(data, tmp_path)
    assert_one_line(result.exit_code, result.stderr, "cannot read", "train.csv")
    assert "Hub" not in result.stderr


def test_models_with_a_hugging_face_cache_that_is_a_file(slmsql: Slmsql, tmp_path: Path) -> None:
    cache = tmp_path / "hub"
    cache.write_text("not a folder")
    # A fresh interpreter: huggingface-hub reads HF_HUB_CACHE once, when it is first imported.
    proc = slmsql(
        "models",
        cwd=tmp_path,
        cache=tmp_path / "cache",
        timeout=300,
        env={"HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"},
    )
    assert_one_line(proc.returncode, proc.stderr, "is a file, not a folder")

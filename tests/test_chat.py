"""`slmsql chat` keeps the model loaded and re-evaluates only the part of the prompt that changed;
it answers an exact repeat of a saved question from the store, as `ask` does; Ctrl-C during a
question stops the model only at a safe point (the real terminal: test_chat_pty.py)."""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

import pytest
from click.testing import Result
from conftest import REPO, Slmsql
from typer.testing import CliRunner

from slmsql_cli.cli import app
from slmsql_cli.cli.chat_cmd import Interrupts

DEMO = REPO / "slmsql_cli" / "data" / "bookshop.sqlite"


def test_second_question_reuses_the_cached_prompt(slmsql: Slmsql, gemma_gguf: Path, tmp_path: Path) -> None:
    questions = "How many books are there?\nHow many customers are there?\nexit\n"
    proc = slmsql(
        "chat", "--db", DEMO, "-m", gemma_gguf, "-n", "2", "--max-tokens", "16", "--no-merge", "--no-values",
        stdin=questions, cache=tmp_path / "cache", env={"PATH": "/usr/bin:/bin"}, inherit=False, timeout=600,
    )  # fmt: skip
    # Gemma 270M may write no SQL in 16 tokens: that question has no answer, which exits 1
    assert proc.returncode in (0, 1), proc.stderr
    stats = [tuple(map(int, m)) for m in re.findall(r"prompt (\d+) tokens, (\d+) evaluated", proc.stderr)]
    assert len(stats) == 2, proc.stderr
    (total1, evaluated1), (total2, evaluated2) = stats
    assert evaluated1 == total1  # first question: the whole prompt
    # Second question: the schema prefix comes from the KV cache; only the question onwards is new.
    assert 0 < evaluated2 < total2 // 4
    assert "Traceback" not in proc.stderr


# ---- saved answers: chat answers an exact repeat from the store, as ask does (scripted engine) ----

runner = CliRunner()
COUNT = "SELECT count(*) FROM pets"
AGES = "SELECT avg(age) FROM pets"


def said(sql: str) -> str:
    return f"<think>\nWrite it.\n</think>\n<answer>\n{sql}\n</answer>"


def chat(db: Path, questions: str, *args: str) -> Result:
    argv = ["chat", "--db", str(db), "-m", "scripted", "-n", "2", "--no-merge", *args]
    return runner.invoke(app, argv, input=questions)


def test_chat_answers_a_saved_question_without_the_model(pets_db: Path, scripted_engine) -> None:
    scripted_engine([said(COUNT)] * 2)
    first = chat(pets_db, "How many pets are there?\n", "--save")
    assert first.exit_code == 0, first.stderr
    assert "saved as answer #1" in first.stderr and "tokens generated" in first.stderr

    model = scripted_engine([])  # nothing to say: a question put to the model fails the test
    # each asked alone (a follow-up is always the model's: test_followups.py)
    again = chat(pets_db, "how many PETS are there\nHow many pets are there?!\n", "--no-context")
    assert again.exit_code == 0, again.stderr
    assert model.prompts == []
    assert again.stdout.count(COUNT) == 2 and again.stdout.count("│ 2 ") == 2, again.stdout
    assert again.stderr.count("saved answer #1: its SQL ran again on the current data") == 2
    assert "tokens generated" not in again.stderr  # no model ran: no timings of one

    # ask answers what chat saved (one store), and chat --fresh asks the model anyway
    asked = runner.invoke(app, ["ask", "--db", str(pets_db), "-m", "scripted", "How many pets are there"])
    assert asked.exit_code == 0 and "saved answer #1" in asked.stderr, asked.stderr
    model = scripted_engine([said(AGES)] * 2)
    fresh = chat(pets_db, "How many pets are there?\n", "--fresh")
    assert fresh.exit_code == 0, fresh.stderr
    assert AGES in fresh.stdout and "saved answer" not in fresh.stderr and len(model.prompts) == 1


def test_chat_names_a_similar_saved_question_and_asks_the_model(pets_db: Path, scripted_engine) -> None:
    scripted_engine([said(COUNT)] * 4)
    assert chat(pets_db, "How many pets are there?\n", "--save").exit_code == 0
    result = chat(pets_db, "How many pets are there in total?\n")
    assert result.exit_code == 0, result.stderr
    assert 'a saved question is similar: "How many pets are there?" (saved answer #1)' in result.stderr
    assert "saved answer #1: its SQL ran again" not in result.stderr and "tokens generated" in result.stderr


def test_chat_save_stops_before_the_model_loads_when_the_store_cannot_be_written(
    pets_db: Path, scripted_engine, isolated_cache: Path
) -> None:
    scripted_engine([])
    isolated_cache.mkdir(parents=True, exist_ok=True)
    (isolated_cache / "saved").write_text("not a folder")
    result = chat(pets_db, "How many pets are there?\n", "--save")
    assert result.exit_code == 2, result.stderr
    assert "cannot be written (Not a directory)" in result.stderr
    assert "loading" not in result.stderr and "Ctrl-D to leave" not in result.stderr


# ---- Ctrl-C during a question (chat_cmd.Interrupts; at a real terminal: test_chat_pty.py) ---------


def ctrl_c() -> None:
    os.kill(os.getpid(), signal.SIGINT)  # handled in this (main) thread before the next line runs
    time.sleep(0.01)


def test_a_local_model_is_stopped_at_its_next_safe_point_a_query_at_once() -> None:
    interrupts = Interrupts()
    with pytest.raises(KeyboardInterrupt), interrupts.question():
        interrupts.step("sampling 2 candidate(s)")
        ctrl_c()  # the model is inside a step: the question is only marked
        assert interrupts.pressed == 1
        interrupts.check()  # on_token, on_prompt or progress: the safe point raises
    assert not interrupts.ends_session
    with pytest.raises(KeyboardInterrupt), interrupts.question():
        interrupts.step("executing 2 of 2 candidate(s)")
        ctrl_c()  # the query worker is built to be killed: at once
        pytest.fail("the Ctrl-C did not stop the query")
    assert interrupts.pressed == 1 and not interrupts.ends_session
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the prompt's Ctrl-C again


def test_a_second_ctrl_c_ends_the_session_and_a_server_model_stops_at_once() -> None:
    interrupts = Interrupts()
    with pytest.raises(KeyboardInterrupt), interrupts.question():
        interrupts.step("sampling 2 candidate(s)")
        ctrl_c()
        ctrl_c()  # before the model reached a safe point
    assert interrupts.ends_session
    remote = Interrupts(remote=True)  # every model on a server: a request is simply dropped
    with pytest.raises(KeyboardInterrupt), remote.question():
        remote.step("sampling 2 candidate(s)")
        ctrl_c()
        pytest.fail("the Ctrl-C did not stop the request")
    assert not remote.ends_session


# ---- --max-rows: the rows of a result table, as ask has it (issue 27) ----------------------------


def _caption(stdout: str) -> str:
    """The words under the last result table (wrapped to its width), "" when there are none."""
    lines = stdout.splitlines()
    ends = [i for i, line in enumerate(lines) if line.startswith("└")]
    below = lines[ends[-1] + 1 :] if ends else []
    return " ".join(line.strip() for line in below if line.strip())


def test_chat_max_rows_shows_more_rows_and_the_cut_names_it(isolated_cache: Path, scripted_engine) -> None:
    titles = "SELECT title FROM books"  # 51 rows
    scripted_engine([said(titles)] * 2)
    cut = chat(DEMO, "Which books are there?\n")
    assert cut.exit_code == 0, cut.stderr
    assert _caption(cut.stdout) == "… 1 more rows; chat --max-rows N shows more", cut.stdout[-400:]
    assert "--csv" not in cut.stdout and "--json" not in cut.stdout  # chat has neither

    scripted_engine([said(titles)] * 2)
    fewer = chat(DEMO, "Which books are there?\n", "--max-rows", "3")
    assert fewer.exit_code == 0, fewer.stderr
    assert _caption(fewer.stdout) == "… 48 more rows; chat --max-rows N shows more"

    scripted_engine([said(titles)] * 2)
    whole = chat(DEMO, "Which books are there?\n", "--max-rows", "60")
    assert whole.exit_code == 0, whole.stderr
    assert _caption(whole.stdout) == ""
    rows = [line for line in whole.stdout.splitlines() if line.startswith("│")]
    assert len(rows) == 51, whole.stdout[-400:]  # every title (the header's bars are ┃)

    refused = chat(DEMO, "Which books are there?\n", "--max-rows", "0")
    assert refused.exit_code == 2 and "--max-rows" in refused.stderr, refused.stderr


def test_chat_follows_up_with_the_real_model(slmsql: Slmsql, gemma_gguf: Path, tmp_path: Path) -> None:
    """Issue 29 with the real model: the second question follows the first (its prompt carries
    both questions, and only what follows the shared schema is read), `/new` forgets it."""
    questions = "How many books are there?\nand how many of them cost more than 10?\n/new\nHow many customers are there?\n"
    proc = slmsql(
        "chat", "--db", DEMO, "-m", gemma_gguf, "-n", "2", "--max-tokens", "16", "--no-merge", "--no-values",
        stdin=questions, cache=tmp_path / "cache", env={"PATH": "/usr/bin:/bin"}, inherit=False, timeout=600,
    )  # fmt: skip
    assert proc.returncode in (0, 1), proc.stderr  # Gemma 270M may write no SQL in 16 tokens
    lines = [
        line for line in proc.stderr.splitlines() if re.search(r"prompt \d+ tokens, \d+ evaluated", line)
    ]
    assert len(lines) == 3, proc.stderr
    assert "follow-up" not in lines[0] and "follow-up of 1 earlier question(s)" in lines[1]
    assert "follow-up" not in lines[2]  # after /new: asked alone
    (total1, _), (total2, evaluated2), (total3, evaluated3) = (
        tuple(map(int, re.search(r"prompt (\d+) tokens, (\d+) evaluated", line).groups())) for line in lines
    )
    assert total2 > total1  # the follow-up's prompt holds the first question too
    assert 0 < evaluated2 < total2 // 4 and 0 < evaluated3 < total3 // 4  # the schema prefix was reused
    assert "new conversation" in proc.stderr and "Traceback" not in proc.stderr

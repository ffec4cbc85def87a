"""What `ask`, `chat` and `prompt` say, and where: the answer on stdout, everything else on stderr.

A failed ask (the model wrote no SQL, or none of it ran) gives the same `error:` line and the
same exit code in table, CSV, SQL-only and JSON modes, and the JSON document has the same words;
its `hint:` names only what is not in use already (no `-v` under -v, no `--json` under --json or
in `chat`, which has none); `-v` shows what each candidate wrote; when stderr is not a terminal,
a slow ask still says what it is doing every few seconds. The scripted engine stands in for the
model.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
import typer.main
from typer.testing import CliRunner

from slmsql_cli.cli import app
from slmsql_cli.render import no_answer_hint

runner = CliRunner()
QUESTION = "How many singers do we have?"
MODES = {
    "table": [],
    "csv": ["--csv"],
    "sql-only": ["--sql-only"],
    "json": ["--json"],
    "verbose": ["-v"],
    "verbose json": ["-v", "--json"],
}
# The hint for each mode, word for word (`no_answer_hint` builds it from the options in use).
SEE_WHAT_THEY_WROTE = "-v shows what each candidate wrote and why it got no vote"
MORE = "; a larger -n or --max-tokens, or another --model, may help"
HINTS = {
    ("ask", ""): f"{SEE_WHAT_THEY_WROTE} (--json has the whole text){MORE}",
    (
        "ask",
        "-v",
    ): f"the candidates above show what each wrote and why it got no vote (--json has the whole text){MORE}",
    ("ask", "--json"): f"the JSON's candidates show what each wrote and why it got no vote{MORE}",
    ("chat", ""): f"{SEE_WHAT_THEY_WROTE}{MORE}",
    ("chat", "-v"): f"the candidates above show what each wrote and why it got no vote{MORE}",
}


def said(sql: str) -> str:
    return f"<think>\nCount the rows.\n</think>\n<answer>\n{sql}\n</answer>"


@pytest.fixture()
def singers(data_dir: Path, isolated_cache: Path) -> Path:
    return data_dir / "spider_dev/database/concert_singer/concert_singer.sqlite"


def ask(db: Path, *args: str):  # type: ignore[no-untyped-def]
    # --no-constrain: the scripted SQL names a table the database lacks, as it is written
    return runner.invoke(
        app,
        ["ask", "--db", str(db), "--model", "scripted", "--no-merge", "--no-constrain", "-n", "2", *args]
        + [QUESTION],
    )


def lines_starting(text: str, prefix: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(prefix)]


@pytest.mark.parametrize(
    "completions, words",
    [
        (["I am not sure.", "Maybe count them?"], "the model wrote no SQL in any of its 2 candidate(s)"),
        (
            [said("SELECT age FROM singers"), said("SELECT nonsense FROM nowhere")],
            "none of the 2 candidate(s) wrote SQL that ran; the first one failed: no such table: singers",
        ),
    ],
    ids=["no SQL", "no SQL that ran"],
)
def test_a_failed_ask_says_the_same_in_every_mode(
    completions: list[str], words: str, singers: Path, scripted_engine
) -> None:
    scripted_engine(completions * len(MODES))
    for mode, flags in MODES.items():
        result = ask(singers, *flags)
        assert result.exit_code == 1, (mode, result.stdout, result.stderr)
        hint = HINTS["ask", "--json" if "--json" in flags else "-v" if "-v" in flags else ""]
        assert lines_starting(result.stderr, "error:") == [f"error: {words}"], mode
        assert lines_starting(result.stderr, "hint:") == [f"hint: {hint}"], mode
        if "--json" in flags:
            doc = json.loads(result.stdout)
            assert (doc["error"], doc["hint"]) == (words, hint)
        else:
            assert result.stdout == "", (mode, result.stdout)  # no blank line posing as an answer


def options_of(command: str) -> set[str]:
    return {o for p in typer.main.get_command(app).commands[command].params for o in p.opts}  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "command, flags",
    [("ask", flags) for flags in MODES.values()] + [("chat", []), ("chat", ["-v"])],
    ids=[f"ask {mode}" for mode in MODES] + ["chat", "chat -v"],
)
def test_the_hint_names_only_options_the_command_has_and_does_not_use(
    command: str, flags: list[str], singers: Path, scripted_engine
) -> None:
    scripted_engine(
        ["Let me think about the singers. " * 20, "Maybe count them?"]
    )  # the first is cut under -v
    if command == "ask":
        result = ask(singers, *flags)
    else:
        argv = ["chat", "--db", str(singers), "--model", "scripted", "--no-merge", "-n", "2", *flags]
        result = runner.invoke(app, argv, input=QUESTION + "\n")
    assert result.exit_code == 1, result.stderr
    [hint] = lines_starting(result.stderr, "hint:")
    named = set(re.findall(r"(?<![\w-])--?[a-z][a-z-]*", hint))
    assert named and named <= options_of(command), hint  # chat has no --json
    assert not set(flags) & {"-v", "--json"} & named, hint  # nothing to turn on that is on
    if "-v" in flags and "--json" not in flags:  # the candidates are printed just above
        assert "the candidates above show" in hint
    if command == "chat":
        assert "--json" not in result.stderr  # neither in the hint nor in -v's cut texts
        assert "-v" not in flags or "characters]" in result.stderr  # a text was cut, and said so
        assert hint == "hint: " + HINTS["chat", "-v" if "-v" in flags else ""]


def test_an_answer_goes_to_stdout_and_the_vote_summary_to_stderr(singers: Path, scripted_engine) -> None:
    scripted_engine([said("SELECT count(*) FROM singer")] * 2)
    result = ask(singers)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines()[0] == "SELECT count(*) FROM singer" and "│ 6 " in result.stdout
    assert "2/2 candidates agreed" in result.stderr and "agreed" not in result.stdout
    assert not lines_starting(result.stderr, "error:")


def test_verbose_shows_what_each_candidate_wrote(singers: Path, scripted_engine) -> None:
    rambling = "Let me think about the singers table. " * 40 + "I give up."
    scripted_engine([rambling, said("SELECT count(*) FROM singer")])
    result = ask(singers, "-v", "--json", "--max-tokens", "2048")  # a byte a token: not cut
    assert result.exit_code == 0, result.stderr
    assert "threads: 1 thread" in result.stderr
    flat = " ".join(re.sub(r"[│┃]", " ", result.stderr).split())
    assert "wrote: Let me think about the singers table." in flat  # the start of what it wrote
    assert "I give up." not in flat  # cut to fit ...
    assert re.search(r"\[\+\d+ characters; --json has the whole text\]", flat)  # ... and says so
    assert "no SQL" in flat and "wrote: <think> Count the rows. </think>" in flat
    assert json.loads(result.stdout)["candidates"][0]["text"] == rambling  # --json: the whole text


def test_a_slow_ask_reports_progress_when_stderr_is_not_a_terminal(
    singers: Path, scripted_engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = scripted_engine([said("SELECT count(*) FROM singer")] * 2)
    plain_sample = engine.sample

    def slow_sample(prompt, params, on_token=None, on_prompt=None):  # type: ignore[no-untyped-def]
        for i in range(64):  # 64 tokens over about 0.6 s
            time.sleep(0.01)
            if on_token:
                on_token(i % params.n)
        return plain_sample(prompt, params, None)

    monkeypatch.setattr(engine, "sample", slow_sample)
    monkeypatch.setenv("SLMSQL_PROGRESS_SECONDS", "0.1")
    result = ask(singers, "--max-tokens", "100")
    assert result.exit_code == 0, result.stderr
    lines = result.stderr.splitlines()
    assert lines[0] == "loading the model…" and "loading model scripted…" in lines
    assert "sampling 2 candidate(s)…" in lines
    counts = [
        line
        for line in lines
        if re.fullmatch(r"sampling 2 candidate\(s\): \d+ of at most 200 tokens… \(\d+s\)", line)
    ]
    assert counts, lines  # the same step again, with its count and time, while it lasts
    assert "executing 2 of 2 candidate(s)…" in lines
    assert (
        lines.index("sampling 2 candidate(s)…")
        < lines.index(counts[0])
        < lines.index("executing 2 of 2 candidate(s)…")
    )


def test_piped_chat_echoes_each_question_and_says_failures_like_ask(singers: Path, scripted_engine) -> None:
    scripted_engine([said("SELECT count(*) FROM singer")] * 2 + ["no idea", "none"])
    result = runner.invoke(
        app,
        ["chat", "--db", str(singers), "--model", "scripted", "--no-merge", "-n", "2"],
        input=f"{QUESTION}\nWhat is the meaning of life?\n",
    )
    assert result.exit_code == 1, result.stderr  # one question had no answer
    assert result.stdout.splitlines()[0] == f"> {QUESTION}"
    assert "> What is the meaning of life?" in result.stdout.splitlines()
    assert lines_starting(result.stderr, "error:") == [
        "error: the model wrote no SQL in any of its 2 candidate(s)"
    ]
    assert lines_starting(result.stderr, "hint:") == [f"hint: {no_answer_hint(has_json=False)}"]


# ---- prompt: a cut schema is said, and a hint names only prompt's options ---------------------------


def test_prompt_says_when_it_cut_the_schema(singers: Path, scripted_engine) -> None:
    scripted_engine([])  # the scripted engine's tokenizer: one token per byte
    args = ["prompt", "--db", str(singers), "-m", "scripted", "--prompt-budget", "3000", QUESTION]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.stderr
    assert "the schema was cut to 3 of 4 tables to fit the 3000-token prompt budget" in result.stderr
    assert "CREATE TABLE singer" in result.stdout and "cut" not in result.stdout


def test_prompt_hint_names_only_options_prompt_has(singers: Path, scripted_engine) -> None:
    scripted_engine([])
    result = runner.invoke(
        app, ["prompt", "--db", str(singers), "-m", "scripted", "--prompt-budget", "1600", QUESTION]
    )
    assert result.exit_code == 2
    hint = lines_starting(result.stderr, "hint:")[0]
    prompt_options = {o for p in typer.main.get_command(app).commands["prompt"].params for o in p.opts}  # type: ignore[attr-defined]
    named = set(re.findall(r"--[a-z][a-z-]*", hint))
    assert named and named <= prompt_options, hint


def test_stderr_wraps_at_word_boundaries_on_a_terminal_and_not_in_a_pipe() -> None:
    import io

    from slmsql_cli.cli.common import _Diagnostics

    line = "2/2 candidates agreed · no merge needed · 12.3s (generate 10.1s, execute 0.0s) " * 2
    terminal = _Diagnostics(file=io.StringIO(), force_terminal=True, width=80, color_system=None)
    terminal.print(line.strip())
    wrapped = terminal.file.getvalue().splitlines()  # type: ignore[attr-defined]
    assert len(wrapped) > 1 and all(len(row) <= 80 for row in wrapped)
    assert " ".join(wrapped).split() == line.split()  # no word cut in two
    pipe = _Diagnostics(file=io.StringIO(), width=80)
    pipe.print(line.strip())
    assert pipe.file.getvalue() == line.strip() + "\n"  # type: ignore[attr-defined]

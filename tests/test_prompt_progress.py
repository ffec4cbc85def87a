"""Progress names the wait (issue 27): while the model reads the prompt, the status says so, with
its token count and the part that came from the cache, on a terminal and in plain lines.

On a CPU, reading a 2,000-token prompt is most of an `ask` before the first token. The engine
reads it in 512-token chunks and reports after each (`on_prompt`); `AskStatus.prompt` shows
`reading the prompt: 1,024/2,100 tokens`. The fast tests drive the status line itself and the
CLI with a scripted engine that reads a prompt; the slow ones run the real Gemma model.
"""

from __future__ import annotations

import io
import json
import os
import pty
import re
import select
import subprocess
import time
from pathlib import Path

import pytest
from conftest import REPO, Slmsql
from rich.console import Console
from typer.testing import CliRunner

from slmsql_cli.cli import app
from slmsql_cli.cli.common import AskStatus, StatusLine, reading_text
from slmsql_cli.engine import Engine
from slmsql_cli.engine_protocol import SamplingParams

DEMO_DB = REPO / "slmsql_cli" / "data" / "bookshop.sqlite"  # its prompts are over 1,024 tokens
FIRST = "How many books are there?"
SECOND = "Which author wrote the most books?"  # shares the schema part of FIRST's prompt
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
READING = re.compile(r"reading the prompt: ([\d,]+)/([\d,]+) tokens(?:, ([\d,]+) from cache)?…")


def number(text: str) -> int:
    return int(text.replace(",", ""))


# ---- the status text -----------------------------------------------------------------------------


def test_the_reading_line_counts_tokens_and_the_cache_hit() -> None:
    assert reading_text(1024, 2100, 0) == "reading the prompt: 1,024/2,100 tokens"
    assert reading_text(1792, 2100, 1536) == "reading the prompt: 1,792/2,100 tokens, 1,536 from cache"


def test_plain_lines_show_the_reading_as_a_step_then_the_round_again() -> None:
    """Off a terminal each step is a line as it starts: the reading is one, and the round's own
    step comes back when the prompt is read (its token count once it has one)."""
    shown = io.StringIO()
    console = Console(file=shown, force_terminal=False, width=200)
    with StatusLine("loading the model…", console=console, every=60) as status:
        steps = AskStatus(status, n=2, merge_n=1, max_tokens=100)
        steps.progress("sampling 2 candidate(s)")
        for read in (0, 512, 1024):
            steps.prompt(read, 1100, 0)
            assert status.message == f"reading the prompt: {read:,}/1,100 tokens…"
        steps.prompt(1100, 1100, 0)
        assert status.message == "sampling 2 candidate(s)…"
        for seq in range(16):
            steps.token(seq % 2)
        assert status.message == "sampling 2 candidate(s): 16 of at most 200 tokens…"
        steps.prompt(1099, 1100, 1099)  # a second round: the prompt is cached
        assert status.message == "reading the prompt: 1,099/1,100 tokens, 1,099 from cache…"
        steps.prompt(1100, 1100, 1099)
        assert status.message == "sampling 2 candidate(s): 16 of at most 200 tokens…"
    assert shown.getvalue().splitlines() == [
        "loading the model…",
        "sampling 2 candidate(s)…",
        "reading the prompt: 0/1,100 tokens…",  # later counts wait for the repeat (every 60 s here)
        "sampling 2 candidate(s)…",
        "reading the prompt: 1,099/1,100 tokens, 1,099 from cache…",
        "sampling 2 candidate(s): 16 of at most 200 tokens…",
    ]


def test_the_spinner_shows_each_count_at_once() -> None:
    """On a terminal the spinner line is the status's message, replaced at every report."""
    console = Console(file=io.StringIO(), force_terminal=True, width=100)
    with StatusLine("loading the model…", console=console) as status:
        steps = AskStatus(status, n=2, merge_n=1, max_tokens=100)
        steps.progress("sampling 2 candidate(s)")
        steps.prompt(512, 2100, 0)
        assert status._status is not None
        spinner = status._status.renderable
        assert str(spinner.text) == "reading the prompt: 512/2,100 tokens…"
        steps.prompt(2048, 2100, 1536)
        assert str(spinner.text) == "reading the prompt: 2,048/2,100 tokens, 1,536 from cache…"


# ---- the command line with a scripted engine that reads a prompt --------------------------------


def test_a_piped_ask_repeats_the_reading_with_its_count(
    data_dir: Path, isolated_cache: Path, scripted_engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    answer = "<answer>\nSELECT count(*) FROM singer\n</answer>"
    engine = scripted_engine([answer, answer])
    plain_sample = engine.sample

    def reading_sample(prompt, params, on_token=None, on_prompt=None):  # type: ignore[no-untyped-def]
        total = len(prompt) if isinstance(prompt, list) else len(engine.tokenize(prompt))
        assert on_prompt is not None, "ask passes its status to the engine"
        for read in range(0, total, 64):  # a chunk every 0.05 s, 0.4 s in all at least
            on_prompt(read, total, 0)
            time.sleep(0.4 * 64 / total)
        on_prompt(total, total, 0)
        return plain_sample(prompt, params, on_token)

    monkeypatch.setattr(engine, "sample", reading_sample)
    monkeypatch.setenv("SLMSQL_PROGRESS_SECONDS", "0.1")
    db = data_dir / "spider_dev/database/concert_singer/concert_singer.sqlite"
    result = CliRunner().invoke(
        app, ["ask", "--db", str(db), "-m", "scripted", "--no-merge", "-n", "2", "How many singers?"]
    )
    assert result.exit_code == 0, result.stderr
    lines = result.stderr.splitlines()
    first = lines.index("sampling 2 candidate(s)…")
    reading = [(i, READING.match(line)) for i, line in enumerate(lines) if line.startswith("reading")]
    assert reading and all(m is not None for _, m in reading), lines
    total = number(reading[0][1].group(2))  # type: ignore[union-attr]
    assert lines[reading[0][0]] == f"reading the prompt: 0/{total:,} tokens…"
    counts = [number(m.group(1)) for _, m in reading]  # type: ignore[union-attr]
    assert any(0 < c < total for c in counts), lines  # repeated with the count so far
    assert counts == sorted(counts)
    assert first < reading[0][0] < lines.index("sampling 2 candidate(s)…", first + 1)


# ---- the real model -------------------------------------------------------------------------------


def ask_args(model: Path, question: str, *extra: str) -> list[str]:
    return [
        "ask", "--db", str(DEMO_DB), "-m", str(model), "-n", "1", "--max-tokens", "16",
        "--temperature", "0", "--no-merge", "--json", *extra, question,
    ]  # fmt: skip


def test_gemma_ask_in_a_pipe_says_it_reads_the_prompt(
    slmsql: Slmsql, gemma_gguf: Path, tmp_path: Path
) -> None:
    """stderr a pipe, a status line every 0.1 s: the reading is a step of its own, repeated with its
    count; a second question in a new process says how much of its prompt came from the cache."""
    cache = tmp_path / "cache"
    env = {"SLMSQL_PROGRESS_SECONDS": "0.1"}
    result = slmsql(*ask_args(gemma_gguf, FIRST), cache=cache, env=env)
    assert result.returncode in (0, 1), result.stderr
    lines = result.stderr.splitlines()
    reading = [READING.match(line) for line in lines if line.startswith("reading the prompt")]
    assert reading and all(reading), lines
    stats = json.loads(result.stdout)["generation"]
    total = stats["prompt_tokens"]
    assert total > 1024
    first = next(i for i, line in enumerate(lines) if line.startswith("reading"))
    assert lines[first] == f"reading the prompt: 0/{total:,} tokens…"
    executing = next(i for i, line in enumerate(lines) if line.startswith("executing"))
    assert lines.index("sampling 1 candidate(s)…") < first < executing
    assert "sampling 1 candidate(s)…" in lines[first:executing]  # the round's step again, once read
    counts = [number(m.group(1)) for m in reading]  # type: ignore[union-attr]
    if stats["prompt_seconds"] > 0.5:  # five repeats or more: some show a count part of the way
        assert any(0 < c < total for c in counts), lines
    assert counts == sorted(counts) and all(m.group(3) is None for m in reading)  # type: ignore[union-attr]

    again = slmsql(*ask_args(gemma_gguf, SECOND), cache=cache, env=env)
    assert again.returncode in (0, 1), again.stderr
    cached = [READING.match(line) for line in again.stderr.splitlines() if line.startswith("reading")]
    assert cached and cached[0] is not None and cached[0].group(3) is not None, again.stderr
    assert number(cached[0].group(1)) == number(cached[0].group(3)) >= 512  # starts from the cache


def test_gemma_ask_on_a_terminal_shows_the_reading_in_the_spinner(
    slmsql: Slmsql, gemma_gguf: Path, tmp_path: Path
) -> None:
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        slmsql.argv(*ask_args(gemma_gguf, FIRST, "--no-prompt-cache")),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=slave,
        cwd=REPO,
        env=slmsql.environ({"TERM": "xterm", "COLUMNS": "120"}, cache=tmp_path / "cache"),
    )
    os.close(slave)
    shown = bytearray()
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 1)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            shown += chunk
        elif proc.poll() is not None:
            break
    os.close(master)
    assert proc.stdout is not None
    stats = json.loads(proc.stdout.read())["generation"]
    assert proc.wait(60) in (0, 1)
    text = ANSI.sub("", shown.decode("utf-8", "replace"))
    counts = re.findall(r"reading the prompt: ([\d,]+)/([\d,]+) tokens", text)
    assert counts, text
    assert {number(total) for _, total in counts} == {stats["prompt_tokens"]}
    if stats["prompt_seconds"] > 0.5:  # the spinner redraws 12 times a second
        assert any(0 < number(read) < stats["prompt_tokens"] for read, _ in counts), counts


def test_gemma_reports_each_chunk_and_a_stopped_reading_leaves_the_cache_sound(gemma_gguf: Path) -> None:
    """on_prompt hears the cached prefix, then every 512 tokens; an exception there stops the
    reading, and the next prompt reuses only the cells that were computed for it."""

    class Stop(Exception):
        pass

    params = SamplingParams(n=1, temperature=0, max_tokens=8, stop=())
    with Engine(gemma_gguf) as engine:
        words = " ".join(f"table_{i} has column_{i} of type text" for i in range(200))
        # A whole chunk shared, so that c is read in the same chunks after the stop as fresh.
        shared = engine.tokenize("You write SQL. " + words)[:512]
        a = shared + engine.tokenize(" ".join(f"alpha_{i}" for i in range(600)))[:688]
        b = shared + engine.tokenize(" ".join(f"beta_{i}" for i in range(600)))[:688]
        c = a + engine.tokenize(" Question: which table is the largest? Answer:")

        heard: list[tuple[int, int, int]] = []
        engine.sample(a, params, on_prompt=lambda *r: heard.append(r))
        assert heard == [(0, 1200, 0), (512, 1200, 0), (1024, 1200, 0), (1200, 1200, 0)]

        def stop_after_one_chunk(read: int, total: int, cached: int) -> None:
            if read > cached:
                raise Stop

        with pytest.raises(Stop):  # b is read from its shared prefix with a, then stopped
            engine.sample(b, params, on_prompt=stop_after_one_chunk)

        heard.clear()
        after_stop, _ = engine.sample(c, params, on_prompt=lambda *r: heard.append(r))
        assert heard[0] == (512, len(c), 512)  # only what b's reading left that c shares
        engine.close_context()
        fresh, _ = engine.sample(c, params)
    assert after_stop[0].text == fresh[0].text

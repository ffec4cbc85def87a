"""Every README command a fresh clone can run is run, as written.

A command is runnable when each file it reads is in the repository (tests/data, the bundled
bookshop.sqlite) or was written by a command before it in the same code block; commands on the
reader's own data (sales.csv, a PostgreSQL server, their predictions) are not. The commands run
in a scratch folder that sees the repository's packages and data, so outputs stay out of the
clone.

`ask`, `prompt` and `eval` run in-process with a stand-in for the model (the real model is not
the point here: the command lines are), which writes one SQL for every question and none for a
question about the meaning of life, so the README's failure example prints exactly its two lines.
The train -> export -> ask block runs for real, in subprocesses (slow: it trains).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ScriptedEngine
from typer.testing import CliRunner

from slmsql_cli import engines
from slmsql_cli.cli import app
from slmsql_cli.engine_protocol import Completion, GenerationStats, SamplingParams

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
SHARED = ("slmsql_cli", "training", "quantize", "tests")  # what a command in the clone can see
INPUT_SUFFIXES = (
    ".sqlite",
    ".duckdb",
    ".db",
    ".csv",
    ".json",
    ".jsonl",
    ".parquet",
    ".xlsx",
    ".sql",
    ".gguf",
)
OUTPUT_OPTIONS = {"--out", "-o", "--plot"}


def blocks() -> list[list[list[str]]]:
    """The README's bash/console code blocks, each a list of command lines as argv lists."""
    found = []
    for lang, body in re.findall(r"```(bash|console)\n(.*?)```", README.read_text(encoding="utf-8"), re.S):
        text = body.replace("\\\n", " ")
        commands = []
        for line in text.splitlines():
            if lang == "console":
                if not line.startswith("$ "):
                    continue
                line = line[2:]
            argv = shlex.split(line, comments=True)
            if argv:
                commands.append(argv)
        found.append(commands)
    return found


def inputs(argv: list[str]) -> list[str]:
    """The files a command line reads: arguments that name a file by its suffix or a folder by a
    trailing slash, not counting the files it writes (the values of --out and --plot)."""
    read = []
    for i, arg in enumerate(argv):
        if i and argv[i - 1] in OUTPUT_OPTIONS:
            continue
        value = arg.split("=", 1)[1] if re.match(r"^\w+=", arg) else arg
        if value.endswith(INPUT_SUFFIXES) or value.endswith("/") or "://" in value:  # a server: theirs
            read.append(value)
    return read


def runnable(block: list[list[str]]) -> Iterator[list[str]]:
    """The block's commands a clone can run: slmsql and `python -m slmsql_cli.training.tiny` lines whose inputs
    exist in the repository or were written by an earlier line of the block."""
    written: set[str] = set()
    for argv in block:
        if argv[:3] == ["python", "-m", "slmsql_cli.training.tiny"]:
            written.add(argv[3])
            yield argv
            continue
        if argv[0] != "slmsql":
            continue
        if all((REPO / path).exists() or path in written for path in inputs(argv)):
            yield argv
        written.update(argv[i + 1] for i, a in enumerate(argv[:-1]) if a in OUTPUT_OPTIONS)
        if argv[1] == "export" and "--out" in argv:
            written.add(argv[argv.index("--out") + 1])


class Reader(ScriptedEngine):
    """The stand-in model: for every question the same SQL about the prompt's first table,
    and no SQL for the meaning of life."""

    def sample(self, prompt, params: SamplingParams, on_token=None, on_prompt=None):  # type: ignore[no-untyped-def]
        text = prompt if isinstance(prompt, str) else bytes(prompt).decode("utf-8")
        table = re.search(r"CREATE TABLE [`\"]?(\w+)", text)
        answer = (
            "I cannot say."
            if "meaning of life" in text
            else f"<answer>\nSELECT count(*) FROM {table.group(1) if table else 'sqlite_master'}\n</answer>"
        )
        completions = [Completion(answer, len(answer), "eog") for _ in range(params.n)]
        n_prompt = len(self.tokenize(text))
        return completions, GenerationStats(n_prompt, n_prompt, sum(c.tokens for c in completions), 1)


@pytest.fixture()
def clone_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A scratch folder that sees the repository's packages and data (symbolic links)."""
    for name in SHARED:
        (tmp_path / name).symlink_to(REPO / name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SLMSQL_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path


def test_the_readme_blocks_were_read() -> None:
    commands = [argv for block in blocks() for argv in block]
    assert len(commands) > 20
    ran = {argv[1] for block in blocks() for argv in runnable(block) if argv[0] == "slmsql"}
    assert {"ask", "prompt", "eval", "train", "export"} <= ran, ran
    skipped = [" ".join(a) for b in blocks() for a in b if a[0] == "slmsql" and a not in list(runnable(b))]
    # the reader's own files and servers (model servers too); nothing in the repository
    assert skipped and all(
        re.search(r"(sales|shop|orders|budget|exports/|my_predictions|postgresql://|--endpoint http)", c)
        for c in skipped
    ), skipped


@pytest.fixture()
def reader(monkeypatch: pytest.MonkeyPatch) -> Iterator[Reader]:
    """The Reader in place of every model on this machine: the engine registry's "local" kind,
    and every model counted as downloaded (the README's commands name no model: the defaults)."""
    from slmsql_cli import models

    monkeypatch.setattr(models, "not_downloaded", lambda specs: [])
    reader = Reader([])
    with engines.registered(engines.LOCAL, lambda spec, config, export: reader):
        yield reader


def test_readme_ask_prompt_and_eval_run(clone_dir: Path, reader: Reader) -> None:
    ran = []
    readme = README.read_text(encoding="utf-8")
    for block in blocks():
        for argv in runnable(block):
            if argv[1] in ("train", "export") or argv[0] == "python" or "my-sql.gguf" in argv:
                continue  # the training block: test_readme_train_export_ask_runs
            result = CliRunner().invoke(app, argv[1:])
            said = result.stderr
            line = " ".join(argv)
            assert result.exception is None or isinstance(result.exception, SystemExit), (line, said)
            if "meaning of life" in line:  # the README's failure example, word for word
                assert result.exit_code == 1 and result.stdout == ""
                verdict = [ln for ln in said.splitlines() if ln.startswith(("error:", "hint:"))]
                assert len(verdict) == 2 and all(f"\n{ln}\n" in readme for ln in verdict), said
            else:
                assert result.exit_code == 0, (line, result.stdout, said)
            ran.append(argv[1])
    assert {"ask", "prompt", "eval"} <= set(ran), ran
    assert (clone_dir / "bird_n8.jsonl").exists() and (clone_dir / "n1_vs_n8.png").exists()


@pytest.mark.slow
def test_readme_train_export_ask_runs(clone_dir: Path) -> None:
    pytest.importorskip("torch")
    block = next(b for b in blocks() if any(a[:3] == ["python", "-m", "slmsql_cli.training.tiny"] for a in b))
    commands = list(runnable(block))
    assert [a[1] if a[0] == "slmsql" else a[2] for a in commands] == [
        "slmsql_cli.training.tiny",
        "train",
        "export",
        "ask",
    ]
    env = {**os.environ, "PYTHONPATH": str(clone_dir)}
    for argv in commands:
        cmd = (
            [sys.executable, "-m", "slmsql_cli", *argv[1:]]
            if argv[0] == "slmsql"
            else [sys.executable, *argv[1:]]
        )
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1200, cwd=clone_dir, env=env)
        assert "Traceback" not in proc.stderr, (argv, proc.stderr)
        # the random model writes no usable SQL: ask's answer is the failure of the README's note
        assert proc.returncode in ((0, 1) if argv[1] == "ask" else (0,)), (argv, proc.stderr)
    assert (clone_dir / "my-sql.gguf").read_bytes()[:4] == b"GGUF"

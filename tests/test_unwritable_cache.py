"""Every command works when the cache cannot be written (issue 27: `ask`, `models` and `saved
list` printed a warning, then an OSError traceback from the saved-answers store).

HOME points at a folder whose `.cache` is a plain file, so the cache root (~/.cache/slmsql), the
model cache (~/.cache/huggingface) and the saved answers all sit under a file: ENOTDIR, which
stops root as surely as anyone (a read-only folder would not), so no test here skips. Each
command goes on after one warning line that says what is lost; `--save` and `saved import` are
refused with one error line instead.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import scripted_cli

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "slmsql_cli" / "data" / "bookshop.sqlite"
COUNT = "SELECT count(*) AS books FROM books"


def blocked_home(tmp_path: Path) -> dict[str, str | None]:
    """The environment of a user whose ~/.cache is a plain file."""
    home = tmp_path / "home"
    home.mkdir()
    (home / ".cache").write_text("not a folder")
    unset = ("SLMSQL_CACHE_DIR", "XDG_CACHE_HOME", "HF_HOME", "HF_HUB_CACHE", "SLMSQL_KV_CACHE_MB")
    return {**dict.fromkeys(unset), "HOME": str(home), "COLUMNS": "200"}


def slmsql(
    *args: str | Path, env: dict[str, str | None], stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "slmsql_cli", *map(str, args)],
        capture_output=True,
        text=True,
        input=stdin,
        cwd=REPO,
        env=scripted_cli.environ(env),
        timeout=300,
    )


def lines(proc: subprocess.CompletedProcess[str], prefix: str) -> list[str]:
    return [line for line in proc.stderr.splitlines() if line.startswith(prefix)]


def went_on(proc: subprocess.CompletedProcess[str], warned: bool = True) -> None:
    """Exit 0, no traceback, and (when `warned`) one warning saying what is lost."""
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    warnings = lines(proc, "warning:")
    if warned:
        assert len(warnings) == 1, proc.stderr
        assert "cannot write the cache folder ~/.cache/slmsql (Not a directory)" in warnings[0]
        for lost in (
            "running without a cache",
            "prompt cache is off",
            "--save is refused",
            "SLMSQL_CACHE_DIR",
        ):
            assert lost in warnings[0], warnings[0]
    else:
        assert warnings == [], proc.stderr


def test_ask_answers_with_one_warning(tmp_path: Path) -> None:
    proc = scripted_cli.run(
        COUNT,
        "ask",
        "--db",
        DEMO,
        "-m",
        "scripted",
        "-n",
        "2",
        "--no-merge",
        "How many books?",
        env=blocked_home(tmp_path),
    )
    went_on(proc)
    assert proc.stdout.splitlines()[0] == COUNT and "books" in proc.stdout


def test_ask_over_a_csv_file_imports_it_for_this_run(tmp_path: Path) -> None:
    data = tmp_path / "pets.csv"
    data.write_text("name,age\nRex,3\nTom,5\n")
    sql = "SELECT name FROM pets WHERE age > 4"
    proc = scripted_cli.run(
        sql,
        "ask",
        "--db",
        data,
        "-m",
        "scripted",
        "-n",
        "1",
        "--no-merge",
        "Who is old?",
        env=blocked_home(tmp_path),
    )
    went_on(proc)
    assert "Tom" in proc.stdout and "Rex" not in proc.stdout


def test_chat_answers_with_one_warning(tmp_path: Path) -> None:
    proc = subprocess.run(
        scripted_cli.argv(COUNT, "chat", "--db", DEMO, "-m", "scripted", "-n", "1", "--no-merge"),
        input="How many books?\nHow many books again?\n",
        capture_output=True,
        text=True,
        cwd=REPO,
        env=scripted_cli.environ(blocked_home(tmp_path)),
        timeout=300,
    )
    went_on(proc)
    assert proc.stdout.count(COUNT) == 2


@pytest.mark.parametrize(
    "args",
    [
        ("saved", "list"),
        ("saved", "list", "--db", DEMO),
        ("saved", "export"),
        ("prompt", "--db", DEMO, "How many books?"),
        ("explain", "--db", DEMO, COUNT),
    ],
    ids=lambda args: " ".join(a if isinstance(a, str) else a.name for a in args),
)
def test_commands_that_read_go_on_with_one_warning(tmp_path: Path, args: tuple[str | Path, ...]) -> None:
    went_on(slmsql(*args, env=blocked_home(tmp_path)))


def test_models_lists_without_a_cache(tmp_path: Path) -> None:
    env = blocked_home(tmp_path)
    listed = slmsql("models", env=env)
    went_on(listed, warned=False)  # it only looks: nothing is lost
    assert "slm-sql-0.5b" in listed.stdout
    went_on(slmsql("models", "--json", env=env), warned=False)


def test_save_and_saved_import_are_refused_with_one_error(tmp_path: Path) -> None:
    env = blocked_home(tmp_path)
    refused = scripted_cli.run(
        COUNT, "ask", "--db", DEMO, "-m", "scripted", "-n", "1", "--save", "How many books?", env=env
    )
    assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr
    (error,) = lines(refused, "error:")
    assert error.startswith("error: cannot keep saved answers:") and "Not a directory" in error
    assert lines(refused, "hint:") == ["hint: set SLMSQL_CACHE_DIR to a writable folder"]
    assert refused.stdout == ""  # refused before the model ran, not after the answer

    exported = tmp_path / "saved.jsonl"
    exported.write_text('{"question": "How many books?", "sql": "SELECT count(*) FROM books"}\n' * 3)
    imported = slmsql("saved", "import", exported, "--db", DEMO, env=env)
    assert imported.returncode == 2 and "Traceback" not in imported.stderr, imported.stderr
    assert len(lines(imported, "error:")) == 1 and "skipped" not in imported.stderr, imported.stderr


def test_ask_with_the_real_model_and_no_cache(tmp_path: Path, gemma_gguf: Path) -> None:
    """The prompt cache (llama.cpp's KV state on disk) meets the same fault: still one warning."""
    proc = slmsql(
        "ask", "--db", DEMO, "--model", gemma_gguf, "-n", "1", "--max-tokens", "16", "--no-merge",
        "How many books are there?", env=blocked_home(tmp_path),
    )  # fmt: skip
    assert proc.returncode in (0, 1) and "Traceback" not in proc.stderr, proc.stderr
    (warning,) = lines(proc, "warning:")
    assert "running without a cache" in warning and "prompt cache is off" in warning


def test_the_saved_store_is_private_whatever_the_umask(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    proc = scripted_cli.run(
        COUNT, "ask", "--db", DEMO, "-m", "scripted", "-n", "1", "--no-merge", "--save", "How many books?",
        env={"SLMSQL_CACHE_DIR": str(cache)}, preexec_fn=lambda: os.umask(0),
    )  # fmt: skip
    assert proc.returncode == 0 and "saved as answer #1" in proc.stderr, proc.stderr
    store = cache / "saved" / "answers.sqlite"
    assert stat.S_IMODE(store.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(store.stat().st_mode) == 0o600
    listed = slmsql("saved", "list", env={"SLMSQL_CACHE_DIR": str(cache)})
    assert listed.returncode == 0 and "How many books?" in listed.stdout
    assert not list(cache.rglob("*-journal")) and not list(cache.rglob("*-wal"))


def test_a_read_only_cache_still_answers_from_its_saved_answers(tmp_path: Path) -> None:
    """A read-only home (EACCES, not ENOTDIR): what the store holds is read, nothing is written.
    Root is run without the capabilities that let it write anywhere, so it meets the fault too."""
    through: list[str] = []
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("root writes into read-only folders; dropping that needs setpriv (util-linux)")
        through = [setpriv, "--bounding-set=-dac_override,-dac_read_search"]
    cache = tmp_path / "cache"
    env: dict[str, str | None] = {"SLMSQL_CACHE_DIR": str(cache), "COLUMNS": "200"}
    ask = ["ask", "--db", DEMO, "-m", "scripted", "-n", "1", "--no-merge"]
    kept = scripted_cli.run(COUNT, *ask, "--save", "How many books?", env=env)
    assert kept.returncode == 0 and "saved as answer #1" in kept.stderr, kept.stderr
    for folder, _dirs, names in os.walk(cache):
        os.chmod(folder, 0o500)
        for name in names:
            os.chmod(os.path.join(folder, name), 0o400)

    def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*through, *scripted_cli.argv(COUNT, *args)],
            capture_output=True,
            text=True,
            cwd=REPO,
            env=scripted_cli.environ(env),
            timeout=300,
        )

    try:
        listed = run("saved", "list")
        again = run(*ask, "How many books?")
        refused = run(*ask, "--save", "How many authors?")
    finally:
        for folder, _dirs, _names in os.walk(cache):
            os.chmod(folder, 0o700)
    for proc in (listed, again):
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
        (warning,) = lines(proc, "warning:")
        assert "cannot write the cache folder" in warning and "Permission denied" in warning
    assert "How many books?" in listed.stdout
    assert "saved answer #1" in again.stderr  # answered from the store, read-only
    assert refused.returncode == 2 and len(lines(refused, "error:")) == 1, refused.stderr

"""The first run, and the default model set once (issue 27).

Offline with an empty Hugging Face cache, `ask`, `doctor` and `models` give the same complete
fix: both `hf download` commands with their sizes, and the one-flag way around them; no
exception class names. `slmsql models default NAME|PATH` keeps a model in the config folder,
`models` and `doctor` show it, and `ask` runs it without --model and without looking for the
built-in merge model; SLMSQL_MODEL goes through the same choice (--model > SLMSQL_MODEL > the
setting > built in). The scripted engine stands in for the model except in the one slow test.
"""

from __future__ import annotations

import json
import re
import stat
from pathlib import Path

import pytest
from conftest import REPO, Slmsql
from typer.testing import CliRunner

from slmsql_cli import models, settings
from slmsql_cli.cli import app
from slmsql_cli.selfcheck import make_tiny_gguf

runner = CliRunner()
DEMO = REPO / "slmsql_cli" / "data" / "bookshop.sqlite"
GENERATOR = "hf download cycloneboy/SLM-SQL-0.5B"
MERGER = "hf download cycloneboy/CscSQL-Merge-Qwen2.5-Coder-0.5B-Instruct"
CLASS_NAME = re.compile(r"\b[A-Z][A-Za-z]+(Error|Exception)\b")


def flat(text: str) -> str:
    """`text` with every run of whitespace as one space: the same words however a console wrapped them."""
    return " ".join(text.split())


@pytest.fixture()
def first_run(tmp_path: Path) -> dict[str, str | None]:
    """A machine that has never run slmsql, with no network: an empty Hugging Face cache,
    HF_HUB_OFFLINE=1, no settings, no SLMSQL_MODEL."""
    return {
        "HF_HUB_OFFLINE": "1",
        "HF_HOME": str(tmp_path / "hf"),
        "HF_HUB_CACHE": None,
        "SLMSQL_CACHE_DIR": str(tmp_path / "cache"),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "SLMSQL_MODEL": None,
        "COLUMNS": "80",
        "NO_COLOR": "1",
    }


@pytest.fixture()
def offline_in_process(first_run: dict[str, str | None], monkeypatch: pytest.MonkeyPatch) -> Path:
    """`first_run` for commands run in this process; the config folder."""
    for name, value in first_run.items():
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    from huggingface_hub import constants  # it reads its environment once, at import

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(Path(str(first_run["HF_HOME"])) / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return Path(str(first_run["XDG_CONFIG_HOME"])) / "slmsql"


@pytest.fixture()
def tiny_gguf(tmp_path: Path) -> Path:
    """A real GGUF file (1 MB, random weights): what `models default` is given as PATH."""
    return make_tiny_gguf(tmp_path / "my-model.gguf")


def test_ask_doctor_and_models_give_the_same_first_run_fix(
    slmsql: Slmsql, first_run: dict[str, str | None]
) -> None:
    ask = slmsql("ask", "--db", DEMO, "How many books are there?", env=first_run)
    assert ask.returncode == 2, ask.stderr
    error = next(line for line in ask.stderr.splitlines() if line.startswith("error:"))
    assert "slm-sql-0.5b and csc-merge-0.5b are not downloaded yet" in error and "HF_HUB_OFFLINE" in error
    fix = ask.stderr.split("hint: ", 1)[1].strip()
    lines = fix.splitlines()
    # complete: both downloads with their sizes and the total, then the way around them
    assert (
        "download the 2 models once (2.6 GB)" in lines[0] and str(Path(str(first_run["HF_HOME"]))) in lines[0]
    )
    assert [flat(line) for line in lines[1:3]] == [f"{GENERATOR} # 1.3 GB", f"{MERGER} # 1.3 GB"]
    assert "--model path/to/model.gguf" in lines[3] and "slmsql models default path/to/model.gguf" in lines[3]
    assert len(lines) == 4 and not CLASS_NAME.search(ask.stderr) and "Traceback" not in ask.stderr

    doctor = slmsql("doctor", "--no-decode", env=first_run)
    models_out = slmsql("models", env=first_run)
    assert doctor.returncode == 0 and models_out.returncode == 0, doctor.stderr + models_out.stderr
    assert flat(fix) in flat(doctor.stdout), doctor.stdout
    assert flat(fix) in flat(models_out.stdout), models_out.stdout
    doc = json.loads(slmsql("doctor", "--no-decode", "--json", env=first_run).stdout)
    check = next(c for c in doc["checks"] if c["name"] == "models")
    assert check["status"] == "warn" and check["fix"] == fix
    # the commands stay whole on their own lines, to be copied
    for command in (GENERATOR, MERGER):
        assert any(line.strip().startswith(command) for line in models_out.stdout.splitlines())
        assert any(line.strip().startswith(command) for line in doctor.stdout.splitlines())


def test_after_one_download_the_fix_names_only_the_other(
    slmsql: Slmsql, first_run: dict[str, str | None], tmp_path: Path
) -> None:
    """The user downloads the generator only: every command now asks for the merge model alone."""
    repo = tmp_path / "hf" / "hub" / "models--cycloneboy--SLM-SQL-0.5B"
    snapshot = repo / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    (snapshot / "config.json").write_text("{}")
    (snapshot / "model.safetensors").write_bytes(b"\0" * 8)
    ask = slmsql("ask", "--db", DEMO, "How many books are there?", env=first_run)
    assert ask.returncode == 2 and "csc-merge-0.5b is not downloaded yet" in ask.stderr, ask.stderr
    fix = ask.stderr.split("hint: ", 1)[1].strip()
    assert "download the model once (1.3 GB)" in fix and MERGER in fix and GENERATOR not in fix
    assert flat(fix) in flat(slmsql("doctor", "--no-decode", env=first_run).stdout)
    assert flat(fix) in flat(slmsql("models", env=first_run).stdout)


def test_every_registry_model_has_a_download_size() -> None:
    for model in models.REGISTRY:
        assert 0.5 < model.download_gb < 10, model
        assert re.fullmatch(r"(about )?\d+\.\d GB", model.download), model.download
    assert models.lookup("slm-sql-0.5b").download == "1.3 GB"  # type: ignore[union-attr]
    assert models.lookup("slm-sql-1.5b").download == "about 3.6 GB"  # type: ignore[union-attr]


def test_models_default_sets_prints_and_clears(offline_in_process: Path, tiny_gguf: Path) -> None:
    assert runner.invoke(app, ["models", "default"]).stdout == "slm-sql-0.5b\n"
    result = runner.invoke(app, ["models", "default", str(tiny_gguf)])
    assert result.exit_code == 0, result.stderr
    stored = offline_in_process / "default-model"
    assert stored.read_text() == f"{tiny_gguf.resolve()}\n"
    assert stat.S_IMODE(offline_in_process.stat().st_mode) == 0o700
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    assert runner.invoke(app, ["models", "default"]).stdout == f"{tiny_gguf.resolve()}\n"

    listing = runner.invoke(app, ["models"])
    assert (
        f"Default model: {tiny_gguf.resolve()} (set by slmsql models default; it revises its own drafts)"
        in (flat(listing.stdout))
    )
    assert "hf download" not in listing.stdout  # nothing to download: the default is a file here
    doctor = runner.invoke(app, ["doctor", "--no-decode", "--json"])
    check = next(c for c in json.loads(doctor.stdout)["checks"] if c["name"] == "models")
    assert check["status"] == "ok" and str(tiny_gguf.resolve()) in check["detail"], check

    cleared = runner.invoke(app, ["models", "default", "--clear"])
    assert cleared.exit_code == 0 and not stored.exists()
    assert "the default is now slm-sql-0.5b (built in)" in cleared.stderr
    assert runner.invoke(app, ["models", "default"]).stdout == "slm-sql-0.5b\n"


def test_a_relative_path_is_kept_absolute(
    offline_in_process: Path, tiny_gguf: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tiny_gguf.parent)
    assert runner.invoke(app, ["models", "default", tiny_gguf.name]).exit_code == 0
    assert settings.stored_default_model() == str(tiny_gguf.resolve())


@pytest.mark.parametrize(
    "value, message",
    [
        ("csc-merge-0.5b", "is a merge model"),
        ("missing/model.gguf", "model file not found"),
        ("not a model", "unknown model"),
        (str(REPO / "README.md"), "not a GGUF file"),
    ],
)
def test_models_default_refuses_what_cannot_work(offline_in_process: Path, value: str, message: str) -> None:
    result = runner.invoke(app, ["models", "default", value])
    assert result.exit_code == 2 and message in result.stderr, result.stderr
    assert not (offline_in_process / "default-model").exists()


def test_a_stored_file_that_is_gone_is_named_with_where_it_was_set(
    offline_in_process: Path, tiny_gguf: Path
) -> None:
    assert runner.invoke(app, ["models", "default", str(tiny_gguf)]).exit_code == 0
    tiny_gguf.unlink()
    result = runner.invoke(app, ["ask", "--db", str(DEMO), "How many books are there?"])
    assert result.exit_code == 2
    assert f"model file not found: {tiny_gguf}" in result.stderr and "slmsql models default" in result.stderr


def test_the_choice_of_model_and_merge_model(
    offline_in_process: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--model > SLMSQL_MODEL > the setting > built in; only the built-in generator brings the
    built-in merge model, and --merge-model is kept whatever chose the generator."""
    choose = models.choose
    assert choose() == models.ModelChoice("slm-sql-0.5b", models.BUILT_IN, "csc-merge-0.5b")
    settings.store_default_model("slm-sql-1.5b")
    assert choose() == models.ModelChoice("slm-sql-1.5b", models.FROM_SETTING, None)
    monkeypatch.setenv("SLMSQL_MODEL", "slm-sql-0.6b")
    assert choose() == models.ModelChoice("slm-sql-0.6b", models.FROM_ENV, None)
    assert choose("slm-sql-1.3b") == models.ModelChoice("slm-sql-1.3b", models.FROM_OPTION, None)
    assert choose(None, "csc-merge-1.5b").merge == "csc-merge-1.5b"
    monkeypatch.setenv("SLMSQL_MODEL", " ")  # set but empty: as if unset
    assert choose().source == models.FROM_SETTING
    assert models.default_model() == "slm-sql-1.5b"


def said(sql: str) -> str:
    return f"<think>\nCount the rows.\n</think>\n<answer>\n{sql}\n</answer>"


@pytest.mark.parametrize("how", ["setting", "SLMSQL_MODEL"])
def test_ask_runs_the_default_model_and_it_revises_its_own_drafts(
    how: str, offline_in_process: Path, scripted_engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No --model: the default (the stand-in model, set either way) writes two drafts that
    disagree, and revises them itself. Offline with an empty cache, any look for csc-merge-0.5b
    would end the ask with exit 2."""
    engine = scripted_engine(
        [said("SELECT count(*) FROM books"), said("SELECT count(*) FROM authors")]
        + [said("SELECT count(*) FROM books")] * 2
    )
    if how == "setting":
        settings.store_default_model("scripted")  # a test-only engine kind: the CLI would refuse it
    else:
        monkeypatch.setenv("SLMSQL_MODEL", "scripted")
    result = runner.invoke(
        app, ["ask", "--db", str(DEMO), "-n", "2", "--merge-n", "2", "--json", "How many books are there?"]
    )
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout.strip().splitlines()[-1])
    assert doc["merged"] and doc["sql"] == "SELECT count(*) FROM books"
    assert len(engine.prompts) == 2  # the drafts, then the merge prompt: the same engine for both


def test_help_of_models_and_models_default_has_examples_at_80_columns(slmsql: Slmsql) -> None:
    env = {"COLUMNS": "80", "TERMINAL_WIDTH": "80", "NO_COLOR": "1"}
    for args in (["models"], ["models", "default"]):
        proc = slmsql(*args, "--help", env=env)
        assert proc.returncode == 0, proc.stderr
        lines = proc.stdout.splitlines()
        assert all(len(line) <= 80 for line in lines), [line for line in lines if len(line) > 80]
        examples = [line.strip("│ ") for line in lines if line.strip("│ ").startswith("slmsql models")]
        assert len(examples) >= 3, proc.stdout
        assert "…" not in proc.stdout
    assert "--clear" in proc.stdout and "SLMSQL_MODEL" in proc.stdout


@pytest.mark.slow
def test_models_default_then_ask_with_the_real_model(
    slmsql: Slmsql, gemma_gguf: Path, first_run: dict[str, str | None]
) -> None:
    """The real Gemma GGUF set once, then `ask` without --model, offline with an empty cache."""
    set_it = slmsql("models", "default", gemma_gguf, env=first_run)
    assert set_it.returncode == 0, set_it.stderr
    proc = slmsql(
        "ask",
        "--db",
        DEMO,
        "-n",
        "2",
        "--max-tokens",
        "32",
        "--json",
        "How many books are there?",
        env=first_run,
    )
    assert proc.returncode in (0, 1), proc.stderr  # Gemma 270M is a base model: SQL or not
    doc = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(doc["candidates"]) == 2 and doc["generation"]["generated_tokens"] > 0
    assert "csc-merge" not in proc.stderr and "Traceback" not in proc.stderr

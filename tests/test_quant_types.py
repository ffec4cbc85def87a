"""The GGUF types and mixed recipes `--quant` gained for the small models export and run.

A one-layer random Qwen2 with a small trained vocabulary (so gguf's reader opens the result in
a moment) is exported by `slmsql export --quant NAME`; then every tensor has the type its recipe
gives it (the plain type for the matrices, the recipe's overrides for the output / tied token
embedding and the named tensors), and llama.cpp loads the file through slmsql's Engine and
samples from it. The quality and speed of these types are measured by
benchmarks/quant_quality.py (docs/PERFORMANCE.md), not here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from slmsql_cli.cli import app
from slmsql_cli.models import DEFAULT_QUANT
from slmsql_cli.quantize import quantizer

# the ggml type of the matrices under each plain file type
MATRIX_TYPE = {"q4_0": "Q4_0", "iq4_nl": "IQ4_NL", "q8_0": "Q8_0", "q5_0": "Q5_0"}
NEW = sorted({"iq4_nl", "q4_0", *quantizer.RECIPES, DEFAULT_QUANT, quantizer.ALIASES["q4"]})


@pytest.fixture(scope="module")
def small_qwen2(tmp_path_factory: pytest.TempPathFactory, random_qwen2: Callable[..., Path]) -> Path:
    from slmsql_cli.training.tiny import build_tokenizer, default_corpus

    tokenizer = tmp_path_factory.mktemp("small-tokenizer")
    build_tokenizer(default_corpus(), vocab_size=512).save_pretrained(tokenizer)
    return random_qwen2(tmp_path_factory.mktemp("small-qwen2") / "model", tokenizer, n_embd=640)


def _tensor_types(path: Path) -> dict[str, str]:
    import gguf

    return {t.name: t.tensor_type.name for t in gguf.GGUFReader(path).tensors}


@pytest.mark.parametrize("quant", NEW)
def test_quant_type_exports_with_its_tensor_types_and_runs(
    quant: str, small_qwen2: Path, tmp_path: Path
) -> None:
    from slmsql_cli.engine import Engine
    from slmsql_cli.engine_protocol import SamplingParams

    out = tmp_path / "m.gguf"
    result = CliRunner().invoke(
        app, ["export", str(small_qwen2), "--quant", quant, "--no-verify", "--out", str(out), "--json"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout.strip().splitlines()[-1])["quant"] == quant

    recipe = quantizer.recipe(quant)
    types = _tensor_types(out)
    for name, kind in types.items():
        override = next((t for p, t in recipe.tensors if re.search(p, name)), None)
        if name == "token_embd.weight" and recipe.output:  # tied: it is also the output tensor
            assert kind == recipe.output.upper(), name
        elif override:
            assert kind == override.upper(), name
        elif recipe.ftype in MATRIX_TYPE and re.search(
            r"(attn_(q|k|v|output)|ffn_(up|gate|down))\.weight$", name
        ):
            assert kind == MATRIX_TYPE[recipe.ftype], name
    assert recipe.tensors == () or any(re.search(p, n) for p, _ in recipe.tensors for n in types)

    with Engine(out, threads=1) as engine:
        params = SamplingParams(n=2, max_tokens=4, temperature=0.8, ignore_eos=True, stop=())
        completions, _ = engine.sample("SELECT name FROM singer WHERE", params)
    assert [c.tokens for c in completions] == [4, 4]


def test_default_and_q4_are_known_names() -> None:
    for name in (DEFAULT_QUANT, quantizer.ALIASES["q4"]):
        assert quantizer.normalize(name) == name


def test_a_mix_is_cached_under_its_definition() -> None:
    """A redefined mix must not be served from the cache of the old definition."""
    name, mix = next(iter(quantizer.RECIPES.items()))
    tag = quantizer.file_tag(name)
    assert tag.startswith(name + "-") and quantizer.file_tag("q8_0") == "q8_0"
    changed = quantizer.Recipe(mix.ftype, output="f16", note=mix.note)
    saved = quantizer.RECIPES[name]
    try:
        quantizer.RECIPES[name] = changed
        assert quantizer.file_tag(name) != tag
    finally:
        quantizer.RECIPES[name] = saved


def test_unknown_quant_lists_the_recipes() -> None:
    result = CliRunner().invoke(app, ["export", "nowhere", "--quant", "q3_x", "--no-verify"])
    assert result.exit_code != 0
    assert "unknown quantization type 'q3_x'" in result.output and "iq4_nl_mix" in result.output


def test_an_export_cached_under_the_old_default_is_not_the_new_default(isolated_cache: Path) -> None:
    from slmsql_cli.quantize import checkpoint
    from slmsql_cli.quantize.export import find_cached_export

    repo = "cycloneboy/SLM-SQL-0.5B"
    source = checkpoint.Source(Path(), repo, repo_id=repo)
    old = isolated_cache / "exports" / checkpoint.slug(source) / "rev1" / "model-q4_k_m.gguf"
    old.parent.mkdir(parents=True)
    old.write_bytes(b"GGUF")
    assert DEFAULT_QUANT != "q4_k_m"
    assert find_cached_export(repo) is None
    assert find_cached_export(repo, "q4_k_m") == old

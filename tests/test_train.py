"""`slmsql train` on the CPU: data loaders, bad input, and real SFT / GRPO runs on a tiny model.

The model is a two-layer random Qwen2 with a tokenizer trained offline on the prompts it will see
(training.tiny): no downloads. SFT teaches it one Spider answer by heart (100 steps); GRPO then
samples that answer through the exact chat prompt `ask` uses and must earn execution reward for
it, which checks the whole chain (prompt builder, chat template, end-of-turn stop, SQL
extraction, rewards).
"""

from __future__ import annotations

import json
import os
from importlib.util import find_spec
from pathlib import Path

import pytest

if find_spec("trl") is None:  # not importorskip: importing trl at collection pulls in torch
    pytest.skip("needs the [train] extra (trl)", allow_module_level=True)

from slmsql_cli.errors import UserError
from slmsql_cli.training.config import build_config, config_path, load_config

pytestmark = pytest.mark.train

QUESTION = {
    "db_id": "concert_singer",
    "question": "How many singers do we have?",
    "query": "SELECT count(*) FROM singer",
}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The runs of this module live here (runs/latest is relative to the working directory)."""
    path = tmp_path_factory.mktemp("train")
    old = os.getcwd()
    os.chdir(path)
    yield path
    os.chdir(old)


@pytest.fixture(scope="module")
def spider(data_dir: Path) -> dict[str, str]:
    return {
        "db_dir": str(data_dir / "spider_dev" / "database"),
        "tables": str(data_dir / "spider_dev" / "tables.json"),
    }


@pytest.fixture(scope="module")
def tiny_model(workdir: Path, spider: dict[str, str]) -> Path:
    from slmsql_cli.database import open_database
    from slmsql_cli.prompt_builder import generation_message
    from slmsql_cli.prompts import SYSTEM_PROMPT
    from slmsql_cli.training.tiny import build_tiny_qwen2

    rows = [
        r
        for r in json.loads((Path(spider["tables"]).parent / "dev.json").read_text())
        if r["db_id"] == "concert_singer"
    ][:8]
    db = open_database(
        Path(spider["db_dir"]) / "concert_singer" / "concert_singer.sqlite",
        spider["tables"],
        "concert_singer",
    )
    corpus = [SYSTEM_PROMPT, "<think>\n\n</think>\n<answer>\n</answer>"]
    corpus += [generation_message(db, r["question"]).text + r["query"] for r in rows]
    return build_tiny_qwen2(workdir / "tiny-qwen2", corpus)


def _cpu(**values):
    """Small, deterministic CPU settings shared by the runs below."""
    base = {
        "cpu": True,
        "per_device_train_batch_size": 1,
        "gradient_accumulation_steps": 1,
        "warmup_steps": 0,
        "lr_scheduler_type": "constant",
        "logging_steps": 1,
        "reward_workers": 0,
    }
    return {**base, **values}


@pytest.fixture(scope="module")
def sft_run(workdir: Path, tiny_model: Path, spider: dict[str, str]):
    from slmsql_cli.training.runner import run

    bad = [
        {"db_id": "no_such_db", "question": "Any?", "query": "SELECT 1"},
        {"db_id": "concert_singer", "question": "Broken?", "query": "SELECT FROM WHERE (("},
    ]
    data = workdir / "one.json"
    data.write_text(json.dumps([QUESTION] + bad))
    cfg = build_config(
        _cpu(
            stage="sft",
            base=str(tiny_model),
            data=str(data),
            **spider,
            max_steps=100,
            # 1e-2 oscillated (final loss ~0.2, the answer not memorised) with transformers 5.24 /
            # trl 1.16; 3e-3 reaches ~0.01 and greedy decoding returns the gold answer exactly.
            learning_rate=3e-3,
            save_steps=50,
            save_total_limit=1,
        )
    )
    return cfg, run(cfg, say=lambda _m: None)


# ---- config and bad input (no model loaded) --------------------------------------------------


def test_builtin_recipes_load_for_both_stages() -> None:
    from slmsql_cli.training.config import builtin_configs

    assert {"generate-0.5b", "merge-0.5b", "tiny-cpu", "tiny-real-cpu"} <= set(builtin_configs())
    sft = load_config("generate-0.5b", {}, "sft")
    grpo = load_config("generate-0.5b", {"reward_weights": {"atomic": 1.0}}, "grpo")
    assert sft.stage == "sft" and grpo.stage == "grpo" and sft.run_dir != grpo.run_dir
    assert grpo.reward_weights == {
        "execution": 1.0,
        "format": 0.1,
        "atomic": 1.0,
    }  # --set merges into the recipe's
    assert grpo.num_generations == 6 and grpo.temperature == 0.8
    assert load_config("merge-0.5b", {}, "grpo").task == "merge"


@pytest.mark.parametrize(
    "values, message",
    [
        ({"learnig_rate": 1e-5}, "unknown setting `learnig_rate`"),
        ({"max_steps": "ten"}, "`max_steps` must be int"),
        ({"reward_weights": {"speed": 1.0}}, "unknown reward `speed`"),
        ({"stage": "grpo", "num_generations": 5}, "not a multiple of num_generations"),
        ({"base": ""}, "no base model"),
    ],
)
def test_bad_settings_are_refused(values: dict, message: str) -> None:
    with pytest.raises(UserError, match=message):
        build_config({"stage": "sft", "base": "m", "data": "d.json", **values})


@pytest.mark.parametrize("recipe", ["generate-0.5b", "merge-0.5b", "tiny-cpu"])
def test_vllm_settings_reach_trls_grpo_config(recipe: str, tmp_path: Path) -> None:
    """The recipes' vLLM generation settings become TRL's GRPOConfig fields (on the CPU: vLLM
    itself, colocated or as a server, is not run here; no GPU)."""
    from trl import GRPOConfig

    from slmsql_cli.training.config import read_yaml
    from slmsql_cli.training.grpo import grpo_settings
    from slmsql_cli.training.runner import Device, trainer_args

    cfg = load_config(
        recipe, {"base": "m", "data": "d.json", "vllm_server_base_url": "http://node:8000"}, "grpo"
    )
    section = read_yaml(config_path(recipe))["grpo"]
    if recipe == "tiny-cpu":
        assert section["use_vllm"] is False and cfg.use_vllm is False
    else:
        assert section["use_vllm"] == "auto" and section["vllm_mode"] == "colocate"
        assert section["vllm_gpu_memory_utilization"] == cfg.vllm_gpu_memory_utilization
    device = Device(use_cpu=True, bf16=False, gradient_checkpointing=False, use_vllm=True, note="")
    args = trainer_args(cfg, device, tmp_path)
    weights = [1.0, 0.1, 0.0]
    config = GRPOConfig(**grpo_settings(cfg, args, weights, use_vllm=device.use_vllm))
    assert config.use_vllm is True and config.vllm_mode == cfg.vllm_mode
    assert config.vllm_gpu_memory_utilization == cfg.vllm_gpu_memory_utilization
    assert config.vllm_tensor_parallel_size == cfg.vllm_tensor_parallel_size
    assert config.vllm_enable_sleep_mode == cfg.vllm_enable_sleep_mode
    assert config.vllm_max_model_length == cfg.max_prompt_length + cfg.max_completion_length
    assert config.vllm_server_base_url == "http://node:8000"
    assert config.num_generations == cfg.num_generations and config.temperature == cfg.temperature
    # `trl:` in a recipe still wins over the named settings
    args["vllm_gpu_memory_utilization"] = 0.55
    assert GRPOConfig(**grpo_settings(cfg, args, weights, True)).vllm_gpu_memory_utilization == 0.55


def test_vllm_settings_are_checked() -> None:
    with pytest.raises(UserError, match="vllm_gpu_memory_utilization"):
        build_config({"stage": "grpo", "base": "m", "data": "d.json", "vllm_gpu_memory_utilization": 1.5})
    with pytest.raises(UserError, match="`vllm_mode` must be"):
        build_config({"stage": "grpo", "base": "m", "data": "d.json", "vllm_mode": "remote"})


def test_stage_is_required() -> None:
    with pytest.raises(UserError, match="which stage"):
        load_config(None, {"base": "m", "data": "d.json"})


def test_wrong_columns_fail_before_any_model_loads(workdir: Path, tiny_model: Path) -> None:
    from slmsql_cli.training.runner import run

    data = workdir / "wrong.jsonl"
    data.write_text('{"text": "hello", "label": 1}\n')
    with pytest.raises(
        UserError, match=r"cannot tell what kind of training data this is \(columns: label, text\)"
    ):
        run(build_config(_cpu(stage="sft", base=str(tiny_model), data=str(data))), say=lambda _m: None)
    with pytest.raises(UserError, match="trl: `max_prompt_length` is not a GRPOConfig setting"):
        run(
            build_config(
                _cpu(
                    stage="grpo",
                    base=str(tiny_model),
                    data=str(data),
                    per_device_train_batch_size=6,
                    trl={"max_prompt_length": 512},
                )
            ),
            say=lambda _m: None,
        )


def test_missing_chat_template_is_a_clear_error(tiny_model: Path) -> None:
    from transformers import AutoTokenizer

    from slmsql_cli.training.model import BaseModel, resolve_chat_template

    tok = AutoTokenizer.from_pretrained(tiny_model)
    tok.chat_template = None
    with pytest.raises(UserError, match="has no chat template"):
        resolve_chat_template(None, BaseModel("some/model", architecture="gpt2"), tok)
    template, origin = resolve_chat_template(None, BaseModel("some/model", architecture="qwen2"), tok)
    assert "slmsql's qwen2 template" in origin and "<|im_start|>" in template
    assert resolve_chat_template("gemma3", BaseModel("x"), tok)[0].startswith("{{ bos_token }}")


def test_cli_reports_user_errors_without_traceback() -> None:
    from typer.testing import CliRunner

    from slmsql_cli.cli import app

    result = CliRunner().invoke(
        app, ["train", "--stage", "sft", "--base", "m", "--data", "d.json", "--set", "learnig_rate=1"]
    )
    assert result.exit_code == 2
    assert "unknown setting `learnig_rate`" in result.output and "Traceback" not in result.output


def test_help_does_not_import_torch() -> None:
    import subprocess
    import sys

    code = "import sys; from slmsql_cli.cli import app; assert 'torch' not in sys.modules and 'transformers' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


# ---- data loaders ----------------------------------------------------------------------------


def test_bird_rows_use_the_ask_prompt_builder(data_dir: Path, tmp_path: Path) -> None:
    from slmsql_cli.database import open_database
    from slmsql_cli.prompt_builder import generation_message
    from slmsql_cli.training.data import load_examples

    bird = data_dir / "bird_dev"
    rows = json.loads((bird / "dev.json").read_text())[:3]
    data = tmp_path / "dev.json"  # dev_tables.json beside it is picked up
    data.write_text(json.dumps(rows))
    (tmp_path / "dev_tables.json").write_text((bird / "dev_tables.json").read_text())
    cfg = build_config(
        {
            "stage": "sft",
            "base": "m",
            "data": str(data),
            "db_dir": str(bird / "dev_databases"),
            "shuffle": False,
        }
    )
    examples, report, fmt = load_examples(cfg)
    assert fmt == "spider" and report.kept == 3 and "dev_tables.json" in report.notes[0]
    db = open_database(
        bird / "dev_databases" / "student_club" / "student_club.sqlite",
        tmp_path / "dev_tables.json",
        "student_club",
    )
    assert examples[0].prompt == generation_message(db, rows[0]["question"], rows[0]["evidence"]).text
    assert rows[0]["evidence"] in examples[0].prompt
    assert examples[0].target == f"<think>\n\n</think>\n<answer>\n{rows[0]['SQL']}\n</answer>"


def _wide_database(path: Path) -> Path:
    """60 sensor tables and a small music schema: far over the 6,144-token budget as a whole."""
    import sqlite3

    conn = sqlite3.connect(path)
    for t in range(60):
        cols = ", ".join(f"reading_{j} real, unit_{j} text" for j in range(10))
        conn.execute(f"CREATE TABLE sensor_{t} (id integer PRIMARY KEY, {cols})")
    conn.execute("CREATE TABLE artists (artist_id integer PRIMARY KEY, name text)")
    conn.execute(
        "CREATE TABLE albums (album_id integer PRIMARY KEY, title text, artist_id integer REFERENCES artists(artist_id))"
    )
    conn.execute("INSERT INTO artists VALUES (1, 'AC/DC')")
    conn.commit()
    conn.close()
    return path


def test_a_training_example_is_the_prompt_ask_sends_on_a_schema_over_the_budget(
    data_dir: Path, tmp_path: Path, isolated_cache: Path
) -> None:
    """A model sees exactly what it was trained on, also when the schema does not fit. The question
    names all 60 sensor tables, so where the cut falls depends on the token counts alone: `train`
    counts with its tokenizer under the run's chat template (`ChatFormat.counter`), `ask` with the
    engine's tokenizer through `chat_text` and `Pipeline.counter`; both must cut at the same table."""
    from transformers import AutoTokenizer

    from slmsql_cli.database import open_database
    from slmsql_cli.engine_protocol import SamplingParams
    from slmsql_cli.pipeline import AskConfig, Pipeline, chat_text
    from slmsql_cli.prompt_builder import generation_message
    from slmsql_cli.prompts import PROMPT_BUDGET
    from slmsql_cli.scripted import ScriptedEngine
    from slmsql_cli.training.data import load_examples
    from slmsql_cli.training.model import ChatFormat

    tokenizer = AutoTokenizer.from_pretrained(data_dir / "vocab" / "qwen2")  # the test tokenizer

    class QwenEngine(ScriptedEngine):
        """Scripted completions, with the Qwen2 tokenizer and chat template where a GGUF has them."""

        def tokenize(self, text: str) -> list[int]:
            return tokenizer(text, add_special_tokens=False)["input_ids"]

        def chat_template(self) -> str | None:
            return tokenizer.chat_template

        def special_token_text(self, which: str) -> str:
            return (tokenizer.bos_token if which == "bos" else tokenizer.eos_token) or ""

        def sample(self, prompt, params: SamplingParams, on_token=None, on_prompt=None):
            text = prompt if isinstance(prompt, str) else tokenizer.decode(prompt)
            return super().sample(text, params, on_token, on_prompt)

    path = _wide_database(tmp_path / "wide.sqlite")
    question = "What is the latest reading of each sensor?"
    gold = "SELECT max(reading_0) FROM sensor_0"
    cfg = build_config({"stage": "sft", "base": "m", "data": "x", "db_dir": str(path), "shuffle": False})
    chat = ChatFormat.for_tokenizer(tokenizer.chat_template, tokenizer)
    [example], report, fmt = load_examples(
        cfg, [{"db_id": "wide", "question": question, "query": gold}], chat.counter(tokenizer)
    )
    assert fmt == "spider" and report.kept == 1

    engine = QwenEngine([f"<answer>{gold}</answer>"])
    db = open_database(path)
    answer = Pipeline(engine, None, AskConfig(n=1, merge=False)).ask(db, question)
    assert engine.prompts == [chat.prompt(example.prompt)]  # the same text, chat template and all
    assert engine.prompts == [chat_text(engine, example.prompt)]
    whole = generation_message(db, question).text
    assert len(engine.tokenize(chat_text(engine, whole))) > PROMPT_BUDGET  # the schema was over the budget
    assert answer.schema_tables is not None
    kept, total = answer.schema_tables
    assert total == 62 and 1 < kept < 60  # cut by the budget among the 60 tables the question names
    assert (
        f"CREATE TABLE sensor_{kept - 1} " in example.prompt
        and f"CREATE TABLE sensor_{kept} " not in example.prompt
    )
    assert answer.generation.stats.prompt_tokens <= PROMPT_BUDGET


def test_think_rows(tmp_path: Path) -> None:
    from slmsql_cli.training.data import load_examples

    rows = [
        {"input_seq": "Q1", "output_seq": "<think>r</think>\n<answer>SELECT 1</answer>"},
        {"input_seq": "Q2", "output_seq": "no answer block"},
        {
            "messages": [
                {"role": "user", "content": "Q3"},
                {"role": "assistant", "content": "<think>r</think><answer>SELECT 3</answer>"},
            ]
        },
    ]
    data = tmp_path / "think.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows[:2]) + "\n")
    examples, report, fmt = load_examples(
        build_config({"stage": "sft", "base": "m", "data": str(data), "shuffle": False})
    )
    assert fmt == "think" and [e.prompt for e in examples] == ["Q1"] and examples[0].gold_sql == "SELECT 1"
    assert report.skipped == {"target has no <answer>SQL</answer>": 1}
    examples, _, _ = load_examples(
        build_config({"stage": "sft", "base": "m", "data": "x", "shuffle": False}), [rows[2]]
    )
    assert examples[0].prompt == "Q3" and examples[0].target.endswith("<answer>SELECT 3</answer>")


def test_merge_rows_from_sampled_drafts(data_dir: Path, spider: dict[str, str], tmp_path: Path) -> None:
    from slmsql_cli.database import open_database
    from slmsql_cli.merge import format_result, prune_ddl
    from slmsql_cli.prompt_builder import matched_values, schema_block
    from slmsql_cli.prompts import merge_prompt
    from slmsql_cli.training.data import load_examples

    gold = "SELECT count(*) FROM singer"
    rows = [
        # Split vote, the right answer among the top two: the merge prompt shows the two groups as voted.
        {
            **QUESTION,
            "candidates": [
                "SELECT count(*) FROM singer",
                "SELECT count(*) FROM stadium",
                "SELECT count(*) FROM singer",
            ],
        },
        # Both top groups wrong: the gold SQL takes one of the two slots.
        {
            **QUESTION,
            "candidates": ["SELECT count(*) FROM stadium", "SELECT count(*) FROM singer_in_concert"],
        },
        # Everyone agrees: nothing to merge, skipped and counted.
        {**QUESTION, "candidates": ["<think>x</think><answer>SELECT count(*) FROM singer</answer>"] * 2},
    ]
    data = tmp_path / "candidates.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    cfg = build_config(
        {"stage": "sft", "task": "merge", "base": "m", "data": str(data), **spider, "shuffle": False}
    )
    examples, report, fmt = load_examples(cfg)
    assert (
        fmt == "candidates"
        and len(examples) == 2
        and report.skipped == {"no two disagreeing drafts (nothing to merge)": 1}
    )

    db = open_database(
        Path(spider["db_dir"]) / "concert_singer" / "concert_singer.sqlite",
        spider["tables"],
        "concert_singer",
    )
    top = ["SELECT count(*) FROM singer", "SELECT count(*) FROM stadium"]
    drafts = [(s, format_result(db.run(s, timeout=10))) for s in top]
    expected = merge_prompt(
        prune_ddl(schema_block(db, matched_values(db, QUESTION["question"])), top),
        QUESTION["question"],
        "",
        drafts,
    )
    assert examples[0].prompt == expected
    assert gold in examples[1].prompt and examples[1].target.endswith(f"<answer>\n{gold}\n</answer>")


# ---- training runs ---------------------------------------------------------------------------


def test_sft_writes_a_loadable_checkpoint(sft_run, workdir: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from slmsql_cli.prompts import fallback_template
    from slmsql_cli.training.metrics import read_metrics
    from slmsql_cli.training.runner import read_latest

    cfg, result = sft_run
    assert result.steps == 100
    assert result.data.skipped == {"database not found": 1, "gold SQL does not parse": 1}
    final = workdir / "runs" / "generate-sft" / "final"
    assert result.final_dir.resolve() == final and read_latest() == final  # runs/latest → the checkpoint
    model = AutoModelForCausalLM.from_pretrained(final)
    tokenizer = AutoTokenizer.from_pretrained(final)
    assert model.config.model_type == "qwen2" and tokenizer.chat_template == fallback_template("qwen2")
    losses = [r["loss"] for r in read_metrics(result.metrics) if "loss" in r]
    assert len(losses) == 100 and losses[-1] < losses[0] / 10  # it learned the answer
    assert result.plot is not None and result.plot.name == "loss.png" and result.plot.stat().st_size > 1000
    assert (result.run_dir / "train_config.yaml").is_file()


def test_grpo_rewards_the_learned_answer(sft_run, spider: dict[str, str], workdir: Path) -> None:
    from transformers import AutoModelForCausalLM

    from slmsql_cli.training.metrics import read_metrics
    from slmsql_cli.training.runner import read_latest, run

    cfg = build_config(
        _cpu(
            stage="grpo",
            base="latest",
            data=str(workdir / "one.json"),
            **spider,
            max_steps=1,
            per_device_train_batch_size=4,
            num_generations=4,
            max_completion_length=48,
            temperature=0.3,  # the chain is under test here, not exploration
            reward_weights={"execution": 1.0, "format": 0.1, "atomic": 1.0},
        )
    )
    result = run(cfg, say=lambda _m: None)
    logged = [r for r in read_metrics(result.metrics) if "reward" in r]
    assert len(logged) == 1
    step = logged[0]
    assert {
        "rewards/execution/mean",
        "rewards/format/mean",
        "rewards/atomic/mean",
        "kl",
        "exec_accuracy",
    } <= set(step)
    # The memorised answer comes back through the chat prompt, ends its turn, and runs to the gold result.
    assert step["exec_accuracy"] > 0 and step["reward"] > 0
    assert step["completions/mean_terminated_length"] > 0
    assert result.plot is not None and result.plot.name == "reward.png"
    assert read_latest() == (workdir / "runs" / "generate-grpo" / "final")
    AutoModelForCausalLM.from_pretrained(result.final_dir)


def test_resume_continues_from_the_last_checkpoint(sft_run) -> None:
    import dataclasses

    from slmsql_cli.training.runner import run

    cfg, first = sft_run
    more = dataclasses.replace(cfg, max_steps=102)
    result = run(more, say=lambda _m: None)
    assert result.steps == 102
    assert sorted(p.name for p in result.run_dir.glob("checkpoint-*")) == ["checkpoint-102"]


def test_lora_is_merged_into_the_saved_model(tiny_model: Path, spider: dict[str, str], workdir: Path) -> None:
    from transformers import AutoModelForCausalLM

    from slmsql_cli.training.runner import run

    cfg = build_config(
        _cpu(
            stage="sft",
            base=str(tiny_model),
            data=str(workdir / "one.json"),
            **spider,
            max_steps=2,
            lora=True,
            lora_r=4,
            lora_alpha=8,
            out=str(workdir / "runs" / "lora"),
        )
    )
    result = run(cfg, say=lambda _m: None)
    assert (result.run_dir / "adapter" / "adapter_config.json").is_file()
    assert not (result.final_dir / "adapter_config.json").exists()
    AutoModelForCausalLM.from_pretrained(result.final_dir)


@pytest.mark.slow
def test_sft_from_the_gemma_gguf(gemma_gguf: Path, tmp_path: Path) -> None:
    """The real Gemma 3 GGUF as --base: dequantized into transformers, trained one step, saved as a
    plain checkpoint. It has no chat template, so `ask`'s Gemma fallback is used and saved; one BOS;
    the answer ends on <end_of_turn>. (~100 s: 20 s tokenizer, 40 s weights, the step, a 1 GB save.)"""
    from transformers import AutoConfig, AutoTokenizer

    from slmsql_cli.prompts import fallback_template
    from slmsql_cli.training.model import ChatFormat, resolve_base, resolve_chat_template
    from slmsql_cli.training.runner import run

    base = resolve_base(str(gemma_gguf))
    assert (
        base.gguf_file == gemma_gguf.name
        and base.architecture == "gemma3"
        and base.gguf_chat_template is None
    )
    template, origin = resolve_chat_template(None, base, None)
    assert template == fallback_template("gemma3") and "the model has none" in origin

    data = tmp_path / "think.jsonl"
    data.write_text(
        json.dumps(
            {
                "prompt": "How many singers?",
                "completion": "<think>\ncount\n</think>\n<answer>\nSELECT count(*) FROM singer\n</answer>",
            }
        )
        + "\n"
    )
    cfg = build_config(
        _cpu(
            stage="sft",
            base=str(gemma_gguf),
            data=str(data),
            max_steps=1,
            max_length=512,
            out=str(tmp_path / "runs" / "gemma"),
        )
    )
    result = run(cfg, say=lambda _m: None)
    assert result.steps == 1
    config = AutoConfig.from_pretrained(result.final_dir)
    assert config.model_type == "gemma3_text" and getattr(config, "quantization_config", None) is None

    tokenizer = AutoTokenizer.from_pretrained(result.final_dir)
    assert tokenizer.chat_template == template
    chat = ChatFormat.for_tokenizer(tokenizer.chat_template, tokenizer)
    assert chat.tokenizer_adds_bos
    prompt = chat.prompt("How many singers?")
    assert prompt.startswith("<bos><start_of_turn>user\n") and prompt.endswith("<start_of_turn>model\n")
    ids = tokenizer(chat.generation_text("How many singers?"))["input_ids"]
    assert (
        ids[0] == tokenizer.bos_token_id and ids[1] != tokenizer.bos_token_id
    )  # one BOS, as llama.cpp sees it
    assert tokenizer.convert_ids_to_tokens(chat.end_of_turn(tokenizer)) == "<end_of_turn>"
    assert chat.completion("q", "<think>\n\n</think>\n<answer>\nSELECT 1\n</answer>").endswith(
        "</answer><end_of_turn>"
    )


@pytest.mark.slow
def test_sampled_candidates_feed_the_merge_loader(
    gemma_gguf: Path, spider: dict[str, str], tmp_path: Path
) -> None:
    """`python -m slmsql_cli.training.sample` runs `ask`'s pipeline (here on the Gemma GGUF) and writes rows the merge loader reads."""
    from slmsql_cli.training.data import load_examples
    from slmsql_cli.training.sample import main

    data = tmp_path / "questions.json"
    data.write_text(json.dumps([QUESTION, {**QUESTION, "db_id": "no_such_db"}]))
    out = tmp_path / "candidates.jsonl"
    args = [
        "--model",
        str(gemma_gguf),
        "--data",
        str(data),
        "--db-dir",
        spider["db_dir"],
        "--tables",
        spider["tables"],
        "--n",
        "2",
        "--max-tokens",
        "24",
        "--threads",
        "2",
        "--out",
        str(out),
    ]
    assert main(args) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 2 and rows[0]["SQL"] == QUESTION["query"] and rows[1]["error"] == "database not found"
    assert len(rows[0]["candidates"]) <= 2
    assert main(args) == 0 and len(out.read_text().splitlines()) == 2  # a rerun continues, it does not repeat
    cfg = build_config({"stage": "grpo", "task": "merge", "base": "m", "data": str(out), **spider})
    examples, report, fmt = load_examples(cfg)
    assert fmt == "candidates" and report.rows == 2 and sum(report.skipped.values()) + len(examples) == 2

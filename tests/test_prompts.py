"""The exact prompt texts and the chat-template renderer."""

from __future__ import annotations

from pathlib import Path

import pytest
from jinja2.exceptions import SecurityError, TemplateError

from slmsql_cli.prompts import (
    SYSTEM_PROMPT,
    fallback_template,
    generation_prompt,
    merge_prompt,
    render_chat,
)

CAR_QUESTION = "How many car makers are there in each continents? List the continent name and the count."
DRAFT_1 = (
    "SELECT T1.Continent, COUNT(*) FROM continents AS T1 JOIN countries AS T2 ON T1.ContId = T2.Continent "
    "JOIN car_makers AS T3 ON T2.CountryId = T3.Country GROUP BY T1.Continent"
)
DRAFT_2 = (
    "SELECT T1.ContId, COUNT(*) FROM continents AS T1 JOIN countries AS T2 ON T1.ContId = T2.Continent "
    "JOIN car_makers AS T3 ON T2.CountryId = T3.Country GROUP BY T1.ContId"
)
MESSAGES = [{"role": "system", "content": "SYS"}, {"role": "user", "content": "Hi?"}]


def _schema_block(prompt: str) -> str:
    return prompt.split("Database Schema:\n", 1)[1].split("\nThis schema describes", 1)[0]


def test_system_prompt() -> None:
    assert SYSTEM_PROMPT == (
        "You are a helpful AI Assistant that provides well-reasoned and detailed responses. You first think about "
        "the reasoning process as an internal monologue and then provide the user with the answer. Respond in the "
        "following format: <think>\n...\n</think>\n<answer>\n...\n</answer>"
    )


def test_generation_prompt_matches_reference_example(reference_dir: Path) -> None:
    expected = (reference_dir / "generation_prompt.example.txt").read_text(encoding="utf-8")
    assert generation_prompt(_schema_block(expected), CAR_QUESTION) == expected


def test_evidence_goes_before_the_question() -> None:
    prompt = generation_prompt("DDL", "How many?", evidence="x refers to y")
    assert "\nQuestion:\nx refers to y\nHow many?\n\nInstructions:\n" in prompt
    assert generation_prompt("DDL", "How many?", evidence="  ") == generation_prompt("DDL", "How many?")


def test_merge_prompt_matches_reference_example(reference_dir: Path) -> None:
    expected = (reference_dir / "merge_prompt.example.txt").read_text(encoding="utf-8")
    drafts = [
        (DRAFT_1, "[('america', 4), ('asia', 7), ('europe', 11)]"),
        (DRAFT_2, "[(1, 4), (2, 11), (3, 7)]"),
    ]
    assert merge_prompt(_schema_block(expected), CAR_QUESTION, "", drafts) == expected


def test_merge_prompt_cuts_long_sql() -> None:
    sql = "SELECT " + "a, " * 400 + "b FROM t"
    prompt = merge_prompt("DDL", "q", "", [(sql, "[]"), ("SELECT 1", "[(1,)]")])
    assert f"1. {sql[:500]}\n【Execution result】\n[]\n\n2. SELECT 1\n" in prompt


def test_chatml_fallback_equals_qwen25_template_output() -> None:
    # What Qwen2.5's own template gives for a system + user conversation (ChatML).
    expected = "<|im_start|>system\nSYS<|im_end|>\n<|im_start|>user\nHi?<|im_end|>\n<|im_start|>assistant\n"
    for arch in ("qwen2", "qwen3"):
        assert render_chat(fallback_template(arch), MESSAGES) == expected  # type: ignore[arg-type]
    no_prompt = render_chat(fallback_template("qwen2"), MESSAGES, add_generation_prompt=False)  # type: ignore[arg-type]
    assert no_prompt == expected.removesuffix("<|im_start|>assistant\n")


def test_gemma_and_llama_fallbacks() -> None:
    gemma = render_chat(fallback_template("gemma3"), MESSAGES, bos_token="<bos>")  # type: ignore[arg-type]
    assert gemma == "<bos><start_of_turn>user\nSYS\n\nHi?<end_of_turn>\n<start_of_turn>model\n"
    llama = render_chat(fallback_template("llama"), MESSAGES, bos_token="<|begin_of_text|>")  # type: ignore[arg-type]
    assert llama == (
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nSYS<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nHi?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    )
    assert fallback_template("mamba") is None


def test_render_chat_behaves_like_transformers() -> None:
    template = (
        "{% for m in messages %}\n"
        "  {% if loop.index > 1 %}{% break %}{% endif %}\n"
        "{{ m['content'] | tojson }}|{{ strftime_now('%Y') | length }}\n"
        "{% endfor %}"
    )
    # trim_blocks + lstrip_blocks remove the block lines; tojson keeps non-ASCII as is.
    assert (
        render_chat(template, [{"role": "user", "content": "é<>"}, {"role": "user", "content": "x"}])
        == '"é<>"|4\n'
    )
    with pytest.raises(TemplateError, match="roles must alternate"):
        render_chat("{{ raise_exception('roles must alternate') }}", MESSAGES)
    with pytest.raises(SecurityError):
        render_chat("{{ messages.append(1) }}", MESSAGES)  # the sandbox is immutable

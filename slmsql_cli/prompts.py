"""The exact texts the models read: system prompt, generation and merge user messages, chat template.

SLM-SQL / CSC-SQL checkpoints were trained on OmniSQL's prompt wrapped by CSC-SQL's "think"
template (csc_sql `infer.py` `make_prefix`, `common_utils.build_merge_generate_prompt`); a few
bytes of drift cost accuracy (OmniSQL#3), so these strings are reproduced exactly and tested
against prompts produced by the reference code.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

SYSTEM_PROMPT = (
    "You are a helpful AI Assistant that provides well-reasoned and detailed responses. You first think "
    "about the reasoning process as an internal monologue and then provide the user with the answer. "
    "Respond in the following format: <think>\n...\n</think>\n<answer>\n...\n</answer>"
)

_TASK = (
    "You are a data science expert. Below, you are provided with a database schema and a natural language "
    "question. Your task is to understand the schema and generate a valid SQL query to answer the question."
)
_MERGE_TASK = (
    "You are a data science expert. Below, you are provided with a database schema, a natural language "
    "question, some draft SQL and its corresponding execution result. Your task is to understand the schema "
    "and generate a valid SQL query to answer the question."
)

# OmniSQL's input_prompt_template without its "Output Format: ... ```sql ...``` ... Take a deep
# breath ..." block, which CSC-SQL's think wrapper deletes (what is left ends in "\n\n").
_OMNISQL_BODY = """Task Overview:
{task}

Database Engine:
SQLite

Database Schema:
{db_details}
This schema describes the database's structure, including tables, columns, primary keys, foreign keys, and any relevant relationships or constraints.

Question:
{question}

{drafts}Instructions:
- Make sure you only output the information that is asked in the question. If the question asks for a specific column, make sure to only include that column in the SELECT clause, nothing more.
- The generated query should return all of the information asked in the question without any missing or extra information.
- Before generating the final SQL query, please think through the steps of how to write the query.

"""

# CSC-SQL make_prefix(template_type="think"); the output message keeps its trailing space.
_THINK_PREFIX = (
    "You first thinks about the reasoning process in the mind and then provides the user with the answer.\n"
)
_THINK_OUTPUT = (
    "Show your work in <think> </think> tags. And return the final SQLite SQL query that starts with keyword "
    "`SELECT` in <answer> </answer> tags, for example <answer>SELECT AVG(rating_score) FROM movies</answer>. "
)
_THINK_SUFFIX = "\n\nOutput Format:\n" + _THINK_OUTPUT + " \n\nLet me solve this step by step."

MERGE_SQL_CHARS = 500  # each draft SQL is cut to 500 characters in the merge prompt

# OmniSQL's inference cut prompts at 6,144 tokens of an 8,192-token window (`max_input_len` in
# train_and_evaluate/infer.py; 8,192 is also its SFT block size), and CSC-SQL/SLM-SQL ran vLLM with
# max_model_len 8,192 and 1,024 new tokens: their models never saw a longer prompt. A larger schema
# is pruned to the question's tables (prompt_builder.py) rather than filling a 32k context (slow,
# and out of training).
PROMPT_BUDGET = 6144


def question_text(question: str, evidence: str = "") -> str:
    """OmniSQL's question field: BIRD evidence, a newline, then the question (evidence only if non-blank)."""
    return question if not evidence.strip() else evidence + "\n" + question


def _wrap(body: str) -> str:
    return _THINK_PREFIX + body + _THINK_SUFFIX


def generation_prompt(db_details: str, question: str, evidence: str = "") -> str:
    """The SQL generation user message (OmniSQL prompt in the CSC-SQL think wrapper)."""
    return _wrap(
        _OMNISQL_BODY.format(
            task=_TASK, db_details=db_details, question=question_text(question, evidence), drafts=""
        )
    )


def merge_prompt(db_details: str, question: str, evidence: str, drafts: Sequence[tuple[str, str]]) -> str:
    """The CSC-SQL merge-revision user message: the drafts and their results go before Instructions.

    `drafts` are (sql, result_text) for the top-1 then top-2 vote group; result_text is already
    formatted (Python repr of the rows, shortened the reference's way) by the caller.
    """
    blocks = "\n".join(
        f"{i}. {sql[:MERGE_SQL_CHARS]}\n【Execution result】\n{result}\n"
        for i, (sql, result) in enumerate(drafts, start=1)
    )
    drafts_text = f"Here are some corresponding draft SQL and execute result: \n{blocks}\n\n"
    return _wrap(
        _OMNISQL_BODY.format(
            task=_MERGE_TASK,
            db_details=db_details,
            question=question_text(question, evidence),
            drafts=drafts_text,
        )
    )


# --- chat templates ----------------------------------------------------------------------------

# Used only when a GGUF carries no tokenizer.chat_template. Written to give the same text as the
# model families' own Hugging Face templates for plain string messages.
_CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

# Gemma has no system role: the system text opens the first user turn, followed by a blank line.
_GEMMA = (
    "{{ bos_token }}"
    "{% set ns = namespace(prefix='') %}"
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{% set ns.prefix = message['content'] + '\\n\\n' %}"
    "{% else %}"
    "{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
    "{{ '<start_of_turn>' + role + '\\n' + ns.prefix + message['content'] | trim + '<end_of_turn>\\n' }}"
    "{% set ns.prefix = '' %}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\\n' }}{% endif %}"
)

_LLAMA3 = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"
)

_FALLBACKS = {
    "qwen2": _CHATML,
    "qwen3": _CHATML,
    "qwen2moe": _CHATML,
    "qwen3moe": _CHATML,
    "gemma3": _GEMMA,
    "gemma2": _GEMMA,
    "gemma": _GEMMA,
    "llama": _LLAMA3,
}


def fallback_template(architecture: str) -> str | None:
    """slmsql's own chat template for a GGUF `general.architecture`, or None if it has none."""
    return _FALLBACKS.get((architecture or "").lower())


def _raise_exception(message: str) -> None:
    from jinja2.exceptions import TemplateError

    raise TemplateError(message)


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


def _tojson(
    value: Any,
    ensure_ascii: bool = False,
    indent: int | None = None,
    separators: Any = None,
    sort_keys: bool = False,
) -> str:
    # transformers replaces jinja's HTML-escaping tojson with plain json.dumps
    import json

    return json.dumps(
        value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
    )


def _generation_tag() -> type:
    """`{% generation %}...{% endgeneration %}` (transformers' AssistantTracker), rendered as its body."""
    from jinja2 import nodes
    from jinja2.ext import Extension

    class GenerationTag(Extension):
        tags = {"generation"}

        def parse(self, parser: Any) -> Any:
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return nodes.Scope(body, lineno=lineno)

    return GenerationTag


def render_chat(
    template: str,
    messages: Sequence[dict[str, Any]],
    *,
    bos_token: str = "",
    eos_token: str = "",
    add_generation_prompt: bool = True,
    **kwargs: Any,
) -> str:
    """Render a Hugging Face chat template the way transformers' apply_chat_template does.

    Same sandbox, same whitespace options and the same helpers (raise_exception, strftime_now),
    so a template embedded in a GGUF gives the text the model was trained on.
    """
    from jinja2.ext import loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols, _generation_tag()]
    )
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    return env.from_string(template).render(
        messages=list(messages),
        bos_token=bos_token,
        eos_token=eos_token,
        add_generation_prompt=add_generation_prompt,
        **kwargs,
    )

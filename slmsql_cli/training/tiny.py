"""A tiny random Qwen2 checkpoint built offline, for tests and smoke runs of the whole train path.

Nothing is downloaded: a byte-level BPE tokenizer with Qwen2's pre-tokenizer and ChatML special
tokens is trained on the texts given (the prompts it will see), and a two-layer Qwen2 with random
weights is saved beside it. It writes no sensible SQL, but every step - data, chat template,
SFT, GRPO, saving, export - runs exactly as for the real 0.5B model, in seconds on a CPU.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from slmsql_cli.prompts import fallback_template

# Qwen2's pre-tokenizer split (tokenizer.json of Qwen2.5), so exporters treat it as a Qwen2 vocabulary.
QWEN2_SPLIT = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def build_tokenizer(corpus: Iterable[str], vocab_size: int = 1024):  # -> PreTrainedTokenizerFast
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(corpus), trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    fast.chat_template = fallback_template("qwen2")
    return fast


def default_corpus() -> list[str]:
    """The fixed text of every prompt (system, generation and merge wrappers) and some SQL, so
    prompts tokenize to a sane length even when the model is built without seeing a schema."""
    from slmsql_cli.prompts import SYSTEM_PROMPT, generation_prompt, merge_prompt

    sql = (
        "SELECT T1.name, count(*) AS cnt FROM singer AS T1 JOIN concert AS T2 ON T1.singer_id = T2.singer_id "
        "WHERE T2.year > 2014 AND T1.country = 'France' GROUP BY T1.name HAVING count(*) > 1 ORDER BY cnt DESC LIMIT 5"
    )
    ddl = "CREATE TABLE singer (\n    singer_id integer, -- example: [1, 2]\n    name text, -- example: ['Joe', 'Ann']\n    PRIMARY KEY (singer_id)\n);"
    texts = [
        SYSTEM_PROMPT,
        generation_prompt(ddl, "How many singers are there?"),
        merge_prompt(ddl, "How many singers are there?", "", [(sql, "[(1,)]"), (sql, "[]")]),
        f"<think>\n\n</think>\n<answer>\n{sql}\n</answer>",
    ]
    return texts * 20


def build_tiny_qwen2(
    out_dir: str | Path,
    corpus: Iterable[str] | None = None,
    *,
    vocab_size: int = 1024,
    hidden_size: int = 64,
    layers: int = 2,
    max_positions: int = 8192,
    seed: int = 0,
) -> Path:
    """Save a random Qwen2 (~0.2M parameters with the defaults) and its tokenizer to `out_dir`."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    out = Path(out_dir)
    tokenizer = build_tokenizer(list(corpus or []) + default_corpus(), vocab_size)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=max_positions,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


if __name__ == "__main__":  # python -m slmsql_cli.training.tiny OUT_DIR
    import sys

    if len(sys.argv) != 2:
        sys.exit("usage: python -m slmsql_cli.training.tiny OUT_DIR")
    print(build_tiny_qwen2(sys.argv[1]))

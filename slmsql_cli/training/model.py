"""The base model, its tokenizer, and the chat format a run trains on.

`--base` is a Hugging Face checkpoint folder, a Hub repo id, or a GGUF file (dequantized into
transformers with `gguf_file=`). The chat template is chosen the way `ask` chooses it for the
exported model - the model's own, else slmsql's fallback for its architecture
(`slmsql_cli.prompts.fallback_template`) - unless `--chat-template` names one. The template is
written into the saved tokenizer, so the exported GGUF carries it and `ask` renders the same text.
Prompts are rendered with `ask`'s own renderer (`slmsql_cli.prompts.render_chat`), not with
transformers', so the bytes are the same by construction.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slmsql_cli import hub
from slmsql_cli.errors import UserError
from slmsql_cli.prompt_builder import TokenCounter
from slmsql_cli.prompts import SYSTEM_PROMPT, fallback_template, render_chat

# transformers `model_type` → GGUF `general.architecture`, the key of slmsql's fallback templates.
_ARCH = {
    "qwen2": "qwen2",
    "qwen3": "qwen3",
    "qwen2_moe": "qwen2moe",
    "qwen3_moe": "qwen3moe",
    "gemma3_text": "gemma3",
    "gemma3": "gemma3",
    "gemma2": "gemma2",
    "gemma": "gemma",
    "llama": "llama",
}


@dataclass
class BaseModel:
    """Where the weights are: a folder or repo id, plus the file name inside it for a GGUF."""

    source: str
    gguf_file: str | None = None
    architecture: str = ""  # GGUF-style name (qwen2, gemma3, llama); "" when unknown
    gguf_chat_template: str | None = None

    @property
    def label(self) -> str:
        return str(Path(self.source) / self.gguf_file) if self.gguf_file else self.source

    def load_kwargs(self) -> dict[str, Any]:
        return {"gguf_file": self.gguf_file} if self.gguf_file else {}


def resolve_base(spec: str) -> BaseModel:
    """Check `--base` exists (cheaply: GGUF metadata only) before anything heavy is loaded."""
    path = Path(spec).expanduser()
    if path.suffix.lower() == ".gguf":
        if not path.is_file():
            raise UserError(
                f"base model not found: {path}",
                "pass an existing .gguf file, a checkpoint folder or a Hub repo id",
            )
        arch, template = _gguf_metadata(path)
        return BaseModel(str(path.parent.resolve()), path.name, arch, template)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise UserError(
                f"{path} is not a Hugging Face checkpoint (no config.json)",
                "pass the folder written by save_pretrained (e.g. runs/<name>/final), a .gguf file or a Hub repo id",
            )
        return BaseModel(str(path.resolve()), architecture=_hf_architecture(path))
    if path.exists():
        raise UserError(
            f"cannot use {path} as a base model", "pass a checkpoint folder, a .gguf file or a Hub repo id"
        )
    if not hub.REPO_ID.match(spec):
        raise UserError(
            f"base model not found: {spec}",
            "pass a checkpoint folder, a .gguf file or a Hub repo id (owner/name)",
        )
    return BaseModel(spec)


def _gguf_metadata(path: Path) -> tuple[str, str | None]:
    """Architecture and chat template from the GGUF header (llama.cpp reads it in well under a second)."""
    import llama_cpp

    from slmsql_cli import llama_logs
    from slmsql_cli._internals import check_gguf_file

    check_gguf_file(path)
    llama_logs.silence()
    try:
        llm = llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)
    except (ValueError, RuntimeError) as exc:
        raise UserError(f"cannot read {path.name}: {exc}", "the file may be truncated or corrupt") from None
    meta = dict(llm.metadata)
    llm.close()
    return meta.get("general.architecture", ""), meta.get("tokenizer.chat_template")


def _hf_architecture(path: Path) -> str:
    import json

    try:
        model_type = json.loads((path / "config.json").read_text()).get("model_type", "")
    except (OSError, ValueError):
        return ""
    return _ARCH.get(model_type, model_type)


def load_tokenizer(base: BaseModel) -> Any:
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(base.source, **base.load_kwargs())
    except OSError as exc:
        raise UserError(
            f"cannot load the tokenizer of {base.label}: {exc}".splitlines()[0],
            "check the repo id and your connection, or pass a local folder / .gguf file",
        ) from None
    if not base.architecture:
        base.architecture = _ARCH.get(getattr(tok, "model_type", ""), "")
    if base.gguf_file:
        restore_pre_tokenizer(tok, Path(base.source) / base.gguf_file)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def restore_pre_tokenizer(tok: Any, gguf_path: Path) -> None:
    """Give a tokenizer that transformers rebuilt from a GGUF the pre-tokenizer the GGUF names.

    transformers' GGUF reader gives every `gpt2`-model vocabulary a plain ByteLevel pre-tokenizer,
    whatever `tokenizer.ggml.pre` says. For SmolLM2 (`smollm`) that drops the step that makes every
    digit its own word, so the model would be trained on other token boundaries than llama.cpp
    uses, and `slmsql export` would write `gpt-2` into the GGUF. Names whose pre-tokenizer is
    plain ByteLevel need nothing; the others named here get the steps llama.cpp implements.
    """
    import gguf
    from tokenizers import pre_tokenizers

    field = gguf.GGUFReader(str(gguf_path)).fields.get("tokenizer.ggml.pre")
    pre = field.contents() if field is not None else None
    if pre == "smollm":
        tok.backend_tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Digits(individual_digits=True),
                pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True),
            ]
        )


def load_model(base: BaseModel, *, bf16: bool, attn_implementation: str | None = None) -> Any:
    import torch
    from transformers import AutoModelForCausalLM

    kwargs: dict[str, Any] = {"dtype": torch.bfloat16 if bf16 else torch.float32, **base.load_kwargs()}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    try:
        model = AutoModelForCausalLM.from_pretrained(base.source, **kwargs)
    except OSError as exc:
        raise UserError(f"cannot load {base.label}: {exc}".splitlines()[0]) from None
    if not base.architecture:
        base.architecture = _ARCH.get(model.config.model_type, model.config.model_type)
    if base.gguf_file:
        _drop_gguf_quantizer(model, base)
    return model


def _drop_gguf_quantizer(model: Any, base: BaseModel) -> None:
    """A GGUF loaded by transformers' legacy path is plain dense weights, yet stays flagged as
    quantized, so Trainer refuses to train it and save_pretrained refuses to save it. Unflag it;
    weights kept in packed GGUF blocks (a few architectures, with the `kernels` package) cannot train."""
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is None:
        return
    if getattr(quantizer, "packed_modules", None):
        raise UserError(
            f"transformers kept {base.gguf_file}'s weights in packed GGUF blocks, which cannot be trained",
            "start from the original Hugging Face checkpoint instead of the GGUF",
        )
    quantizer.remove_quantization_config(model)  # transformers' own way back to a plain model
    model.hf_quantizer = None  # it deleted the attribute; some code reads it without getattr
    for module in model.modules():
        if getattr(getattr(module, "config", None), "_is_quantized", False):
            module.config._is_quantized = False


def resolve_chat_template(requested: str | None, base: BaseModel, tokenizer: Any | None) -> tuple[str, str]:
    """(template, where it came from): --chat-template, else the model's own, else slmsql's fallback."""
    if requested:
        path = Path(requested).expanduser()
        if path.is_file():
            return path.read_text(encoding="utf-8"), str(path)
        template = fallback_template(requested)
        if template is None:
            raise UserError(
                f"--chat-template {requested}: no such file or built-in template",
                "pass a .jinja file, or an architecture name: qwen2, qwen3, gemma3, llama",
            )
        return template, f"slmsql's {requested} template"
    own = base.gguf_chat_template if base.gguf_file else getattr(tokenizer, "chat_template", None)
    if isinstance(own, dict):  # several named templates: the default one
        own = own.get("default")
    if own:
        return own, "the model's own template"
    template = fallback_template(base.architecture)
    if template is not None:
        return template, f"slmsql's {base.architecture} template (the model has none; `ask` uses the same)"
    raise UserError(
        f"{base.label} has no chat template and slmsql has none for architecture '{base.architecture or 'unknown'}'",
        "pass --chat-template with a .jinja file, or an architecture name: qwen2, qwen3, gemma3, llama",
    )


@dataclass
class ChatFormat:
    """Turns (system, user, target) into the exact prompt text and the completion text to train on."""

    template: str
    bos_token: str = ""
    eos_token: str = ""
    tokenizer_adds_bos: bool = False  # `tokenizer(text)` prepends BOS by itself (Gemma, Llama)

    @classmethod
    def for_tokenizer(cls, template: str, tokenizer: Any) -> ChatFormat:
        ids = tokenizer("x")["input_ids"]
        adds = tokenizer.bos_token_id is not None and bool(ids) and ids[0] == tokenizer.bos_token_id
        return cls(template, tokenizer.bos_token or "", tokenizer.eos_token or "", adds)

    def _render(self, messages: list[dict[str, str]], add_generation_prompt: bool) -> str:
        return render_chat(
            self.template,
            messages,
            bos_token=self.bos_token,
            eos_token=self.eos_token,
            add_generation_prompt=add_generation_prompt,
        )

    def prompt(self, user: str, system: str = SYSTEM_PROMPT) -> str:
        """The text `ask` sends to the model: system + user message, generation prompt added."""
        return self._render(_messages(system, user), True)

    def completion(self, user: str, target: str, system: str = SYSTEM_PROMPT) -> str:
        """What follows the prompt when the assistant answers `target`, up to its end-of-turn marker.

        Taken from the template itself (the full conversation minus the prompt), so the model learns
        to close its turn with the token `ask` stops on. Whitespace after the marker is dropped:
        generation has stopped by then.
        """
        prompt = self.prompt(user, system)
        full = self._render(_messages(system, user) + [{"role": "assistant", "content": target}], False)
        suffix = full[len(prompt) :].rstrip() if full.startswith(prompt) else target
        if suffix.rstrip() == target.strip() or not suffix:
            suffix = target.strip() + self.eos_token  # a template with no end-of-turn text
        return suffix

    def end_of_turn(self, tokenizer: Any) -> int | None:
        """The token that closes an assistant turn (<|im_end|>, <end_of_turn>), for generation to stop on."""
        tail = self.completion("q", "ANSWER")
        marker = tail[tail.rfind("ANSWER") + len("ANSWER") :]
        ids = tokenizer(marker, add_special_tokens=False)["input_ids"] if marker else []
        return ids[0] if ids else None

    def counter(self, tokenizer: Any) -> TokenCounter:
        """How the model counts tokens, for `prompt_builder`: a user message as `prompt` renders it,
        and plain text, both tokenized as llama.cpp does at inference (special tokens in the text
        parsed, nothing added), so training data is cut to the prompt budget exactly as `ask` cuts it."""

        def count(text: str) -> int:
            return len(tokenizer(text, add_special_tokens=False)["input_ids"])

        return TokenCounter(message=lambda user: count(self.prompt(user)), text=count)

    def generation_text(self, user: str, system: str = SYSTEM_PROMPT) -> str:
        """The prompt for TRL's generation, which tokenizes with special tokens: no BOS twice."""
        text = self.prompt(user, system)
        if self.tokenizer_adds_bos and self.bos_token and text.startswith(self.bos_token):
            text = text[len(self.bos_token) :]
        return text


def _messages(system: str, user: str) -> list[dict[str, str]]:
    return (
        [{"role": "system", "content": system}, {"role": "user", "content": user}]
        if system
        else [{"role": "user", "content": user}]
    )

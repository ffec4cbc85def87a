"""The llama.cpp engine: one prompt decode shared by N candidates, decoded together as one batch.

Why not `Llama.create_completion` N times? On a CPU, decoding one token of a 0.5B model is bound
by memory bandwidth: reading the weights once for 8 sequences costs little more than for one.
llama-cpp-python's high-level class decodes a single sequence, so this module drives the
low-level bindings (as llama.cpp's own `examples/batched` does): a context with `n_seq_max = N`
and a unified KV cache, the prompt decoded once into sequence 0 and shared with the others by
`llama_memory_seq_cp` (no copy: the cells are shared), and every step one `llama_decode` holding
one token from each live sequence. Tokens are drawn from the logits in numpy (`Engine._draw`), all
sequences together, each with its own generator seeded `seed + i`; llama.cpp's sampler chains are
not used (see `_draw` for why). With a constraint (`SamplingParams.constraint`, constraint.py), each
drawn token is read by its candidate's gate first, and a refused one is replaced by an admissible
token among the likely ones (`_admit`).

The prompt stays in the KV cache after a call, so the next call (the next question in `chat`,
or the merge step when the merge model is the generator) only evaluates the tokens after the
longest common prefix. With `prompt_cache` on (as `ask` and `chat` set it), a prompt evaluated
mostly from scratch is also saved to disk, and a new process starts from the stored prompt that
shares the longest prefix with its own (`kv_cache.py`).
"""

from __future__ import annotations

import ctypes
import os
import time
import weakref
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

from slmsql_cli import _internals, engine_protocol, kv_cache, llama_logs
from slmsql_cli.cpu import cpu_name, default_threads
from slmsql_cli.engine_protocol import Completion, Gate, GenerationStats, PromptProgress, SamplingParams
from slmsql_cli.errors import UserError

_THREADS_RECHECK_SECONDS = 60.0
# Prompt tokens per llama_decode; chunks start at multiples of it, which the disk cache relies on.
# Between two chunks the reading is reported (`on_prompt`) and Ctrl-C is seen; one llama_decode of
# the whole prompt (llama.cpp splits it into the same 512-token micro-batches) is no faster:
# docs/PERFORMANCE.md, "Reading the prompt".
_CHUNK = 512
# Leave this much of the KV budget unused for the graph's own buffers.
_KV_BUDGET_BYTES = int(os.environ.get("SLMSQL_KV_BUDGET_MB", "1024")) * 1024 * 1024
# With a constraint, the tokens tried in turn when the drawn one is refused: first those whose
# logit is within _ADMIT_MARGIN of the best (each at least e^-8 as likely at T=1: all but a sliver
# of the mass; found with one comparison over the vocabulary, 10x cheaper than a partition), then
# the _ADMIT_MOST likeliest; past them the candidate ends ("constrained").
_ADMIT_MARGIN = 8.0
_ADMIT_MOST = 1024


def gpu_backend(ll: Any) -> str:
    """The GPU backend this llama.cpp build was compiled with, from its system info line."""
    info = (ll.llama_print_system_info() or b"").decode("utf-8", "replace")
    names = ("CUDA", "Metal", "Vulkan", "ROCm", "HIP", "SYCL", "OpenCL", "MUSA", "CANN")
    return ", ".join(n for n in names if n in info) or "GPU"


class Engine:
    """One loaded GGUF model and its batched-sampling context.

    Native memory is owned as llama-cpp-python's `_internals.py` owns it: one `ExitStack` frees the
    context and its batch before the model (`close`, or `with Engine(...) as engine:`). An engine
    that is never closed is freed when it is garbage-collected (`weakref.finalize`, not `__del__`).
    A closed engine refuses further use with a RuntimeError.
    """

    # Save evaluated prompts to disk and start from the longest stored prefix (kv_cache.py). Off
    # unless the caller turns it on: `bench` and the benchmarks time prompt evaluation itself.
    prompt_cache: bool = False

    def __init__(
        self,
        model_path: str | Path,
        *,
        threads: int | None = None,
        n_ctx: int | None = None,
        gpu_layers: int | None = None,
    ) -> None:
        """`threads`: CPU threads, default the physical cores other programs leave free (`cpu.py`),
        measured again before a `sample` when the last look is over a minute old. `gpu_layers`:
        layers offloaded to a GPU, default all of them where this llama.cpp build has GPU offload
        (CUDA, Metal, Vulkan, ...), else none; 0 keeps the model on the CPU."""
        import llama_cpp
        import numpy

        self._ll = llama_cpp
        self.path = Path(model_path)
        _internals.check_gguf_file(self.path)
        self._auto_threads = threads is None
        self.threads = threads or default_threads()
        self._threads_checked = time.monotonic()
        offload = bool(llama_cpp.llama_supports_gpu_offload())
        self.gpu_layers = (-1 if offload else 0) if gpu_layers is None else gpu_layers
        llama_logs.silence()
        # Unwound last in, first out: the sampling context (registered after the model) goes first.
        # Its callbacks hold the model and the context slot, never the engine, so that the
        # finalizer below does not keep the engine alive.
        self._native = ExitStack()
        self._finalizer = weakref.finalize(self, self._native.close)
        # The weights' placement: llama.cpp's defaults, except where its AMX kernels are on offer
        # (they crash; llama_build.py). Read from the GGUF header before loading.
        self.placement = _internals.placement_for(self.path, gpu_offload=self.gpu_layers != 0)
        try:
            # The model alone (mmap'd); sampling runs in the contexts created below.
            model = _internals.Model(self.path, gpu_layers=self.gpu_layers, placement=self.placement)
        except (ValueError, RuntimeError) as exc:
            raise UserError(
                f"llama.cpp could not load {self.path.name}: {exc}",
                "the file may be truncated or corrupt; download or export it again",
            ) from None
        self._model = model
        self._native.callback(model.close)
        self._slot = _internals.ContextSlot()
        self._native.callback(self._slot.replace, None)
        self._np = numpy
        self.model = model.model
        self.vocab = model.vocab
        self.metadata: dict[str, str] = model.metadata()
        self.architecture = self.metadata.get("general.architecture", "")
        self.n_vocab = int(llama_cpp.llama_vocab_n_tokens(self.vocab))
        self.n_ctx_train = int(llama_cpp.llama_model_n_ctx_train(self.model))
        self.n_ctx_limit = min(n_ctx or self.n_ctx_train, self.n_ctx_train)
        self.kv_bytes_per_token = self._kv_bytes_per_token()
        self._cached: list[int] = []  # prompt tokens resident in sequence 0
        self._piece_buf = ctypes.create_string_buffer(256)
        self._pieces: dict[int, bytes] = {}  # token -> its text's bytes, as they are met
        # Sampling scratch, one row per sequence, padded with zeros to whole blocks.
        self._block = 1024
        self._buf = numpy.zeros((1, -(-self.n_vocab // self._block) * self._block), dtype=numpy.float32)

    @property
    def device(self) -> str:
        """What runs the model, in words: the GPU backend, or the CPU and its threads."""
        n_layer = int(self._ll.llama_model_n_layer(self.model))
        if self.gpu_layers != 0 and self._ll.llama_supports_gpu_offload():
            layers = n_layer if self.gpu_layers < 0 else min(self.gpu_layers, n_layer)
            return f"GPU ({gpu_backend(self._ll)}), {layers} of {n_layer} layers offloaded"
        return f"CPU {cpu_name()}, {self.threads} thread{'s' if self.threads != 1 else ''}"

    def _refresh_threads(self) -> None:
        """Follow the machine's load in a long session: measure the free cores again (0.1 s) when
        the last look is over a minute old, and give the context the new count."""
        if not self._auto_threads or time.monotonic() - self._threads_checked < _THREADS_RECHECK_SECONDS:
            return
        self.threads = default_threads()
        self._threads_checked = time.monotonic()
        if self._slot.current is not None:
            self._ll.llama_set_n_threads(self._slot.current.ctx, self.threads, self.threads)

    # ---- text <-> tokens -------------------------------------------------------------------
    def tokenize(self, text: str) -> list[int]:
        # The chat template writes BOS itself where the model wants one (as transformers'
        # apply_chat_template does), so no automatic BOS here.
        self._check_open()
        return self._model.tokenize(text.encode("utf-8"), add_special=False, parse_special=True)

    def token_text(self, token: int) -> str:
        return self._piece(token).decode("utf-8", errors="replace")

    def chat_template(self) -> str | None:
        return self.metadata.get("tokenizer.chat_template")

    def special_token_text(self, which: str) -> str:
        self._check_open()
        return self._model.special_token_text(which)

    def _piece(self, token: int) -> bytes:
        self._check_open()
        piece = self._pieces.get(token)
        if piece is not None:
            return piece
        n = self._ll.llama_token_to_piece(self.vocab, token, self._piece_buf, len(self._piece_buf), 0, False)
        if n < 0:
            buf = ctypes.create_string_buffer(-n)
            n = self._ll.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, False)
            piece = buf.raw[:n]
        else:
            piece = self._piece_buf.raw[:n]
        self._pieces[token] = piece
        return piece

    # ---- context management -----------------------------------------------------------------
    def _kv_bytes_per_token(self) -> int:
        ll, m = self._ll, self.model
        n_layer = ll.llama_model_n_layer(m)
        n_head = max(ll.llama_model_n_head(m), 1)
        n_head_kv = ll.llama_model_n_head_kv(m)
        head_dim = ll.llama_model_n_embd(m) // n_head
        key_len = self.metadata.get(f"{self.architecture}.attention.key_length")
        if key_len:
            head_dim = int(key_len)
        return 2 * n_layer * n_head_kv * head_dim * 2  # K and V, f16

    def plan_rounds(self, prompt_tokens: int, params: SamplingParams) -> tuple[int, int]:
        """(sequences per round, context cells) that fit the context limit and the KV budget."""
        if prompt_tokens + params.max_tokens > self.n_ctx_limit:
            raise UserError(
                f"the prompt ({prompt_tokens} tokens) plus {params.max_tokens} new tokens exceeds the model's context ({self.n_ctx_limit})",
                "lower --max-tokens, or ask about fewer tables (slmsql prunes the schema to the question's tables when it can)",
            )
        budget_cells = max(
            _KV_BUDGET_BYTES // max(self.kv_bytes_per_token, 1), prompt_tokens + params.max_tokens
        )
        cells_limit = min(self.n_ctx_limit, budget_cells)
        per_round = max(1, min(params.n, (cells_limit - prompt_tokens) // params.max_tokens))
        cells = prompt_tokens + per_round * params.max_tokens + 16
        return per_round, min(cells, self.n_ctx_limit)

    @property
    def closed(self) -> bool:
        return not self._finalizer.alive

    def _context(self) -> _internals.Context:
        """The current sampling context (a RuntimeError once the engine is closed)."""
        self._check_open()
        if self._slot.current is None:
            raise RuntimeError("no sampling context: call sample()")
        return self._slot.current

    def _check_open(self) -> None:
        if self.closed:
            raise RuntimeError(f"the engine for {self.path.name} is closed; load the model again")

    def _ensure_context(self, cells: int, seqs: int) -> None:
        self._check_open()
        current = self._slot.current
        if current is not None and current.cells >= cells and current.seqs >= seqs:
            return
        self.close_context()
        ll = self._ll
        params = ll.llama_context_default_params()
        # Round up so that small changes in prompt length reuse the context (and its cache).
        params.n_ctx = min(((cells + 255) // 256) * 256, self.n_ctx_train)
        params.n_batch = 512
        params.n_ubatch = 512
        params.n_seq_max = seqs
        params.kv_unified = True
        # llama.cpp's AUTO turns flash attention on for the CPU, where it made a batch of 8 decode
        # steps over a 1,700-token prompt 3x slower (328 ms vs 110 ms per step, Qwen2.5-0.5B shape).
        params.flash_attn_type = ll.LLAMA_FLASH_ATTN_TYPE_DISABLED
        params.n_threads = self.threads
        params.n_threads_batch = self.threads
        params.no_perf = False
        context = _internals.Context(ll, self.model, params, seqs)
        self._slot.replace(context)
        self._cached = []
        if self.prompt_cache and not (
            ll.llama_model_is_recurrent(self.model) or ll.llama_model_is_hybrid(self.model)
        ):
            original = self.metadata.get(f"{self.architecture}.rope.scaling.original_context_length")
            settings = kv_cache.context_settings(ll, params, int(original or self.n_ctx_train))
            settings["gpu_layers"] = self.gpu_layers  # GPU kernels compute slightly different cells
            context.store = kv_cache.PromptStore.open(self.path, settings)

    def close_context(self) -> None:
        """Free the sampling context (the model stays loaded; the next `sample` makes a new one)."""
        self._slot.replace(None)
        self._cached = []

    def close(self) -> None:
        """Free the context, its batch, then the model. Closing twice is harmless."""
        self._finalizer()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- decoding -----------------------------------------------------------------------------
    def _decode(self, items: Sequence[tuple[int, int, int, bool]]) -> None:
        """Decode (token, position, seq_id, wants_logits) items as one batch."""
        context = self._context()
        b = context.batch
        for i, (tok, pos, seq, logits) in enumerate(items):
            b.token[i] = tok
            b.pos[i] = pos
            b.n_seq_id[i] = 1
            b.seq_id[i][0] = seq
            b.logits[i] = logits
        b.n_tokens = len(items)
        rc = self._ll.llama_decode(context.ctx, b)
        if rc != 0:
            raise RuntimeError(f"llama_decode failed with code {rc}")

    def _load_prompt(self, tokens: list[int], on_prompt: PromptProgress | None = None) -> tuple[int, int]:
        """Make sequence 0 hold `tokens` with fresh logits for the last one, a chunk per llama_decode,
        `on_prompt` told after each (an exception there, Ctrl-C included, stops between chunks and
        leaves the cache holding the chunks read).

        Returns (tokens evaluated, tokens of the reused prefix that came from the disk cache)."""
        ll = self._ll
        context = self._context()
        mem = ll.llama_get_memory(context.ctx)
        for s in range(1, context.seqs):
            ll.llama_memory_seq_rm(mem, s, -1, -1)
        # the last prompt token is always re-decoded for its logits
        keep = min(kv_cache.common_prefix(self._cached, tokens), len(tokens) - 1)
        store, from_disk = context.store, 0
        if store is not None:
            restored = self._restore(context, store, tokens, keep)
            from_disk = restored if restored > keep else 0
            keep = restored
        ll.llama_memory_seq_rm(mem, 0, keep, -1)
        # Only cells computed in the chunks of a fresh evaluation (whole chunks from position 0) are
        # stored, at chunk boundaries: that is what makes a restored prefix give the same logits.
        canonical = keep % _CHUNK == 0 and context.exact >= keep
        context.exact = len(tokens) if canonical else min(context.exact, keep)
        saving = store if canonical and keep < kv_cache.STORE_IF_REUSED_BELOW * len(tokens) else None
        last_boundary = kv_cache.reusable_length(len(tokens), _CHUNK)
        rest = tokens[keep:]
        # What sequence 0 holds, kept true at every step: a reading stopped half-way (an exception
        # from on_prompt, Ctrl-C) must not let the next call reuse cells it never computed.
        self._cached = tokens[:keep]
        report = on_prompt or _ignore
        report(keep, len(tokens), keep)
        for start in range(0, len(rest), _CHUNK):
            chunk = rest[start : start + _CHUNK]
            last_chunk = start + _CHUNK >= len(rest)
            self._decode(
                [(t, keep + start + j, 0, last_chunk and j == len(chunk) - 1) for j, t in enumerate(chunk)]
            )
            end = keep + start + len(chunk)
            self._cached = tokens[:end]
            # Sliding-window models keep only the window's cells in a saved state, so they are saved
            # at every boundary (each usable only whole); the others once, at the last boundary.
            if saving and end % _CHUNK == 0 and end <= last_boundary and (self._swa or end == last_boundary):
                self._save(context, saving, tokens[:end])
            report(end, len(tokens), keep)
        return len(rest), from_disk

    @property
    def _swa(self) -> int:
        """The model's sliding attention window (0 without one)."""
        return int(self._ll.llama_model_n_swa(self.model))

    def _restore(
        self, context: _internals.Context, store: kv_cache.PromptStore, tokens: list[int], keep: int
    ) -> int:
        """Load the stored prompt that gives a longer reusable prefix than `keep` into sequence 0, if any.

        Returns the prefix now reusable: `keep` when nothing better was found; 0 when llama.cpp
        refused the stored state (sequence 0 is then empty)."""
        ll = self._ll
        found = store.best(tokens, _CHUNK, max_tokens=context.cells, whole_only=self._swa > 0)
        if found is None or found[1] <= keep:
            return keep
        entry, usable = found
        payload = store.payload(entry)
        if payload is None:
            return keep
        mem = ll.llama_get_memory(context.ctx)
        ll.llama_memory_seq_rm(mem, 0, -1, -1)
        self._cached, context.exact = [], 0
        buf = (ctypes.c_uint8 * len(payload)).from_buffer(payload)
        read = ll.llama_state_seq_set_data(context.ctx, buf, len(payload), 0)
        oldest_needed = max(usable - self._swa, 0) if self._swa else 0
        if (
            read != len(payload)
            or ll.llama_memory_seq_pos_min(mem, 0) > oldest_needed
            or ll.llama_memory_seq_pos_max(mem, 0) != len(entry.tokens) - 1
        ):
            ll.llama_memory_seq_rm(mem, 0, -1, -1)
            store.reject(entry.path, "llama.cpp could not load it")
            return 0
        self._cached, context.exact = entry.tokens, usable
        return usable

    def _save(self, context: _internals.Context, store: kv_cache.PromptStore, tokens: list[int]) -> None:
        """Write sequence 0's state (holding `tokens`) to the disk cache."""
        ll = self._ll
        size = ll.llama_state_seq_get_size(context.ctx, 0)
        buf = (ctypes.c_uint8 * size)()
        if ll.llama_state_seq_get_data(context.ctx, buf, size, 0) == size:
            store.save(tokens, buf)

    def _draw(self, logits, row_of: list[int], rngs: list, params: SamplingParams) -> list[int]:
        """Sample one token per sequence; sequence i reads logits row row_of[i] and draws with rngs[i].

        Written by hand instead of llama.cpp's sampler chain: that chain builds and exponentiates
        a candidate array of the whole vocabulary (152k-262k entries) per token and per sequence,
        which was a third of the wall time at N=8. Here all rows are done together in a few
        vectorized numpy passes, and the inverse-CDF draw searches block sums first so that no
        full-vocabulary cumulative sum is needed.
        """
        np = self._np
        if params.temperature <= 0:
            best = logits.argmax(axis=1)
            return [int(best[r]) for r in row_of]
        rows, width = logits.shape[0], self.n_vocab
        buf = self._buf[:rows]
        probs = buf[:, :width]
        np.subtract(logits, logits.max(axis=1, keepdims=True), out=probs)
        np.multiply(probs, 1.0 / params.temperature, out=probs)
        np.exp(probs, out=probs)  # unnormalized; the padding columns stay 0
        if params.top_p < 1.0:
            return [self._draw_top_p(probs[r], rng, params.top_p) for r, rng in zip(row_of, rngs)]
        block = self._block
        blocks = buf.reshape(rows, -1, block).sum(axis=2, dtype=np.float64)
        cum_blocks = np.cumsum(blocks, axis=1)
        out = []
        for r, rng in zip(row_of, rngs):
            target = rng.random() * cum_blocks[r, -1]
            b = min(int(np.searchsorted(cum_blocks[r], target, side="right")), cum_blocks.shape[1] - 1)
            before = cum_blocks[r, b - 1] if b else 0.0
            inside = np.cumsum(buf[r, b * block : (b + 1) * block], dtype=np.float64)
            j = min(int(np.searchsorted(inside, target - before, side="right")), block - 1)
            out.append(min(b * block + j, width - 1))
        return out

    def _draw_top_p(self, p, rng, top_p: float) -> int:
        np = self._np
        order = np.argsort(-p)
        cum = np.cumsum(p[order], dtype=np.float64)
        keep = int(np.searchsorted(cum, top_p * cum[-1])) + 1
        cdf = cum[:keep]
        j = int(np.searchsorted(cdf, rng.random() * cdf[-1], side="right"))
        return int(order[min(j, keep - 1)])

    def _admit(self, row, tok: int, gate: Gate, rng, params: SamplingParams) -> tuple[int, Gate] | None:
        """The token to take instead of `tok` when the constraint refuses it, and the gate that
        read it; None when no likely token is admissible.

        Checked lazily: the drawn token first (admitted, as it nearly always is, this costs one
        check); when it is refused, the likely tokens in turn (_ADMIT_MARGIN, _ADMIT_MOST), for
        greedy in order of probability and otherwise in a random order that samples them without
        replacement in proportion to their probability (Gumbel keys), so the draw is one from the
        admissible tokens among them."""
        trial = gate.copy()
        if self._admits(trial, tok, params):
            return tok, trial
        np = self._np
        tried = {tok}
        scores = row[: self.n_vocab]
        near = np.flatnonzero(scores >= scores.max() - _ADMIT_MARGIN)
        most = min(_ADMIT_MOST, self.n_vocab)
        for top in (near, None):
            if top is None:  # the likeliest _ADMIT_MOST, those within the margin already tried
                top = np.argpartition(scores, -most)[-most:]
            elif len(top) > most:
                top = top[np.argpartition(scores[top], -most)[-most:]]
            keys = scores[top].astype(np.float64)
            if params.temperature > 0:
                keys = keys / params.temperature - np.log(-np.log(rng.random(len(top))))
            for t in top[np.argsort(-keys)]:
                t = int(t)
                if t in tried:
                    continue
                tried.add(t)
                trial = gate.copy()
                if self._admits(trial, t, params):
                    return t, trial
        return None

    def _admits(self, gate: Gate, tok: int, params: SamplingParams) -> bool:
        if not params.ignore_eos and self._ll.llama_vocab_is_eog(self.vocab, tok):
            return gate.can_end()
        return gate.feed(self._piece(tok))

    def _logits(self, n_rows: int):
        """The logits of the last decode, one row per output, as a numpy view (no copy)."""
        ptr = self._ll.llama_get_logits(self._context().ctx)
        return self._np.ctypeslib.as_array(ptr, shape=(n_rows, self.n_vocab))

    def sample(
        self,
        prompt: str | list[int],
        params: SamplingParams,
        on_token: Callable[[int], None] | None = None,
        on_prompt: PromptProgress | None = None,
    ) -> tuple[list[Completion], GenerationStats]:
        """Draw `params.n` completions of `prompt`; candidate i always uses seed `params.seed + i`.
        `on_prompt` hears each round's reading of the prompt (the rounds after the first find it
        cached)."""
        ll = self._ll
        t0 = time.perf_counter()
        self._refresh_threads()
        tokens = self.tokenize(prompt) if isinstance(prompt, str) else list(prompt)
        if not tokens:
            raise UserError("empty prompt")
        per_round, cells = self.plan_rounds(len(tokens), params)
        self._ensure_context(cells, per_round)
        ctx = self._context().ctx
        if self._buf.shape[0] < per_round:
            self._buf = self._np.zeros((per_round, self._buf.shape[1]), dtype=self._np.float32)
        ll.llama_perf_context_reset(ctx)
        stats = GenerationStats(prompt_tokens=len(tokens))
        stops = [s.encode("utf-8") for s in params.stop]
        tail = max((len(s) for s in stops), default=0) + 32
        completions: list[Completion] = []
        n_prompt = len(tokens)
        mem = ll.llama_get_memory(ctx)
        for first in range(0, params.n, per_round):
            k = min(per_round, params.n - first)
            tp = time.perf_counter()
            evaluated, from_disk = self._load_prompt(tokens, on_prompt)
            stats.prompt_seconds += time.perf_counter() - tp
            stats.prompt_tokens_evaluated += evaluated
            stats.prompt_tokens_from_disk += from_disk
            stats.rounds += 1
            for s in range(1, k):
                ll.llama_memory_seq_cp(mem, 0, s, -1, -1)
            rngs = [self._np.random.default_rng(params.seed + first + s) for s in range(k)]
            gates = [params.constraint.start() for _ in range(k)] if params.constraint else None
            texts = [bytearray() for _ in range(k)]
            counts = [0] * k
            reasons = [""] * k
            n_rows = 1  # outputs of the last decode: one per live sequence, in order
            live = list(range(k))
            pos = n_prompt
            while live:
                items = []
                still = []
                logits = self._logits(n_rows)
                # After the prompt every sequence draws from its single row; later, row i is live[i]'s.
                row_of = [0] * len(live) if n_rows == 1 else list(range(len(live)))
                drawn = self._draw(logits, row_of, [rngs[s] for s in live], params)
                for j, (s, tok) in enumerate(zip(live, drawn)):
                    if gates is not None:
                        admitted = self._admit(logits[row_of[j]], tok, gates[s], rngs[s], params)
                        if admitted is None:  # nothing likely is admissible: the candidate ends here
                            reasons[s] = "constrained"
                            continue
                        tok, gates[s] = admitted
                    counts[s] += 1
                    if on_token:
                        on_token(first + s)
                    if not params.ignore_eos and ll.llama_vocab_is_eog(self.vocab, tok):
                        reasons[s] = "eog"
                        counts[s] -= 1
                        continue
                    texts[s] += self._piece(tok)
                    if stops and any(st in texts[s][-tail:] for st in stops):
                        reasons[s] = "stop"
                        continue
                    if counts[s] >= params.max_tokens:
                        reasons[s] = "length"
                        continue
                    items.append((tok, pos, s, True))
                    still.append(s)
                if not items:
                    break
                self._decode(items)
                n_rows = len(still)
                live = still
                pos += 1
            for s in range(k):
                text = bytes(texts[s]).decode("utf-8", errors="replace")
                for st in params.stop:
                    cut = text.find(st)
                    if cut >= 0:
                        text = text[: cut + len(st)]
                completions.append(
                    Completion(text=text, tokens=counts[s], finish_reason=reasons[s] or "length")
                )
                stats.generated_tokens += counts[s]
            # Generated tokens are dropped; the prompt stays cached in sequence 0 for the next call.
            for s in range(k):
                ll.llama_memory_seq_rm(mem, s, n_prompt, -1)
        # llama.cpp counts multi-token batches as "prompt eval", so split its total by our own clock.
        perf = ll.llama_perf_context(ctx)
        compute = (perf.t_p_eval_ms + perf.t_eval_ms) / 1000.0
        stats.decode_seconds = max(compute - stats.prompt_seconds, 0.0)
        stats.wall_seconds = time.perf_counter() - t0
        return completions, stats


def _ignore(_read: int, _total: int, _cached: int) -> None:
    pass


if TYPE_CHECKING:  # mypy: every member of the `engine_protocol.Engine` protocol, with compatible types
    _IS_AN_ENGINE: type[engine_protocol.Engine] = Engine

"""What --constrain costs per generated token (issue 30), on Gemma 3 270M.

Three measurements:

1. The gate alone (pure Python, no model): a typical answer (a thought, then the SQL in
   <answer>) cut into Gemma's own tokens, each tried on a copy of the gate and kept, as the
   engine does for a token it draws. Microseconds per token, thought and SQL apart.
2. The engine: `Engine.sample` with and without the constraint on the same prompt and seed, N
   candidates of a fixed length (end of turn ignored), runs interleaved. The prompt opens the SQL
   block itself (`Names.within_sql`) and asks about names the database does not have, so every
   token is checked as SQL and the model often wants a refused one: the worst case, where the
   fallback over the likeliest tokens runs. Also counted: checks per token (1 = the drawn token
   was admitted).
3. The alternative: llama.cpp's grammar sampler (GBNF) applied to the whole vocabulary once, as
   it must be for each candidate at each step.

  python benchmarks/constraint_cost.py                 # N=1 and N=8, 64 tokens, 3 runs each
  python benchmarks/constraint_cost.py --threads 4 --runs 5
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from conftest import assembled_gemma  # noqa: E402

from slmsql_cli._internals import Model  # noqa: E402
from slmsql_cli.constraint import Gate, Names  # noqa: E402
from slmsql_cli.engine import Engine  # noqa: E402
from slmsql_cli.engine_protocol import SamplingParams  # noqa: E402

SPIDER = Names(
    {
        "singer": ["singer_id", "name", "country", "song_name", "song_release_year", "age", "is_male"],
        "concert": ["concert_id", "concert_name", "theme", "stadium_id", "year"],
        "singer_in_concert": ["concert_id", "singer_id"],
        "stadium": ["stadium_id", "location", "name", "capacity", "highest", "lowest", "average"],
    }
)
THOUGHT = (
    "<think>\nThe question asks for the names of singers older than the average age, with the number "
    "of concerts each sang in. Join singer with singer_in_concert on singer_id, filter on age above "
    "the average from a subquery, group by the singer and count.\n</think>\n"
)
SQL = (
    "SELECT T1.name, COUNT(*) FROM singer AS T1 JOIN singer_in_concert AS T2 ON T1.singer_id = "
    "T2.singer_id WHERE T1.age > (SELECT AVG(age) FROM singer) GROUP BY T1.singer_id ORDER BY "
    "COUNT(*) DESC LIMIT 5"
)
UNGUESSABLE = Names(
    {"qx_rel7": ["vq_id", "zz_label", "kp_amount"], "wm_node3": ["ht_key", "qx_ref", "jj_when"]}
)
PROMPT = (
    "<bos><start_of_turn>user\nDatabase tables: qx_rel7(vq_id, zz_label, kp_amount), "
    "wm_node3(ht_key, qx_ref, jj_when).\nWrite one SQLite query that lists the names and emails of "
    "the customers who placed an order in 2021.<end_of_turn>\n<start_of_turn>model\n```sql\nSELECT"
)


def pieces(model: Model, text: str) -> list[bytes]:
    import ctypes

    import llama_cpp

    out = []
    buf = ctypes.create_string_buffer(256)
    for tok in model.tokenize(text.encode(), add_special=False, parse_special=True):
        n = llama_cpp.llama_token_to_piece(model.vocab, tok, buf, len(buf), 0, False)
        out.append(buf.raw[:n])
    return out


def gate_cost(gguf: Path, repeats: int = 2000) -> dict[str, float]:
    model = Model(gguf, vocab_only=True)
    try:
        thought = pieces(model, THOUGHT)
        sql = pieces(model, "<answer>\n" + SQL + "\n</answer>")
    finally:
        model.close()

    def per_token(tokens: list[bytes], start: Gate) -> float:
        best = float("inf")
        for _ in range(5):
            t = time.perf_counter()
            for _ in range(repeats // 5):
                gate = start.copy()
                for p in tokens:
                    trial = gate.copy()
                    assert trial.feed(p), p
                    gate = trial
            best = min(best, (time.perf_counter() - t) / (repeats // 5) / len(tokens))
        return best * 1e6

    after_thought = SPIDER.start()
    assert after_thought.feed(b"".join(thought))
    return {
        "thought_tokens": len(thought),
        "sql_tokens": len(sql),
        "us_per_thought_token": round(per_token(thought, SPIDER.start()), 2),
        "us_per_sql_token": round(per_token(sql, after_thought), 2),
    }


class Counting:
    """A constraint that counts the checks its gates make (tokens tried, admitted or not)."""

    def __init__(self, inner: object) -> None:
        self.inner, self.checks = inner, 0

    def start(self) -> _CountingGate:
        return _CountingGate(self.inner.start(), self)  # type: ignore[attr-defined]


class _CountingGate:
    def __init__(self, gate: Gate, owner: Counting) -> None:
        self.gate, self.owner = gate, owner

    def copy(self) -> _CountingGate:
        return _CountingGate(self.gate.copy(), self.owner)

    def feed(self, data: bytes) -> bool:
        self.owner.checks += 1
        return self.gate.feed(data)

    def can_end(self) -> bool:
        self.owner.checks += 1
        return self.gate.can_end()


def engine_cost(gguf: Path, ns: list[int], tokens: int, runs: int, threads: int) -> list[dict]:
    rows = []
    with Engine(gguf, threads=threads) as engine:
        engine.sample(PROMPT, SamplingParams(n=1, max_tokens=4))  # warm up, prompt cached
        # the time spent choosing admissible tokens, measured inside the engine: on a shared
        # machine it is steadier than the difference of two wall clocks
        admit, spent = engine._admit, [0.0]

        def timed(*a: object, **k: object) -> object:
            t = time.perf_counter()
            try:
                return admit(*a, **k)  # type: ignore[arg-type]
            finally:
                spent[0] += time.perf_counter() - t

        engine._admit = timed  # type: ignore[method-assign,assignment]
        for n in ns:
            times: dict[bool, list[float]] = {False: [], True: []}
            checks = generated = ended = 0
            spent[0] = 0.0
            for _ in range(runs):
                for constrained in (False, True):
                    counting = Counting(UNGUESSABLE.within_sql()) if constrained else None
                    params = SamplingParams(
                        n=n, max_tokens=tokens, seed=7, ignore_eos=True, stop=(), constraint=counting
                    )
                    completions, stats = engine.sample(PROMPT, params)
                    times[constrained].append(stats.wall_seconds - stats.prompt_seconds)
                    if counting is not None:
                        checks += counting.checks
                        generated += stats.generated_tokens
                        ended += sum(c.finish_reason == "constrained" for c in completions)
            free, con = statistics.median(times[False]), statistics.median(times[True])
            rows.append(
                {
                    "n": n,
                    "tokens_per_candidate": tokens,
                    "free_tok_s": round(n * tokens / free, 1),
                    "constrained_tok_s": round(generated / runs / con, 1),
                    "free_s_per_step": round(free / tokens, 4),
                    "constrained_s_per_step": round(con / tokens, 4),
                    "checks_per_token": round(checks / max(generated, 1), 2),
                    # per step (one token of each of the n candidates), and its share of the step
                    "constraint_ms_per_step": round(1000 * spent[0] / runs / tokens, 3),
                    "constraint_share": round(spent[0] / runs / con, 4),
                    "ended_by_constraint": ended,
                }
            )
    return rows


# The alternative measured: llama.cpp's grammar sampler, which checks every token of the
# vocabulary against a GBNF grammar at each step (a toy grammar of the same names; one that says
# "an alias defined earlier" cannot be written in GBNF at all).
GRAMMAR = r"""
root ::= "SELECT " cols " FROM " table (" WHERE " cond)?
cols ::= col (", " col)*
col ::= "vq_id" | "zz_label" | "kp_amount" | "ht_key" | "qx_ref" | "jj_when" | "*"
table ::= "qx_rel7" | "wm_node3"
cond ::= col " = " [0-9]+
"""


def grammar_cost(gguf: Path, repeats: int = 5) -> dict[str, float]:
    """Milliseconds for one application of llama.cpp's grammar sampler to the whole vocabulary
    (what one candidate's step would cost with it), at the start and after "SELECT"."""
    import ctypes

    import llama_cpp as ll
    import numpy as np

    model = Model(gguf, vocab_only=True)
    try:
        n_vocab = ll.llama_vocab_n_tokens(model.vocab)
        sampler = ll.llama_sampler_init_grammar(model.vocab, GRAMMAR.encode(), b"root")
        data = (ll.llama_token_data * n_vocab)()
        logits = np.random.default_rng(0).standard_normal(n_vocab).astype(np.float32)
        cur = ll.llama_token_data_array(data=data, size=n_vocab, selected=-1, sorted=False)

        def once() -> float:
            best = float("inf")
            for _ in range(repeats):
                for i in range(n_vocab):
                    data[i].id, data[i].logit, data[i].p = i, float(logits[i]), 0.0
                cur.size = n_vocab
                t = time.perf_counter()
                ll.llama_sampler_apply(sampler, ctypes.byref(cur))
                best = min(best, time.perf_counter() - t)
            return round(best * 1000, 1)

        start = once()
        for tok in model.tokenize(b"SELECT", add_special=False, parse_special=False):
            ll.llama_sampler_accept(sampler, tok)
        after = once()
        ll.llama_sampler_free(sampler)
    finally:
        model.close()
    return {"vocabulary": n_vocab, "ms_per_apply_at_start": start, "ms_per_apply_after_select": after}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", default="1,8", help="candidate counts")
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    gguf = assembled_gemma()
    report = {
        "machine": f"{platform.processor() or platform.machine()}, threads {args.threads}",
        "gate": gate_cost(gguf),
        "grammar_sampler": grammar_cost(gguf),
        "engine": engine_cost(
            gguf, [int(x) for x in args.n.split(",")], args.tokens, args.runs, args.threads
        ),
    }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()

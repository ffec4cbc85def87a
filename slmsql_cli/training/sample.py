"""Sample SQL drafts with a generation model: the input of merge-revision training.

    python -m slmsql_cli.training.sample --model runs/slm-sql-0.5b-grpo/final \\
        --data data/bird/train/train.json --db-dir data/bird/train/train_databases \\
        --tables data/bird/train/train_tables.json --n 8 --out data/bird/train/candidates.jsonl

Each question goes through `ask`'s own pipeline (`slmsql_cli.pipeline.Pipeline`, merge step off):
the same prompt, chat template, llama.cpp sampler and SQL extraction, so the merge model is trained
on drafts like those it will revise. `--model` is anything `ask --model` takes (a .gguf, a
checkpoint folder - exported once - or a repo id). One JSON line per question - the question's
`db_id`, `question`, `evidence`, gold `SQL` and `candidates` (the drafts' SQL) - appended as it
goes, so an interrupted run continues where it stopped. CSC-SQL sampled 8 drafts per question.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from slmsql_cli.engine_protocol import SamplingParams
from slmsql_cli.errors import UserError


def sample_candidates(
    model: str,
    data: str,
    db_dir: str,
    out: str,
    *,
    tables: str | None = None,
    n: int = 8,
    temperature: float = SamplingParams.temperature,
    max_tokens: int = SamplingParams.max_tokens,
    seed: int = SamplingParams.seed,
    use_values: bool = True,
    max_samples: int | None = None,
    threads: int | None = None,
    say=print,
) -> Path:
    from slmsql_cli.benchmark_data import question_row
    from slmsql_cli.database import check_question
    from slmsql_cli.pipeline import AskConfig, Pipeline
    from slmsql_cli.quantize import cached_gguf
    from slmsql_cli.training.config import build_config
    from slmsql_cli.training.data import Databases, DataReport
    from slmsql_cli.training.records import detect_format, read_records

    rows = read_records(data)
    if not rows:
        raise UserError(f"no rows in {data}")
    detect_format(rows[0].keys(), "spider")
    rows = rows[:max_samples] if max_samples else rows
    cfg = build_config(
        {
            "stage": "sft",
            "base": model,
            "data": data,
            "db_dir": db_dir,
            "tables": tables,
            "use_values": use_values,
        }
    )
    report = DataReport()
    dbs = Databases(cfg, report)
    for note in report.notes:
        say(note)
    path = Path(out)
    done = sum(1 for line in path.open(encoding="utf-8") if line.strip()) if path.is_file() else 0
    if done:
        say(f"{path}: {done} question(s) already sampled, continuing")
    config = AskConfig(
        n=n,
        temperature=temperature,
        max_tokens=max_tokens,
        seed=seed,
        merge=False,
        use_values=use_values,
        threads=threads,
    )
    pipeline = Pipeline.load(model, config=config, progress=say, export=cached_gguf)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with path.open("a", encoding="utf-8") as fh:
            for i, row in enumerate(rows[done:], start=done):
                fields = question_row(row)
                db = dbs.open(fields.db_id)
                record = {
                    "db_id": fields.db_id,
                    "question": fields.question,
                    "evidence": fields.evidence,
                    "SQL": fields.gold,
                    "candidates": [],
                }
                if isinstance(db, str):
                    record["error"] = db  # kept, so line numbers stay aligned with the data for resuming
                else:
                    check_question(fields.question, fields.evidence)
                    answer = pipeline.ask(db, fields.question, fields.evidence)
                    record["candidates"] = [c.sql for c in answer.generation.candidates if c.sql]
                fh.write(json.dumps(record, ensure_ascii=False) + "\n")
                fh.flush()
                if (i + 1) % 10 == 0 or i + 1 == len(rows):
                    say(f"{i + 1}/{len(rows)} questions sampled")
    finally:
        pipeline.close()
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m slmsql_cli.training.sample", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--model", required=True, help="generation model: anything `slmsql ask --model` accepts"
    )
    parser.add_argument(
        "--data", required=True, help="Spider/BIRD questions (.json/.jsonl) with gold SQL and db_id"
    )
    parser.add_argument(
        "--db-dir", required=True, help="database folder (<db_id>/<db_id>.sqlite) or one .sqlite file"
    )
    parser.add_argument("--tables", help="Spider/BIRD tables.json")
    parser.add_argument("--out", required=True, help="JSONL file to write (appended; reruns continue)")
    parser.add_argument("--n", type=int, default=8, help="drafts per question (CSC-SQL: 8)")
    parser.add_argument("--temperature", type=float, default=SamplingParams.temperature)
    parser.add_argument("--max-tokens", type=int, default=SamplingParams.max_tokens)
    parser.add_argument("--seed", type=int, default=SamplingParams.seed)
    parser.add_argument("--no-values", action="store_true", help="no question-matched values in the prompt")
    parser.add_argument("--max-samples", type=int, help="only the first N questions")
    parser.add_argument("--threads", type=int)
    args = parser.parse_args(argv)
    try:
        sample_candidates(
            args.model,
            args.data,
            args.db_dir,
            args.out,
            tables=args.tables,
            n=args.n,
            temperature=args.temperature,
            max_tokens=args.max_tokens,
            seed=args.seed,
            use_values=not args.no_values,
            max_samples=args.max_samples,
            threads=args.threads,
            say=lambda m: print(m, file=sys.stderr),
        )
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Rebuild tests/data from the full data sets: python tests/data/make_subset.py DATA REFERENCE.

DATA holds spider_dev/, sparc_dev/, cosql_dev/, bird_dev/, chinook/ and vocab/ as described in tests/data/README.md;
REFERENCE holds the reference prompts. The selection rules are written here once.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from slmsql_cli.quantize import vocab

HERE = Path(__file__).resolve().parent
SPIDER_PER_DB = 12  # the first 12 dev questions of each database (dev.json order)...
SPIDER_ALL = "concert_singer"  # ...and all of the database most tests use
BIRD_QUESTIONS = 60  # all three difficulty levels among them
# SParC dev interactions, by position in its dev.json: one over world_1 whose second turn's gold
# runs only as Spider's evaluator rewrites it (`! =`), and four over concert_singer of 2, 3, 4 and
# 3 turns; and the one CoSQL dev interaction (car_1) whose gold does not run even so (a stray `)`)
SPARC_INTERACTIONS = (60, 147, 148, 150, 155)
COSQL_INTERACTIONS = (56,)
SPIDER_FIELDS = ("db_id", "query", "question", "sql", "orig_index")
VOCAB = (  # the GGUF itself becomes qwen2/tokenizer.json (slmsql_cli/quantize/vocab.py)
    "ggml-vocab-qwen2.gguf.inp",
    "ggml-vocab-qwen2.gguf.out",
    "Qwen-Qwen2.5-7B-Instruct.jinja",
    "LICENSE.llama.cpp",
)


def _copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    dst.chmod(0o644)


def _write_json(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def main(data: Path, reference: Path) -> None:
    spider = data / "spider_dev"
    questions = json.loads((spider / "dev.json").read_text(encoding="utf-8"))
    taken: dict[str, int] = {}
    subset = []
    for q in questions:
        if q["db_id"] == SPIDER_ALL or taken.get(q["db_id"], 0) < SPIDER_PER_DB:
            taken[q["db_id"]] = taken.get(q["db_id"], 0) + 1
            subset.append({k: q[k] for k in SPIDER_FIELDS})
    _write_json(HERE / "spider_dev/dev.json", subset)
    tables = json.loads((spider / "tables.json").read_text(encoding="utf-8"))
    _write_json(HERE / "spider_dev/tables.json", [t for t in tables if t["db_id"] in taken])
    for db_id in taken:
        rel = f"database/{db_id}/{db_id}.sqlite"
        _copy(spider / rel, HERE / "spider_dev" / rel)

    sparc = json.loads((data / "sparc_dev" / "dev.json").read_text(encoding="utf-8"))
    _write_json(HERE / "sparc_dev/dev.json", [sparc[i] for i in SPARC_INTERACTIONS])
    cosql = json.loads((data / "cosql_dev" / "dev.json").read_text(encoding="utf-8"))
    _write_json(HERE / "cosql_dev/dev.json", [cosql[i] for i in COSQL_INTERACTIONS])

    bird = data / "bird_dev"  # one database (student_club) and its first dev questions
    _write_json(
        HERE / "bird_dev/dev.json",
        json.loads((bird / "dev.json").read_text(encoding="utf-8"))[:BIRD_QUESTIONS],
    )
    for rel in ("dev_tables.json", "dev_databases/student_club/student_club.sqlite"):
        _copy(bird / rel, HERE / "bird_dev" / rel)
    for rel in ("Chinook_Sqlite.sqlite", "LICENSE.md", "questions.json"):
        _copy(data / "chinook" / rel, HERE / "chinook" / rel)
    for name in VOCAB:
        _copy(data / "vocab" / name, HERE / "vocab" / name)
    vocab.write_qwen2(
        *vocab.qwen2_tokenizer_json(data / "vocab" / "ggml-vocab-qwen2.gguf"), HERE / "vocab" / "qwen2"
    )
    for name in ("generation_prompt.example.txt", "merge_prompt.example.txt", "prompts_no_values.json"):
        _copy(reference / name, HERE / "reference" / name)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))

"""Does `--constrain` refuse any right answer? Every gold query of the data sets, read by the
constraint's gate a few bytes at a time as a model's tokens would bring it (issue 30).

  python benchmarks/constraint_gold.py                         # ../shared/data: Spider, BIRD, SParC, CoSQL dev
  python benchmarks/constraint_gold.py --data tests/data       # the suite's subsets

Prints, per set, how many gold queries were read and each one the gate refused (with where).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from slmsql_cli.constraint import Names  # noqa: E402
from slmsql_cli.database import open_database  # noqa: E402


def gold_queries(data: Path) -> list[tuple[str, str, Path]]:
    """(set, gold SQL, database) of every question and interaction turn found under `data`."""
    found: list[tuple[str, str, Path]] = []
    spider = data / "spider_dev"
    for q in json.loads((spider / "dev.json").read_text()) if (spider / "dev.json").exists() else []:
        found.append(("spider", q["query"], spider / "database" / q["db_id"] / f"{q['db_id']}.sqlite"))
    bird = data / "bird_dev"
    for q in json.loads((bird / "dev.json").read_text()) if (bird / "dev.json").exists() else []:
        found.append(("bird", q["SQL"], bird / "dev_databases" / q["db_id"] / f"{q['db_id']}.sqlite"))
    for name in ("sparc", "cosql"):
        path = data / f"{name}_dev" / "dev.json"
        for inter in json.loads(path.read_text()) if path.exists() else []:
            db = spider / "database" / inter["database_id"] / f"{inter['database_id']}.sqlite"
            for turn in inter["interaction"]:
                found.append((name, turn["query"], db))
    return found


def refused_at(names: Names, sql: str, rng: random.Random) -> int | None:
    """Where the gate first refuses `sql` fed 1 to 3 bytes at a time inside an answer, or None."""
    gate = names.start()
    data = ("<answer>\n" + sql.strip() + "\n</answer>").encode("utf-8")
    i = 0
    while i < len(data):
        step = rng.randint(1, 3)
        if not gate.feed(data[i : i + step]):
            return max(0, i - len("<answer>\n"))
        i += step
    return None if gate.can_end() else len(sql)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    args = ap.parse_args()
    rng = random.Random(0)
    names: dict[Path, Names] = {}
    totals: dict[str, list[int]] = {}
    for set_name, sql, db_path in gold_queries(args.data):
        if db_path not in names:
            names[db_path] = Names.from_schema(open_database(str(db_path)).schema)
        at = refused_at(names[db_path], sql, rng)
        total = totals.setdefault(set_name, [0, 0])
        total[0] += 1
        if at is not None:
            total[1] += 1
            print(f"refused ({set_name}, {db_path.stem}) at {at}: {sql[:at]} <<< {sql[at : at + 40]}")
    for set_name, (read, refused) in totals.items():
        print(f"{set_name}: {read} gold queries, {refused} refused")


if __name__ == "__main__":
    main()

"""The last answers per database, so that `ask --after -` can follow the last one from the shell.

A shell has no conversation to keep: each `ask` is a new process. So `ask` and `chat` note every
answer here (its question, its SQL, and the earlier turns it followed), and `ask --after -` reads
the latest one on the same database back as the earlier turns of its own question; `--after ID`
follows a saved answer instead (saved.py). The history is small and bounded: the last
KEPT_ANSWERS answers of each of the KEPT_DATABASES databases used last, in one JSON file in the
cache folder (`<cache>/history/answers.json`, 0600 in a 0700 folder: what was asked of the data
is the user's). A cache that cannot be written is the cache's one warning, and no history.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from slmsql_cli.cache import (
    cache_dir,
    cache_path,
    locked,
    private_mkdir,
    read_json,
    unwritable_message,
    warn,
    write_json_atomic,
)
from slmsql_cli.conversation import MAX_TURNS, Turn
from slmsql_cli.errors import UserError

if TYPE_CHECKING:
    from slmsql_cli.database import Database

KEPT_ANSWERS = 20  # per database
KEPT_DATABASES = 50  # the databases answered on last
_VERSION = 1


def history_path() -> Path:
    return cache_path() / "history" / "answers.json"


def record(db: Database, answered: Turn, turns: Sequence[Turn] = ()) -> None:
    """Note an answer on `db` (`Answer.turn`: the question and the SQL that answered it, None
    when none ran) and the earlier turns it followed (the last MAX_TURNS). A cache that cannot be
    written: one warning."""
    from slmsql_cli.saved import identity

    path = history_path()
    entry = {
        "question": answered.question,
        "sql": answered.sql,
        "turns": [[t.question, t.sql] for t in list(turns)[-MAX_TURNS:]],
        "time": time.time(),
    }
    try:
        cache_dir()  # the cache root, made private
        private_mkdir(path.parent)
        with locked(path.parent / ".lock"):
            doc = _read(path)
            databases: dict[str, Any] = doc["databases"]
            kept = databases.pop(identity(db), {"name": db.name, "answers": []})
            kept["name"] = db.name
            kept["answers"] = [*kept["answers"], entry][-KEPT_ANSWERS:]
            databases[identity(db)] = kept  # last in the dict: the database answered on last
            for key in list(databases)[:-KEPT_DATABASES]:
                del databases[key]
            write_json_atomic(path, doc)
    except OSError as exc:
        warn(unwritable_message(exc))


def _read(path: Path) -> dict[str, Any]:
    """The history document; an empty one when it is missing, damaged or of another version."""
    doc = read_json(path)
    if (
        not isinstance(doc, dict)
        or doc.get("version") != _VERSION
        or not isinstance(doc.get("databases"), dict)
    ):
        return {"version": _VERSION, "databases": {}}
    return doc


def last(db: Database) -> tuple[Turn, list[Turn]] | None:
    """The last answer noted on `db` as a turn, and the earlier turns it followed; None when
    there is none."""
    from slmsql_cli.saved import identity

    answers = _read(history_path())["databases"].get(identity(db), {}).get("answers", [])
    with contextlib.suppress(KeyError, TypeError, ValueError, IndexError):
        entry = answers[-1]
        turns = [Turn(str(q), None if s is None else str(s)) for q, s in entry["turns"]]
        sql = entry["sql"]
        return Turn(str(entry["question"]), None if sql is None else str(sql)), turns
    return None


def after(db: Database, spec: str) -> list[Turn]:
    """The earlier turns `ask --after SPEC` follows on `db`: "-" the last answer noted here (after
    the turns it followed itself, the last MAX_TURNS in all), a number the saved answer with that
    id (which must be about `db`)."""
    from slmsql_cli import saved

    if spec.strip() == "-":
        found = last(db)
        if found is None:
            raise UserError(
                f"there is no earlier answer on {db.name} to follow",
                "ask a question first (without --after); its answer is kept for the next --after -",
            )
        turn, turns = found
        return [*turns, turn][-MAX_TURNS:]
    if not spec.strip().isdigit():
        raise UserError(
            f"--after takes a saved answer's number or '-', not {spec!r}",
            "'-' follows the last answer on this database; `slmsql saved list` shows the numbers",
        )
    entry = saved.get(int(spec))
    if all(e.id != entry.id for e in saved.entries(db)):
        raise UserError(
            f"saved answer #{entry.id} is about another database ({entry.database}), not {db.name}",
            "see `slmsql saved list`",
        )
    return [Turn(entry.question, entry.sql)]

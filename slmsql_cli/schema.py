"""A database's schema, and its serialization as the OmniSQL "Database Schema" DDL block.

The SLM-SQL / CSC-SQL models were trained on OmniSQL's prompts (`process_dataset.py`,
`obtain_db_details`), so `serialize_schema` reproduces that text byte for byte: one
`CREATE TABLE` per table, a `-- comment, example: [...]` tail per column, PRIMARY KEY and
`CONSTRAINT fk_...` lines. A schema comes either from the database itself (read by its
target: `targets/sqlite_catalog.py` for a SQLite file) or from a Spider/BIRD `tables.json`
(which adds natural-language column names as comments). This module runs no SQL.

Beyond OmniSQL (whose databases have neither): views are queryable like tables, so a SQLite
file's views follow its tables, each serialized as a `CREATE TABLE` of its columns (the only
DDL form the models saw); a view or virtual-table column without a declared type gets the type
of its first value (SQLite's rule would call it blob). Generated columns (hidden from `PRAGMA table_info`) are listed with the other columns.
FTS and R*Tree shadow tables stay out.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from slmsql_cli.errors import UserError

ValuesDict = Mapping[tuple[str, str], Sequence[Any]]

MAX_VALUES_PER_COLUMN = 6  # OmniSQL: (relevant + sampled values)[:6]
SAMPLE_VALUE_CHARS = 40  # OmniSQL truncates sampled strings to 40 characters (slmsql: BLOBs too)


@dataclass
class Column:
    name: str
    type: str
    comment: str = ""  # natural-language name from tables.json; "" for plain SQLite


@dataclass
class ForeignKey:
    column: str
    ref_table: str
    ref_column: str


@dataclass
class Table:
    name: str
    columns: list[Column]
    primary_key: list[str] = field(default_factory=list)
    foreign_keys: list[ForeignKey] = field(default_factory=list)


@dataclass
class Schema:
    db_id: str
    tables: list[Table]

    def table(self, name: str) -> Table | None:
        """The table called `name` (SQLite names are case-insensitive)."""
        return next((t for t in self.tables if t.name.lower() == name.lower()), None)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Schema:
        return cls(
            db_id=data["db_id"],
            tables=[
                Table(
                    name=t["name"],
                    columns=[Column(**c) for c in t["columns"]],
                    primary_key=list(t["primary_key"]),
                    foreign_keys=[ForeignKey(**fk) for fk in t["foreign_keys"]],
                )
                for t in data["tables"]
            ],
        )


# OmniSQL's SQL_RESERVED_WORDS (RUCKBReasoning/OmniSQL, train_and_evaluate/process_dataset.py,
# copied unchanged into CycloneBoy/csc_sql), sorted here. The models saw exactly these
# identifiers in backticks, so the set must not be "improved" (e.g. KEY is here, TYPE is not).
SQL_RESERVED_WORDS = frozenset(
    """
    ACCESS ADD AFTER ALL ALTER ANALYZE AND AS ASC AVG BEFORE BEGIN BETWEEN BIGINT BINARY BIT BLOB
    BOOLEAN BOTH BREAK BY CALL CASCADE CASE CAST CHAR CHARACTER CHECK CLOB COLLATE COLUMN COMMENT
    COMMIT CONDITION CONNECT CONSTRAINT CONTINUE CONVERT COUNT CREATE CROSS CURRENT CURRENT_DATE
    CURRENT_TIME CURRENT_TIMESTAMP CURSOR DATABASE DATE DAY DEC DECIMAL DECLARE DEFAULT DELETE DESC
    DESCRIBE DISTINCT DO DOUBLE DROP EACH ELSE ELSEIF END ESCAPE EXCEPT EXEC EXECUTE EXISTS EXIT
    EXPLAIN EXTEND EXTERNAL FALSE FETCH FILTER FLOAT FOR FOREIGN FROM FULL FUNCTION GENERATED GLOBAL
    GRANT GROUP HAVING HOLD HOUR IDENTIFIED IF IGNORE ILIKE IN INDEX INNER INOUT INSENSITIVE INSERT
    INT INTEGER INTERSECT INTERVAL INTO IS ITERATE JOIN KEY LANGUAGE LEADING LEAVE LEFT LIKE LIMIT
    LOCAL LOCALTIME LOCALTIMESTAMP LOCK LOOP MATCH MAX MERGE MIN MINUTE MODIFIES MODULE MONTH
    NATURAL NCHAR NEW NO NOT NULL NUMERIC OF OFFSET OLD ON ONLY OPEN OR ORDER OUT OUTER OVER
    PARTITION PERCENT PLACING POSITION PRECISION PRIMARY PROCEDURE RANGE READS REAL RECURSIVE
    REFERENCES REGEXP RELEASE RENAME REPEAT REPLACE RESIGNAL RESTRICT RETURN REVOKE RIGHT RLIKE ROLE
    ROLLBACK ROW ROWNUM ROWS SAVEPOINT SCHEMA SELECT SENSITIVE SESSION SET SIGNAL SMALLINT SOME
    SPECIFIC SQL SQLEXCEPTION SQLSTATE SQLWARNING START STATIC SUBSTRING SUM SYSDATE TABLE
    TERMINATED THEN TIME TIMESTAMP TO TOP TRAILING TRIGGER TRUE UNDO UNION UNIQUE UNKNOWN UNLOCK
    UPDATE USAGE USER USING VALUE VALUES VARCHAR VARYING VIEW WHEN WHERE WHILE WITH WITHIN YEAR ZONE
    """.split()
)
_SPECIAL_CHARS = re.compile(r"[^a-zA-Z0-9_]")


def format_identifier(name: str) -> str:
    """`name` in backticks if it is a reserved word or has a character outside [a-zA-Z0-9_] (OmniSQL rule)."""
    if name.upper() in SQL_RESERVED_WORDS or _SPECIAL_CHARS.search(name):
        return f"`{name}`"
    return name


def quote(name: str) -> str:
    """A correctly escaped SQLite identifier, for the queries slmsql itself runs."""
    return '"' + name.replace('"', '""') + '"'


# --- types and key order, for the readers in targets/ -----------------------------------------


def sqlite_affinity_type(declared: str) -> str:
    """A declared SQLite column type as a BIRD-style lowercase type name.

    BIRD's tables.json says integer/text/real/date/datetime, so those are the names the models
    know. Dates are recognised first (SQLite would give them NUMERIC affinity); everything else
    follows SQLite's own affinity rules (sqlite.org/datatype3.html §3.1), including "no declared
    type" -> blob. NVARCHAR(160) -> text, NUMERIC(10,2) -> numeric, DOUBLE -> real.
    """
    t = declared.upper()
    if "DATETIME" in t or "TIMESTAMP" in t:
        return "datetime"
    if "DATE" in t:
        return "date"
    if "INT" in t:
        return "integer"
    if "CHAR" in t or "CLOB" in t or "TEXT" in t:
        return "text"
    if "BLOB" in t or not t.strip():
        return "blob"
    if "REAL" in t or "FLOA" in t or "DOUB" in t:
        return "real"
    return "numeric"


def order_foreign_keys(table: Table) -> Table:
    """Sort `table`'s foreign keys by their column's position (OmniSQL's FK line order), in place."""
    position = {c.name.lower(): i for i, c in enumerate(table.columns)}
    table.foreign_keys.sort(key=lambda fk: position.get(fk.column.lower(), len(table.columns)))
    return table


def load_tables_json(path: str | Path) -> list[dict[str, Any]]:
    """The entries of a Spider/BIRD tables.json (one per database)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(
            f"tables file not found: {path}", "pass the Spider/BIRD tables.json with --tables"
        ) from None
    except ValueError as exc:
        raise UserError(
            f"{path} is not valid JSON: {exc}", "pass the Spider/BIRD tables.json with --tables"
        ) from None
    if not isinstance(data, list) or not all(isinstance(d, dict) and "db_id" in d for d in data):
        raise UserError(f"{path} is not a Spider/BIRD tables.json (a list of objects with db_id)")
    return data


def schema_from_tables_json(path: str | Path, db_id: str) -> Schema:
    """The schema of `db_id` in a Spider/BIRD tables.json, in its table and column order.

    `column_names_original` give the identifiers, `column_names` the comments. Primary keys may be
    column indexes or lists of indexes (composite keys); they are listed in column order, as
    OmniSQL does.
    """
    entries = load_tables_json(path)
    info = next((d for d in entries if d["db_id"] == db_id), None)
    if info is None:
        ids = [d["db_id"] for d in entries]
        close = difflib.get_close_matches(db_id, ids, n=5, cutoff=0.5)
        hint = (
            f"did you mean {', '.join(close)}?"
            if close
            else f"it has {len(ids)} databases, e.g. {', '.join(ids[:5])}"
        )
        raise UserError(f"database id '{db_id}' is not in {path}", f"{hint} (choose with --db-id)")
    try:
        return _schema_from_entry(info, db_id)
    except (KeyError, IndexError, TypeError, ValueError) as exc:  # the file's shape, not the code
        raise UserError(
            f"the entry for {db_id!r} in {path} is not in Spider/BIRD tables.json form ({type(exc).__name__}: {exc})",
            "it needs table_names_original and column_names_original; pass the benchmark's own tables.json",
        ) from None


def _schema_from_entry(info: dict[str, Any], db_id: str) -> Schema:
    names = info["column_names_original"]
    comments = info.get("column_names") or names
    types = info.get("column_types") or ["text"] * len(names)
    pk_idx: set[int] = set()
    for pk in info.get("primary_keys", []):
        pk_idx.update(pk if isinstance(pk, list) else [pk])

    tables = [Table(name=t, columns=[]) for t in info["table_names_original"]]
    for idx, ((t_idx, col), (_, comment), col_type) in enumerate(zip(names, comments, types)):
        if t_idx < 0:  # Spider's "*" pseudo column
            continue
        tables[t_idx].columns.append(Column(name=col, type=col_type, comment=comment))
        if idx in pk_idx:
            tables[t_idx].primary_key.append(col)
    # FK lines follow the source column order, then tables.json order (OmniSQL loops columns, then FKs).
    for src, dst in sorted(info.get("foreign_keys", []), key=lambda pair: pair[0]):
        t_idx, col = names[src]
        ref_t, ref_col = names[dst]
        tables[t_idx].foreign_keys.append(ForeignKey(col, info["table_names_original"][ref_t], ref_col))
    return Schema(db_id=db_id, tables=tables)


# --- values ------------------------------------------------------------------------------------


def combine_values(*sources: ValuesDict) -> dict[tuple[str, str], list[Any]]:
    """Concatenate per-column value lists (earlier sources first), keys lower-cased like OmniSQL's."""
    out: dict[tuple[str, str], list[Any]] = {}
    for source in sources:
        for (table, column), vals in source.items():
            out.setdefault((table.lower(), column.lower()), []).extend(vals)
    return out


# --- serialization -----------------------------------------------------------------------------


def _has_comment(column: Column) -> bool:
    name, comment = column.name.lower(), column.comment.lower()
    if not column.comment.strip():
        return False
    return name not in (comment, comment.replace(" ", "_"), comment.replace(" ", ""))


def _column_line(column: Column, values: list[Any]) -> str:
    line = f"    {format_identifier(column.name)} {column.type},"
    if _has_comment(column):
        line += f" -- {column.comment}"
        if values:
            line += f", example: {values}"
    elif values:
        line += f" -- example: {values}"
    return line


def serialize_table(table: Table, values: ValuesDict) -> str:
    """One `CREATE TABLE` block. Only the table's columns appear, so a pruned Table serializes too."""
    return _table_ddl(table, combine_values(values))


def _table_ddl(table: Table, lookup: dict[tuple[str, str], list[Any]]) -> str:
    """`serialize_table` with the values already combined (lower-cased keys): done once per schema."""
    present = {c.name.lower() for c in table.columns}
    lines = []
    for column in table.columns:
        vals = list(dict.fromkeys(lookup.get((table.name.lower(), column.name.lower()), [])))
        lines.append(_column_line(column, vals[:MAX_VALUES_PER_COLUMN]))
    pk = [c.name for c in table.columns if c.name in table.primary_key]
    pk = list(dict.fromkeys(pk))
    if pk:
        lines.append("    PRIMARY KEY (" + ", ".join(format_identifier(c) for c in pk) + "),")
    fks = []
    for fk in table.foreign_keys:
        if fk.column.lower() not in present:
            continue
        fks.append(
            f"    CONSTRAINT fk_{table.name.lower().replace(' ', '_')}_{fk.column.lower().replace(' ', '_')}"
            f" FOREIGN KEY ({format_identifier(fk.column)})"
            f" REFERENCES {format_identifier(fk.ref_table)} ({format_identifier(fk.ref_column)}),"
        )
    lines.extend(dict.fromkeys(fks))
    ddl = f"CREATE TABLE {format_identifier(table.name)} (\n" + "\n".join(lines)
    return ddl.removesuffix(",") + "\n);"


def serialize_schema(schema: Schema, values: ValuesDict) -> str:
    """The OmniSQL "Database Schema" block: tables joined by a blank line; tables without columns skipped.

    `values` maps (table, column) to example values, best first (question-relevant values, then
    sampled ones); keys match case-insensitively. Each column shows at most 6 distinct values.
    """
    return "\n\n".join(serialize_tables(schema, values).values())


def serialize_tables(schema: Schema, values: ValuesDict) -> dict[str, str]:
    """Each table's block of `serialize_schema`, by table name, in schema order (tables without
    columns left out): what pruning measures table by table."""
    lookup = combine_values(values)
    return {t.name: _table_ddl(t, lookup) for t in schema.tables if t.columns}


def subset(schema: Schema, columns: Iterable[tuple[str, str]]) -> Schema:
    """`schema` restricted to the given (table, column) pairs, keeping order, keys and FKs of kept columns."""
    keep = {(t.lower(), c.lower()) for t, c in columns}
    tables = []
    for t in schema.tables:
        cols = [c for c in t.columns if (t.name.lower(), c.name.lower()) in keep]
        if cols:
            tables.append(Table(t.name, cols, list(t.primary_key), list(t.foreign_keys)))
    return Schema(schema.db_id, tables)

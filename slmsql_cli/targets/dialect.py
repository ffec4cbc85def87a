"""The model's SQLite SQL made ready for a live target: transpiled, then checked once more.

The models write SQLite SQL (they were trained on it), so a candidate for DuckDB or PostgreSQL
goes through three gates before it runs, and one that fails any of them gets no vote:

1. `sqlcheck.check_sql`, the same allow-list the SQLite executor uses: one statement, a query.
2. `transpile`: sqlglot rewrites it for the target; SQL that sqlglot cannot parse or express
   there is refused with the reason (the SQLite executor lets SQLite judge such SQL; a target
   cannot run what was never translated).
3. The transpiled text is parsed again in the target's dialect and must still be exactly one
   query, with no `SELECT … INTO`, no row locks, no data-modifying clause anywhere (a
   PostgreSQL `WITH x AS (DELETE … RETURNING …)`), and no function of the deny-list: file,
   network, large-object, configuration, sequence and backend-signalling functions, and those
   that run a query given as a string (`query_to_xml`, DuckDB's `query`), which would bypass
   these checks, and no relation that reads configuration files or shows where files are
   (PostgreSQL's `pg_hba_file_rules`, `pg_file_settings`, `pg_settings`, `pg_config`; DuckDB's
   `duckdb_databases`, `pragma_database_list`). The engines enforce read-only access themselves as
   well, and each target checks the statement it is given once more on the engine's own terms
   (PostgreSQL: these names and its volatile rule; DuckDB: an allow-list read from its catalog).

A checked query then runs inside `capped`: the engine counts the bytes of the values as it makes
them and sends NULLs instead past a bound, so a huge value never reaches slmsql's memory;
`CappedRows` stops at the first such row, and a first row over the result cap on its own is an
error (`too_large`). An engine's error message has the folders it could name taken out
(`hide_folders`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path

from slmsql_cli import sqlglot_log
from slmsql_cli.errors import first_line
from slmsql_cli.schema import Schema
from slmsql_cli.targets.sqlcheck import check_sql

# Exact names, lower case. PostgreSQL: adminpack/dblink/large objects/configuration/sequences/
# signals/notifications/WAL and dynamic SQL; DuckDB: file readers (also blocked by
# enable_external_access=false) and the functions that run a query string.
_DENIED = {
    "postgres": frozenset(
        """pg_read_file pg_read_binary_file pg_stat_file pg_file_write pg_file_rename pg_file_unlink
        pg_file_sync pg_logdir_ls set_config nextval setval pg_terminate_backend pg_cancel_backend
        pg_reload_conf pg_rotate_logfile pg_switch_wal pg_create_restore_point pg_promote
        pg_notify pg_logical_emit_message pg_import_system_collations pg_stat_reset
        pg_stat_reset_shared pg_stat_reset_single_table_counters pg_backup_start pg_backup_stop
        txid_current pg_current_xact_id query_to_xml query_to_xmlschema query_to_xml_and_xmlschema
        cursor_to_xml cursor_to_xmlschema database_to_xml database_to_xmlschema
        database_to_xml_and_xmlschema schema_to_xml schema_to_xmlschema schema_to_xml_and_xmlschema
        table_to_xml table_to_xmlschema table_to_xml_and_xmlschema ts_stat copy"""
        # and what reads configuration files or shows paths, whatever the role (a superuser can):
        # settings (data_directory, config_file, hba_file), the files' parsed lines, the build's
        # folders, the log file, tablespace folders, a relation's file
        """ current_setting pg_show_all_settings pg_show_all_file_settings pg_hba_file_rules
        pg_ident_file_mappings pg_config pg_current_logfile pg_tablespace_location
        pg_relation_filepath""".split()
    ),
    "duckdb": frozenset(
        """read_csv read_csv_auto read_parquet parquet_scan parquet_metadata parquet_schema
        read_json read_json_auto read_json_objects read_ndjson read_ndjson_auto read_text
        read_blob glob sniff_csv query query_table json_execute_serialized_sql json_serialize_plan
        getenv getvariable write_log histogram_values duckdb_secrets which_secret checkpoint force_checkpoint"""
        # and the catalog that shows file paths or the home folder (DuckDB discloses no paths):
        # the database file (pragma_database_list, duckdb_databases), settings such as
        # temp_directory and allowed_directories, the extension folder under the home folder
        """ pragma_database_list duckdb_databases duckdb_settings current_setting duckdb_extensions
        duckdb_temporary_files duckdb_external_file_cache duckdb_logs duckdb_log_contexts""".split()
    ),
}
# Name prefixes denied outright (a family of functions, including ones added by later versions).
_DENIED_PREFIXES = {
    "postgres": ("pg_ls_", "pg_read_", "pg_file_", "lo_", "dblink", "pg_advisory", "pg_try_advisory"),
    "duckdb": (
        "read_", "parquet_", "iceberg_", "delta_", "sqlite_", "postgres_", "mysql_", "json_execute",
        "duckdb_", "pragma_",
    ),
}  # fmt: skip
# Relations (tables and views, in any schema) that read configuration files or show paths, by
# exact name (a table of the user's own may have a name that starts like them). DuckDB's table
# functions also read as tables (`FROM pragma_database_list`): its denied names count here too,
# and so does its pg_catalog's pg_settings (DuckDB's settings, folders included); the DuckDB
# target refuses the rest of its catalog views on its own parse.
_DENIED_RELATIONS = {
    "postgres": frozenset(
        "pg_hba_file_rules pg_ident_file_mappings pg_file_settings pg_settings pg_config".split()
    ),
    "duckdb": _DENIED["duckdb"] | {"pg_settings"},
}


class TranspileError(Exception):
    """A candidate that cannot run on the target; the message says why (shown with -v)."""


def transpile(sql: str, dialect: str, schema: Schema | None = None) -> str:
    """SQLite `sql` rewritten for `dialect` (`slmsql_cli.transpile`: sqlglot plus the rewrites
    that keep SQLite's meaning, typed by the target's `schema`); TranspileError when it cannot be."""
    from slmsql_cli import transpile as rewrite

    out = rewrite.transpile(sql, dialect, schema)
    if out.sql is None:
        raise TranspileError(f"cannot be translated to {dialect}: {out.reason}")
    return out.sql


def for_target(sql: str, dialect: str, schema: Schema | None = None) -> str:
    """The SQL to run on the target for a candidate's SQLite `sql`, or TranspileError (see the
    module doc). SQLite SQL is left as it is: the SQLite executor checks it itself."""
    if dialect == "sqlite":
        return sql
    rejection = check_sql(sql)
    if rejection:
        raise TranspileError(rejection)
    out = transpile(sql, dialect, schema)
    problem = check_target_sql(out, dialect)
    if problem:
        raise TranspileError(problem)
    return out


def check_target_sql(sql: str, dialect: str) -> str | None:
    """Why the transpiled `sql` must not run on `dialect`, or None."""
    import sqlglot
    from sqlglot import exp
    from sqlglot.errors import SqlglotError

    try:
        with sqlglot_log.quiet():
            trees = [t for t in sqlglot.parse(sql, read=dialect) if t is not None]
    except SqlglotError as exc:
        return f"the {dialect} translation does not parse: {first_line(exc)}"
    if len(trees) != 1:
        return f"only one SQL statement is allowed, found {len(trees)}"
    tree = trees[0]
    writes = (exp.Insert, exp.Update, exp.Delete, exp.Merge, exp.Create, exp.Drop, exp.Command)
    for node in tree.walk():
        if isinstance(node, writes):
            return f"only read-only queries may run (found {node.key.upper()})"
        if isinstance(node, exp.Into):
            return "SELECT … INTO creates a table: only read-only queries may run"
        if isinstance(node, exp.Lock):
            return "row locks (FOR UPDATE/SHARE) are not allowed: only read-only queries may run"
    return denied_names(tree, dialect)


def denied_names(tree: object, dialect: str) -> str | None:
    """Why a parsed statement (a sqlglot tree in `dialect`) must not run: it calls a function of
    the deny-list or reads a relation that reads configuration files or shows paths; or None.
    (The PostgreSQL target asks it too, for the statement it is handed.)"""
    from sqlglot import exp

    assert isinstance(tree, exp.Expression)
    for name in function_names(tree):
        if denied_function(name, dialect):
            return f"the function {name}() is not allowed on {dialect} (it reaches outside the query's data)"
    for table in tree.find_all(exp.Table):
        name = table.name.lower()
        if name in _DENIED_RELATIONS[dialect]:
            return f"{table.name} is not allowed on {dialect} (it reads configuration files or shows where files are)"
    return None


def denied_function(name: str, dialect: str) -> bool:
    """Whether the deny-list names the function `name` (lower case) on `dialect`."""
    return name in _DENIED[dialect] or name.startswith(_DENIED_PREFIXES[dialect])


def function_names(tree: object) -> Iterator[str]:
    """Lower-case names of every function called in a sqlglot tree, as written and as sqlglot knows it."""
    from sqlglot import exp

    assert isinstance(tree, exp.Expression)
    for func in tree.find_all(exp.Func):
        if isinstance(func, exp.Anonymous):
            yield func.name.lower()
        else:
            yield func.sql_name().lower()


# ---- the result cap, applied by the engine ------------------------------------------------------

OVER = "slmsql_over"  # a capped query's last column: the bytes that put the row over (else NULL)


def capped(
    sql: str, sizes: Sequence[str | None], max_bytes: int, *, running: bool, fence: str = ""
) -> str | None:
    """`sql` (one checked query of len(sizes) columns) wrapped so that the engine itself leaves out
    what is over the cap: a row whose values take more than `max_bytes` bytes, or with `running`,
    every row once the running sum of the rows' sizes passes `max_bytes`, has NULL for each value
    and those bytes in the added last column OVER (NULL in a row within it). `sizes[i]` is an SQL
    expression for the bytes of column `c{i+1}` (None: a fixed-size type, not counted). None when
    no column varies in size (the row cap alone bounds such a result): run `sql` itself then.

    `running` suits DuckDB, whose running sum streams (a window with no partition and no order);
    PostgreSQL's keeps every row it passes in a tuplestore (on disk past work_mem), so there each
    row is judged alone (the target bounds a batch of rows by its rows' share). `fence` keeps
    PostgreSQL from pulling a level up into the next, where each use of a column would evaluate
    its expression again (`OFFSET 0`). The query goes on lines of its own: a trailing `--`
    comment ends there. It parsed on its own (the targets check it first), so its parentheses,
    quotes and comments are balanced and it cannot reach outside them."""
    counted = [f"coalesce({size}, 0)" for size in sizes if size]
    if not counted:
        return None
    names = [f"c{i}" for i in range(1, len(sizes) + 1)]
    over = f"slmsql_bytes > {int(max_bytes)}"
    values = ", ".join(f"CASE WHEN {over} THEN NULL ELSE {c} END" for c in names)
    size = " + ".join(counted)
    if running:
        size = f"sum({size}) OVER (ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)"
    inner = sql.strip().rstrip(";").rstrip()
    query = f"SELECT * FROM (\n{inner}\n) AS slmsql_q({', '.join(names)}){fence}"
    return (
        f"SELECT {values}, CASE WHEN {over} THEN slmsql_bytes END AS {OVER} "
        f"FROM (SELECT *, {size} AS slmsql_bytes FROM ({query}) AS slmsql_w{fence}) AS slmsql_r"
    )


class CappedRows:
    """The rows of a `capped` query without their OVER column, up to the first row the engine
    left out (`over` then holds the bytes that put it over); `marked=False`: the rows of a query
    run as it is."""

    def __init__(self, rows: Iterable[tuple], marked: bool) -> None:
        self._rows = rows
        self._marked = marked
        self.over: int | None = None

    @property
    def cut(self) -> bool:
        return self.over is not None

    def __iter__(self) -> Iterator[tuple]:
        if not self._marked:
            yield from self._rows
            return
        for row in self._rows:
            if row[-1] is not None:
                self.over = int(row[-1])
                return
            yield tuple(row[:-1])


def too_large(max_bytes: int) -> str:
    """The error of a query whose first row alone is over the result cap."""
    return (
        f"a row of the result holds more than {max_bytes / 1e6:g} MB, the cap on a result: "
        "select fewer or shorter values (length(), substr())"
    )


def hide_folders(text: str, folders: Mapping[str, str]) -> str:
    """`text` with each folder (and the home folder, as `~`) replaced by its short name, the
    longest first (a data folder under the home folder keeps its own name)."""
    names = {str(Path.home()): "~", **folders}
    for folder in sorted(names, key=len, reverse=True):
        if folder not in ("", "/", "."):
            text = text.replace(folder, names[folder])
    return text

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
   these checks. The engines enforce read-only access themselves as well (see the targets).
"""

from __future__ import annotations

from collections.abc import Iterator

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
        cursor_to_xml cursor_to_xmlschema database_to_xml schema_to_xml copy""".split()
    ),
    "duckdb": frozenset(
        """read_csv read_csv_auto read_parquet parquet_scan parquet_metadata parquet_schema
        read_json read_json_auto read_json_objects read_ndjson read_ndjson_auto read_text
        read_blob glob sniff_csv query query_table getenv getvariable duckdb_secrets
        which_secret checkpoint force_checkpoint"""
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
    "duckdb": ("read_", "parquet_", "iceberg_", "delta_", "sqlite_", "postgres_", "mysql_"),
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
    for name in function_names(tree):
        if name in _DENIED[dialect] or name.startswith(_DENIED_PREFIXES[dialect]):
            return f"the function {name}() is not allowed on {dialect} (it reaches outside the query's data)"
    if dialect == "duckdb":  # DuckDB's table functions also read as tables: FROM pragma_database_list
        for table in tree.find_all(exp.Table):
            if table.name.lower() in _DENIED[dialect]:
                return f"{table.name} is not allowed on {dialect} (it shows where files are)"
    return None


def function_names(tree: object) -> Iterator[str]:
    """Lower-case names of every function called in a sqlglot tree, as written and as sqlglot knows it."""
    from sqlglot import exp

    assert isinstance(tree, exp.Expression)
    for func in tree.find_all(exp.Func):
        if isinstance(func, exp.Anonymous):
            yield func.name.lower()
        else:
            yield func.sql_name().lower()

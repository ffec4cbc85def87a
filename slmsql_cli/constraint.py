"""Which SQL a candidate may write: only table and column names the database has (issue 30).

The engine draws every token itself (`engine.Engine._draw`), so it can refuse, token by token, a
continuation that names something the database lacks, without touching the prompt the model was
trained on. `Names` is what a database has (its tables and their columns, read from `Database`'s
schema, plus what its dialect's catalog adds: SQLite's `rowid` and `sqlite_master`, DuckDB's and
PostgreSQL's `information_schema`, their schema qualifiers); `Names.start()` gives a `Gate`, one
per candidate, which reads the candidate's text as it is written and says whether it may go on.

Where it applies: only inside the answer's SQL block, from `<answer>` (outside `<think>`) or a
```` ```sql ```` fence to `</answer>` or the closing fence, the regions `extract.extract_sql` takes
the SQL from. The thought before stays free, as does everything after.

What is admissible: the text must stay a prefix of SQL whose table and column names exist, read
by an incremental lexer (one state per candidate, a stack of parentheses, no parse tree, no
lookahead):

* after FROM, JOIN or a comma in the FROM list: a table, a CTE the query defined, a table
  function (`json_each(...)`), `(` for a subquery, or a schema qualifier (`main.`, `public.`).
  What the FROM reads is bound in its query: a table under its alias if it has one (`FROM singer
  AS T1` is known as T1 alone), else under its name; a subquery, CTE or table function too, with
  the columns it returns: a subquery's (or a CTE body's) are read by sqlglot once its `)` is
  written, a table function's are listed per dialect (`TABLE_FUNCTIONS`). Where they are not
  known (`SELECT *`, SQL sqlglot cannot read), any column of some table, or a name the query
  defined, will do;
* where the FROM is read (ON, WHERE, GROUP BY, HAVING, ORDER BY), a column, bare or `q.column`,
  must be a column of what this query or an enclosing one has bound (through `q` when qualified),
  or a name the query defined (ORDER BY: one its select list named);
* the select list comes before its FROM, so its columns are owed: each must be a column of some
  table (of `q` when `q` is a table's name) as it is written, and of what the FROM bound once the
  FROM is read: the token that ends the FROM (WHERE ..., UNION, the `)` of a subquery, the end
  of the statement or of the answer) is refused while one is not. An alias may be used before
  it is defined (`SELECT T1.name FROM singer AS T1`); a qualifier not known yet must look like one
  (one or two letters, a few digits: `T1`, `a`, `sc`), so that an invented word does not pass as
  one. A correlated subquery in the select list owes its outer names to the outer query;
* a bare name is a value only as a column or a name the query defined (an output name, a CTE's
  column); a table or an alias is no value. Right after `AS`, after a table in FROM, after an
  expression in the select list, and in a CTE's name or column list, a new name is being defined,
  and any is allowed;
* a double-quoted name that is no column is a string in SQLite (`WHERE name = "Paris"`), so
  it is allowed where an expression is; after FROM it must be a table all the same;
* keywords, functions, numbers, strings, comments and operators are allowed where an expression
  is; a second SELECT with no UNION (or INTERSECT, EXCEPT) before it is refused. But ASC and
  DESC only after a value (SQLite reads `ORDER BY DESC` as a column named DESC), an operator
  (`LIKE`, `GLOB`, `AND`) only after a value or NOT (`avg(glob)` is a column to SQLite), and a
  date part (`hour`, `year`) only inside EXTRACT(: elsewhere SQLite looks for a column;
* `</answer>` is refused from its `/` on while the statement is not whole (a name still owed),
  so that a candidate never stops inside the tag with half of it in its SQL.

Names match ignoring case: the models write SQLite SQL, and `transpile.py` maps a name to the
schema's spelling (quoted) for DuckDB and PostgreSQL, so their catalogs' names are read the same
way. What the one pass cannot see is refused: a column alias used before the subquery that
defines it (`SELECT MAX(c) FROM (SELECT COUNT(*) AS c ...)`). A keyword that is no word of an
expression (`year`, `date`, `without`) is a column there, checked against the FROM like any other.
What it lets through: the columns of a subquery that selects `*` are not known (`T3.language`
passes if some table has a `language`), and a candidate cut by --max-tokens can stop inside a
name (the pipeline then does not run it: `Names.admits(sql, whole=True)` says it is not whole).
On the gold SQL of Spider dev (546), BIRD dev (158 in the shared data), SParC dev (689) and
CoSQL dev (564), fed 1 to 3 bytes at a time (`benchmarks/constraint_gold.py`), nothing is
refused but one CoSQL query whose parenthesis never opens.

A candidate's text arrives in tokens' bytes (`Gate.feed`): an incomplete UTF-8 sequence waits for
its next byte. `Gate.copy` is cheap (every field is immutable), so the engine tries a token on a
copy and keeps the copy when the token is admitted.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from slmsql_cli.schema import Schema

# SQLite's keywords (sqlite.org/lang_keywords.html), and the literal words, type names and date
# parts the models write in expressions (CAST(x AS REAL), EXTRACT(YEAR FROM d), INTERVAL '1' DAY).
KEYWORDS = frozenset(
    """
    abort action add after all alter always analyze and as asc attach autoincrement before begin
    between by cascade case cast check collate column commit conflict constraint create cross
    current current_date current_time current_timestamp database default deferrable deferred delete
    desc detach distinct do drop each else end escape except exclude exclusive exists explain fail
    filter first following for foreign from full generated glob group groups having if ignore
    immediate in index indexed initially inner insert instead intersect into is isnull join key
    last left like limit match materialized natural no not nothing notnull null nulls of offset on
    or order others outer over partition plan pragma preceding primary query raise range recursive
    references regexp reindex release rename replace restrict returning right rollback row rows
    savepoint select set table temp temporary then ties to transaction trigger unbounded union
    unique update using vacuum values view virtual when where window with without
    true false ilike similar interval lateral only any some array unknown both leading trailing
    integer int real text float double precision numeric decimal varchar char character boolean
    bigint smallint tinyint blob signed unsigned date time timestamp datetime varying
    year month day hour minute second week quarter epoch dow doy
    """.split()
)
# SQLite's core, aggregate, date, math, window and JSON functions, and the common ones of
# DuckDB and PostgreSQL that the models also write.
FUNCTIONS = frozenset(
    """
    abs changes char coalesce concat concat_ws format glob hex ifnull iif instr last_insert_rowid
    length like likelihood likely lower ltrim max min nullif octet_length printf quote random
    randomblob replace round rtrim sign soundex substr substring total_changes trim typeof unhex
    unicode unlikely upper zeroblob avg count group_concat string_agg sum total date time datetime
    julianday unixepoch strftime timediff acos acosh asin asinh atan atan2 atanh ceil ceiling cos
    cosh degrees exp floor ln log log10 log2 mod pi pow power radians sin sinh sqrt tan tanh trunc
    row_number rank dense_rank percent_rank cume_dist ntile lag lead first_value last_value
    nth_value json json_array json_array_length json_extract json_insert json_object json_patch
    json_remove json_replace json_set json_type json_valid json_quote json_group_array
    json_group_object json_each json_tree cast extract date_part date_trunc to_char to_date
    to_timestamp now age year month day hour minute second left right position split_part
    regexp_replace regexp_matches array_agg median mode stddev stddev_pop stddev_samp variance
    var_pop var_samp corr greatest least try_cast strpos lpad rpad reverse repeat initcap btrim
    dayofweek dayofyear week quarter datediff date_diff date_add date_sub bool_and bool_or every
    percentile_cont percentile_disc array_length unnest generate_series range list first last
    any_value arg_max arg_min approx_count_distinct nvl to_number char_length character_length
    ascii chr md5 isnan isinf epoch
    """.split()
)
# Functions that stand where a table does (FROM json_each(t.tags)), per dialect, with the columns
# they return: only those that dialect has (Python's SQLite has no generate_series).
_JSON_EACH = ("key", "value", "type", "atom", "id", "parent", "fullkey", "path")
TABLE_FUNCTIONS: dict[str, dict[str, tuple[str, ...]]] = {
    "sqlite": {
        "json_each": (*_JSON_EACH, "json", "root"),
        "json_tree": (*_JSON_EACH, "json", "root"),
        "pragma_table_info": ("cid", "name", "type", "notnull", "dflt_value", "pk"),
    },
    "duckdb": {
        "json_each": _JSON_EACH,
        "json_tree": _JSON_EACH,
        "range": ("range",),
        "generate_series": ("generate_series",),
        "unnest": ("unnest",),
    },
    "postgres": {
        "generate_series": ("generate_series",),
        "unnest": ("unnest",),
        "json_each": ("key", "value"),
        "jsonb_each": ("key", "value"),
        "json_array_elements": ("value",),
        "jsonb_array_elements": ("value",),
    },
}
# Schema qualifiers a table may carry, per dialect; a catalog schema's own views are not listed.
SCHEMAS = {
    "sqlite": frozenset({"main"}),  # not temp: slmsql's read-only connection has no temporary tables
    "duckdb": frozenset({"main", "information_schema"}),
    "postgres": frozenset({"public", "information_schema", "pg_catalog"}),
}
CATALOG_SCHEMAS = frozenset({"information_schema", "pg_catalog"})  # any view name after these
# What each dialect's catalog adds: tables a query may read, and columns every table has.
CATALOG_TABLES = {
    "sqlite": {
        "sqlite_master": ("type", "name", "tbl_name", "rootpage", "sql"),
        "sqlite_schema": ("type", "name", "tbl_name", "rootpage", "sql"),
    },
    "duckdb": {"sqlite_master": ("type", "name", "tbl_name", "rootpage", "sql")},
    "postgres": {},
}
HIDDEN_COLUMNS = {"sqlite": ("rowid", "oid", "_rowid_"), "duckdb": ("rowid",), "postgres": ()}
# The columns of information_schema's tables and columns views (a query of the catalog itself).
_INFO_COLUMNS = (
    "table_catalog table_schema table_name table_type column_name ordinal_position column_default "
    "is_nullable data_type".split()
)
CATALOG_COLUMNS = {"sqlite": (), "duckdb": _INFO_COLUMNS, "postgres": _INFO_COLUMNS}

# Keywords that move the lexer from one part of a query to another.
_STRUCTURAL = frozenset(
    """select from join on using where having group order partition limit offset union intersect
    except with recursive as window over collate values distinct all""".split()
)
_VALUE_WORDS = frozenset("null true false current_date current_time current_timestamp end".split())
_DATE_PARTS = frozenset("year month day hour minute second week quarter epoch dow doy".split())
# The keywords that stand as words of an expression or a clause (operators, CASE, window frames,
# literals). Any other keyword written where a value goes (`WHERE date = 1`, `avg(without)`) is
# one SQLite reads as a column name: admitted only if it is a column the query can see.
# SQLite's grammar decides (the models write SQLite SQL): no INDEXED, ILIKE, INTERVAL or ARRAY here.
_EXPRESSION_KEYWORDS = frozenset(
    """
    all and as asc between by case cast collate cross current current_date current_time
    current_timestamp desc distinct else end escape except exclude exists filter first following
    from full glob group groups having in inner intersect is isnull join last left like limit match
    natural no not notnull null nulls offset on or order others outer over partition preceding
    range recursive regexp right row rows select then ties unbounded union using values when where
    window with true false any some
    """.split()
)
# Operators written between two values: one with no value before it (`avg(glob)`) is a name to
# SQLite, a column like any other (NOT LIKE, NOT IN: after NOT).
_OPERATORS = frozenset("and or glob like regexp match is in between escape isnull notnull".split())
# ... and the words after which one stands with no value before it all the same (NOT LIKE, a
# window frame's ROWS BETWEEN ... PRECEDING AND CURRENT ROW)
_BEFORE_OPERATOR = frozenset("not rows range groups preceding following row".split())
# An alias the query has not defined yet may qualify a column only if it is shaped like one.
_ALIAS_SHAPED = re.compile(r"[a-z]{1,2}[0-9]{0,2}\Z")
_TERMINATOR = "</answer>"

# Lexer states
_SPACE, _WORD, _NUMBER, _STRING, _STRING_END, _QUOTED, _QUOTED_END = range(7)
_LINE_COMMENT, _BLOCK_COMMENT, _BLOCK_STAR, _DASH, _SLASH, _LT, _TERM, _BT1, _BT2, _DOT = range(7, 17)
# Modes of a gate
_FREE, _OPENING, _FENCE_TAG, _SQL = range(4)

# (kind: query|paren|func|ctecols, clause, what follows its ")", what its FROM bound: (name, table))
Frame = tuple[str, str, str, tuple[tuple[str, str], ...]]
_BEFORE_FROM = ("", "select", "with", "compound")  # a query's clauses before its FROM


def _number_goes_on(number: str, c: str) -> bool:
    """Whether letter `c` continues `number`: an exponent (1e5) or a hexadecimal (0x1F)."""
    if c in "eE" and "e" not in number.lower() and not number.lower().startswith("0x"):
        return True
    if number == "0" and c in "xX":
        return True
    return number.lower().startswith("0x") and c in "0123456789abcdefABCDEF"


def _prefix_in(words: tuple[str, ...], prefix: str) -> bool:
    i = bisect_left(words, prefix)
    return i < len(words) and words[i].startswith(prefix)


@lru_cache(maxsize=4096)
def _output_names(sql: str, dialect: str) -> frozenset[str] | None:
    """The columns a subquery returns (lower case), read by sqlglot once it is whole; None when
    they are not known here: it does not parse, or it selects `*`. A column with no alias is named
    as SQLite names it: its name (`T1.name` is `name`), else the expression's text."""
    import sqlglot
    from sqlglot import exp

    try:
        tree = sqlglot.parse_one(sql, read=dialect)
    except (sqlglot.errors.SqlglotError, RecursionError):
        return None
    if not isinstance(tree, exp.Query):
        return None
    names = set()
    for e in tree.selects:  # of a UNION, its first SELECT's (they name the columns)
        if isinstance(e, exp.Star) or (isinstance(e, exp.Column) and isinstance(e.this, exp.Star)):
            return None
        names.add((e.output_name or e.sql(dialect=dialect)).lower())
    return frozenset(names)


class Names:
    """The names a database has, for the gates of its candidates (`start`)."""

    def __init__(self, tables: Mapping[str, Iterable[str]], dialect: str = "sqlite") -> None:
        hidden = HIDDEN_COLUMNS.get(dialect, ())
        columns_of: dict[str, frozenset[str]] = {}
        for table, cols in {**CATALOG_TABLES.get(dialect, {}), **tables}.items():
            columns_of[table.lower()] = frozenset(c.lower() for c in cols) | frozenset(hidden)
        self.dialect = dialect
        self.columns_of = columns_of
        self.tables = frozenset(columns_of)
        self.table_functions = {
            f: frozenset(cols) for f, cols in TABLE_FUNCTIONS.get(dialect, TABLE_FUNCTIONS["sqlite"]).items()
        }
        # every column some table (or table function) has: what a select list may name before
        # its FROM is read
        self.columns = (
            frozenset(c for cols in columns_of.values() for c in cols)
            | frozenset(CATALOG_COLUMNS.get(dialect, ()))
            | frozenset(c for cols in self.table_functions.values() for c in cols)
        )
        self.schemas = SCHEMAS.get(dialect, SCHEMAS["sqlite"])
        # sorted, for prefix questions (bisect)
        self.expr_words = tuple(sorted(self.columns | self.tables | KEYWORDS | FUNCTIONS))
        self.table_words = tuple(
            sorted(
                self.tables
                | set(self.table_functions)
                | self.schemas
                | {"select", "with", "values", "lateral"}
            )
        )
        self.column_words = tuple(sorted(self.columns))
        self.name_words = tuple(sorted(self.columns | self.tables))
        self.table_names = tuple(sorted(self.tables))
        self.non_ascii = tuple(w for w in self.name_words if not w.isascii())
        self.keyword_words = tuple(sorted(KEYWORDS))
        self.kwfunc_words = tuple(sorted(KEYWORDS | FUNCTIONS))
        self._columns_sorted = {t: tuple(sorted(cols)) for t, cols in columns_of.items()}

    @classmethod
    def from_schema(cls, schema: Schema, dialect: str = "sqlite") -> Names:
        return cls({t.name: [c.name for c in t.columns] for t in schema.tables}, dialect)

    def start(self) -> Gate:
        """A gate for one candidate's text, from its first token (the thought is free)."""
        return Gate(self)

    def within_sql(self) -> InSql:
        """The constraint for a prompt that opens the SQL block itself (it ends in ```` ```sql ````
        or `<answer>`): the candidates' gates start inside it."""
        return InSql(self)

    def admits(self, sql: str, *, whole: bool = False) -> bool:
        """Whether `sql` (SQL alone, no tags) is a prefix of SQL that names only what exists; with
        `whole`, whether it is such SQL, ending there."""
        gate = Gate(self, sql=True)
        return gate.feed(sql.encode("utf-8")) and (not whole or gate.can_end())

    def columns_sorted(self, table: str) -> tuple[str, ...]:
        return self._columns_sorted.get(table, ())


class InSql:
    """`Names.within_sql`: gates that start inside the SQL block (the prompt opened it)."""

    def __init__(self, names: Names) -> None:
        self.names = names

    def start(self) -> Gate:
        return Gate(self.names, sql=True)


class Gate:
    """One candidate's reading: `feed` the bytes of each token; False means the text with them is
    no prefix of admissible SQL (and the gate is then in no state to be used again: try tokens on
    a `copy`). `can_end` says whether the candidate may end here (end of turn)."""

    __slots__ = (
        "names",
        "mode",
        "recent",
        "in_think",
        "ticks",
        "tag",
        "lex",
        "buf",
        "qchar",
        "term",
        "frames",
        "expect",
        "qualifier",
        "prev",
        "last",
        "defined",
        "aliases",
        "ctes",
        "owed",
        "outputs",
        "source",
        "tail",
        "text",
        "subs",
        "derived",
        "cte_pending",
    )

    def __init__(self, names: Names, *, sql: bool = False) -> None:
        self.names = names
        self.mode = _SQL if sql else _FREE
        self.recent = ""  # the last characters of free text (for the tags)
        self.in_think = False
        self.ticks = 0  # backticks seen where a fence may open
        self.tag = ""  # the fence's language tag so far
        self.tail = b""  # an incomplete UTF-8 sequence
        self._reset()

    def _reset(self) -> None:
        """A new statement."""
        self.lex = _SPACE
        self.buf = ""
        self.qchar = ""
        self.term = 0
        self.frames: tuple[Frame, ...] = (("query", "", "value", ()),)
        self.expect = "expr"
        self.qualifier = ""
        self.prev = ""
        self.last = ""  # the last word, lower case (what a "(" after it opens)
        self.defined: frozenset[str] = frozenset()  # output names and CTE columns: values
        self.aliases: frozenset[str] = frozenset()  # table aliases and CTE names: qualifiers
        self.ctes: frozenset[str] = frozenset()
        # (query frame, qualifier or "", column): columns of a select list, checked once its FROM is read
        self.owed: frozenset[tuple[int, str, str]] = frozenset()
        self.outputs: frozenset[str] = frozenset()  # columns a select list named (ORDER BY may too)
        self.source = ""  # the table just read in FROM, which an alias after it stands for ("": any)
        self.text = ""  # the statement so far (a subquery's text is read from it once it closes)
        # (frame index, offset in text, key): subqueries in FROM and CTE bodies being written
        self.subs: tuple[tuple[int, int, str], ...] = ()
        # (key, columns): what a subquery in FROM, a CTE or a table function returns, bound by its
        # key ("(12)", "(cte name)", "(json_each 30)": no table's name) like a table
        self.derived: tuple[tuple[str, frozenset[str]], ...] = ()
        self.cte_pending = ""  # the CTE whose name was read and whose body may follow

    def copy(self) -> Gate:
        new = Gate.__new__(Gate)
        for slot in Gate.__slots__:
            setattr(new, slot, getattr(self, slot))
        return new

    # ---- input ------------------------------------------------------------------------------
    def feed(self, data: bytes) -> bool:
        data = self.tail + data
        try:
            text = data.decode("utf-8")
            self.tail = b""
        except UnicodeDecodeError as exc:
            if exc.reason == "unexpected end of data" and len(data) - exc.start < 4:
                text, self.tail = data[: exc.start].decode("utf-8", "replace"), data[exc.start :]
            else:
                text, self.tail = data.decode("utf-8", "replace"), b""
        for c in text:
            if not self._char(c):
                return False
        return self._partial_ok()

    def can_end(self) -> bool:
        """Whether the candidate may end now: outside SQL, or where its last name is complete and
        admissible as it stands and every alias it used is defined."""
        if self.mode != _SQL:
            return True
        probe = self.copy()
        return probe._char("\n") and probe._settle_all()

    def _char(self, c: str) -> bool:
        mode = self.mode
        if mode == _SQL:
            return self._sql(c)
        if mode == _FREE:
            self._free(c)
            return True
        if mode == _OPENING:
            return self._opening(c)
        return self._fence_tag(c)

    # ---- outside SQL ----------------------------------------------------------------------
    def _free(self, c: str) -> None:
        recent = (self.recent + c)[-8:]
        self.recent = recent
        if c == ">":
            if recent.endswith("<think>"):
                self.in_think = True
            elif recent.endswith("</think>"):
                self.in_think = False
            elif recent.endswith("<answer>") and not self.in_think:
                self._open(_OPENING)
        elif c in "lL" and not self.in_think and recent.lower().endswith("```sql"):
            self._open(_FENCE_TAG)
            self.tag = "sql"

    def _open(self, mode: int) -> None:
        self.mode, self.ticks, self.tag, self.recent = mode, 0, "", ""
        self._reset()

    def _close(self) -> None:
        self.mode, self.recent = _FREE, ""

    def _opening(self, c: str) -> bool:
        """Right after <answer>: blank space, then maybe a fence, then the SQL."""
        if c == "`":
            self.ticks += 1
            if self.ticks == 3:
                self.mode = _FENCE_TAG
            return True
        if self.ticks == 0 and c.isspace():
            return True
        self.mode = _SQL
        return all(self._sql(x) for x in "`" * self.ticks + c)

    def _fence_tag(self, c: str) -> bool:
        """The fence's language tag (```sql, ```sqlite) up to the blank after it."""
        if c.isalpha() and ("sqlite".startswith(self.tag + c.lower())):
            self.tag += c.lower()
            return True
        self.mode = _SQL
        if c.isspace():
            return True
        return all(self._sql(x) for x in self.tag + c)

    # ---- the SQL lexer ----------------------------------------------------------------------
    def _sql(self, c: str) -> bool:
        self.text += c
        return self._lex(c)

    def _lex(self, c: str) -> bool:
        lex = self.lex
        if lex == _SPACE:
            return self._space(c)
        if lex == _WORD:
            if c.isalnum() or c == "_" or c == "$":
                self.buf += c
                return True
            if c == "'" and self.buf in ("x", "X", "e", "E"):  # a blob or escape-string literal
                self.lex = _STRING
                return True
            self.lex = _SPACE
            return self._name(self.buf, "", c) and self._space(c)
        if lex == _NUMBER:
            if (
                c.isdigit()
                or c == "."
                or (c in "+-" and self.buf[-1] in "eE")
                or _number_goes_on(self.buf, c)
            ):
                self.buf += c
                return True
            if c.isalpha() or c == "_":
                return False  # 1st_name: a number runs into no name
            self.lex, self.prev = _SPACE, "value"
            return self._space(c)
        if lex == _STRING:
            if c == "'":
                self.lex = _STRING_END
            return True
        if lex == _STRING_END:
            if c == "'":
                self.lex = _STRING
                return True
            self.lex = _SPACE
            return self._string_done() and self._space(c)
        if lex == _QUOTED:
            if c == self.qchar:
                self.lex = _QUOTED_END
            else:
                self.buf += c
            return True
        if lex == _QUOTED_END:
            if c == self.qchar and c != "]":
                self.buf += c
                self.lex = _QUOTED
                return True
            self.lex = _SPACE
            return self._name(self.buf, self.qchar, c) and self._space(c)
        if lex == _LINE_COMMENT:
            if c == "\n":
                self.lex = _SPACE
            return True
        if lex == _BLOCK_COMMENT:
            if c == "*":
                self.lex = _BLOCK_STAR
            return True
        if lex == _BLOCK_STAR:
            self.lex = _SPACE if c == "/" else _BLOCK_STAR if c == "*" else _BLOCK_COMMENT
            return True
        if lex == _DASH:
            if c == "-":
                self.lex = _LINE_COMMENT
                return True
            self.lex = _SPACE
            return self._operator() and self._space(c)
        if lex == _SLASH:
            if c == "*":
                self.lex = _BLOCK_COMMENT
                return True
            self.lex = _SPACE
            return self._operator() and self._space(c)
        if lex == _LT:
            if c == "/":  # </answer> begins: the SQL must be whole here, not only at its last ">"
                self.lex, self.term = _TERM, 2
                return self.copy()._settle_all()
            self.lex = _SPACE
            return self._operator() and self._space(c)
        if lex == _TERM:
            if c != _TERMINATOR[self.term]:
                return False
            self.term += 1
            if self.term == len(_TERMINATOR):
                if not self._settle_all():
                    return False
                self._close()
            return True
        if lex == _BT1:
            if c == "`":
                self.lex = _BT2
                return True
            self.lex, self.qchar, self.buf = _QUOTED, "`", ""
            return self._lex(c)
        if lex == _BT2:
            if c == "`":  # the closing fence
                if not self._settle_all():
                    return False
                self._close()
                return True
            return False  # `` names nothing
        # _DOT: a number such as .5
        if c.isdigit():
            self.lex, self.buf = _NUMBER, "." + c
            return True
        return False

    def _space(self, c: str) -> bool:
        """A character between tokens (or the one that ended a token)."""
        if c.isspace():
            return True
        if self.expect == "call" and c != "(":
            return False
        if c.isalpha() or c == "_" or ord(c) > 127:
            self.lex, self.buf = _WORD, c
            return True
        if c.isdigit():
            self.lex, self.buf = _NUMBER, c
            return self.expect not in ("table", "table_of", "column_of", "dot", "tdot")
        if c == "'":
            self.lex = _STRING
            return self.expect not in ("table", "table_of", "column_of")
        if c == '"' or c == "[":
            self.lex, self.qchar, self.buf = _QUOTED, '"' if c == '"' else "]", ""
            return True
        if c == "`":  # a quoted name, or the closing fence
            self.lex = _BT1
            return True
        if c == ".":
            if self.expect == "dot":
                self.expect = "column_of"
                return True
            if self.expect == "tdot":
                self.expect = "table_of"
                return True
            self.lex = _DOT
            return True
        if c == "(":
            return self._open_paren()
        if c == ")":
            return self._close_paren()
        if c == ",":
            return self._comma()
        if c == ";":
            if not self._settle_all():
                return False
            self._reset()
            return True
        if c == "-":
            self.lex = _DASH
            return True
        if c == "/":
            self.lex = _SLASH
            return True
        if c == "<":
            self.lex = _LT
            return True
        if c == "*":
            if self.expect == "column_of":  # T1.*: T1 must be bound all the same
                self.expect, self.prev = "expr", "value"
                return self._ref(self.qualifier, "*")
            if self.prev != "value":
                self.expect, self.prev = "expr", "value"  # SELECT *, COUNT(*)
                return True
            return self._operator()
        if c in "=!>+%|&~^:?@#$":
            return self._operator()
        return False

    def _operator(self) -> bool:
        if self.expect in ("table", "table_of", "column_of", "dot", "tdot"):
            return False
        self.expect, self.prev = "expr", "op"
        return True

    def _string_done(self) -> bool:
        expect = self.expect
        if expect == "alias":  # AS 'name'
            self._after_alias()
            return True
        if expect in ("table", "table_of", "column_of", "dot", "tdot"):
            return False
        if expect in ("alias_opt", "after_alias"):
            return False
        self.expect, self.prev = "expr", "value"
        return True

    # ---- names --------------------------------------------------------------------------------
    def _define(self, name: str) -> None:
        self.defined = self.defined | {name}

    def _query(self) -> int:
        """The index of the innermost query frame (a parenthesis or a function's is not one)."""
        i = len(self.frames) - 1
        while self.frames[i][0] != "query":
            i -= 1
        return i

    def _bind(self, name: str, table: str) -> None:
        """`name` stands for `table` in the FROM of the innermost query ("": a subquery, CTE or
        table function, whose columns are not known here)."""
        i = self._query()
        kind, clause, after, binds = self.frames[i]
        if table and binds and binds[-1] == (table, table) and name != table:
            binds = binds[:-1]  # FROM singer AS T1: the table is known as T1 alone
        self.frames = (
            self.frames[:i] + ((kind, clause, after, binds + ((name, table),)),) + self.frames[i + 1 :]
        )
        if name != table:
            self.aliases = self.aliases | {name}

    def _ref(self, q: str, col: str) -> bool:
        """A column, qualified by `q` or bare (""): where the query's FROM is read, it must be a
        column of what the FROM (or an enclosing query's) has bound; before it (the select list),
        it is owed and settled once the FROM is read (`_settle`)."""
        i = self._query()
        names = self.names
        if self.frames[i][1] in _BEFORE_FROM:
            self.owed = self.owed | {(i, q, col)}
            self.outputs = self.outputs | {col}  # ORDER BY may name it
            if q and q in names.tables and q not in self.aliases:
                return col == "*" or col in names.columns_of[q]
            return col == "*" or col in names.columns or col in self.defined
        clause = self.frames[i][1]
        # SQLite resolves a GROUP BY or ORDER BY term in the query's own FROM only, never in an
        # enclosing query's (a subquery's `GROUP BY T1.x`, T1 outside: "no such column")
        own = clause in ("group", "order")
        if self._resolves(i, q, col, outputs=clause in ("group", "having", "order"), own=own):
            return True
        return not own and self._defer(i, q, col)

    def _resolves(self, i: int, q: str, col: str, *, outputs: bool = False, own: bool = False) -> bool:
        """Whether what query frame `i` and the queries around it (with `own`, frame `i` alone)
        have bound has column `col` (through `q` when qualified)."""
        if not q and (col in self.defined or (outputs and col in self.outputs)):
            return True
        columns = self._columns
        # what a subquery, CTE or table function has, when not known here: a column of some table,
        # or a name the query defined
        anything = col in ("*", "") or col in self.names.columns or col in self.defined or col in self.outputs
        for j in range(i, i - 1 if own else -1, -1):
            for name, table in self.frames[j][3]:
                if q:
                    if name == q:
                        return anything if not table else col in ("*", "") or col in columns(table)
                elif anything if not table else col in columns(table):
                    return True
        return False

    def _defer(self, i: int, q: str, col: str) -> bool:
        """A column no FROM has bound yet may belong to an enclosing query still before its FROM
        (a correlated subquery in the select list): owed there, else refused."""
        for j in range(i - 1, -1, -1):
            if self.frames[j][0] == "query" and self.frames[j][1] in _BEFORE_FROM:
                self.owed = self.owed | {(j, q, col)}
                return True
        return False

    def _settle(self, i: int) -> bool:
        """Query frame `i` has read its FROM: what its select list owed must be bound now."""
        due = {e for e in self.owed if e[0] >= i}
        if not due:
            return True
        self.owed = self.owed - due
        return all(self._resolves(i, q, col) or self._defer(i, q, col) for _, q, col in due)

    def _settle_all(self) -> bool:
        """The statement ends: every query frame has read its FROM (and no function waits for
        its parenthesis)."""
        if self.expect == "call":
            return False
        return all(self._settle(i) for i in range(len(self.frames) - 1, -1, -1)) and not self.owed

    def _after_alias(self) -> None:
        clause = self.frames[-1][1]
        self.expect = "after_alias" if clause == "from" else "expr"
        self.prev = "alias"

    def _name(self, name: str, quote: str, nxt: str) -> bool:
        """A name has ended (`nxt` is the character after it): is it admissible where it stands?"""
        n = name.lower()
        expect = self.expect
        before = self.last
        self.last = n if not quote else ""
        names = self.names
        if expect == "column_of":
            self.expect, self.prev = "expr", "value"
            return nxt not in ".(" and self._ref(self.qualifier, n)
        if expect == "table_of":
            self.expect, self.prev = "alias_opt", "value"
            if nxt == "(":
                return False
            catalog = self.qualifier in CATALOG_SCHEMAS
            self.source = "" if catalog else n
            self._bind(n, self.source)
            return catalog or n in names.tables
        if expect == "alias":
            if self.frames[-1][1] == "from":
                self._bind(n, self.source)
            else:
                self._define(n)  # an output name
            self._after_alias()
            return nxt not in ".("
        if expect == "cte_name":
            if not quote and n == "recursive":
                return True
            self.ctes = self.ctes | {n}
            self.aliases = self.aliases | {n}
            self.expect = "cte_after_name"
            self.cte_pending = n
            return True
        if expect == "cte_col":
            self._define(n)
            self.prev = "value"
            return True
        if expect == "type" or expect == "free":
            self.expect, self.prev = "expr", "value"
            return True
        keyword = not quote and n in KEYWORDS
        if keyword and n in _STRUCTURAL:
            return self._keyword(n)
        if (
            keyword
            and expect == "expr"
            and n in _OPERATORS
            and self.prev != "value"
            and before not in _BEFORE_OPERATOR
        ):
            keyword = False  # `avg(glob)`: no operator here, so SQLite reads a column
        if keyword and expect == "expr" and n not in _EXPRESSION_KEYWORDS:
            # a function's name (REPLACE(, DATE(), a date part inside EXTRACT(, else a name like
            # any other: a column only where the query can see one (`year` of concert in
            # `SELECT year FROM stadium` is not)
            kind, clause, _, _ = self.frames[-1]
            keyword = nxt == "(" or (n in _DATE_PARTS and kind == "func" and clause == "extract")
        if expect == "table":
            if nxt == ".":
                self.qualifier, self.expect = n, "tdot"
                return n in names.schemas
            if nxt == "(" and not quote and n in names.table_functions:
                key = f"({n} {len(self.text)})"
                self.derived = self.derived + ((key, names.table_functions[n]),)
                self.expect, self.prev, self.source = "tfunc", "func", key
                self._bind(key, key)
                return True
            self.expect, self.prev = "alias_opt", "value"
            self.source = n
            if n in self.ctes:  # its columns, if its body's were read
                key = f"(cte {n})"
                self.source = key if any(k == key for k, _ in self.derived) else ""
            self._bind(n, self.source)
            return n in names.tables or n in self.ctes
        if expect == "alias_opt":
            if keyword:  # LEFT, INNER, NATURAL ... JOIN
                self.expect = "after_alias"
                return nxt not in ".("
            self._bind(n, self.source)
            self.expect, self.prev = "after_alias", "alias"
            return nxt not in ".("
        if expect == "after_alias" or expect in ("cte_after_name", "cte_as", "cte_done", "cte_body"):
            return keyword
        if expect in ("dot", "tdot", "tfunc"):
            return False
        # an expression
        if nxt == ".":
            self.qualifier, self.expect = n, "dot"
            return n in names.tables or n in self.aliases or bool(_ALIAS_SHAPED.match(n))
        if nxt == "(" and not quote:
            self.prev = "func"
            return n in FUNCTIONS or keyword
        if keyword and n in ("asc", "desc") and self.prev != "value" and n not in names.columns:
            return False  # ORDER BY DESC: SQLite would read DESC as a column the database lacks
        may_alias = self._alias_may_follow()
        self.expect = "expr"
        if keyword and n not in _VALUE_WORDS and n not in names.columns:
            self.prev = "kw"
        elif not quote and n in FUNCTIONS and n not in names.columns:
            self.prev = "func"
        else:
            self.prev = "value"
        if keyword or n in self.defined:
            return True
        if quote == '"' and n not in names.columns:
            return True  # SQLite reads it as a string
        if n in names.columns:
            return quote == '"' or self._ref("", n)  # a double-quoted one falls back to a string
        if not quote and n in FUNCTIONS:
            self.expect = "call"  # COUNT (*): a function's name is no value, its "(" must follow
            return True
        if may_alias:
            self._define(n)
            self.prev = "alias"
            return True
        return False

    def _alias_may_follow(self) -> bool:
        """An expression of the select list has just ended: a new word may be its alias."""
        kind, clause, _, _ = self.frames[-1]
        return kind == "query" and clause == "select" and self.prev == "value"

    def _keyword(self, n: str) -> bool:
        """A keyword that moves the reading from one part of a query to another."""
        kind, clause, _, _ = self.frames[-1]
        query = kind == "query"
        after_paren = self.prev == "("
        self.prev, self.expect = "kw", "expr"
        ok = True
        if n == "select":
            if kind == "query" and clause not in ("", "with", "compound") and not after_paren:
                return False  # a second SELECT with no UNION before it
            if kind in ("query", "paren"):
                self._set_clause("select", kind="query")
        elif n in ("from", "join"):
            if query:
                self._set_clause("from")
                self.expect = "table"
        elif n == "on":
            if query:
                self._set_clause("on")
        elif n in ("where", "having", "group", "order", "limit", "offset", "window"):
            if query:
                if clause in _BEFORE_FROM or clause in ("from", "on"):
                    ok = self._settle(len(self.frames) - 1)
                self._set_clause(n)
            if n == "window":
                self.expect = "free"
        elif n in ("union", "intersect", "except"):
            if query:
                ok = self._settle(len(self.frames) - 1)
                self._set_clause("compound", binds=())  # the next SELECT has a FROM of its own
        elif n == "with":
            if kind in ("query", "paren"):
                self._set_clause("with", kind="query")
                self.expect = "cte_name"
        elif n == "as":
            if query and clause in ("select", "from"):
                self.expect = "alias"
            elif query and clause == "with":
                self.expect = "cte_body"
            elif kind == "func":
                self.expect = "type"
        elif n in ("over", "collate"):
            self.expect = "free"
            self.prev = "func"  # OVER (...)
        elif n == "recursive":
            self.expect = "cte_name"
        return ok

    def _set_clause(
        self, clause: str, *, kind: str = "", binds: tuple[tuple[str, str], ...] | None = None
    ) -> None:
        old_kind, _, after, old_binds = self.frames[-1]
        frame = (kind or old_kind, clause, after, old_binds if binds is None else binds)
        self.frames = self.frames[:-1] + (frame,)

    def _open_paren(self) -> bool:
        expect = self.expect
        if expect == "table":  # a subquery (or a parenthesized join) in FROM
            self.frames += (("query", "from", "alias_opt", ()),)
            self.subs = self.subs + ((len(self.frames) - 1, len(self.text), f"({len(self.text)})"),)
            self.prev = "("
            return True
        if expect == "tfunc":
            self.frames += (("func", self.source, "alias_opt", ()),)  # the function's key as its clause
        elif expect == "cte_after_name":
            self.frames += (("ctecols", "", "cte_as", ()),)
            self.expect = "cte_col"
            self.cte_pending = ""  # its columns are the ones listed (defined names)
            return True
        elif expect == "cte_body":
            self.frames += (("paren", "", "cte_done", ()),)
            if self.cte_pending:
                key = f"(cte {self.cte_pending})"
                self.subs = self.subs + ((len(self.frames) - 1, len(self.text), key),)
                self.cte_pending = ""
        elif expect in ("dot", "tdot", "table_of", "column_of", "alias_opt", "after_alias"):
            return False
        elif self.prev == "func" and self.last in FUNCTIONS:
            self.frames += (("func", self.last, "value", ()),)  # the function's name as its clause
        else:
            self.frames += (("paren", "", "value", ()),)
        self.expect, self.prev = "expr", "("
        return True

    def _close_paren(self) -> bool:
        if len(self.frames) == 1 or self.expect in ("dot", "tdot", "table", "table_of", "column_of"):
            return False
        kind, clause, after, _ = self.frames[-1]
        if kind == "query" and not self._settle(len(self.frames) - 1):
            return False
        key = self._derive(len(self.frames) - 1)
        self.frames = self.frames[:-1]
        if after == "alias_opt":  # a subquery or a table function stands in FROM
            if kind == "query":
                self.source = key
                self._bind(key, key)  # ("", ""): its columns are not known here, any of them
            else:
                self.source = clause
        if after == "value":
            self.expect, self.prev = "expr", "value"
        else:  # alias_opt, cte_as, cte_done
            self.expect, self.prev = after, "value"
        return True

    def _comma(self) -> bool:
        kind, clause, _, _ = self.frames[-1]
        if self.expect in ("dot", "tdot", "table", "table_of", "column_of"):
            return False
        if kind == "query" and clause in ("from", "on"):
            self._set_clause("from")
            self.expect = "table"
        elif kind == "query" and clause == "with":
            self.expect = "cte_name"
        elif kind == "ctecols":
            self.expect = "cte_col"
        else:
            self.expect = "expr"
        self.prev = ","
        return True

    # ---- a token that ends part-way through a name ------------------------------------------------
    def _partial_ok(self) -> bool:
        """Whether what the last token left unfinished can still become admissible."""
        if self.mode != _SQL:
            return True
        lex = self.lex
        if self.tail and lex in (_SPACE, _WORD, _QUOTED):  # a character not complete yet
            return self._non_ascii_may_follow()
        if self.tail and lex == _TERM:  # no such character in </answer>
            return False
        if lex == _WORD:
            return self._prefix_ok(self.buf.lower(), quoted=False)
        if lex == _QUOTED:
            return self._prefix_ok(self.buf.lower(), quoted=True)
        if lex == _QUOTED_END:  # closed; what follows decides how it is read
            return any(self.copy()._name(self.buf, self.qchar, nxt) for nxt in (" ", ".", "("))
        return True

    def _non_ascii_may_follow(self) -> bool:
        """Whether a character beyond ASCII may come next, where a name is being written: only
        where a name admissible here has one at that place."""
        if self.expect in ("alias", "alias_opt", "cte_name", "cte_col", "type", "free"):
            return True
        if self.lex == _QUOTED and self.qchar == '"' and self.expect in ("expr", "dot"):
            return True  # a string, if it is no name
        p = self.buf.lower() if self.lex != _SPACE else ""
        if not self._prefix_ok(p, quoted=self.lex == _QUOTED):
            return False
        return any(
            len(w) > len(p) and w.startswith(p) and not w[len(p)].isascii() for w in self.names.non_ascii
        ) or any(
            len(w) > len(p) and w.startswith(p) and not w[len(p)].isascii()
            for w in self.defined | self.aliases
        )

    def _prefix_ok(self, p: str, *, quoted: bool) -> bool:
        expect, names = self.expect, self.names
        if expect in ("alias", "alias_opt", "cte_name", "cte_col", "type", "free"):
            return True
        if quoted and self.qchar == '"' and expect in ("expr", "dot"):
            return True  # a string, if it is no name
        defined = any(d.startswith(p) for d in self.defined)
        if expect == "column_of":
            table = self._table_of(self.qualifier)
            if table.startswith("("):
                return any(c.startswith(p) for c in self._columns(table))
            if table:
                return _prefix_in(names.columns_sorted(table), p)
            return defined or _prefix_in(names.column_words, p) or any(o.startswith(p) for o in self.outputs)
        if expect == "table":
            return any(c.startswith(p) for c in self.ctes) or _prefix_in(names.table_words, p)
        if expect == "table_of":
            return self.qualifier in CATALOG_SCHEMAS or _prefix_in(names.table_names, p)
        if expect in ("after_alias", "cte_after_name", "cte_as", "cte_done", "cte_body"):
            return not quoted and _prefix_in(names.keyword_words, p)
        if expect != "expr":
            return False
        if defined or any(a.startswith(p) for a in self.aliases):
            return True
        if not quoted and self._alias_may_follow():
            return True
        scope = self._scope()
        if scope is not None:  # the FROM is read: its columns and names, keywords, functions
            return (
                any(w.startswith(p) for w in scope)
                or (not quoted and _prefix_in(names.kwfunc_words, p))
                or any(o.startswith(p) for o in self.outputs)
            )
        if quoted:
            return _prefix_in(names.name_words, p) or bool(_ALIAS_SHAPED.match(p))
        return _prefix_in(names.expr_words, p) or bool(_ALIAS_SHAPED.match(p))

    def _table_of(self, q: str) -> str:
        """The table qualifier `q` stands for where it is read ("" when not known: unbound yet,
        or a subquery, CTE or table function)."""
        for j in range(len(self.frames) - 1, -1, -1):
            for name, table in self.frames[j][3]:
                if name == q:
                    return table
        if q in self.names.tables and q not in self.aliases:
            return q
        return ""

    def _scope(self) -> set[str] | None:
        """The names an expression may use here once its query's FROM is read: the bound names
        and their tables' columns, of this query and those around it. None while any of them is
        before its FROM, or has bound a subquery, CTE or table function (columns not known)."""
        i = self._query()
        words: set[str] = set()
        for j in range(i, -1, -1):
            kind, clause, _, binds = self.frames[j]
            if kind != "query":
                continue
            if clause in _BEFORE_FROM:
                return None
            for name, table in binds:
                if not table:
                    return None
                words.add(name)
                words.update(self._columns(table))
        return words

    def _columns(self, table: str) -> frozenset[str]:
        """The columns of a bound table: a table of the database, or a derived one's key."""
        if table.startswith("("):
            return next((cols for key, cols in self.derived if key == table), frozenset())
        return self.names.columns_of.get(table, frozenset())

    def _derive(self, i: int) -> str:
        """Frame `i` (a subquery in FROM or a CTE's body) has closed: the key its columns are bound
        by, or "" when it was not recorded or its columns are not known (`SELECT *`)."""
        entry = next((e for e in self.subs if e[0] == i), None)
        self.subs = tuple(e for e in self.subs if e[0] < i)
        if entry is None:
            return ""
        columns = _output_names(self.text[entry[1] : -1], self.names.dialect)
        if columns is None:
            return ""
        self.derived = self.derived + ((entry[2], columns),)
        return entry[2]

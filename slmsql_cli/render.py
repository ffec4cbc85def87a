"""How an Answer is shown: rich for people, JSON and CSV for scripts."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from rich.console import Console
from rich.console import Group as RichGroup
from rich.measure import Measurement
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text

from slmsql_cli.answer import Answer
from slmsql_cli.chart import MAX_ROWS as MAX_CHART_ROWS
from slmsql_cli.chart import chart_spec, terminal_bars
from slmsql_cli.confidence import assess
from slmsql_cli.conversation import Rendered
from slmsql_cli.explain import explain_sql
from slmsql_cli.models import ModelStatus
from slmsql_cli.safe_text import visible
from slmsql_cli.targets.result import ExecResult
from slmsql_cli.vote import candidate_dicts


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    return value


def result_dict(result: ExecResult | None) -> dict[str, Any] | None:
    return None if result is None else _result_fields(result)


def _result_fields(result: ExecResult) -> dict[str, Any]:
    """A query's result for JSON: `ask --json`, /v1/ask and /v1/sql carry the same fields."""
    return {
        "columns": result.columns,
        "rows": [[_jsonable(v) for v in row] for row in result.rows],
        "row_count": len(result.rows),
        "truncated": result.truncated,
        "error": result.error,
        "timed_out": result.timed_out,
        "seconds": round(result.seconds, 4),
    }


# When there is no answer: what the `candidates` say, for a client of `serve` (`ask` names its options).
NO_ANSWER_HINT_ANY = (
    "the candidates show what each wrote and why it got no vote; more samples or tokens, or another "
    "model, may help"
)


def answer_dict(answer: Answer, *, texts: bool = True, hint: str = NO_ANSWER_HINT_ANY) -> dict[str, Any]:
    """The `--json` document: everything a script needs, nothing it has to parse from prose.
    Without `texts` the candidates carry no completion text (`serve --mcp`: an assistant's context
    need not hold every candidate's reasoning). `error` and `hint` say why there is no answer
    (None when there is one), in the words `ask` prints."""
    votes, total = answer.agreement
    generated, revised = answer.generation, answer.revision
    doc: dict[str, Any] = {
        "question": answer.question,
        "sql": answer.sql,
        # the same result fields as serve's /v1/sql and run_sql; then the outcome in ask's words
        **_result_fields(answer.result or ExecResult(error="no SQL found in the model's output")),
        "error": answer.failure,  # None when the SQL ran; the words `ask` prints after "error:"
        "hint": hint if answer.failure else None,
        "votes": votes,
        "candidates_sampled": total,
        "merged": answer.merged,
        "candidates": candidate_dicts(generated.candidates, generated.groups, text=texts),
        "merge_candidates": candidate_dicts(revised.candidates, revised.groups, text=texts)
        if revised
        else [],
        "timings": {k: round(v, 3) for k, v in answer.timings.items()},
        "schema_pruned": {"kept_tables": answer.schema_tables[0], "total_tables": answer.schema_tables[1]}
        if answer.schema_tables
        else None,
    }
    doc["generation"] = generated.stats.as_dict()
    if revised:
        doc["merge_generation"] = revised.stats.as_dict()
    doc["saved_answer"] = answer.saved_id
    spec = chart_spec(answer.result)
    doc["chart"] = spec.as_dict() if spec else None
    doc["notes"] = answer.notes
    doc["explanation"] = explain_sql(answer.sql).text if answer.sql else None
    doc["confidence"] = assess(answer).as_dict()
    doc["context"] = context_dict(answer.context)
    # --constrain: the candidates could name only tables and columns the database has
    doc["constrained"] = answer.generation.constrained
    return doc


def context_dict(context: Rendered | None) -> dict[str, Any] | None:
    """Which conversation the prompt carried: the rendering, the earlier turns used (oldest first;
    [] for a question asked alone) and how many older ones were left out (at most
    conversation.MAX_TURNS are kept, and only as many as the prompt budget holds). None when no
    model was asked (a saved answer)."""
    if context is None:
        return None
    return {
        "rendering": context.rendering,
        "turns": [{"question": t.question, "sql": t.sql} for t in context.used],
        "dropped": context.dropped,
    }


def context_words(context: Rendered | None) -> str | None:
    """The context in a few words for the summary lines of `ask` and `chat` (None: asked alone)."""
    if context is None or context.rendering == "none" or not (context.used or context.dropped):
        return None
    words = f"follow-up of {len(context.used)} earlier question(s)"
    if context.dropped:
        words += f", the oldest {context.dropped} left out to fit the prompt"
    return words


def no_answer_hint(*, verbose: bool = False, as_json: bool = False, has_json: bool = True) -> str:
    """What `ask` and `chat` say after "error:" when the model's SQL gave no answer
    (Answer.failure), naming only what is not in use already: `-v` unless the candidates are
    shown (`verbose`: above the error; `as_json`: in the document), and `--json` for their whole
    text only where the command has it (`has_json`; `chat` has not) and it is off."""
    whole = " (--json has the whole text)" if has_json and not as_json else ""
    if as_json:
        shown = "the JSON's candidates show what each wrote and why it got no vote"
    elif verbose:
        shown = f"the candidates above show what each wrote and why it got no vote{whole}"
    else:
        shown = f"-v shows what each candidate wrote and why it got no vote{whole}"
    return f"{shown}; a larger -n or --max-tokens, or another --model, may help"


def to_json(answer: Answer) -> str:
    """`ask --json`: the answer document, with the hint `ask --json` prints when it has no answer."""
    return json.dumps(answer_dict(answer, hint=no_answer_hint(as_json=True)), ensure_ascii=False, default=str)


def to_csv(answer: Answer) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf)
    if answer.result is not None:
        writer.writerow(answer.result.columns)
        writer.writerows([[_jsonable(v) for v in row] for row in answer.result.rows])
    return buf.getvalue()


def fits(console: Console, table: Table) -> bool:
    """Whether `table` shows every cell without squeezing on `console`."""
    natural = Measurement.get(console, console.options.update_width(10_000), table).maximum
    return natural <= console.width


_MIN_CELL = 8  # below this many characters a folded value no longer reads as a value


# What `ask` and `chat` add to the "… more rows" caption: the flags that show the rest (chat has
# no --csv or --json; its option is for the next session).
MORE_ROWS_HINT = "--max-rows N shows more, --csv or --json all"
CHAT_MORE_ROWS_HINT = "chat --max-rows N shows more"


def rows_table(
    result: ExecResult, max_rows: int = 50, width: int | None = None, more_hint: str | None = None
) -> Table:
    """The result rows as a table; when `width` cannot hold one column per field with its header
    whole, one record per block instead (field | value), as psql's expanded display does. Long
    values wrap inside their cells; rows past `max_rows` are counted in the caption, with
    `more_hint` (how to see them) after the count."""
    cells = [
        [Text("NULL" if v is None else visible(str(_jsonable(v)), lines=True)) for v in row]
        for row in result.rows[:max_rows]
    ]
    headers = [visible(str(col)) for col in result.columns]  # the data's own text: no ESC acted on
    widest = [max((c.cell_len for c in column), default=0) for column in zip(*cells)] or [0] * len(headers)
    needed = sum(max(len(h), min(w, _MIN_CELL)) + 3 for h, w in zip(headers, widest)) + 1
    if width is not None and len(headers) > 1 and needed > width:
        table = Table(show_header=True, header_style="bold", show_lines=False)
        table.add_column("#", justify="right", no_wrap=True)
        table.add_column("column", max_width=max(width // 3, 8), overflow="fold")
        table.add_column("value", overflow="fold")
        for i, row in enumerate(cells):
            for j, (header, cell) in enumerate(zip(headers, row)):
                table.add_row(str(i + 1) if j == 0 else "", Text(header), cell, end_section=j == len(row) - 1)
    else:
        table = Table(show_header=True, header_style="bold", show_lines=False)
        for header in headers:  # a header is never cut: the layout above takes over first
            table.add_column(Text(header), overflow="fold", min_width=min(len(header), width or len(header)))
        for row in cells:
            table.add_row(*row)
    if len(result.rows) > max_rows or result.truncated:
        more = f"{len(result.rows) - max_rows} more rows" if len(result.rows) > max_rows else "more rows"
        cut = " (the result was cut at its row or size limit)" if result.truncated else ""
        shown_all = len(result.rows) <= max_rows  # only the executor's cap hid rows: no flag shows them
        table.caption = f"… {more}{cut}" + (f"; {more_hint}" if more_hint and not shown_all else "")
    return table


def summary_line(answer: Answer) -> Text:
    votes, total = answer.agreement
    t = answer.timings
    generated = answer.generation
    if answer.saved_id is not None:
        parts = [f"saved answer #{answer.saved_id}: its SQL ran again on the current data"]
    elif not generated.groups:
        parts = [f"none of the {len(generated.candidates)} candidates produced SQL that ran"]
    else:
        parts = [f"{votes}/{total} {'revisions' if answer.merged else 'candidates'} agreed"]
    if answer.merged:
        parts.append(
            f"merge used on drafts with {generated.groups[0].votes} and {generated.groups[1].votes} of {len(generated.candidates)} votes"
        )
    elif len(generated.groups) == 1 and answer.saved_id is None:
        parts.append("no merge needed")
    timing = f"{t.get('total', 0):.1f}s"
    detail = [f"{k} {t[k]:.1f}s" for k in ("generate", "execute", "merge") if k in t]
    if detail:
        timing += f" ({', '.join(detail)})"
    if answer.schema_tables:
        parts.append(f"schema pruned to {answer.schema_tables[0]}/{answer.schema_tables[1]} tables")
    if (words := context_words(answer.context)) is not None:
        parts.append(words)
    parts.append(timing)
    return Text(" · ".join(parts), style="dim")


def print_answer(
    console: Console,
    answer: Answer,
    *,
    max_rows: int = 50,
    explain: bool = False,
    chart: bool = False,
    more_hint: str | None = None,
) -> None:
    """The answer, for people: its SQL (explained in sentences with `explain`) and the result table
    (with bars under it with `chart`; `more_hint` says how to see rows past `max_rows`). Only an
    answer whose SQL ran is printed; why there is none is the caller's error line
    (`Answer.failure`, `no_answer_hint`)."""
    if answer.failure is not None or answer.sql is None or answer.result is None:
        return
    print_sql(console, answer.sql)
    if explain:
        console.print(Text(explain_sql(answer.sql).text), highlight=False)
    table = rows_table(answer.result, max_rows, width=console.width, more_hint=more_hint)
    console.print(table, soft_wrap=False)
    if chart:
        print_chart(console, answer.result)


def print_sql(console: Console, sql: str) -> None:
    """SQL, always whole: on a terminal highlighted and wrapped at word boundaries; in a pipe or a
    file plain, as written, never wrapped or cut (`ask ... > answer.txt` holds the query that ran).
    (`out` soft-wraps, and rich crops a Syntax it soft-wraps at the console's width: 80 in a pipe.)"""
    sql = visible(sql.strip(), lines=True)  # an imported or generated query's ESC stays text
    if console.is_terminal:
        syntax = Syntax(sql, "sql", word_wrap=True, theme="ansi_dark", background_color="default")
        console.print(syntax, soft_wrap=False)
    else:
        console.print(Text(sql), soft_wrap=True, highlight=False)


def text_excerpt(text: str, limit: int, has_json: bool = True) -> str:
    """A completion on one line (runs of white space made one space), cut after `limit`
    characters with a note of how much is left (and that --json has it, where the command has
    --json); never cut with "…", which reads as part of it."""
    flat = " ".join(text.split())
    if len(flat) <= limit:
        return flat
    cut = flat[:limit].rsplit(" ", 1)[0] if " " in flat[:limit] else flat[:limit]
    where = "; --json has the whole text" if has_json else ""
    return f"{cut} [+{len(flat) - len(cut)} characters{where}]"


def print_chart(console: Console, result: ExecResult) -> None:
    """`ask --chart`: horizontal bars under the table, or why there are none."""
    spec = chart_spec(result)
    if spec is None:
        note = f"no chart: it needs one label column and numeric columns, and at most {MAX_CHART_ROWS} rows"
        console.print(Text(note, style="dim"))
        return
    for line in terminal_bars(result, spec, width=console.width):
        console.print(Text(line), no_wrap=True, crop=False, soft_wrap=True)


def confidence_line(answer: Answer) -> Text:
    """The one line that says how sure the answer is (`confidence.assess`)."""
    confidence = assess(answer)
    return Text(confidence.line, style="yellow" if confidence.flags else "dim")


def print_candidates(console: Console, answer: Answer, *, has_json: bool = True) -> None:
    """`-v`: every candidate with its vote group, its SQL, why it got no vote, and what it wrote
    (about three lines of it; `--json` has the whole text, where the command has --json)."""
    rounds = [("candidates", answer.generation)]
    if answer.revision is not None:
        rounds.append(("merge revisions", answer.revision))
    limit = max(60, 3 * (console.width - 20))
    for title, sampled in rounds:
        cands, groups = sampled.candidates, sampled.groups
        if not cands:
            continue
        table = Table(title=title, show_lines=True)
        table.add_column("#", justify="right")
        table.add_column("group", justify="right")
        table.add_column("SQL · why no vote · what it wrote", overflow="fold")
        for i, (c, voted) in enumerate(zip(cands, candidate_dicts(cands, groups, text=False))):
            g = voted["group"]  # the vote's own record of the candidate: its group and why not
            label = f"{g + 1} ({voted['votes']} votes)" if g is not None else "-"
            parts: list[Any] = []
            if c.sql:
                parts.append(Syntax(c.sql, "sql", word_wrap=True, background_color="default"))
            if voted["error"]:
                parts.append(Text(voted["error"], style="red"))
            parts.append(Text("wrote: " + text_excerpt(c.text, limit, has_json), style="dim"))
            table.add_row(str(i + 1), label, RichGroup(*parts))
        console.print(table, soft_wrap=False)


_MODEL_COLUMNS = ("alias", "role", "Hugging Face repo", "base model", "download", "cached", "note")


def models_tables(console: Console, statuses: list[ModelStatus], defaults: set[str]) -> list[Table]:
    """`slmsql models`: one table when the terminal is wide enough; else the repo ids (the longest
    values, which must stay whole to be copied) in a second table, and the base model dropped
    first when even that does not fit."""
    rows = [
        {
            "alias": s.model.alias + (" *" if s.model.alias in defaults else ""),
            "role": s.model.role,
            "Hugging Face repo": s.model.repo,
            "base model": s.model.base,
            "download": s.model.download,
            "cached": "GGUF" if s.cached_gguf else ("checkpoint" if s.cached_checkpoint else "-"),
            "note": s.model.note,
        }
        for s in statuses
    ]
    title = "Known models (use the alias with --model / --merge-model)"

    def table(columns: tuple[str, ...], title: str | None = None) -> Table:
        t = Table(title=title)
        for col in columns:
            t.add_column(col, no_wrap=col in ("alias", "Hugging Face repo"), overflow="fold")
        for row in rows:
            t.add_row(*(Text(row[col]) for col in columns))
        return t

    full = table(_MODEL_COLUMNS, title)
    if fits(console, full):
        return [full]
    main = table(("alias", "role", "download", "cached", "note", "base model"), title)
    if not fits(console, main):
        main = table(("alias", "role", "download", "cached", "note"), title)
    return [main, table(("alias", "Hugging Face repo"))]

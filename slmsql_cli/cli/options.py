"""The options several commands share, and how a command takes the model and sampling options.

The model and sampling options are declared once, as field metadata of `config.ModelSource` and
`config.AskConfig` (flags, help, panel, metavar, range). A command takes them by naming a
parameter of either type and decorating itself with `ask_options()`: the decorator puts those
fields' options in the command's signature where the parameter stands, and hands the command the
built dataclass. The options that are not settings of an answer (--db, --import-timeout, -v)
are the `Annotated` types below.

`--help` is written for an 80-column terminal: options sit in panels (MODEL, SAMPLING, DATA,
OUTPUT, PERFORMANCE), a value is a short metavar (a flag has none, not `<bool>`), a range is
checked by a callback rather than click's `min`/`max` (which print `[1<=x<=64]` beside every
metavar and leave the help column 24 characters wide), and a default is part of the sentence.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import math
import typing
from collections.abc import Callable, Collection
from typing import Annotated, Any, TypeVar

import typer

from slmsql_cli.config import (
    DATA,
    MODEL,
    OUTPUT,
    PANELS,
    PERFORMANCE,
    SAMPLING,
    SERVER_ENGINE,
    AskConfig,
    ModelSource,
)

__all__ = ["DATA", "MODEL", "OUTPUT", "PERFORMANCE", "SAMPLING", "SERVER_ENGINE"]

F = TypeVar("F", bound=Callable[..., Any])
SETTINGS = (ModelSource, AskConfig)  # the dataclasses whose fields are options


def option_fields(cls: type) -> list[dataclasses.Field[Any]]:
    """The fields of `cls` that are command-line options (those with `config.option` metadata)."""
    return [f for f in dataclasses.fields(cls) if "flags" in f.metadata]


def option_parameters(f: dataclasses.Field[Any]) -> list[inspect.Parameter]:
    """A field's option as the parameters typer reads: `name: Annotated[type, typer.Option(...)] = default`.

    A bool field is a flag that turns its default around (`merge` is `--no-merge`): the flag's own
    default is False. One declared as a pair (`--constrain/--no-constrain`) is two flags, the
    second hidden from --help (`OFF`: it would take a column of its own in the panel), each
    setting the field one way; without either the field keeps its default."""
    meta = f.metadata
    low, high = meta["low"], meta["high"]
    on, _, off = meta["flags"][0].partition("/")
    info = typer.Option(
        *((on,) if off else meta["flags"]),
        help=meta["help"].format(default=f.default),
        metavar=meta["metavar"],
        show_default=False,
        rich_help_panel=meta["panel"],
        callback=bounded(low, high) if (low, high) != (None, None) else None,
        envvar=meta["env"],
        show_envvar=False,
    )
    default = False if f.type is bool else f.default
    kind = inspect.Parameter.KEYWORD_ONLY
    parameters = [inspect.Parameter(f.name, kind, default=default, annotation=Annotated[f.type, info])]
    if off:
        hidden = typer.Option(off, hidden=True, rich_help_panel=meta["panel"])
        parameters.append(
            inspect.Parameter(f.name + OFF, kind, default=False, annotation=Annotated[bool, hidden])
        )
    return parameters


OFF = "_off"  # the parameter of a pair's second flag (`constrain_off` is --no-constrain)


def _build(cls: type, given: dict[str, Any], **extra: Any) -> Any:
    """`cls` from the values of those of its options a command has (a flag turned back into its
    field; of a pair, the flag given, --no-… when both are), its defaults for the rest."""
    values = {}
    for f in option_fields(cls):
        if f.name not in given:
            continue
        value = given[f.name]
        if f.name + OFF in given:  # a pair
            values[f.name] = False if given[f.name + OFF] else True if value else f.default
        else:
            values[f.name] = f.default != value if f.type is bool else value
    return cls(**values, **extra)


def ask_options(*, only: Collection[str] | None = None, skip: Collection[str] = ()) -> Callable[[F], F]:
    """Give a command the model and sampling options: a parameter typed `ModelSource` or `AskConfig`
    stands for its class's options, and receives the dataclass built from them.

    The options of both stand together where the first of them stands, panel by panel in the
    order of `config.PANELS` (each panel's options in field order: ModelSource's, then
    AskConfig's), so every command lists them alike. `only` keeps some of them, `skip` leaves
    some out (a command with an option of its own by that name). A command's parameters are
    keyword-only (`*,`), since these two have no default. The AskConfig's endpoints are the
    ModelSource's (`ModelSource.endpoints`)."""
    known = {f.name for cls in SETTINGS for f in option_fields(cls)}
    unknown = set(only or ()) | set(skip)
    if unknown - known:
        raise ValueError(f"not an option of ModelSource or AskConfig: {sorted(unknown - known)}")

    def decorate(func: F) -> F:
        hints = typing.get_type_hints(func, include_extras=True)
        params: list[inspect.Parameter] = []
        taken: dict[str, type] = {}  # parameter -> ModelSource or AskConfig
        shared: list[inspect.Parameter] = []
        at = 0  # where the shared options go: where the first such parameter stands
        for p in inspect.signature(func).parameters.values():
            kind = hints.get(p.name, p.annotation)
            if kind in SETTINGS:
                if not taken:
                    at = len(params)
                taken[p.name] = kind
                shared += [
                    p
                    for f in option_fields(kind)
                    if f.name not in skip and (only is None or f.name in only)
                    for p in option_parameters(f)
                ]
            else:
                params.append(p.replace(annotation=kind))
        params[at:at] = sorted(shared, key=lambda o: PANELS.index(_panel(o)))
        names = [p.name for p in params]
        if len(names) != len(set(names)):
            raise ValueError(f"{func.__name__} has a parameter named like a shared option: skip that option")
        options = [o.name for o in shared]

        @functools.wraps(func)
        def command(**kwargs: Any) -> Any:
            given = {n: kwargs.pop(n) for n in options}
            source = _build(ModelSource, given)
            endpoint, merge_endpoint = source.endpoints()
            config = _build(AskConfig, given, endpoint=endpoint, merge_endpoint=merge_endpoint)
            for name, kind in taken.items():
                kwargs[name] = source if kind is ModelSource else config
            return func(**kwargs)

        signature = inspect.Signature(params, return_annotation=hints.get("return", inspect.Signature.empty))
        command.__signature__ = signature  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in params}
        return command  # type: ignore[return-value]

    return decorate


def _panel(parameter: inspect.Parameter) -> str:
    """The --help panel of one of `option_parameters`."""
    return str(typing.get_args(parameter.annotation)[1].rich_help_panel)


def finite(value: float | None) -> float | None:
    """Option callback: refuse inf and nan, which pass click's min/max checks (nan compares false)."""
    if value is not None and not math.isfinite(value):
        raise typer.BadParameter(f"{value} is not a number slmsql can use; give a finite value")
    return value


def bounded(low: float | None = None, high: float | None = None) -> Callable[[Any], Any]:
    """An option callback that checks what click's `min`/`max` would (in click's words), and that
    a float is finite, without printing the range beside the metavar in --help."""

    def check(value: Any) -> Any:
        if value is None:
            return value
        if isinstance(value, float):
            finite(value)
        if (low is not None and value < low) or (high is not None and value > high):
            if low is not None and high is not None:
                span = f"{low}<=x<={high}"
            else:
                span = f"x>={low}" if low is not None else f"x<={high}"
            raise typer.BadParameter(f"{value} is not in the range {span}.")
        return value

    return check


# Text, not Path: a Path would fold the `//` of a URL such as postgresql://host/db.
Db = Annotated[
    list[str],
    typer.Option(
        "--db",
        "-d",
        help="The database, read-only: a SQLite or DuckDB file, a postgresql:// URL, or data files "
        "(CSV, JSON, Parquet, Excel, a folder; repeat --db).",
        metavar="PATH|URL",
        show_default=False,
        rich_help_panel=DATA,
    ),
]
# serve's --db: the same text as ask's (files, folders, URLs), one database each, with a name.
ServeDb = Annotated[
    list[str],
    typer.Option(
        "--db",
        "-d",
        help="A database to serve, as NAME=DB or DB: anything ask's --db takes (a SQLite or DuckDB "
        "file, a postgresql:// URL, data files or a folder of them), named after the file or the "
        "URL's database when NAME= is left out. Repeat for several; clients name them, never paths.",
        metavar="NAME=DB",
        show_default=False,
        rich_help_panel=DATA,
    ),
]


def _import_budget(value: float | None) -> float | None:
    """Option callback: the time budget of a data-file import (`files.BUDGET`), set for this run."""
    bounded(1.0)(value)
    if value is not None:
        from slmsql_cli import files

        files.BUDGET.timeout = value
    return value


IMPORT_TIMEOUT = 600.0
ImportTimeout = Annotated[
    float,
    typer.Option(
        "--import-timeout",
        envvar="SLMSQL_IMPORT_TIMEOUT",
        show_envvar=False,
        callback=_import_budget,
        metavar="SECONDS",
        show_default=False,
        help="Import time limit (default 600 s).",
        rich_help_panel=DATA,
    ),
]
Verbose = Annotated[
    bool,
    typer.Option(
        "--verbose",
        "-v",
        help="Threads and each candidate's SQL, vote and text (cut; --json has it whole).",
        metavar="",
        rich_help_panel=OUTPUT,
    ),
]
# How many rows a result table shows, for ask and chat alike (render.rows_table's caption counts the rest).
MAX_ROWS = 50
MaxRows = Annotated[
    int,
    typer.Option(
        "--max-rows",
        callback=bounded(1),
        metavar="N",
        show_default=False,
        help="Rows in a result table (default 50).",
        rich_help_panel=OUTPUT,
    ),
]
# The saved answers (saved.py), for ask and chat alike.
Save = Annotated[
    bool,
    typer.Option(
        "--save",
        metavar="",
        help="Keep the question and SQL for an instant repeat.",
        rich_help_panel=OUTPUT,
    ),
]
Fresh = Annotated[
    bool,
    typer.Option(
        "--fresh",
        metavar="",
        help="Ignore a saved answer for the question.",
        rich_help_panel=MODEL,
    ),
]

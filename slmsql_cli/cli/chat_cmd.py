"""`slmsql chat`: many questions, one loaded model, the shared prompt prefix kept in the KV cache.

Each question is a follow-up of the ones before it (conversation.py: the earlier questions and
their SQL go into the prompt's question field, within the prompt budget); `/new` starts over,
`/history` shows the turns, and `--no-context` asks each question alone."""

from __future__ import annotations

import io
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import FrameType
from typing import TYPE_CHECKING

import typer
from rich.markup import escape

from slmsql_cli.cli import options as opt
from slmsql_cli.cli.app import app
from slmsql_cli.cli.common import (
    EXIT_NO_ANSWER,
    AskStatus,
    StatusLine,
    err,
    fail,
    load_pipeline,
    out,
    user_errors,
)
from slmsql_cli.config import AskConfig, ModelSource
from slmsql_cli.conversation import Turn
from slmsql_cli.safe_text import visible

if TYPE_CHECKING:
    from slmsql_cli.answer import Answer
    from slmsql_cli.database import Database
    from slmsql_cli.pipeline import Pipeline
    from slmsql_cli.saved import Lookup

_EXIT_WORDS = {"exit", "quit", ":q", "\\q"}
NEW, HISTORY = "/new", "/history"  # start the conversation over; show its turns
KEPT_TURNS = 50  # turns /history shows; the prompt carries the last MAX_TURNS (and says so)


class Interrupts:
    """Ctrl-C in an interactive chat: the first one during a question cancels that question and
    the session goes on; a second one before the cancel is done ends the session (exit 130), as
    Ctrl-C at the prompt does.

    The model is never stopped in the middle of a step. While it reads the prompt or samples, a
    Ctrl-C only marks the question, and the next callback (`on_prompt` between chunks, `on_token`
    after each token, `progress` at each step: `check`) raises KeyboardInterrupt there, the way
    `serve` cancels a request, so the KV cache stays consistent for the next question. Ctrl-C
    raises at once (`at_once`) only where nothing is left half-done: while SQL runs (the saved
    answer's, the candidates'), in query workers made to be killed at any moment, while the answer
    is printed, and throughout when every model is on a server (`remote`: a request in flight is
    simply dropped, and a model server answers a whole completion at once, with no token between)."""

    def __init__(self, remote: bool = False) -> None:
        self.remote = remote
        self.pressed = 0
        self.at_once = remote

    @contextmanager
    def question(self) -> Iterator[None]:
        """Ctrl-C handled as above for the length of one question."""
        self.pressed, self.at_once = 0, self.remote
        previous = signal.signal(signal.SIGINT, self._pressed)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)

    @property
    def ends_session(self) -> bool:
        return self.pressed > 1

    def _pressed(self, _signum: int, _frame: FrameType | None) -> None:
        self.pressed += 1
        if self.pressed > 1 or self.at_once:
            raise KeyboardInterrupt

    def check(self) -> None:
        """Raise KeyboardInterrupt if Ctrl-C was pressed during the question (a safe point)."""
        if self.pressed:
            raise KeyboardInterrupt

    def step(self, message: str) -> None:
        """`Pipeline.ask`'s progress: a safe point, and which step runs now."""
        self.check()
        self.at_once = self.remote or message.startswith("executing")


@app.command("chat")
@user_errors
@opt.ask_options()
def chat(
    *,
    db: opt.Db,
    import_timeout: opt.ImportTimeout = opt.IMPORT_TIMEOUT,
    source: ModelSource,
    config: AskConfig,
    verbose: opt.Verbose = False,
    max_rows: opt.MaxRows = opt.MAX_ROWS,
    save: opt.Save = False,
    fresh: opt.Fresh = False,
    no_context: bool = typer.Option(
        False,
        "--no-context",
        metavar="",
        help="Ask each question alone, not as a follow-up of the ones before.",
        rich_help_panel=opt.DATA,
    ),
) -> None:
    """Ask question after question with the model kept loaded.

    The schema part of the prompt stays in llama.cpp's KV cache, so after the first question only
    the tokens that differ are evaluated. Each question is a follow-up of the ones before it: the
    earlier questions go into the prompt (the oldest left out when they no longer fit). /new
    starts over, /history shows the questions so far, --no-context asks each one alone. Each
    answer ends with its timings. A question asked alone before with --save is answered from its
    saved SQL, as ask does. Ctrl-C cancels the question being answered; at the prompt it leaves,
    as do 'exit' and Ctrl-D. Questions can also come from a pipe, one per line; each answer then
    follows its question, echoed as "> question".

    Examples:

      slmsql chat -d slmsql_cli/data/bookshop.sqlite
      slmsql chat -d exports/      (every data file in the folder)
      slmsql chat -d shop.sqlite < questions.txt > answers.txt
    """
    from slmsql_cli import saved as saved_answers
    from slmsql_cli.cpu import explain_threads
    from slmsql_cli.database import open_database
    from slmsql_cli.remote_engine import RemoteEngine

    if save:  # a store that cannot be written: the error now, not after the first answer
        saved_answers.check_writable()
    database = open_database(db)
    pipeline = load_pipeline(source.model, source.merge_model, config)
    # Bytes that are not UTF-8 become lone surrogates (as in argv) and are refused per question,
    # rather than ending the session with a UnicodeDecodeError.
    if isinstance(sys.stdin, io.TextIOWrapper):
        sys.stdin.reconfigure(errors="surrogateescape")
    interactive = sys.stdin.isatty()
    session = _Session(
        pipeline, database, config, verbose, save, fresh, context=not no_context, max_rows=max_rows
    )
    models = [e for e in (pipeline.engine, pipeline.merge_engine) if e is not None]
    interrupts = Interrupts(remote=all(isinstance(e, RemoteEngine) for e in models))
    failed = 0
    with pipeline:
        err.print(
            f"[bold]slmsql chat[/] on {escape(database.name)} with {escape(pipeline.engine.path.name)}. "
            + (
                "Each question follows the ones before; /new starts over, /history shows them. "
                if not no_context
                else ""
            )
            + "Type 'exit' or Ctrl-D to leave."
        )
        if verbose:
            err.print(f"threads: {explain_threads(pipeline.engine.threads, config.threads)}", highlight=False)
        while True:
            try:
                question = input("? " if interactive else "").strip()
            except EOFError:
                break
            if not question:
                continue
            if question.lower() in _EXIT_WORDS:
                break
            if question.lower() in (NEW, HISTORY):
                if not interactive:
                    out.print(f"> {question}", markup=False, highlight=False)
                session.command(question.lower())
                continue
            if not interactive:  # the transcript says which answer belongs to which question
                out.print(f"> {question}", markup=False, highlight=False)
                answered = session.answer(question, None)
            else:  # at a terminal Ctrl-C cancels this question only; in a pipe it ends the session
                try:
                    with interrupts.question():
                        answered = session.answer(question, interrupts)
                except KeyboardInterrupt:
                    if interrupts.ends_session:
                        raise
                    err.print("[yellow]cancelled[/] [dim](Ctrl-C at the prompt leaves)[/]")
                    continue
            failed += not answered
    if failed:  # like `sqlite3 < script`: keep going, but tell a script that something failed
        err.print(f"{failed} question(s) failed")
        raise typer.Exit(EXIT_NO_ANSWER)


@dataclass
class _Session:
    """What every question of one chat shares: the loaded pipeline, the database, the options."""

    pipeline: Pipeline
    database: Database
    config: AskConfig
    verbose: bool
    save: bool
    fresh: bool
    context: bool = True  # each question a follow-up of `turns` (off: --no-context)
    max_rows: int = opt.MAX_ROWS  # rows in a result table (--max-rows)
    turns: list[Turn] = field(default_factory=list)  # the conversation so far, oldest first

    def command(self, word: str) -> None:
        """`/new`: forget the turns; `/history`: show them."""
        if word == NEW:
            self.turns.clear()
            err.print("[dim]new conversation: the next question is asked alone[/]")
            return
        if not self.context:
            err.print("[dim]--no-context: each question is asked alone[/]")
            return
        if not self.turns:
            err.print("[dim]no questions yet in this conversation[/]")
        for number, turn in enumerate(self.turns, start=1):
            sql = " ".join(turn.sql.split()) if turn.sql is not None else "(no answer)"
            out.print(visible(f"{number}. {turn.question}"), markup=False, highlight=False)
            out.print(visible(f"   {sql}"), markup=False, highlight=False)

    def answer(self, question: str, interrupts: Interrupts | None) -> bool:
        """One question, answered and printed as `ask` does (an exact repeat of a saved question
        from its saved SQL, unless --fresh or the question follows earlier ones); whether it has
        an answer. `interrupts` watches Ctrl-C at a terminal (None in a pipe)."""
        from slmsql_cli import history
        from slmsql_cli import saved as saved_answers
        from slmsql_cli.database import check_question
        from slmsql_cli.errors import UserError
        from slmsql_cli.render import (
            CHAT_MORE_ROWS_HINT,
            context_words,
            no_answer_hint,
            print_answer,
            print_candidates,
            summary_line,
        )

        turns = list(self.turns) if self.context else []
        try:
            check_question(question)
            # a saved answer stands alone: a follow-up is always the model's
            model_only = self.fresh or bool(turns)
            found = saved_answers.Lookup() if model_only else self._lookup(question, interrupts)
            for note in found.notes:
                err.print(f"[yellow]{escape(note)}[/]", highlight=False)
            answer = found.answer or self._ask(question, interrupts, turns)
            if interrupts is not None:  # a Ctrl-C after the last safe point cancels it too, and
                interrupts.check()  # one while it is printed or saved stops that at once
                interrupts.at_once = True
        except UserError as exc:
            fail(exc.message, exc.hint)
            return False
        answer.notes = found.notes
        self.turns = [*self.turns, answer.turn][-KEPT_TURNS:]
        history.record(self.database, answer.turn, turns)  # for `ask --after -`
        if self.verbose:
            print_candidates(err, answer, has_json=False)
        if answer.failure is not None:
            fail(answer.failure, no_answer_hint(verbose=self.verbose, has_json=False))
        else:
            print_answer(out, answer, max_rows=self.max_rows, more_hint=CHAT_MORE_ROWS_HINT)
            err.print(summary_line(answer))
            if answer.saved_id is not None:  # no model ran: no timings to show
                return True
            if self.save:
                err.print(escape(saved_answers.keep(self.database, question, "", answer)), highlight=False)
        g = answer.generation.stats
        words = context_words(answer.context)
        err.print(
            f"[dim]prompt {g.prompt_tokens} tokens, {g.prompt_tokens_evaluated} evaluated "
            f"({g.prompt_tokens - g.prompt_tokens_evaluated} reused from the cache) in {g.prompt_seconds:.2f}s · "
            f"{g.generated_tokens} tokens generated in {g.wall_seconds - g.prompt_seconds:.1f}s"
            + (f" · {words}" if words else "")
            + "[/]"
        )
        return answer.failure is None

    def _lookup(self, question: str, interrupts: Interrupts | None) -> Lookup:
        """The saved-answer store's word on the question: a saved SQL runs in a query worker, so
        Ctrl-C stops it at once."""
        from slmsql_cli import saved as saved_answers

        if interrupts is not None:
            interrupts.at_once = True
        found = saved_answers.lookup(self.database, question, timeout=self.config.timeout)
        if interrupts is not None:
            interrupts.at_once = interrupts.remote
        return found

    def _ask(self, question: str, interrupts: Interrupts | None, turns: list[Turn]) -> Answer:
        """The model's answer (a follow-up of `turns`), its steps on the status line; Ctrl-C
        (`interrupts`) seen at safe points."""
        cfg = self.config
        with StatusLine("thinking…") as status:
            steps = AskStatus(status, cfg.n, cfg.merge_n, cfg.max_tokens)
            if interrupts is None:
                return self.pipeline.ask(
                    self.database,
                    question,
                    progress=steps.progress,
                    on_token=steps.token,
                    on_prompt=steps.prompt,
                    turns=turns,
                )
            watch = interrupts

            def progress(message: str) -> None:
                watch.step(message)
                steps.progress(message)

            def on_token(candidate: int) -> None:
                watch.check()
                steps.token(candidate)

            def on_prompt(read: int, total: int, cached: int) -> None:
                watch.check()
                steps.prompt(read, total, cached)

            return self.pipeline.ask(
                self.database,
                question,
                progress=progress,
                on_token=on_token,
                on_prompt=on_prompt,
                turns=turns,
            )

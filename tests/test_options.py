"""The model and sampling options are declared once (config.ModelSource, config.AskConfig) and
every command that has one takes it from there, with the same flags, help, panel and metavar.

* In the source: each shared flag is written in one `option(...)` of config.py, and no command
  module declares it again (the commands' own variants, which differ on purpose, are listed).
* In the command line typer builds: each command's shared option is the declared one, and the
  commands have the shared options they should.
* `ask_options` hands the command the dataclasses its options make: flags turned back into
  fields, endpoints built, defaults where an option is not given.
"""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path
from typing import Any

import pytest
import typer
import typer.main
from typer.testing import CliRunner

from slmsql_cli.cli import app
from slmsql_cli.cli import options as opt
from slmsql_cli.config import AskConfig, ModelSource
from slmsql_cli.remote_engine import Endpoint

REPO = Path(__file__).resolve().parents[1]
SHARED = {f.name: f for cls in (ModelSource, AskConfig) for f in opt.option_fields(cls)}
FLAGS = {flag: name for name, f in SHARED.items() for flag in f.metadata["flags"]}
# A command's own option under a shared flag, different on purpose (another default or meaning).
OWN = {
    ("eval_cmd.py", "--timeout"),  # the queries' limit, 30 s as BIRD's
    ("prompt_cmd.py", "--model"),  # a tokenizer to count with; nothing is generated
    ("prompt_cmd.py", "-m"),
    ("bench_cmd.py", "-n"),  # a list of counts to time
    ("bench_cmd.py", "--max-tokens"),  # a fixed length to generate
    ("export_cmd.py", "--threads"),  # for quantizing, not for answering
}
ALL = set(SHARED)
EXPECTED = {
    "ask": ALL,
    "chat": ALL,
    "serve": ALL,
    "eval": ALL - {"timeout"},
    "prompt": {"use_values", "prompt_budget"},
    "bench": {
        "model",
        "endpoint",
        "served_model",
        "endpoint_timeout",
        "threads",
        "gpu_layers",
        "prompt_budget",
        "constrain",
    },
}


def option_calls(path: Path, name: str) -> list[ast.Call]:
    """The calls of `name(...)` or `x.name(...)` in a source file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == name
    ]


def flags_of(call: ast.Call) -> list[str]:
    return [a.value for a in call.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]


def test_each_shared_flag_is_written_once_in_config() -> None:
    declared = [
        flag for call in option_calls(REPO / "slmsql_cli" / "config.py", "option") for flag in flags_of(call)
    ]
    assert sorted(declared) == sorted(FLAGS), "a flag declared twice, or a declaration not read as an option"
    assert len(SHARED) >= 20


def test_no_command_declares_a_shared_option_again() -> None:
    again = []
    for path in sorted((REPO / "slmsql_cli").rglob("*.py")):
        for call in option_calls(path, "Option"):
            again += [(path.name, f) for f in flags_of(call) if f in FLAGS and (path.name, f) not in OWN]
    assert not again, f"declared outside config.py: {again}"


def click_commands() -> dict[str, Any]:
    return typer.main.get_command(app).commands  # type: ignore[attr-defined,no-any-return]


@pytest.mark.parametrize("command", sorted(EXPECTED))
def test_commands_take_the_shared_options_from_the_declaration(command: str) -> None:
    params = {p.name: p for p in click_commands()[command].params}
    own = {FLAGS[f] for c, f in OWN if c == f"{command}_cmd.py"}
    taken = {name for name in params if name in SHARED and name not in own}
    assert taken == EXPECTED[command]
    for name in taken:
        p, f = params[name], SHARED[name]
        meta = f.metadata
        # a pair, "--constrain/--no-constrain", is two flags, the second hidden from --help
        flags = [one for flag in meta["flags"] for one in flag.split("/")]
        pair = [params[name + opt.OFF]] if name + opt.OFF in params else []
        assert all(q.hidden for q in pair), name
        assert sorted(o for q in [p, *pair] for o in [*q.opts, *q.secondary_opts]) == sorted(flags), name
        assert p.help == meta["help"].format(default=f.default), name
        assert (p.metavar or "") == meta["metavar"] and p.rich_help_panel == meta["panel"], name
        assert p.envvar == meta["env"], name
        assert p.default == (False if f.type is bool else f.default), name


def test_the_commands_help_lines_agree() -> None:
    """The same option reads the same in every command's --help (what each user sees)."""
    seen: dict[str, tuple[str, str]] = {}
    for command, wanted in EXPECTED.items():
        for p in click_commands()[command].params:
            if p.name in wanted:
                record = p.get_help_record(typer.Context(click_commands()[command]))
                assert seen.setdefault(p.name, (command, record))[1] == record, (command, seen[p.name])


# ---- what a command receives -------------------------------------------------------------------

received: dict[str, Any] = {}
probe = typer.Typer()


@probe.command("probe")
@opt.ask_options()
def _probe(*, name: str = typer.Option("x", "--name"), source: ModelSource, config: AskConfig) -> None:
    received.update(name=name, source=source, config=config)


@probe.command("narrow")
@opt.ask_options(only=("prompt_budget", "use_values"))
def _narrow(*, config: AskConfig) -> None:
    received.update(config=config)


def run_probe(*args: str, env: dict[str, str] | None = None) -> Any:
    received.clear()
    return CliRunner().invoke(probe, list(args), env=env)


def test_no_options_give_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in (
        "SLMSQL_ENDPOINT",
        "SLMSQL_MERGE_ENDPOINT",
        "SLMSQL_SERVED_MODEL",
        "SLMSQL_ENDPOINT_TIMEOUT",
    ):
        monkeypatch.delenv(variable, raising=False)
    assert run_probe("probe").exit_code == 0
    assert received["source"] == ModelSource() and received["config"] == AskConfig()
    assert received["name"] == "x"


def test_options_become_fields_and_flags_turn_around() -> None:
    result = run_probe(
        "probe", "--name", "y", "-m", "a.gguf", "--no-merge", "-n", "3", "-t", "0", "--no-values",
        "--no-prompt-cache", "--threads", "2", "--timeout", "2.5", "--prompt-budget", "1000",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    config = received["config"]
    assert received["source"].model == "a.gguf" and received["name"] == "y"
    assert (config.merge, config.use_values, config.prompt_cache) == (False, False, False)
    assert (config.n, config.temperature, config.threads, config.timeout) == (3, 0.0, 2, 2.5)
    assert config.prompt_budget == 1000
    assert dataclasses.replace(
        config, merge=True, use_values=True, prompt_cache=True, n=4, temperature=0.8, threads=None,
        timeout=10.0, prompt_budget=AskConfig().prompt_budget,
    ) == AskConfig()  # fmt: skip


def test_endpoint_options_make_the_configs_endpoints() -> None:
    result = run_probe(
        "probe", "--served-model", "gen", "--merge-served-model", "fix", "--endpoint-timeout", "5",
        env={"SLMSQL_ENDPOINT": "http://127.0.0.1:9"},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert received["source"].endpoint == "http://127.0.0.1:9"
    config = received["config"]
    assert config.endpoint == Endpoint("http://127.0.0.1:9/v1", "gen", timeout=5.0)
    assert config.merge_endpoint == Endpoint("http://127.0.0.1:9/v1", "fix", timeout=5.0)


def test_a_value_out_of_range_is_refused_in_clicks_words() -> None:
    result = run_probe("probe", "-n", "65")
    assert result.exit_code == 2 and "65 is not in the range 1<=x<=64." in result.output
    assert received == {}


def test_only_keeps_the_named_options() -> None:
    assert run_probe("narrow", "--no-values", "--prompt-budget", "300").exit_code == 0
    assert received["config"] == AskConfig(use_values=False, prompt_budget=300)
    refused = run_probe("narrow", "-n", "2")
    assert refused.exit_code == 2 and "No such option" in refused.output


def test_a_parameter_named_like_a_shared_option_is_refused() -> None:
    def clash(*, timeout: float = 1.0, config: AskConfig) -> None: ...

    with pytest.raises(ValueError, match="skip that option"):
        opt.ask_options()(clash)
    assert opt.ask_options(skip=("timeout",))(clash)
    with pytest.raises(ValueError, match="not an option"):
        opt.ask_options(only=("nope",))

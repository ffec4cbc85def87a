"""`slmsql train` on SParC/CoSQL interactions (issue 29): one example per turn, its prompt exactly the
follow-up prompt `ask` sends for that turn with the same rendering and budget; turns mixed with
single questions by a sampling weight. Data building only: no model is trained here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from slmsql_cli.benchmark_data import BenchmarkDatabases
from slmsql_cli.config import AskConfig
from slmsql_cli.conversation import RENDERINGS, Turn
from slmsql_cli.errors import UserError
from slmsql_cli.pipeline import Pipeline, chat_text
from slmsql_cli.scripted import ScriptedEngine
from slmsql_cli.training.config import build_config, load_config
from slmsql_cli.training.data import load_examples
from slmsql_cli.training.records import detect_format, row_count


@pytest.fixture()
def spider(data_dir: Path, isolated_cache: Path) -> dict[str, str]:
    return {
        "db_dir": str(data_dir / "spider_dev" / "database"),
        "tables": str(data_dir / "spider_dev" / "tables.json"),
    }


def _config(data: Path, spider: dict[str, str], **values: object):  # type: ignore[no-untyped-def]
    return build_config(
        {"stage": "sft", "base": "m", "data": str(data), "shuffle": False, **spider, **values}
    )


# 3,250 tokens (bytes, as the scripted engine counts): concert_singer's whole schema with the question alone fits, but not with all earlier
# turns: the 4-turn interaction's last turns are asked with the oldest turns dropped (checked below).
@pytest.mark.parametrize("budget", [None, 3250])
@pytest.mark.parametrize("rendering", RENDERINGS)
def test_each_turn_is_the_prompt_ask_sends_for_it(
    data_dir: Path, spider: dict[str, str], rendering: str, budget: int | None
) -> None:
    sparc = data_dir / "sparc_dev" / "dev.json"
    interactions = json.loads(sparc.read_text())
    extra = {"prompt_budget": budget} if budget else {}
    cfg = _config(sparc, spider, rendering=rendering, **extra)
    engine = ScriptedEngine(["<answer>SELECT 1</answer>"] * 13)
    pipeline = Pipeline(engine, None, AskConfig(n=1, merge=False, **extra))
    examples, report, fmt = load_examples(cfg, counter=pipeline.counter)  # counted as ask counts
    # world_1's `! =` (runs only as Spider's evaluator rewrites it) is no SQL to learn: skipped, counted
    assert fmt == "sparc" and (report.rows, report.kept) == (14, 13) and len(examples) == 13
    assert report.skipped == {"gold SQL does not parse": 1}

    databases = BenchmarkDatabases(Path(spider["db_dir"]), Path(spider["tables"]))
    dropped = []
    turns = [(i["database_id"], t) for i in interactions for t in i["interaction"] if "! =" not in t["query"]]
    for (db_id, turn), example in zip(turns, examples, strict=True):
        interaction = next(i for i in interactions if turn in i["interaction"])
        before = interaction["interaction"][: interaction["interaction"].index(turn)]
        earlier = [Turn(t["utterance"], t["query"]) for t in before]  # their gold SQL
        answer = pipeline.ask(databases.open(db_id), turn["utterance"], turns=earlier, rendering=rendering)
        assert engine.prompts[-1] == chat_text(engine, example.prompt)
        assert example.gold_sql == turn["query"] and turn["query"] in example.target
        assert answer.context is not None
        dropped.append(answer.context.dropped if rendering != "none" else 0)
        if earlier and rendering == "questions" and not answer.context.dropped:
            assert " ".join(t.question for t in earlier) in example.prompt
        if earlier and rendering == "evidence" and not answer.context.dropped:
            assert f"Its SQL: {' '.join(earlier[-1].sql.split())}" in example.prompt
    if budget and rendering != "none":  # the budget bound: some turns were left out, as ask left them
        assert any(dropped), dropped
    else:
        assert not any(dropped)


def _spider_rows(data_dir: Path, tmp_path: Path, n: int) -> Path:
    rows = [
        q for q in json.loads((data_dir / "spider_dev" / "dev.json").read_text()) if q["db_id"] == "pets_1"
    ]
    path = tmp_path / "train.json"
    path.write_text(json.dumps(rows[:n]))
    return path


@pytest.mark.parametrize(("weight", "turns"), [(1.0, 13), (0.5, 6), (2.0, 26), (0.0, 0)])
def test_turns_mix_with_single_questions_by_weight(
    data_dir: Path, spider: dict[str, str], tmp_path: Path, weight: float, turns: int
) -> None:
    data = _spider_rows(data_dir, tmp_path, 3)
    followups = data_dir / "sparc_dev" / "dev.json"  # 13 usable turns (one gold does not parse)
    cfg = _config(data, spider, followup_data=str(followups), followup_weight=weight, shuffle=True)
    examples, report, fmt = load_examples(cfg)
    assert fmt == "spider" and len(examples) == 3 + turns
    golds = {t["query"] for i in json.loads(followups.read_text()) for t in i["interaction"]}
    assert sum(e.gold_sql in golds for e in examples) == turns
    if turns:
        assert f"mixed 3 single question(s) with {turns} follow-up turn example(s)" in " ".join(report.notes)
    again, _, _ = load_examples(cfg)
    assert [e.prompt for e in again] == [e.prompt for e in examples]  # seeded: the same mix each run


def test_follow_up_data_is_checked(data_dir: Path, spider: dict[str, str], tmp_path: Path) -> None:
    data = _spider_rows(data_dir, tmp_path, 1)
    with pytest.raises(UserError, match="does not hold SParC/CoSQL interactions"):
        load_examples(_config(data, spider, followup_data=str(data)))
    with pytest.raises(UserError, match="`rendering` must be one of none, questions, evidence"):
        _config(data, spider, rendering="all")
    with pytest.raises(UserError, match="`followup_weight` must be 0 or more"):
        _config(data, spider, followup_weight=-1)
    sparc = data_dir / "sparc_dev" / "dev.json"
    with pytest.raises(UserError, match="needs the databases"):
        load_examples(build_config({"stage": "sft", "base": "m", "data": str(sparc)}))


def test_interaction_rows_are_recognised_and_counted(data_dir: Path) -> None:
    rows = json.loads((data_dir / "cosql_dev" / "dev.json").read_text())
    assert detect_format(rows[0].keys()) == "sparc" and detect_format(rows[0].keys(), "cosql") == "sparc"
    assert row_count(rows) == 4 and row_count([{"question": "q"}]) == 1


def test_the_follow_up_recipe_loads() -> None:
    cfg = load_config("tiny-real-cpu-followup", {"data": "d.json"}, "sft")
    assert cfg.rendering == "questions" and cfg.followup_weight == 1.0 and cfg.cpu and cfg.max_length == 2048

"""Schema introspection, tables.json reading, sample values and the OmniSQL DDL serialization."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from slmsql_cli.errors import UserError
from slmsql_cli.schema import (
    Schema,
    format_identifier,
    schema_from_tables_json,
    serialize_schema,
    sqlite_affinity_type,
    subset,
)
from slmsql_cli.targets.sqlite_catalog import sample_values, schema_from_sqlite

DEMO = Path(__file__).resolve().parents[1] / "slmsql_cli" / "data"


def _reference_ddl(prompt: str) -> str:
    return prompt.split("Database Schema:\n", 1)[1].split("\nThis schema describes", 1)[0]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("position", "`position`"),
        ("Year", "`Year`"),
        ("Language", "`Language`"),
        ("type", "type"),
        ("Content", "Content"),
        ("18_49_Rating_Share", "18_49_Rating_Share"),
        ("Official_ratings_(millions)", "`Official_ratings_(millions)`"),
        ("first name", "`first name`"),
    ],
)
def test_format_identifier(name: str, expected: str) -> None:
    assert format_identifier(name) == expected


def test_car_1_ddl_matches_reference_example(data_dir: Path, reference_dir: Path) -> None:
    schema = schema_from_tables_json(data_dir / "spider_dev/tables.json", "car_1")
    db = data_dir / "spider_dev/database/car_1/car_1.sqlite"
    ddl = serialize_schema(schema, sample_values(db, schema))
    assert ddl == _reference_ddl(
        (reference_dir / "generation_prompt.example.txt").read_text(encoding="utf-8")
    )


def test_bird_composite_primary_key_and_truncated_values(data_dir: Path) -> None:
    schema = schema_from_tables_json(data_dir / "bird_dev/dev_tables.json", "student_club")
    attendance = schema.table("attendance")
    assert attendance is not None and attendance.primary_key == ["link_to_event", "link_to_member"]
    samples = sample_values(data_dir / "bird_dev/dev_databases/student_club/student_club.sqlite", schema)
    assert all(len(v) <= 40 for vals in samples.values() for v in vals if isinstance(v, str))
    assert "    PRIMARY KEY (link_to_event, link_to_member)," in serialize_schema(schema, samples)


def test_unknown_db_id_suggests_close_ids(data_dir: Path) -> None:
    with pytest.raises(UserError) as exc:
        schema_from_tables_json(data_dir / "spider_dev/tables.json", "car_11")
    assert "car_1" in str(exc.value)


def test_chinook_introspection(data_dir: Path) -> None:
    schema = schema_from_sqlite(data_dir / "chinook/Chinook_Sqlite.sqlite")
    assert [t.name for t in schema.tables] == [
        "Album",
        "Artist",
        "Customer",
        "Employee",
        "Genre",
        "Invoice",
        "InvoiceLine",
        "MediaType",
        "Playlist",
        "PlaylistTrack",
        "Track",
    ]
    track = schema.table("Track")
    assert track is not None
    types = {c.name: c.type for c in track.columns}
    assert types == {
        "TrackId": "integer",
        "Name": "text",
        "AlbumId": "integer",
        "MediaTypeId": "integer",
        "GenreId": "integer",
        "Composer": "text",
        "Milliseconds": "integer",
        "Bytes": "integer",
        "UnitPrice": "numeric",
    }
    assert [(fk.column, fk.ref_table, fk.ref_column) for fk in track.foreign_keys] == [
        ("AlbumId", "Album", "AlbumId"),
        ("MediaTypeId", "MediaType", "MediaTypeId"),
        ("GenreId", "Genre", "GenreId"),
    ]
    assert schema.table("PlaylistTrack").primary_key == ["PlaylistId", "TrackId"]  # type: ignore[union-attr]
    assert all(c.comment == "" for t in schema.tables for c in t.columns)
    ddl = serialize_schema(schema, sample_values(data_dir / "chinook/Chinook_Sqlite.sqlite", schema))
    assert "    InvoiceDate datetime, -- example: ['2021-01-01 00:00:00', '2021-01-02 00:00:00']" in ddl
    assert (
        "    CONSTRAINT fk_invoiceline_invoiceid FOREIGN KEY (InvoiceId) REFERENCES Invoice (InvoiceId),"
        in ddl
    )


@pytest.mark.parametrize(
    ("declared", "expected"),
    [
        ("INTEGER", "integer"),
        ("NVARCHAR(160)", "text"),
        ("NUMERIC(10,2)", "numeric"),
        ("DATETIME", "datetime"),
        ("date", "date"),
        ("TIMESTAMP", "datetime"),
        ("DOUBLE PRECISION", "real"),
        ("FLOAT", "real"),
        ("", "blob"),
        ("BLOB", "blob"),
        ("BOOLEAN", "numeric"),
        ("CLOB", "text"),
        ("BIGINT", "integer"),
    ],
)
def test_sqlite_type_names(declared: str, expected: str) -> None:
    assert sqlite_affinity_type(declared) == expected


def test_internal_and_fts_shadow_tables_are_skipped(tmp_path: Path) -> None:
    db = tmp_path / "fts.sqlite"
    conn = sqlite3.connect(db)
    conn.executescript(
        "CREATE TABLE notes (id INTEGER PRIMARY KEY AUTOINCREMENT, body TEXT);"
        "INSERT INTO notes (body) VALUES ('x');"
        "CREATE VIRTUAL TABLE notes_fts USING fts5(body);"
    )
    conn.close()
    assert [t.name for t in schema_from_sqlite(db).tables] == ["notes", "notes_fts"]


def test_invalid_utf8_is_decoded_with_replacement(tmp_path: Path) -> None:
    db = tmp_path / "latin.sqlite"
    conn = sqlite3.connect(db)
    conn.executescript("CREATE TABLE t (name TEXT); INSERT INTO t VALUES (CAST(x'4361666580' AS TEXT));")
    conn.close()
    schema = schema_from_sqlite(db)
    assert sample_values(db, schema) == {("t", "name"): ["Cafe\ufffd"]}


def test_values_relevant_first_deduplicated_capped(tmp_path: Path) -> None:
    db = tmp_path / "v.sqlite"
    conn = sqlite3.connect(db)
    conn.executescript(
        "CREATE TABLE `Order` (id INTEGER PRIMARY KEY, city TEXT); INSERT INTO `Order` VALUES (1, 'Cork');"
    )
    conn.close()
    schema = schema_from_sqlite(db)
    values = {("ORDER", "City"): ["Galway", "Cork", "a", "b", "c", "d", "e"], ("Order", "id"): [1, 2]}
    ddl = serialize_schema(schema, values)
    assert ddl == (
        "CREATE TABLE `Order` (\n"
        "    id integer, -- example: [1, 2]\n"
        "    city text, -- example: ['Galway', 'Cork', 'a', 'b', 'c', 'd']\n"
        "    PRIMARY KEY (id)\n"
        ");"
    )


def test_comment_rule_and_subset() -> None:
    schema = Schema.from_dict(
        {
            "db_id": "x",
            "tables": [
                {
                    "name": "singer",
                    "primary_key": ["Singer_ID"],
                    "foreign_keys": [],
                    "columns": [
                        {"name": "Singer_ID", "type": "number", "comment": "singer id"},
                        {"name": "Nm", "type": "text", "comment": "name of the singer"},
                        {"name": "Age", "type": "number", "comment": ""},
                    ],
                }
            ],
        }
    )
    assert serialize_schema(schema, {("singer", "Nm"): ["Joe"]}) == (
        "CREATE TABLE singer (\n"
        "    Singer_ID number,\n"
        "    Nm text, -- name of the singer, example: ['Joe']\n"
        "    Age number,\n"
        "    PRIMARY KEY (Singer_ID)\n"
        ");"
    )
    assert (
        serialize_schema(subset(schema, [("singer", "age")]), {})
        == "CREATE TABLE singer (\n    Age number\n);"
    )


def test_schema_round_trips_through_dict(data_dir: Path) -> None:
    schema = schema_from_tables_json(data_dir / "bird_dev/dev_tables.json", "student_club")
    assert Schema.from_dict(json.loads(json.dumps(schema.to_dict()))) == schema


def test_demo_database_and_questions() -> None:
    db, questions = DEMO / "bookshop.sqlite", DEMO / "bookshop_questions.json"
    assert db.stat().st_size < 300_000
    schema = schema_from_sqlite(db)
    assert {t.name for t in schema.tables} >= {
        "authors",
        "books",
        "genres",
        "customers",
        "orders",
        "order_items",
    }
    orders = schema.table("orders")
    assert orders is not None and ("employee_id", "employees", "employee_id") in [
        (fk.column, fk.ref_table, fk.ref_column) for fk in orders.foreign_keys
    ]
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    items = json.loads(questions.read_text(encoding="utf-8"))
    assert len(items) >= 15
    for item in items:
        assert conn.execute(item["sql"]).fetchall(), item["question"]
    conn.close()

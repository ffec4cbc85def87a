"""scripts/setup.sh checks the build it installs: a wheel made to crash is caught, never installed silently."""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SETUP = REPO / "scripts" / "setup.sh"


def wheel_dir(env: dict[str, str]) -> str:
    out = subprocess.run(["bash", str(SETUP), "--print-wheel-dir"], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_the_wheel_cache_key_covers_the_build_recipe() -> None:
    env = {k: v for k, v in os.environ.items() if k not in {"CMAKE_ARGS", "SLMSQL_WHEEL_DIR", "CC"}}
    default = wheel_dir(env)
    assert default == wheel_dir(env)  # stable
    assert wheel_dir({**env, "CMAKE_ARGS": "-DGGML_CUDA=ON"}) != default
    assert wheel_dir({**env, "CC": "clang"}) != default or shutil.which("clang") is None
    assert wheel_dir({**env, "SLMSQL_WHEEL_DIR": "/some/where"}) == "/some/where"


def _crashing_wheel(folder: Path) -> Path:
    """llama_cpp_python 0.3.36 whose import reads address 0: a real segfault at the first use."""
    name = "llama_cpp_python-0.3.36"
    files = {
        "llama_cpp/__init__.py": b"import ctypes\nctypes.string_at(0)\n",
        f"{name}.dist-info/METADATA": b"Metadata-Version: 2.1\nName: llama_cpp_python\nVersion: 0.3.36\n",
        f"{name}.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    record.append(f"{name}.dist-info/RECORD,,")
    files[f"{name}.dist-info/RECORD"] = ("\n".join(record) + "\n").encode()
    wheel = folder / f"{name}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for path, data in files.items():
            zf.writestr(path, data)
    return wheel


@pytest.mark.slow
def test_setup_stops_on_a_wheel_that_crashes(tmp_path: Path) -> None:
    """The ask-only install from a copy of the repository, with the cached wheel made to crash."""
    copy = tmp_path / "repo"
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True)
    for rel in tracked.stdout.splitlines():
        if (REPO / rel).is_file():
            (copy / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, copy / rel)
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    _crashing_wheel(wheels)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLMSQL_", "VIRTUAL_ENV"))}
    env.update(
        SLMSQL_WHEEL_DIR=str(wheels),
        SLMSQL_EXTRAS="",
        SLMSQL_NO_APT="1",
        SLMSQL_NO_REBUILD="1",
        PYTHON=getattr(sys, "_base_executable", sys.executable),
    )
    proc = subprocess.run(
        ["bash", str(copy / "scripts" / "setup.sh")], capture_output=True, text=True, env=env, timeout=900
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "self-check: the llama.cpp build died with signal 11 (SEGV)" in proc.stdout
    assert (
        proc.stderr.splitlines()[-2]
        == f"error: the llama-cpp-python wheel in {wheels} crashes on this machine"
    )
    assert proc.stderr.splitlines()[-1].startswith("hint: delete that folder")
    assert "==> done" not in proc.stdout


FAKE_PYTHON = """#!/bin/sh
# Stands in for python3 and the .venv's python: pip "builds" an empty wheel (written as pip would,
# under the caller's umask), every other step succeeds at once.
case "$*" in
  "--version") echo "Python 3.11.0" ;;
  "-m venv .venv") mkdir -p .venv/bin && cp "$0" .venv/bin/python ;;
  *"pip wheel"*)
    for last; do :; done
    : > "$last/llama_cpp_python-0.3.36-cp311-cp311-linux_x86_64.whl" ;;
  *"slmsql_cli.selfcheck"*) echo "ok" ;;
esac
exit 0
"""


def test_the_wheel_cache_is_as_private_as_the_rest_of_the_cache(tmp_path: Path) -> None:
    """The first command after set-up says nothing (issue 27: it warned that it had made the cache
    private, because of set-up's own wheel files): set-up runs with a fake Python, as a user whose
    umask is 022 and whose home has no cache yet, then `slmsql prompt` runs for real there."""
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    shutil.copy2(SETUP, repo / "scripts" / "setup.sh")
    fake = tmp_path / "python3"
    fake.write_text(FAKE_PYTHON)
    fake.chmod(0o755)
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLMSQL_", "VIRTUAL_ENV"))}
    env.update(HOME=str(home), SLMSQL_EXTRAS="", SLMSQL_NO_APT="1", PYTHON=str(fake))

    def setup() -> None:
        proc = subprocess.run(
            ["bash", str(repo / "scripts" / "setup.sh")],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            preexec_fn=lambda: os.umask(0o022),
        )
        assert proc.returncode == 0 and "==> done" in proc.stdout, proc.stdout + proc.stderr

    def loose() -> list[str]:
        found = []
        for folder, _dirs, names in os.walk(home / ".cache"):
            for path, wanted in [(folder, 0o700), *((os.path.join(folder, n), 0o600) for n in names)]:
                if os.stat(path).st_mode & 0o777 != wanted:
                    found.append(f"{path}: {os.stat(path).st_mode & 0o777:o}")
        return found

    setup()
    (wheel,) = (home / ".cache" / "slmsql" / "wheels").glob("*/llama_cpp_python-*.whl")
    assert loose() == []

    demo = REPO / "slmsql_cli" / "data" / "bookshop.sqlite"
    first = subprocess.run(
        [sys.executable, "-m", "slmsql_cli", "prompt", "--db", str(demo), "How many books?"],
        capture_output=True,
        text=True,
        env={**env, "PYTHONPATH": str(REPO)},
        cwd=REPO,
        timeout=120,
    )
    assert first.returncode == 0 and first.stderr == "", first.stderr

    for folder in (wheel.parent, wheel.parent.parent, wheel.parent.parent.parent):
        folder.chmod(0o755)  # as an older set-up left them: tightened by the next one
    wheel.chmod(0o644)
    setup()
    assert loose() == []

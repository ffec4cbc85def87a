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

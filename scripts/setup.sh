#!/usr/bin/env bash
# One-command set-up: a virtual environment in .venv with slmsql and every extra ([train,files,targets,serve,dev]).
#
# llama-cpp-python has no wheel on PyPI and compiles for 4-6 minutes, so the wheel is built once
# into a cache folder keyed by the CPU's instruction-set flags (the build uses -march=native) and
# reused by every later install, CI included. Variables you may set:
#   SLMSQL_WHEEL_DIR  where built wheels are kept (default ~/.cache/slmsql/wheels/<cpu-key>)
#   SLMSQL_EXTRAS     extras to install (default "train,files,targets,serve,dev"; "" for the ask-only install)
#   TORCH_INDEX_URL   a PyTorch wheel index, e.g. https://download.pytorch.org/whl/cpu for a
#                     CPU-only Linux machine, or .../whl/cu126 for an NVIDIA GPU
#   PYTHON            the interpreter used to create .venv (default python3)
#   SLMSQL_NO_APT     set to 1 to skip the system packages (Chromium for the web app's browser test)
set -euo pipefail
cd "$(dirname "$0")/.."

LLAMA_CPP_VERSION=0.3.36
TORCH_VERSION=2.13.0
PYTHON=${PYTHON:-python3}
EXTRAS=${SLMSQL_EXTRAS-train,files,targets,serve,dev}

cpu_key() {
  if [ -r /proc/cpuinfo ]; then
    grep -m1 -E '^(flags|Features)' /proc/cpuinfo | sha256sum | cut -c1-12
  else
    (sysctl -n machdep.cpu.brand_string 2>/dev/null || uname -m) | shasum -a 256 | cut -c1-12
  fi
}
WHEEL_DIR=${SLMSQL_WHEEL_DIR:-$HOME/.cache/slmsql/wheels/$(uname -s)-$(uname -m)-$(cpu_key)}
mkdir -p "$WHEEL_DIR"

# Chromium from the distribution drives the web app's browser test (tests/test_webapp.py, through
# Playwright, whose own browser download is not used). Only with the dev extra, only when missing.
if [[ ",$EXTRAS," == *",dev,"* ]] && [ "${SLMSQL_NO_APT:-0}" != 1 ]; then
  if command -v chromium >/dev/null 2>&1; then
    echo "==> chromium already installed ($(command -v chromium))"
  elif command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "==> installing chromium with apt-get (for the browser test of the web app)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium fonts-liberation >/dev/null
  else
    echo "==> chromium not found and not installable here (needs apt-get as root): the browser test will be skipped"
  fi
fi

if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
fi
PY=.venv/bin/python
"$PY" -m pip install --quiet --upgrade pip

if ! ls "$WHEEL_DIR"/llama_cpp_python-"$LLAMA_CPP_VERSION"-*.whl >/dev/null 2>&1; then
  echo "==> building llama-cpp-python $LLAMA_CPP_VERSION once (4-6 minutes on 2 cores); cached in $WHEEL_DIR"
  # LLAVA_BUILD=OFF skips the multimodal library slmsql never uses (about a third of the build).
  CMAKE_ARGS="${CMAKE_ARGS:--DLLAVA_BUILD=OFF}" "$PY" -m pip wheel --no-deps \
    "llama-cpp-python==$LLAMA_CPP_VERSION" -w "$WHEEL_DIR"
else
  echo "==> reusing the built llama-cpp-python wheel in $WHEEL_DIR"
fi

if [[ ",$EXTRAS," == *",train,"* ]]; then
  echo "==> installing torch $TORCH_VERSION"
  if [ -n "${TORCH_INDEX_URL:-}" ]; then
    "$PY" -m pip install --quiet "torch==$TORCH_VERSION" --index-url "$TORCH_INDEX_URL"
  else
    "$PY" -m pip install --quiet "torch==$TORCH_VERSION"
  fi
fi

# Install the cached wheel first, so that pip never picks a newer sdist and compiles again.
"$PY" -m pip install --quiet "$WHEEL_DIR"/llama_cpp_python-"$LLAMA_CPP_VERSION"-*.whl

# The test suite starts a throwaway PostgreSQL server (tests/pg_server.py): its binaries come
# from the Debian package. Installed only with [dev], only when missing, and without the
# package's own cluster (nothing is left running).
if [[ ",$EXTRAS," == *",dev,"* ]]; then
  if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1; then
    echo "==> PostgreSQL server binaries present (for the tests)"
  elif command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "==> installing the Debian postgresql package (the tests start a throwaway server)"
    if [ ! -e /etc/postgresql-common/createcluster.conf ]; then
      mkdir -p /etc/postgresql-common
      echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.conf
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null \
      || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null; }
  else
    echo "==> no PostgreSQL server binaries and no root apt-get: the PostgreSQL tests will skip (install the postgresql package to run them)"
  fi
fi

SPEC="."
[ -n "$EXTRAS" ] && SPEC=".[$EXTRAS]"
echo "==> installing slmsql$([ -n "$EXTRAS" ] && echo "[$EXTRAS]") in editable mode"
"$PY" -m pip install --quiet -e "$SPEC"
echo "==> done: activate with 'source .venv/bin/activate', then run 'slmsql --help'"

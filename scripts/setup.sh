#!/usr/bin/env bash
# One-command set-up: a virtual environment in .venv with slmsql and every extra ([train,files,targets,serve,dev]).
#
# llama-cpp-python has no wheel on PyPI and compiles for 4-6 minutes, so the wheel is built once
# into a cache folder keyed by the CPU's instruction sets and the build recipe (build_key below) and
# reused by every later install, CI included. Variables you may set:
#   SLMSQL_WHEEL_DIR  where built wheels are kept (default ~/.cache/slmsql/wheels/<os>-<arch>-<build key>)
#   SLMSQL_EXTRAS     extras to install (default "train,files,targets,serve,dev"; "" for the ask-only install)
#   TORCH_INDEX_URL   a PyTorch wheel index, e.g. https://download.pytorch.org/whl/cpu for a
#                     CPU-only Linux machine, or .../whl/cu126 for an NVIDIA GPU
#   PYTHON            the interpreter used to create .venv (default python3)
#   SLMSQL_NO_APT     set to 1 to skip the system packages (Chromium for the web app's browser test)
#   SLMSQL_NO_REBUILD set to 1 to stop, instead of rebuilding once, when the self-check crashes
# `bash scripts/setup.sh --print-wheel-dir` prints where this recipe's wheel is cached, and exits.
set -euo pipefail
cd "$(dirname "$0")/.."

LLAMA_CPP_VERSION=0.3.36
TORCH_VERSION=2.13.0
PYTHON=${PYTHON:-python3}
EXTRAS=${SLMSQL_EXTRAS-train,files,targets,serve,dev}

# llama.cpp is compiled with -march=native. On x86 that would also switch on its AMX kernels on
# Xeons that have AMX (4th generation and later), and those segfault at the first decode (llama.cpp
# issue 20824), so the AMX instruction sets are switched off. Everything else native stays.
LLAMA_CFLAGS=""
case "$(uname -m)" in
  x86_64 | amd64) LLAMA_CFLAGS="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16" ;;
esac
LLAMA_CMAKE_ARGS="${CMAKE_ARGS:--DLLAVA_BUILD=OFF}"
[ -n "$LLAMA_CFLAGS" ] && LLAMA_CMAKE_ARGS="$LLAMA_CMAKE_ARGS -DCMAKE_C_FLAGS='$LLAMA_CFLAGS' -DCMAKE_CXX_FLAGS='$LLAMA_CFLAGS'"
# Bump when the recipe changes in a way the flags below do not show.
BUILD_RECIPE=2

cpu_flags() {
  if [ -r /proc/cpuinfo ]; then
    grep -m1 -E '^(flags|Features)' /proc/cpuinfo
  else
    sysctl -n machdep.cpu.brand_string machdep.cpu.features machdep.cpu.leaf7_features 2>/dev/null || uname -m
  fi
}
# The cache key covers everything that decides what the wheel contains: the CPU's instruction
# sets (-march=native), the llama-cpp-python version, the CMake arguments and compiler flags, the
# compiler and the recipe number. A changed recipe never picks up an old wheel.
build_key() {
  {
    cpu_flags
    echo "llama-cpp-python==$LLAMA_CPP_VERSION"
    echo "cmake: $LLAMA_CMAKE_ARGS"
    (${CC:-cc} --version 2>/dev/null || echo no-cc) | head -n1
    echo "recipe $BUILD_RECIPE"
  } | (sha256sum 2>/dev/null || shasum -a 256) | cut -c1-12
}
WHEEL_DIR=${SLMSQL_WHEEL_DIR:-$HOME/.cache/slmsql/wheels/$(uname -s)-$(uname -m)-$(build_key)}
if [ "${1:-}" = "--print-wheel-dir" ]; then  # where this recipe's wheel is (or would be) cached
  echo "$WHEEL_DIR"
  exit 0
fi
# slmsql's cache is private (folders 0700, files 0600: slmsql_cli/cache.py), and the wheels live in
# it by default: made so here too, or the first command after set-up would warn that it had to make
# the cache private because of set-up's own files. Wheels an older set-up left open are tightened.
SLMSQL_WHEELS="$HOME/.cache/slmsql/wheels"
private_wheel_dir() {
  (umask 077 && mkdir -p "$WHEEL_DIR")
  if [[ "$WHEEL_DIR/" == "$SLMSQL_WHEELS/"* ]]; then
    chmod u+rwx,go-rwx "$(dirname "$SLMSQL_WHEELS")"
    chmod -R u+rwX,go-rwx "$SLMSQL_WHEELS"
  fi
}
private_wheel_dir

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

build_wheel() {
  echo "==> building llama-cpp-python $LLAMA_CPP_VERSION once (4-6 minutes on 2 cores); cached in $WHEEL_DIR"
  echo "    CMAKE_ARGS=$LLAMA_CMAKE_ARGS"
  # LLAVA_BUILD=OFF skips the multimodal library slmsql never uses (about a third of the build).
  # --no-cache-dir: pip's own wheel cache is keyed by the source archive alone and would hand back
  # a wheel built with other flags.
  (umask 077 && CMAKE_ARGS="$LLAMA_CMAKE_ARGS" "$PY" -m pip wheel --no-deps --no-cache-dir \
    "llama-cpp-python==$LLAMA_CPP_VERSION" -w "$WHEEL_DIR")
}
if ! ls "$WHEEL_DIR"/llama_cpp_python-"$LLAMA_CPP_VERSION"-*.whl >/dev/null 2>&1; then
  build_wheel
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
echo "==> installing slmsql$([ -n "$EXTRAS" ] && echo "[$EXTRAS]") in editable mode (versions from constraints.txt)"
"$PY" -m pip install --quiet -c constraints.txt -e "$SPEC"

# The build checks itself: a tiny model made on the spot is loaded and sampled in a child process
# (python -m slmsql_cli.selfcheck, about a second). A wheel that crashes (a CPU kernel that
# segfaults, SIGILL from a wheel built for another CPU) is rebuilt once without -march=native
# (GGML_NATIVE=OFF: llama.cpp's portable x86-64 set, without AMX) into its own cache folder; if that
# crashes too, setup stops and says what to do. SLMSQL_NO_REBUILD=1 stops at the first failure.
selfcheck() {
  local out status
  out=$("$PY" -m slmsql_cli.selfcheck 2>&1) && { echo "==> self-check: $out"; return 0; }
  status=$?
  if [ "$status" -gt 128 ]; then
    echo "==> self-check: the llama.cpp build died with signal $((status - 128)) ($(kill -l $((status - 128)) 2>/dev/null || echo '?')) at its first decode"
  else
    echo "==> self-check failed (exit $status): $(echo "$out" | tail -n 3)"
  fi
  return 1
}
if ! selfcheck; then
  if [ "${SLMSQL_NO_REBUILD:-0}" = 1 ] || [ -n "${SLMSQL_PORTABLE_BUILD:-}" ]; then
    echo "error: the llama-cpp-python wheel in $WHEEL_DIR crashes on this machine" >&2
    echo "hint: delete that folder and run 'bash scripts/setup.sh' again to rebuild; if a fresh build crashes too, run 'SLMSQL_WEIGHT_BUFFERS=plain .venv/bin/python -m slmsql_cli.selfcheck' and report the output" >&2
    exit 1
  fi
  echo "==> rebuilding llama-cpp-python without native CPU features (GGML_NATIVE=OFF)"
  SLMSQL_PORTABLE_BUILD=1 LLAMA_CMAKE_ARGS="$LLAMA_CMAKE_ARGS -DGGML_NATIVE=OFF" BUILD_RECIPE="$BUILD_RECIPE-portable"
  WHEEL_DIR="$WHEEL_DIR-portable-$(build_key)"
  private_wheel_dir
  ls "$WHEEL_DIR"/llama_cpp_python-"$LLAMA_CPP_VERSION"-*.whl >/dev/null 2>&1 || build_wheel
  "$PY" -m pip install --quiet --force-reinstall --no-deps "$WHEEL_DIR"/llama_cpp_python-"$LLAMA_CPP_VERSION"-*.whl
  if ! selfcheck; then
    echo "error: llama.cpp crashes on this machine even when built without native CPU features" >&2
    echo "hint: run '.venv/bin/slmsql doctor' for the CPU features in use, and report it with the output of 'SLMSQL_DEBUG=1 .venv/bin/python -m slmsql_cli.selfcheck'" >&2
    exit 1
  fi
fi
echo "==> done: activate with 'source .venv/bin/activate', then run 'slmsql --help'"

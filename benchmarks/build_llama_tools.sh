#!/usr/bin/env bash
# Build llama.cpp's own reference tools (llama-speculative-simple, llama-lookup,
# llama-completion, llama-bench) from the llama.cpp tree vendored in the
# llama-cpp-python sdist, with the same CMake configuration pip's wheel build uses,
# so that side-by-side benchmarks compare like with like.
#
# Nothing is written inside the repository: the sdist is downloaded, unpacked and
# built under $DECODELAB_TOOLS_DIR (default ~/.cache/decodelab/llama-tools).
#
# Usage:   benchmarks/build_llama_tools.sh [--force]
# Output:  progress on stderr; the bin folder's absolute path as the last line on stdout:
#            BIN="$(benchmarks/build_llama_tools.sh | tail -n1)"
#
# Environment:
#   DECODELAB_TOOLS_DIR        work folder (default ~/.cache/decodelab/llama-tools)
#   LLAMA_CPP_PYTHON_VERSION   sdist version (default 0.3.36, the version the app pins)
#   LLAMA_CPP_PYTHON_SDIST     path to an already downloaded sdist .tar.gz (skips pip)
#   CMAKE_ARGS                 extra CMake arguments, honoured like pip/scikit-build-core
#                              does (e.g. CMAKE_ARGS="-DGGML_CUDA=on")
#   JOBS                       parallel compile jobs (default 2)
#   PYTHON                     interpreter whose pip downloads the sdist (default python3)
#
# Configuration mirrored from llama-cpp-python's CMakeLists.txt / pyproject.toml
# (scikit-build-core): Release, BUILD_SHARED_LIBS=ON, LLAMA_BUILD_COMMON=ON,
# LLAMA_CURL=OFF, ggml defaults (GGML_NATIVE=ON -> -march=native, GGML_OPENMP=ON,
# GGML_LLAMAFILE=ON, GGML_CPU_REPACK=ON), Ninja when available. The only additions are
# LLAMA_BUILD_EXAMPLES/LLAMA_BUILD_TOOLS=ON so the tool targets exist; tests, server,
# UI and the unified app stay OFF, and only the requested targets are compiled.
set -euo pipefail

VERSION="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
TOOLS_DIR="${DECODELAB_TOOLS_DIR:-$HOME/.cache/decodelab/llama-tools}"
JOBS="${JOBS:-2}"
PYTHON="${PYTHON:-python3}"
FORCE=0

for arg in "$@"; do
    case "$arg" in
        --force) FORCE=1 ;;
        -h|--help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument: $arg (try --help)" >&2; exit 2 ;;
    esac
done

log() { printf '[build_llama_tools] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

for tool in cmake tar; do
    command -v "$tool" >/dev/null 2>&1 || die "'$tool' not found (Debian: apt-get install cmake build-essential)"
done
command -v c++ >/dev/null 2>&1 || command -v g++ >/dev/null 2>&1 || command -v clang++ >/dev/null 2>&1 \
    || die "no C++ compiler found (Debian: apt-get install build-essential)"

mkdir -p "$TOOLS_DIR"
TOOLS_DIR="$(cd "$TOOLS_DIR" && pwd)"
DL_DIR="$TOOLS_DIR/downloads"
SRC_ROOT="$TOOLS_DIR/src"
SRC_DIR="$SRC_ROOT/llama_cpp_python-$VERSION"
LLAMA_SRC="$SRC_DIR/vendor/llama.cpp"
BUILD_DIR="$TOOLS_DIR/build-$VERSION"
BIN_DIR="$BUILD_DIR/bin"
STAMP="$BUILD_DIR/decodelab-tools.stamp"
INFO="$BUILD_DIR/decodelab-tools.info"

# One build at a time per tools folder.
if command -v flock >/dev/null 2>&1; then
    exec 9>"$TOOLS_DIR/.lock"
    flock 9 || die "cannot lock $TOOLS_DIR/.lock"
fi

# CMake options of pip's wheel build (see header), then the tool switches, then CMAKE_ARGS.
CMAKE_OPTS=(
    -DCMAKE_BUILD_TYPE=Release
    -DBUILD_SHARED_LIBS=ON
    -DLLAMA_BUILD_COMMON=ON
    -DLLAMA_CURL=OFF
    -DGGML_NATIVE=ON
    -DLLAMA_BUILD_TESTS=OFF
    -DLLAMA_BUILD_SERVER=OFF
    -DLLAMA_BUILD_APP=OFF
    -DLLAMA_BUILD_UI=OFF
    -DLLAMA_BUILD_EXAMPLES=ON
    -DLLAMA_BUILD_TOOLS=ON
)
# As the Makefile builds the app's llama.cpp: without AMX kernels on x86-64 (they crash
# some Sapphire Rapids machines, ggml-org/llama.cpp#20824), unless CFLAGS says otherwise.
if [[ "$(uname -m)" == "x86_64" ]]; then
    export CFLAGS="${CFLAGS--mno-amx-tile -mno-amx-int8 -mno-amx-bf16}"
    export CXXFLAGS="${CXXFLAGS-$CFLAGS}"
fi
# Given to CMake too: a build folder configured before keeps its first flags otherwise.
CMAKE_OPTS+=("-DCMAKE_C_FLAGS=${CFLAGS:-}" "-DCMAKE_CXX_FLAGS=${CXXFLAGS:-}")
EXTRA_ARGS=()
if [[ -n "${CMAKE_ARGS:-}" ]]; then
    # shellcheck disable=SC2206  # word splitting is intended, as in scikit-build-core
    EXTRA_ARGS=(${CMAKE_ARGS})
fi
GENERATOR=()
if command -v ninja >/dev/null 2>&1; then
    GENERATOR=(-G Ninja)
fi

# Stamp: version + configuration (+ host CPU, since GGML_NATIVE compiles for it).
CPU_ID="$(grep -m1 '^model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ *//' || true)"
STAMP_TEXT="llama-cpp-python=$VERSION
cmake=${CMAKE_OPTS[*]} ${EXTRA_ARGS[*]:-}
generator=${GENERATOR[*]:-default}
cpu=${CPU_ID:-unknown}"

# Decide the plain-generation tool once the source is known; the default set:
REQUIRED_TOOLS=(llama-speculative-simple llama-lookup llama-completion llama-bench)

all_present() {
    local t
    for t in "$@"; do [[ -x "$BIN_DIR/$t" ]] || return 1; done
}

if [[ $FORCE -eq 0 && -f "$STAMP" ]] && [[ "$(cat "$STAMP")" == "$STAMP_TEXT" ]]; then
    # shellcheck disable=SC2207
    STAMPED_TOOLS=($(sed -n 's/^tools=//p' "$INFO" 2>/dev/null || true))
    if [[ ${#STAMPED_TOOLS[@]} -gt 0 ]] && all_present "${STAMPED_TOOLS[@]}"; then
        log "up to date (llama-cpp-python $VERSION): ${STAMPED_TOOLS[*]}"
        [[ -f "$INFO" ]] && sed 's/^/[build_llama_tools]   /' "$INFO" >&2
        echo "$BIN_DIR"
        exit 0
    fi
fi

# --- 1. sdist ---------------------------------------------------------------------------
SDIST="${LLAMA_CPP_PYTHON_SDIST:-}"
if [[ -z "$SDIST" ]]; then
    mkdir -p "$DL_DIR"
    SDIST="$(ls "$DL_DIR"/llama_cpp_python-"$VERSION".tar.gz 2>/dev/null | head -n1 || true)"
    if [[ -z "$SDIST" ]]; then
        log "downloading llama-cpp-python==$VERSION sdist into $DL_DIR"
        # PyPI ships only the sdist. pip prepares its metadata in an isolated build env
        # (fetches scikit-build-core); that does not compile anything.
        # Only this package as source: ":all:" would also build its build dependencies
        # from source, one nested pip after another (over 20 minutes here, never finished).
        "$PYTHON" -m pip download --no-deps --no-binary llama-cpp-python \
            "llama-cpp-python==$VERSION" -d "$DL_DIR" >&2 \
            || die "pip download failed"
        SDIST="$(ls "$DL_DIR"/llama_cpp_python-"$VERSION".tar.gz 2>/dev/null | head -n1 || true)"
        [[ -n "$SDIST" ]] || die "sdist not found in $DL_DIR after pip download"
    fi
fi
[[ -f "$SDIST" ]] || die "sdist not found: $SDIST"
log "sdist: $SDIST"

# --- 2. unpack --------------------------------------------------------------------------
if [[ ! -f "$LLAMA_SRC/CMakeLists.txt" ]]; then
    log "unpacking into $SRC_ROOT"
    mkdir -p "$SRC_ROOT"
    rm -rf "$SRC_DIR" "$SRC_DIR.partial"
    mkdir -p "$SRC_DIR.partial"
    tar -xzf "$SDIST" -C "$SRC_DIR.partial"
    [[ -d "$SRC_DIR.partial/llama_cpp_python-$VERSION" ]] \
        || die "unexpected sdist layout (no llama_cpp_python-$VERSION/ inside)"
    mv "$SRC_DIR.partial/llama_cpp_python-$VERSION" "$SRC_DIR"
    rmdir "$SRC_DIR.partial"
fi
[[ -f "$LLAMA_SRC/CMakeLists.txt" ]] || die "no vendored llama.cpp at $LLAMA_SRC"

# Plain-generation tool: llama-completion if this tree has it, else llama-simple.
if ! grep -qs 'set(TARGET llama-completion)' "$LLAMA_SRC/tools/completion/CMakeLists.txt"; then
    if grep -qs 'set(TARGET llama-simple)' "$LLAMA_SRC/examples/simple/CMakeLists.txt"; then
        log "no llama-completion target in this tree; building llama-simple instead"
        REQUIRED_TOOLS=(llama-speculative-simple llama-lookup llama-simple llama-bench)
    else
        die "neither llama-completion nor llama-simple exists in this llama.cpp tree"
    fi
fi

# llama.cpp revision (the sdist carries a shallow git checkout of the submodule).
LLAMA_COMMIT="unknown"
if command -v git >/dev/null 2>&1; then
    LLAMA_COMMIT="$(git -C "$LLAMA_SRC" rev-parse HEAD 2>/dev/null || echo unknown)"
fi
if [[ "$LLAMA_COMMIT" == unknown && -f "$SRC_DIR/CHANGELOG.md" ]]; then
    LLAMA_COMMIT="$(grep -m1 -o 'ggml-org/llama.cpp@[0-9a-f]*' "$SRC_DIR/CHANGELOG.md" | cut -d@ -f2 || echo unknown)"
fi
LLAMA_VERSION_BASE="$(sed -n 's/^set(LLAMA_VERSION_\(MAJOR\|MINOR\|PATCH\) \([0-9]*\))/\2/p' "$LLAMA_SRC/CMakeLists.txt" | paste -sd. -)"

# --- 3. configure + build ---------------------------------------------------------------
rm -f "$STAMP"
mkdir -p "$BUILD_DIR"
if [[ -f "$BUILD_DIR/CMakeCache.txt" ]] && ! grep -q "^CMAKE_HOME_DIRECTORY:INTERNAL=$LLAMA_SRC\$" "$BUILD_DIR/CMakeCache.txt"; then
    log "build folder was configured for another source tree; resetting it"
    rm -rf "$BUILD_DIR" && mkdir -p "$BUILD_DIR"
fi
if [[ -f "$BUILD_DIR/CMakeCache.txt" && ${#GENERATOR[@]} -gt 0 ]] && ! grep -q '^CMAKE_GENERATOR:INTERNAL=Ninja$' "$BUILD_DIR/CMakeCache.txt"; then
    GENERATOR=()   # keep the generator the folder was first configured with
fi

log "configuring: cmake -S $LLAMA_SRC -B $BUILD_DIR ${GENERATOR[*]:-} ${CMAKE_OPTS[*]} ${EXTRA_ARGS[*]:-}"
T0=$(date +%s)
cmake -S "$LLAMA_SRC" -B "$BUILD_DIR" ${GENERATOR[@]+"${GENERATOR[@]}"} "${CMAKE_OPTS[@]}" \
    ${EXTRA_ARGS[@]+"${EXTRA_ARGS[@]}"} >&2 || die "cmake configure failed"

log "building ${REQUIRED_TOOLS[*]} with -j$JOBS (several minutes on 2 cores)"
cmake --build "$BUILD_DIR" --config Release -j "$JOBS" --target "${REQUIRED_TOOLS[@]}" >&2 \
    || die "build failed"
T1=$(date +%s)

all_present "${REQUIRED_TOOLS[@]}" || die "build finished but some binaries are missing in $BIN_DIR"

# Quick check that each binary starts (shared libs resolve).
for t in "${REQUIRED_TOOLS[@]}"; do
    "$BIN_DIR/$t" --help >/dev/null 2>&1 || die "$BIN_DIR/$t --help failed"
done

BUILD_ID="$("$BIN_DIR/llama-completion" --version 2>&1 | sed -n 's/^version: //p' | head -n1 || true)"
cat >"$INFO" <<EOF
llama_cpp_python=$VERSION
llama_cpp_commit=$LLAMA_COMMIT
llama_cpp_version=${LLAMA_VERSION_BASE:-unknown}
llama_cpp_build=${BUILD_ID:-unknown}
tools=${REQUIRED_TOOLS[*]}
bin_dir=$BIN_DIR
build_seconds=$((T1 - T0))
EOF
printf '%s' "$STAMP_TEXT" >"$STAMP"

log "built in $((T1 - T0)) s"
sed 's/^/[build_llama_tools]   /' "$INFO" >&2
echo "$BIN_DIR"

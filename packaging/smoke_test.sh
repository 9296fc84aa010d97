#!/usr/bin/env bash
# Smoke-test a built DecodeLab: the frozen program, not the source tree.
#
#   bash packaging/smoke_test.sh                     # dist/decodelab/decodelab
#   bash packaging/smoke_test.sh --bin /usr/bin/decodelab
#   bash packaging/smoke_test.sh --deb dist/decodelab_0.1.0_amd64.deb --chroot [--xvfb]
#
# Checks, each with a time limit: `decodelab --version`; `decodelab inspect M`;
# `decodelab run --model M --track baseline --max-tokens 8`; and the scripted GUI session
# `decodelab gui --model M --track baseline --prompt-file F --run --screenshot P --exit`
# offscreen (QT_QPA_PLATFORM=offscreen), then that the PNG is there and not trivial. It also
# prints which llama.cpp CPU backend the bundle loaded (portable builds name a variant).
#
# --chroot installs the .deb into a clean Debian 12 root made with debootstrap (minbase; the
# base is made once in $DEB_ROOT_BASE, default build/deb-root-base, and copied for each run):
# dpkg -i, apt-get -f install, then this script runs there against /usr/bin/decodelab.
# --xvfb also runs the GUI session on a real X server (Xvfb, QT_QPA_PLATFORM=xcb) with the
# package's Recommends installed. Needs root, network to Debian's mirror, about 3-5 minutes.
#
# The model: $MODEL if set; else a tiny random-weight llama made by tests/tiny_models.py
# (with gguf from .venv or build/pkg-venv); else ~/.local/share/decodelab/models/smollm2-135m.Q4_1.gguf.
# SCREENSHOT_DIR keeps the screenshots (default build/smoke).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="$ROOT/dist/decodelab/decodelab"
DEB="" CHROOT=0 XVFB=0
LOCK="${DECODELAB_LOCK:-/tmp/decodelab-benchmark.lock}"
while [ $# -gt 0 ]; do
  case "$1" in
    --bin) BIN="$2"; shift 2 ;;
    --deb) DEB="$2"; shift 2 ;;
    --chroot) CHROOT=1; shift ;;
    --xvfb) XVFB=1; shift ;;
    -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
    *) echo "smoke_test: unknown option $1" >&2; exit 2 ;;
  esac
done

say() { printf '==> %s\n' "$*"; }
fail() { printf 'smoke_test: FAILED: %s\n' "$*" >&2; exit 1; }
wait_for_lock() {
  while [ -e "$LOCK" ]; do say "waiting: $LOCK exists (a benchmark is running)"; sleep 30; done
}

WORK=$(mktemp -d "${TMPDIR:-/tmp}/decodelab-smoke.XXXXXX")
SHOTS="${SCREENSHOT_DIR:-$ROOT/build/smoke}"
mkdir -p "$SHOTS"

pick_model() {
  if [ -n "${MODEL:-}" ]; then echo "$MODEL"; return; fi
  local py
  for py in "$ROOT/.venv/bin/python" "$ROOT/build/pkg-venv/bin/python"; do
    if [ -x "$py" ] && "$py" -c 'import gguf' 2>/dev/null; then
      "$py" - "$WORK/models" "$ROOT/tests" <<'EOF'
import sys
sys.path.insert(0, sys.argv[2])
import tiny_models
print(tiny_models.dense_llama(sys.argv[1]))
EOF
      return
    fi
  done
  local smol="${DECODELAB_MODELS_DIR:-$HOME/.local/share/decodelab/models}/smollm2-135m.Q4_1.gguf"
  [ -f "$smol" ] && { echo "$smol"; return; }
  fail "no model: set MODEL=path/to/model.gguf"
}

# A PNG of at least 640x400 and 8 KB (an empty or black window compresses to far less).
check_png() {
  local png="$1" size w h
  [ -f "$png" ] || fail "no screenshot at $png"
  [ "$(head -c 8 "$png" | od -An -tx1 | tr -d ' \n')" = "89504e470d0a1a0a" ] \
    || fail "$png is not a PNG"
  size=$(stat -c %s "$png")
  w=$(( 16#$(od -An -tx1 -j16 -N4 "$png" | tr -d ' \n') ))
  h=$(( 16#$(od -An -tx1 -j20 -N4 "$png" | tr -d ' \n') ))
  [ "$w" -ge 640 ] && [ "$h" -ge 400 ] || fail "$png is only ${w}x${h}"
  [ "$size" -ge 8192 ] || fail "$png is only $size bytes: an empty window?"
  say "screenshot $png: ${w}x${h}, $size bytes"
}

timed() {  # timed LABEL SECONDS CMD...: run with a limit, print its time, keep its output
  local label="$1" limit="$2" t0 rc=0
  shift 2
  t0=$(date +%s%N)
  timeout --kill-after=10 "$limit" "$@" >"$WORK/$label.out" 2>"$WORK/$label.err" || rc=$?
  local ms=$(( ($(date +%s%N) - t0) / 1000000 ))
  printf '==> %-8s exit %s in %d.%01d s\n' "$label" "$rc" $((ms / 1000)) $((ms % 1000 / 100))
  if [ "$rc" != 0 ]; then
    tail -n 30 "$WORK/$label.out" "$WORK/$label.err" >&2
    fail "$label exited $rc"
  fi
}

run_checks() {
  local bin="$1" model="$2" shot="$3" platform="${4:-offscreen}"
  [ -x "$bin" ] || fail "no executable at $bin (build it: bash packaging/build_linux.sh)"
  export DECODELAB_HOME="$WORK/home" LANG=C.UTF-8 DECODELAB_REPORT_BACKEND=1
  export XDG_RUNTIME_DIR="$WORK/xdg-runtime"
  mkdir -p -m 700 "$XDG_RUNTIME_DIR"
  export QT_QPA_PLATFORM="$platform"
  say "testing $bin on $model (QT_QPA_PLATFORM=$platform)"
  printf 'def add(a, b):\n    return a + b\n\nRename add to plus.\n' > "$WORK/prompt.txt"

  timed version 60 "$bin" --version
  say "$(cat "$WORK/version.out")"
  timed inspect 120 "$bin" inspect "$model"
  grep -qi "llama" "$WORK/inspect.out" || fail "inspect did not report the llama architecture"
  timed run 180 "$bin" run --model "$model" --track baseline --max-tokens 8 \
    --prompt-file "$WORK/prompt.txt"
  grep -h "ggml CPU backend" "$WORK/run.err" | head -n1 || true
  tail -n 5 "$WORK/run.out"
  rm -f "$shot"
  local gui=("$bin" gui --model "$model" --track baseline --prompt-file "$WORK/prompt.txt" \
    --run --screenshot "$shot" --exit)
  if [ "$platform" = xcb ]; then
    timed gui-xcb 240 xvfb-run -a -s "-screen 0 1600x1000x24" "${gui[@]}"
  else
    timed gui 240 "${gui[@]}"
  fi
  check_png "$shot"
}

# ---------------------------------------------------------------- in a clean Debian root
if [ "$CHROOT" = 1 ]; then
  [ -n "$DEB" ] && [ -f "$DEB" ] || fail "--chroot needs --deb FILE"
  [ "$(id -u)" = 0 ] || fail "--chroot needs root"
  DEB="$(cd "$(dirname "$DEB")" && pwd)/$(basename "$DEB")"
  BASE="${DEB_ROOT_BASE:-$ROOT/build/deb-root-base}"
  MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
  if [ ! -x "$BASE/usr/bin/apt-get" ]; then
    command -v debootstrap >/dev/null \
      || DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap >/dev/null
    wait_for_lock
    say "debootstrap --variant=minbase bookworm $BASE (once)"
    t0=$(date +%s)
    rm -rf "$BASE"
    nice -n 19 debootstrap --variant=minbase bookworm "$BASE" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 \
      || { tail -n 20 "$WORK/debootstrap.log" >&2; fail "debootstrap"; }
    say "debootstrap took $(( $(date +%s) - t0 )) s"
  fi
  CR="$WORK/root"
  say "fresh copy of the clean root in $CR"
  cp -a "$BASE" "$CR"
  cleanup() {
    for m in "$CR/dev/pts" "$CR/dev" "$CR/proc" "$CR/sys"; do
      mountpoint -q "$m" && umount -l "$m"
    done
    rm -rf "$WORK"
  }
  trap cleanup EXIT
  mount --bind /dev "$CR/dev"
  mount --bind /dev/pts "$CR/dev/pts"
  mount -t proc proc "$CR/proc"
  mount -t sysfs sys "$CR/sys"
  cp /etc/resolv.conf "$CR/etc/resolv.conf"
  model=$(pick_model)
  mkdir -p "$CR/smoke"
  cp "$DEB" "$model" "$CR/smoke/"
  cp "$0" "$CR/smoke/smoke_test.sh"
  in_root() { chroot "$CR" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
    DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8 "$@"; }
  wait_for_lock
  t0=$(date +%s)
  in_root apt-get update -q >/dev/null
  in_root dpkg -i "/smoke/$(basename "$DEB")" >"$WORK/dpkg.log" 2>&1 || true
  grep -E "^dpkg: dependency problems|depends on" "$WORK/dpkg.log" | head -n 5 || true
  nice -n 19 chroot "$CR" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
    DEBIAN_FRONTEND=noninteractive apt-get -f install -y -q --no-install-recommends \
    >"$WORK/apt.log" 2>&1 || { tail -n 20 "$WORK/apt.log" >&2; fail "apt-get -f install"; }
  in_root dpkg -s decodelab | grep -q "^Status: install ok installed" \
    || fail "decodelab is not installed in the clean root"
  say "installed with its dependencies in $(( $(date +%s) - t0 )) s: $(grep -c '^Setting up' "$WORK/apt.log") packages set up"
  in_root test -L /usr/bin/decodelab || fail "/usr/bin/decodelab is not a link"
  in_root test -f /usr/share/applications/decodelab.desktop || fail "no .desktop file"
  in_root test -f /usr/share/icons/hicolor/scalable/apps/decodelab.svg || fail "no icon"
  if [ "$XVFB" = 1 ]; then
    say "installing the Recommends and Xvfb"
    recommends=$(in_root dpkg-query -W -f '${Recommends}' decodelab | tr -d ',' )
    in_root apt-get install -y -q --no-install-recommends xvfb xauth $recommends \
      >"$WORK/apt-xvfb.log" 2>&1 || { tail -n 20 "$WORK/apt-xvfb.log" >&2; fail "xvfb install"; }
  fi
  flags=(--bin /usr/bin/decodelab)
  [ "$XVFB" = 1 ] && flags+=(--xvfb)
  wait_for_lock
  nice -n 19 chroot "$CR" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
    LANG=C.UTF-8 MODEL="/smoke/$(basename "$model")" SCREENSHOT_DIR=/smoke/shots \
    bash /smoke/smoke_test.sh "${flags[@]}"
  mkdir -p "$SHOTS"
  for png in "$CR"/smoke/shots/*.png; do cp "$png" "$SHOTS/chroot-$(basename "$png")"; done
  say "clean-root screenshots in $SHOTS/chroot-*.png"
  say "PASSED in a clean Debian 12 root"
  exit 0
fi

# ---------------------------------------------------------------- here
trap 'rm -rf "$WORK"' EXIT
wait_for_lock
model=$(pick_model)
run_checks "$BIN" "$model" "$SHOTS/gui-offscreen.png" offscreen
if [ "$XVFB" = 1 ]; then
  command -v xvfb-run >/dev/null || fail "--xvfb needs xvfb-run (apt-get install xvfb xauth)"
  run_checks "$BIN" "$model" "$SHOTS/gui-xcb.png" xcb
fi
say "PASSED: $BIN"

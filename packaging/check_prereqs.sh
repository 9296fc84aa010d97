#!/usr/bin/env bash
# The system tools and libraries `make package` needs (packaging/build_linux.sh, then
# packaging/smoke_test.sh), checked in about a second, before anything is compiled.
#
#   bash packaging/check_prereqs.sh                  # exit 0 when all are there; otherwise
#       exit 1 with ONE line naming every missing one and the apt-get line that fixes them all
#   bash packaging/check_prereqs.sh --list-packages  # every Debian package it can ask for, on
#       one line: README's "Installers" section shows exactly this line
#   SKIP_DEB=1 ...                                   # bundle only: no dpkg-deb, no .desktop check
#   PYTHON=python3.12 ...                            # the Python the build venv is made with
#
# build_linux.sh sources this file and calls check_prereqs before its first step; the Makefile
# runs it before `make setup`, whose first install already compiles llama.cpp. The compiler is
# asked for even when the portable wheel is cached: one list for every build, the README's.
#
# Not checked, and why:
# - Debian's Essential tools the scripts also run (bash, coreutils, findutils, grep, sed, tar,
#   mawk, util-linux's setsid, libc-bin's ldd and ldconfig): dpkg refuses to remove them.
# - xz: dpkg-deb writes the .deb's xz members with its own liblzma and never runs `xz` (a build
#   with only dpkg-deb and tar on PATH makes control.tar.xz and data.tar.xz).
# - python3-dev: llama-cpp-python loads llama.cpp with ctypes (wheel.py-api = "py3"): no
#   Python C extension is compiled. libcurl: llama-cpp-python builds llama.cpp with
#   LLAMA_CURL=OFF. libgomp (OpenMP): comes with gcc, i.e. with build-essential.
# - git (BUILD-INFO.txt then says "commit: unknown"); xvfb-run and debootstrap (only for
#   smoke_test.sh --xvfb / --chroot, which install them when missing).

# "tool alternatives (any one will do):Debian package"
_PREREQ_TOOLS=(
  "cc gcc clang:build-essential"        # C compiler (llama.cpp)
  "c++ g++ clang++:build-essential"     # C++ compiler (llama.cpp)
  "make ninja:build-essential"          # CMake's build tool (scikit-build-core takes either)
  "cmake:cmake"
  "objdump:binutils"                    # PyInstaller's and build_linux.sh's ELF checks
  "readelf:binutils"
)
_PREREQ_DEB_TOOLS=(
  "desktop-file-validate:desktop-file-utils"
)
# "soname:Debian package": what Qt for Python loads from the system (make_icons.py renders the
# icons with QtGui, the smoke test runs the window offscreen); the .deb's Depends, minus libc6.
_PREREQ_LIBS=(
  "libglib-2.0.so.0:libglib2.0-0"
  "libGL.so.1:libgl1"
  "libEGL.so.1:libegl1"
  "libX11.so.6:libx11-6"
  "libdbus-1.so.3:libdbus-1-3"
  "libfontconfig.so.1:libfontconfig1"
  "libfreetype.so.6:libfreetype6"
  "libxkbcommon.so.0:libxkbcommon0"
)
_PREREQ_FONT_PACKAGE="fonts-dejavu-core"

# Every package check_prereqs can ask for, in the order it asks, each once.
prereq_packages() {
  local entry out=" "
  for entry in "${_PREREQ_TOOLS[@]}" "python3:python3" "venv:python3-venv" \
      "${_PREREQ_DEB_TOOLS[@]}" "${_PREREQ_LIBS[@]}" "font:$_PREREQ_FONT_PACKAGE"; do
    case "$out" in *" ${entry##*:} "*) ;; *) out+="${entry##*:} " ;; esac
  done
  out="${out# }"
  echo "${out% }"
}

# check_prereqs [WHO]: return 0 when everything is there; otherwise print one line to stderr,
# "WHO: missing A, B, ... (nothing was built); install them with: sudo apt-get install P Q ...",
# and return 1. Uses only bash builtins, PYTHON and ldconfig, so it runs in well under 5 s.
check_prereqs() {
  local IFS=$' \t\n'
  local who="${1:-check_prereqs}" entry names name found missing=() pkgs=() notes=()
  _prereq_need() {  # _prereq_need WHAT PACKAGE
    missing+=("$1")
    case " ${pkgs[*]} " in *" $2 "*) ;; *) pkgs+=("$2") ;; esac
  }

  # The compilers CMake will pick: $CC / $CXX when set, else the usual names.
  for entry in "${_PREREQ_TOOLS[@]}"; do
    names="${entry%%:*}"
    case "$names" in
      cc\ *) [ -n "${CC:-}" ] && names="${CC%% *}" ;;
      c++\ *) [ -n "${CXX:-}" ] && names="${CXX%% *}" ;;
    esac
    found=0
    for name in $names; do command -v "$name" >/dev/null 2>&1 && { found=1; break; }; done
    [ "$found" = 1 ] || _prereq_need "${names%% *}" "${entry##*:}"
  done

  # The Python for build/pkg-venv: 3.11+ (tomllib) with venv and ensurepip (Debian keeps
  # ensurepip in python3-venv, without it `python3 -m venv` fails).
  local py="${PYTHON:-python3}" pyver
  if ! command -v "$py" >/dev/null 2>&1; then
    if [ "$py" = python3 ]; then
      _prereq_need python3 python3
      _prereq_need python3-venv python3-venv
    else
      missing+=("$py")
      notes+=("PYTHON=$py is not on PATH")
    fi
  else
    pyver=$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || echo "?")
    if [ "$pyver" = "?" ]; then
      missing+=("$py")
      notes+=("$py does not run: set PYTHON to a Python 3.11 or newer")
    elif ! "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      missing+=("Python >= 3.11")
      notes+=("$py is $pyver: set PYTHON to a Python 3.11 or newer")
    elif ! "$py" -c 'import ensurepip, venv' 2>/dev/null; then
      # Debian: python3-venv for the default python3, pythonX.Y-venv for another one
      if [ "$py" = python3 ]; then
        _prereq_need "$py -m venv" python3-venv
      else
        _prereq_need "$py -m venv" "python${pyver}-venv"
      fi
    fi
  fi

  if [ "${SKIP_DEB:-0}" != 1 ]; then
    if ! command -v dpkg-deb >/dev/null 2>&1 || ! command -v dpkg >/dev/null 2>&1; then
      missing+=("dpkg-deb")
      notes+=("the .deb is built on Debian/Ubuntu only: SKIP_DEB=1 makes the bundle alone")
    fi
    for entry in "${_PREREQ_DEB_TOOLS[@]}"; do
      command -v "${entry%%:*}" >/dev/null 2>&1 || _prereq_need "${entry%%:*}" "${entry##*:}"
    done
  fi

  # Libraries: the dynamic linker's cache, else the usual folders (a non-Debian layout).
  local ldconfig cache=""
  ldconfig=$(command -v ldconfig 2>/dev/null || true)
  for name in /sbin/ldconfig /usr/sbin/ldconfig; do
    [ -n "$ldconfig" ] || { [ -x "$name" ] && ldconfig="$name"; }
  done
  [ -n "$ldconfig" ] && cache=$("$ldconfig" -p 2>/dev/null || true)
  local lib
  for entry in "${_PREREQ_LIBS[@]}"; do
    lib="${entry%%:*}"
    case "$cache" in *"	$lib "*) continue ;; esac
    compgen -G "/usr/lib/*/$lib" >/dev/null || compgen -G "/usr/lib/$lib" >/dev/null \
      || compgen -G "/usr/lib64/$lib" >/dev/null || compgen -G "/lib/*/$lib" >/dev/null \
      || _prereq_need "$lib" "${entry##*:}"
  done
  # Qt draws the window's text with whatever font fontconfig finds.
  compgen -G "/usr/share/fonts/*/*/*.[ot]tf" >/dev/null \
    || compgen -G "/usr/share/fonts/*/*.[ot]tf" >/dev/null \
    || _prereq_need "a font" "$_PREREQ_FONT_PACKAGE"

  unset -f _prereq_need
  [ "${#missing[@]}" = 0 ] && return 0
  local line sudo="" note
  [ "$EUID" = 0 ] || sudo="sudo "
  line="$who: missing ${missing[0]}"
  for name in "${missing[@]:1}"; do line+=", $name"; done
  line+=" (nothing was built)"
  [ "${#pkgs[@]}" = 0 ] || line+="; install them with: ${sudo}apt-get install ${pkgs[*]}"
  for note in "${notes[@]}"; do line+="; $note"; done
  printf '%s\n' "$line" >&2
  return 1
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  case "${1:-}" in
    --list-packages) prereq_packages ;;
    "") check_prereqs check_prereqs ;;
    -h|--help) sed -n '2,14p' "$0" ;;
    *) echo "check_prereqs: unknown option $1" >&2; exit 2 ;;
  esac
fi

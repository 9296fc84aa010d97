#!/usr/bin/env bash
# Build DecodeLab for macOS (Apple Silicon): dist/DecodeLab.app and dist/DecodeLab-<version>-macos-arm64.dmg.
#
#   bash packaging/macos/build_macos.sh
#
# Needs: Python 3.11+ (python3), Xcode command line tools (clang, cmake via pip or brew),
# hdiutil (part of macOS). The .app comes from the BUNDLE section of packaging/decodelab.spec
# (the same spec as Linux and Windows). llama-cpp-python is compiled here with Metal (its
# CMakeLists turns Metal on for Apple) and GGML_NATIVE=OFF so the build runs on every Apple
# Silicon Mac, not only the runner's generation.
#
# Signing: ad hoc by default (runs on the machine that downloads it after "Open" in the
# Finder's context menu). With MACOS_SIGN_IDENTITY="Developer ID Application: ..." the app is
# signed with the hardened runtime; notarise the .dmg afterwards with `xcrun notarytool`.
# Not run on Linux: written for the GitHub Actions macos runner (.github/workflows/build.yml).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
START=$(date +%s)
VERSION=$(python3 -c 'import tomllib; print(tomllib.load(open("pyproject.toml","rb"))["project"]["version"])')
ARCH=$(uname -m)
VENV="$ROOT/build/pkg-venv"
PY="$VENV/bin/python"

[ -x "$PY" ] || python3 -m venv "$VENV"
"$PY" -m pip install --upgrade pip
CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_METAL=ON" \
  "$PY" -m pip install --no-cache-dir --no-binary llama-cpp-python "llama-cpp-python==0.3.36"
"$PY" -m pip install -e ".[package,test]"

QT_QPA_PLATFORM=offscreen "$PY" packaging/make_icons.py build/icons
if [ ! -f build/icons/decodelab.icns ]; then  # Qt could not write icns: Apple's tool can
  iconutil -c icns -o build/icons/decodelab.icns build/icons/decodelab.iconset
fi

rm -rf dist/decodelab dist/DecodeLab.app
"$PY" -m PyInstaller --noconfirm --clean --distpath dist --workpath build/pyinstaller \
  packaging/decodelab.spec
APP="dist/DecodeLab.app"
[ -x "$APP/Contents/MacOS/decodelab" ] || { echo "no $APP" >&2; exit 1; }

# How it was built, for Help > About (app/core/about.py looks in Contents/Resources);
# written before signing, which seals the bundle.
mkdir -p "$APP/Contents/Resources"
cat > "$APP/Contents/Resources/BUILD-INFO.txt" <<EOF
name: decodelab
version: $VERSION
llama-cpp-python: 0.3.36
llama.cpp build: GGML_NATIVE=OFF, GGML_METAL=ON
built on: $(date -u +%Y-%m-%dT%H:%M:%SZ), macOS $(sw_vers -productVersion) $ARCH
commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)
EOF

if [ -n "${MACOS_SIGN_IDENTITY:-}" ]; then
  codesign --force --deep --options runtime --timestamp -s "$MACOS_SIGN_IDENTITY" "$APP"
else
  codesign --force --deep -s - "$APP"
fi
codesign --verify --deep --strict "$APP"

# The .dmg: the app and a link to /Applications to drag it onto.
STAGE="build/dmg"
DMG="dist/DecodeLab-$VERSION-macos-$ARCH.dmg"
rm -rf "$STAGE" "$DMG" && mkdir -p "$STAGE"
cp -R "$APP" "$STAGE/"
ln -s /Applications "$STAGE/Applications"
hdiutil create -volname "DecodeLab $VERSION" -srcfolder "$STAGE" -fs HFS+ -format UDZO -ov "$DMG"

echo "==> built in $(( $(date +%s) - START )) s: $DMG ($(du -h "$DMG" | cut -f1)), app $(du -sh "$APP" | cut -f1)"

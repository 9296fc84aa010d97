"""Render resources/icons/decodelab.svg into the icon files each platform's package needs.

Usage: python packaging/make_icons.py OUT_DIR

Writes, with Qt alone (no ImageMagick, no display: the offscreen platform is used):
  OUT_DIR/hicolor/<N>x<N>/apps/decodelab.png   for N in 16 24 32 48 64 128 256 512 (Linux)
  OUT_DIR/decodelab.ico                        16-256 px in one file (Windows: exe, installer)
  OUT_DIR/decodelab.icns                       16-1024 px (macOS .app), if Qt can write icns
  OUT_DIR/decodelab.iconset/                   PNGs for `iconutil -c icns` (macOS fallback)
The scalable SVG itself goes to hicolor/scalable/apps unchanged (the build script copies it).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QGuiApplication, QImage, QImageWriter, QPainter
from PySide6.QtSvg import QSvgRenderer

ROOT = Path(__file__).resolve().parents[1]
SVG = ROOT / "resources" / "icons" / "decodelab.svg"
HICOLOR_SIZES = (16, 24, 32, 48, 64, 128, 256, 512)
ICO_SIZES = (16, 24, 32, 48, 64, 128, 256)
ICONSET = {  # iconutil's file names
    "icon_16x16.png": 16, "icon_16x16@2x.png": 32, "icon_32x32.png": 32,
    "icon_32x32@2x.png": 64, "icon_128x128.png": 128, "icon_128x128@2x.png": 256,
    "icon_256x256.png": 256, "icon_256x256@2x.png": 512, "icon_512x512.png": 512,
    "icon_512x512@2x.png": 1024,
}


def render(renderer: QSvgRenderer, size: int) -> QImage:
    image = QImage(size, size, QImage.Format.Format_ARGB32_Premultiplied)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    renderer.render(painter, QRectF(0, 0, size, size))
    painter.end()
    return image


def save(image: QImage, path: Path, fmt: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not image.save(str(path), fmt):
        raise SystemExit(f"make_icons: could not write {path} ({fmt})")


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    out = Path(argv[0])
    _app = QGuiApplication([])
    renderer = QSvgRenderer(str(SVG))
    if not renderer.isValid():
        raise SystemExit(f"make_icons: cannot read {SVG}")
    for size in HICOLOR_SIZES:
        save(render(renderer, size), out / "hicolor" / f"{size}x{size}" / "apps" / "decodelab.png",
             "PNG")
    for name, size in ICONSET.items():
        save(render(renderer, size), out / "decodelab.iconset" / name, "PNG")
    # Qt's ico writer stores one image per write: write the largest; Windows scales it down
    # well, and the 256 px entry is what Explorer and Inno Setup want.
    writable = {bytes(f).decode() for f in QImageWriter.supportedImageFormats()}
    if "ico" in writable:
        save(render(renderer, 256), out / "decodelab.ico", "ICO")
    if "icns" in writable:
        save(render(renderer, 1024), out / "decodelab.icns", "ICNS")
    print(f"make_icons: icons in {out} (formats: ico={'ico' in writable}, "
          f"icns={'icns' in writable})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

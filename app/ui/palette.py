"""Light and dark: which theme the system palette asks for, the colours of each, and the
contrast arithmetic (WCAG 2.x) that the tests and the token view use.

The window follows the application palette (the system's, or one set on the QApplication):
a dark Window role means the dark theme. The style sheet (``resources/style.qss``) names
theme colours as ``@name@`` and palette roles as ``palette(role)``; ``stylesheet`` fills the
names in for the theme, so no background is hard-coded light. Text colours here meet WCAG
AA (4.5:1) against the background they are drawn on; ``tests/ui/test_dark_mode.py`` checks
it on both palettes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields

from PySide6.QtGui import QColor, QGuiApplication, QPalette

from app.ui.resources import read_text

AA = 4.5  # WCAG AA for normal text
AA_GRAPHIC = 3.0  # WCAG 1.4.11 for a graphical mark (the rejected-draft marker)


def luminance(colour: QColor | str) -> float:
    """WCAG relative luminance of an opaque colour."""
    c = QColor(colour)

    def channel(v: float) -> float:
        return v / 12.92 if v <= 0.04045 else ((v + 0.055) / 1.055) ** 2.4

    return (0.2126 * channel(c.redF()) + 0.7152 * channel(c.greenF())
            + 0.0722 * channel(c.blueF()))


def contrast(a: QColor | str, b: QColor | str) -> float:
    """WCAG contrast ratio of two colours (1 to 21)."""
    la, lb = luminance(a), luminance(b)
    hi, lo = max(la, lb), min(la, lb)
    return (hi + 0.05) / (lo + 0.05)


def composite(fg: QColor | str, bg: QColor | str) -> QColor:
    """``fg`` (which may be translucent) as it shows over the opaque ``bg``."""
    f, b = QColor(fg), QColor(bg)
    a = f.alphaF()
    return QColor.fromRgbF(a * f.redF() + (1 - a) * b.redF(),
                           a * f.greenF() + (1 - a) * b.greenF(),
                           a * f.blueF() + (1 - a) * b.blueF())


def mix(a: QColor | str, b: QColor | str, t: float) -> QColor:
    """``t`` of ``a`` and ``1 - t`` of ``b``."""
    x = QColor(a)
    x.setAlphaF(t)
    return composite(x, b)


def readable(preferred: QColor | str, background: QColor | str, ratio: float = AA) -> QColor:
    """``preferred`` if it reads on ``background`` at ``ratio``, else black or white,
    whichever reads better."""
    fg = QColor(preferred)
    if contrast(fg, background) >= ratio:
        return fg
    black, white = QColor("#000000"), QColor("#ffffff")
    return black if contrast(black, background) >= contrast(white, background) else white


def is_dark(palette: QPalette | None = None) -> bool:
    """True when the (application's) palette is a dark one."""
    p = palette if palette is not None else QGuiApplication.palette()
    return p.color(QPalette.ColorRole.Window).lightness() < 128


@dataclass(frozen=True)
class Theme:
    """The colours the window draws itself (all else comes from the palette)."""

    title: str  # section titles, verdicts
    hint: str  # secondary text (on the window and on group boxes)
    reason: str  # why something is unavailable
    group_bg: str  # a palette role: on a dark palette Base is the inputs' colour
    group_border: str
    ssm_bg: str
    ssm_border: str
    error_bg: str
    error_border: str
    refused_bg: str
    refused_border: str
    info_bg: str
    info_border: str
    rejected_fg: str  # a rejected draft shown inline (struck through)
    rejected_bg: str
    marker: str  # the rejected-draft marker between characters
    note: str  # notes in the answer ("cancelled — partial answer")
    unknown_bg: str  # an accepted token of a source that is not registered
    alt_text: str  # every other token's text colour: token boundaries show, faintly
    plot_bg: str
    plot_fg: str
    legend_bg: tuple[int, int, int, int]


LIGHT = Theme(
    title="#1f3a5f", hint="#4f5966", reason="#8a4d00", group_bg="palette(base)",
    group_border="#c9ced6",
    ssm_bg="#fff4d6", ssm_border="#e3c36b", error_bg="#fde7e7", error_border="#e09a9a",
    refused_bg="#fff0e0", refused_border="#e6b27a", info_bg="#e6f1fb", info_border="#9cc3e6",
    rejected_fg="#8e2a2a", rejected_bg="#fbeeee", marker="#d0312d", note="#58606b",
    unknown_bg="#e0e0e0", alt_text="#2d4a80", plot_bg="#ffffff", plot_fg="#3a4250",
    legend_bg=(255, 255, 255, 210),
)
DARK = Theme(
    title="#a8ccf5", hint="#b0b8c3", reason="#f2b766", group_bg="palette(window)",
    group_border="#4a4f57",
    ssm_bg="#4a3d12", ssm_border="#8a7030", error_bg="#4d2222", error_border="#a05050",
    refused_bg="#4a3218", refused_border="#a0703a", info_bg="#1d3550", info_border="#4a7ab0",
    rejected_fg="#ffb4b4", rejected_bg="#4a2222", marker="#ff6f66", note="#aab2bd",
    unknown_bg="#4a4a4a", alt_text="#a9c4ec", plot_bg="#1e1f22", plot_fg="#c8ccd2",
    legend_bg=(30, 31, 34, 210),
)


def theme(dark: bool | None = None) -> Theme:
    return DARK if (is_dark() if dark is None else dark) else LIGHT


_NAME = re.compile(r"@([a-z_]+)@")


def stylesheet(template: str, dark: bool | None = None) -> str:
    """The style sheet ``template`` with its ``@name@`` colours filled in for the theme."""
    values = {f.name: getattr(theme(dark), f.name) for f in fields(Theme)}
    return _NAME.sub(lambda m: str(values.get(m.group(1), m.group(0))), template)


def sample_dark_palette() -> QPalette:
    """A typical system dark palette (the roles a desktop's dark scheme sets), for tests
    and screenshots on machines whose own palette is light. The placeholder is left to
    Qt's default, as a system palette may: ``apply_theme`` makes it readable."""
    role = QPalette.ColorRole
    p = QPalette()
    for r, colour in ((role.Window, "#2b2d30"), (role.WindowText, "#e6e6e6"),
                      (role.Base, "#1e1f22"), (role.AlternateBase, "#26282b"),
                      (role.Text, "#e6e6e6"), (role.Button, "#3a3c40"),
                      (role.ButtonText, "#e6e6e6"), (role.BrightText, "#ffffff"),
                      (role.Highlight, "#2f65ca"), (role.HighlightedText, "#ffffff"),
                      (role.ToolTipBase, "#3a3c40"), (role.ToolTipText, "#e6e6e6"),
                      (role.Light, "#505257"), (role.Midlight, "#45474b"),
                      (role.Mid, "#3a3c40"), (role.Dark, "#1a1b1d"), (role.Shadow, "#000000"),
                      (role.Link, "#6ea8fe"), (role.LinkVisited, "#b39ddb")):
        p.setColor(r, QColor(colour))
    for r in (role.WindowText, role.Text, role.ButtonText):
        p.setColor(QPalette.ColorGroup.Disabled, r, QColor("#85878b"))
    return p


def readable_placeholder(palette: QPalette) -> QColor | None:
    """A placeholder colour that reads on the palette's Base at AA, as close to the
    palette's own as can be; None if the palette's own already reads."""
    role, base = QPalette.ColorRole, palette.color(QPalette.ColorRole.Base)
    shown = composite(palette.color(role.PlaceholderText), base)
    if contrast(shown, base) >= AA:
        return None
    text = palette.color(role.Text)
    for step in range(50, 101, 5):
        colour = mix(text, base, step / 100)
        if contrast(colour, base) >= AA:
            return colour
    return text


def apply_theme(app: QGuiApplication) -> None:
    """The style sheet for the palette's theme, and a placeholder text that reads."""
    from PySide6.QtWidgets import QApplication

    palette = app.palette()
    placeholder = readable_placeholder(palette)
    if placeholder is not None:
        palette.setColor(QPalette.ColorRole.PlaceholderText, placeholder)
        app.setPalette(palette)
    if isinstance(app, QApplication):
        app.setStyleSheet(stylesheet(read_text("style.qss"), is_dark(palette)))

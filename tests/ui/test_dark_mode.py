"""Light and dark: the window follows the application palette, and its text reads.

Both palettes are rendered with the real style sheet (``apply_theme``): the answer's text
against the background actually painted behind it, each draft source's accepted-token
colour against the text drawn on it, placeholder text, the plots' background and axes.
WCAG AA is 4.5:1 for text."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from PySide6.QtCore import QPoint
from PySide6.QtGui import QColor, QGuiApplication, QPalette, QTextCursor
from PySide6.QtWidgets import QApplication

from app.core.drafting.registry import sources
from app.core.events import RejectionEvent, TokenEvent
from app.ui.main_window import MainWindow
from app.ui.palette import (
    AA,
    AA_GRAPHIC,
    DARK,
    LIGHT,
    apply_theme,
    composite,
    contrast,
    is_dark,
    sample_dark_palette,
)
from app.ui.plots import LivePlots
from app.ui.settings import GuiSettings
from app.ui.token_view import PROP_KIND, PROP_SOURCE, TokenView, source_colour


@pytest.fixture(params=["light", "dark"])
def palette(request: Any) -> Iterator[str]:
    """The application in the light (Fusion) or a dark palette, styled by the window's
    style sheet; put back as it was afterwards."""
    app = QApplication.instance()
    assert isinstance(app, QApplication)
    before_palette, before_sheet = app.palette(), app.styleSheet()
    if request.param == "dark":
        app.setPalette(sample_dark_palette())
    apply_theme(app)
    try:
        yield request.param
    finally:
        app.setStyleSheet(before_sheet)
        app.setPalette(before_palette)


def answer_events() -> list[Any]:
    """A target token, an accepted token of every registered source, a rejected draft."""
    out: list[Any] = [TokenEvent(1, "def mean(xs):", 0, "target", None, 0, 0.0)]
    for i, src in enumerate(sources(), start=1):
        out.append(TokenEvent(10 + i, f" {src.id}_token", i, "accepted", src.id, 1, 0.0))
    out.append(RejectionEvent(99, "\n    nope", len(out), "lookup", 2))
    return out


def test_answer_text_and_source_colours_read_in_both_palettes(qtbot: Any, palette: str) -> None:
    assert is_dark() == (palette == "dark")
    view = TokenView()
    qtbot.addWidget(view)
    view.resize(700, 240)
    view.show()
    qtbot.waitExposed(view)
    view.append(answer_events())
    edit = view.edit
    text = edit.palette().color(QPalette.ColorRole.Text)
    image = edit.viewport().grab().toImage()
    # What is painted behind the answer (style sheet included), far from any text.
    painted = image.pixelColor(image.width() - 3, image.height() - 3)
    assert contrast(text, painted) >= AA, (text.name(), painted.name())
    assert (painted.lightness() < 128) == (palette == "dark")

    seen: set[str] = set()
    block = edit.document().begin()
    while block.isValid():
        it = block.begin()
        while not it.atEnd():
            frag = it.fragment()
            f = frag.charFormat()
            if f.stringProperty(PROP_KIND) == "accepted":
                source = f.stringProperty(PROP_SOURCE)
                bg = f.background().color()
                fg = f.foreground().color() if f.hasProperty(f.Property.ForegroundBrush) \
                    else text
                assert bg == QColor(source_colour(source))
                assert contrast(fg, bg) >= AA, (source, fg.name(), bg.name())
                # ... and that colour is what is painted behind the token.
                cursor = QTextCursor(edit.document())
                cursor.setPosition(frag.position() + 1)
                rect = edit.cursorRect(cursor)
                assert image.pixelColor(QPoint(rect.left() + 1, rect.bottom() - 1)) == bg
                seen.add(source)
            it += 1
        block = block.next()
    assert seen == {s.id for s in sources()}
    base = edit.palette().color(QPalette.ColorRole.Base)
    assert contrast(edit.marker_colour, base) >= AA_GRAPHIC
    placeholder = composite(edit.palette().color(QPalette.ColorRole.PlaceholderText), base)
    assert contrast(placeholder, base) >= AA


def test_plots_follow_the_palette(qtbot: Any, palette: str) -> None:
    from app.ui.plots import apply_plot_defaults

    apply_plot_defaults()
    plots = LivePlots()
    qtbot.addWidget(plots)
    bg = plots.tps.backgroundBrush().color()
    assert (bg.lightness() < 128) == (palette == "dark")
    axis = plots.tps.getPlotItem().getAxis("left")
    assert contrast(axis.textPen().color(), bg) >= AA


def test_the_theme_colours_meet_aa_on_their_backgrounds() -> None:
    for theme, window, base in ((LIGHT, "#efefef", "#ffffff"), (DARK, "#2b2d30", "#1e1f22")):
        for colour in (theme.title, theme.hint, theme.reason, theme.note):
            assert contrast(colour, window) >= AA and contrast(colour, base) >= AA, colour
        assert contrast(theme.rejected_fg, theme.rejected_bg) >= AA
        assert contrast(theme.plot_fg, theme.plot_bg) >= AA
        text = "#000000" if theme is LIGHT else "#e6e6e6"
        for bg in (theme.ssm_bg, theme.error_bg, theme.refused_bg, theme.info_bg,
                   theme.unknown_bg):
            assert contrast(text, bg) >= AA, bg


def test_the_window_restyles_when_the_palette_turns_dark(
    qtbot: Any, gui_settings: GuiSettings
) -> None:
    app = QGuiApplication.instance()
    assert isinstance(app, QApplication)
    before = app.palette()
    w = MainWindow(gui_settings, restore=False)
    qtbot.addWidget(w)
    w.show()
    try:
        assert w.plots.tps.backgroundBrush().color().lightness() >= 128
        app.setPalette(sample_dark_palette())
        qtbot.waitUntil(lambda: w.plots.tps.backgroundBrush().color().lightness() < 128)
        assert DARK.marker == w.token_view.edit.marker_colour.name()
    finally:
        app.setPalette(before)
        w.close()

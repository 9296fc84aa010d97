"""Between the window and its remembered state (``GuiSettings``): what is restored on start
and captured on close. Models are restored only if their files still exist."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QByteArray

from app.core.tracks import find_track
from app.ui.settings import GuiSettings

if TYPE_CHECKING:
    from app.ui.main_window import MainWindow


def _b64(data: QByteArray) -> str:
    return bytes(data.toBase64().data()).decode()


def _bytes(text: str) -> QByteArray:
    return QByteArray.fromBase64(text.encode())


def restore(w: MainWindow, s: GuiSettings) -> None:
    if s.geometry:
        w.restoreGeometry(_bytes(s.geometry))
    if s.window_state:
        w.restoreState(_bytes(s.window_state))
    for name, splitter in (("main", w.splitter), ("center", w.center)):
        if isinstance(s.splitters.get(name), str):
            splitter.restoreState(_bytes(s.splitters[name]))
    w.tracks.settings.load(s.run)
    track = find_track(s.track)
    w.tracks.preferred = track.id if track is not None and not track.deprecated else "baseline"
    w.prompt.text.setPlainText(s.prompt if isinstance(s.prompt, str) else "")
    w.prompt.system.setText(s.system if isinstance(s.system, str) else "")
    w.token_view.show_rejected.setChecked(bool(s.show_rejected))
    w.restore_chat_choice(s.chat if isinstance(s.chat, bool) else None)
    if isinstance(s.target, str) and Path(s.target).is_file():
        w.set_target(s.target)
    if isinstance(s.draft, str) and Path(s.draft).is_file():
        w.set_draft(s.draft)


def capture(w: MainWindow, s: GuiSettings) -> None:
    s.geometry = _b64(w.saveGeometry())
    s.window_state = _b64(w.saveState())
    s.splitters = {name: _b64(sp.saveState())
                   for name, sp in (("main", w.splitter), ("center", w.center))}
    s.target, s.draft = w.target_path, w.draft_path
    s.track = w.tracks.preferred
    s.run = w.tracks.settings.dump()
    if w.prompt.chat.isEnabled():
        s.chat = w.prompt.chat.isChecked()
    s.system = w.prompt.system.text()
    s.prompt = w.prompt.prompt()
    s.show_rejected = w.token_view.show_rejected.isChecked()

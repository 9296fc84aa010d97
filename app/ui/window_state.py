"""Between the window and its remembered state (``GuiSettings``): what is restored on start
and captured on close. Models are restored only if their files still exist; the remote
workers are listed again (not contacted until tested or used)."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QByteArray
from PySide6.QtWidgets import QMainWindow, QSplitter

from app.core.chat.render import DEFAULT_SYSTEM
from app.core.tracks import find_track
from app.ui.model_panel import ModelPanel
from app.ui.prompt_editor import PromptEditor
from app.ui.settings import GuiSettings
from app.ui.state import WorkbenchState
from app.ui.token_view import TokenView
from app.ui.track_panel import TrackPanel


def _b64(data: QByteArray) -> str:
    return bytes(data.toBase64().data()).decode()


def _bytes(text: str) -> QByteArray:
    return QByteArray.fromBase64(text.encode())


class WindowMemory:
    """The remembered parts of the window: its geometry and splitters, the chosen models
    (through the workbench state), the track and its settings, the prompt and its system
    message, the token view's switch, and the remote workers."""

    def __init__(self, window: QMainWindow, splitters: dict[str, QSplitter],
                 state: WorkbenchState, tracks: TrackPanel, prompt: PromptEditor,
                 tokens: TokenView, models: ModelPanel | None = None) -> None:
        self.window, self.splitters, self.state = window, splitters, state
        self.tracks, self.prompt, self.tokens = tracks, prompt, tokens
        self.models = models

    def restore(self, s: GuiSettings) -> None:
        w = self.window
        if s.geometry:
            w.restoreGeometry(_bytes(s.geometry))
        if s.window_state:
            w.restoreState(_bytes(s.window_state))
        for name, splitter in self.splitters.items():
            if isinstance(s.splitters.get(name), str):
                splitter.restoreState(_bytes(s.splitters[name]))
        self.tracks.settings.load(s.run)
        track = find_track(s.track)
        self.tracks.preferred = track.id if track is not None and not track.deprecated \
            else "baseline"
        self.prompt.text.setPlainText(s.prompt if isinstance(s.prompt, str) else "")
        self.prompt.set_system_setting(s.system_message)
        if self.models is not None and s.workers:
            self.models.set_workers(s.workers)
        self.tokens.show_rejected.setChecked(bool(s.show_rejected))
        self.prompt.restore_chat_choice(s.chat if isinstance(s.chat, bool) else None)
        if isinstance(s.target, str) and Path(s.target).is_file():
            self.state.set_target(s.target)
        if isinstance(s.draft, str) and Path(s.draft).is_file():
            self.state.set_draft(s.draft)

    def capture(self, s: GuiSettings) -> None:
        w = self.window
        s.geometry = _b64(w.saveGeometry())
        s.window_state = _b64(w.saveState())
        s.splitters = {name: _b64(sp.saveState()) for name, sp in self.splitters.items()}
        s.target, s.draft = self.state.target_path, self.state.draft_path
        s.track = self.tracks.preferred
        s.run = self.tracks.settings.dump()
        if self.prompt.chat.isEnabled():
            s.chat = self.prompt.chat.isChecked()
        text = self.prompt.system.text().strip()
        s.system_message = None if text == DEFAULT_SYSTEM else text
        if self.models is not None:
            s.workers = self.models.workers.endpoints()
        s.prompt = self.prompt.prompt()
        s.show_rejected = self.tokens.show_rejected.isChecked()

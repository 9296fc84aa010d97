"""The workbench window: wiring of the panels, the engine lane and the remembered state.

Views hold layout only; this class connects them: a model choice goes to the engine lane
for inspection (and a compatibility survey of the draft candidates), the results update the
metadata, the track availability and the SSM rule; Run builds the settings and hands them to
the run controller. Nothing here calls llama.cpp.
"""

from __future__ import annotations

import logging
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QCloseEvent
from PySide6.QtWidgets import (
    QDockWidget,
    QLabel,
    QMainWindow,
    QProgressBar,
    QScrollArea,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from app.ui import window_state
from app.ui.banner import Banner, ssm_banner_text
from app.ui.lab import Lab
from app.ui.log_panel import LogPanel
from app.ui.menus import build_menus
from app.ui.model_panel import ModelPanel, norm
from app.ui.plots import LivePlots, SummaryPanel
from app.ui.prompt_editor import PromptEditor
from app.ui.run_controller import RunController
from app.ui.settings import GuiSettings
from app.ui.token_view import TokenView
from app.ui.track_panel import TrackPanel, label_of
from app.ui.worker import EngineHost, FetchHost

log = logging.getLogger("app.ui")


class MainWindow(QMainWindow):
    run_ended = Signal(object)  # RunResult | None (failed)
    models_settled = Signal()  # every queued inspection has come back

    def __init__(self, settings: GuiSettings | None = None, log_file: str = "",
                 restore: bool = True) -> None:
        super().__init__()
        self.setWindowTitle("DecodeLab")
        self.resize(1480, 940)
        self.gui_settings = settings or GuiSettings.load()
        self.target_path: str | None = None
        self.draft_path: str | None = None
        self.target_info: Any | None = None
        self.draft_info: Any | None = None
        self.compat: dict[tuple[str, str], Any] = {}
        self._restore_chat: bool | None = None
        self._closed = False

        self.host = EngineHost(self)
        self.fetcher = FetchHost(self)
        self._build(log_file)
        self._wire()
        if restore:
            self._restore()
        self._refresh()
        self._report_set_aside()

    # -- layout ---------------------------------------------------------------------------------
    def _build(self, log_file: str) -> None:
        self.models = ModelPanel()
        self.tracks = TrackPanel()
        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(4, 4, 4, 4)
        left_layout.addWidget(self.models)
        left_layout.addWidget(self.tracks)
        left_layout.addStretch(1)
        self.left_scroll = QScrollArea()
        self.left_scroll.setWidget(left)
        self.left_scroll.setWidgetResizable(True)
        self.left_scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        # As wide as its content needs, so that the splitter never clips the panels.
        bar = self.left_scroll.verticalScrollBar().sizeHint().width()
        self.left_scroll.setMinimumWidth(left.minimumSizeHint().width() + bar + 4)

        self.prompt = PromptEditor()
        self.token_view = TokenView()
        self.center = QSplitter(Qt.Orientation.Vertical)
        self.center.addWidget(self.prompt)
        self.center.addWidget(self.token_view)
        self.center.setSizes([300, 600])

        self.summary = SummaryPanel()
        self.plots = LivePlots()
        right = QWidget()
        right_layout = QVBoxLayout(right)
        right_layout.setContentsMargins(0, 0, 0, 0)
        right_layout.addWidget(self.summary)
        right_layout.addWidget(self.plots, 1)

        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.addWidget(self.left_scroll)
        self.splitter.addWidget(self.center)
        self.splitter.addWidget(right)
        self.splitter.setStretchFactor(1, 1)
        self.splitter.setSizes([450, 600, 430])

        central = QWidget()
        central.setObjectName("Central")
        layout = QVBoxLayout(central)
        layout.setContentsMargins(6, 6, 6, 0)
        self.ssm_banner = Banner(closable=False)
        self.error_banner = Banner(closable=True)
        layout.addWidget(self.ssm_banner)
        layout.addWidget(self.error_banner)
        # Run is the splitter above; Compare, Sweep, Will it pay? and History sit beside it.
        self.lab = Lab(self, self.splitter)
        layout.addWidget(self.lab.tabs, 1)
        self.setCentralWidget(central)

        self.log_panel = LogPanel(log_file)
        self.log_dock = QDockWidget("Log", self)
        self.log_dock.setObjectName("LogDock")
        self.log_dock.setWidget(self.log_panel)
        self.log_dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetClosable)
        self.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, self.log_dock)
        self.resizeDocks([self.log_dock], [130], Qt.Orientation.Vertical)

        self.busy = QProgressBar()
        self.busy.setRange(0, 0)
        self.busy.setMaximumWidth(110)
        self.busy.setMaximumHeight(14)
        self.busy.hide()
        self.state_label = QLabel("")
        self.statusBar().addPermanentWidget(self.state_label)
        self.statusBar().addPermanentWidget(self.busy)
        self.runs = RunController(self.host, self.token_view, self.plots, self.summary, self)
        self.run_action, self.stop_action = build_menus(self)

    def _wire(self) -> None:
        self.models.target_chosen.connect(self.set_target)
        self.models.draft_chosen.connect(self.set_draft)
        self.models.fetch_requested.connect(self.fetch)
        self.models.fetch_cancel_requested.connect(self.fetcher.cancel)
        self.models.library_changed.connect(self._survey)
        self.tracks.track_changed.connect(lambda _t: self._update_run_enabled())
        self.tracks.settings.changed.connect(self._update_run_enabled)
        self.prompt.run_requested.connect(self.start_run)
        self.prompt.stop_requested.connect(self.stop_run)
        self.prompt.text.textChanged.connect(self._update_run_enabled)
        self.host.inspected.connect(self._inspected)
        self.host.inspect_failed.connect(self._inspect_failed)
        self.host.surveyed.connect(self._surveyed)
        self.host.busy_changed.connect(self._busy_changed)
        self.fetcher.progress.connect(self.models.fetch_progress)
        self.fetcher.finished.connect(self._fetched)
        self.fetcher.failed.connect(self._fetch_failed)
        self.runs.run_started.connect(self._run_started)
        self.runs.first_token.connect(lambda: self.state_label.setText("generating…"))
        self.runs.run_ended.connect(self._run_ended)
        self.runs.run_failed.connect(self._run_failed)
        self.lab.wire()

    # -- models -----------------------------------------------------------------------------------
    def set_target(self, path: str | None) -> None:
        """Use ``path`` as the target (inspected on the engine lane)."""
        path = norm(path) if path else None
        if self.models.target.current_path != path:
            self.models.use_path(self.models.target, path)  # emits target_chosen → here again
            return
        self.target_path, self.target_info = path, None
        self.models.show_target(None, "Inspecting…" if path else "No target model chosen.")
        if path:
            self.host.inspect("target", path)
            if self.draft_path and (path, self.draft_path) not in self.compat:
                self.host.check_pair(path, self.draft_path)
            self._survey()
        self._refresh()

    def set_draft(self, path: str | None) -> None:
        path = norm(path) if path else None
        if self.models.draft.current_path != path:
            self.models.use_path(self.models.draft, path)
            return
        self.draft_path, self.draft_info = path, None
        if path:
            self.models.show_draft(None, None, "Inspecting…")
            self.host.inspect("draft", path)
            if self.target_path and (self.target_path, path) not in self.compat:
                self.host.check_pair(self.target_path, path)
        self._refresh()

    def _survey(self) -> None:
        """Check every draft candidate against the target (marks in the draft picker)."""
        if self.target_path:
            target = self.target_path
            todo = [p for p in self.models.draft.paths() if (target, p) not in self.compat]
            if todo:
                self.host.survey(self.target_path, todo)
            self._mark_drafts()

    def _inspected(self, role: str, path: str, info: Any) -> None:
        if role == "target" and path == self.target_path:
            self.target_info = info
            self.models.show_target(info)
            chat, self._restore_chat = self._restore_chat, None
            self.prompt.set_template_available(info.has_chat_template, chat)
            self.setWindowTitle(f"DecodeLab — {info.file_name}")
        elif role == "draft" and path == self.draft_path:
            self.draft_info = info
        self._refresh()

    def _inspect_failed(self, role: str, path: str, message: str) -> None:
        if role == "target" and path == self.target_path:
            self.models.show_target(None, f"Could not read this model: {message}")
            self.show_error("error", f"Could not open the target model: {message}")
        elif role == "draft" and path == self.draft_path:
            self.models.show_draft(None, None, f"Could not read this model: {message}")
            self.show_error("error", f"Could not open the draft model: {message}")
        self._refresh()

    def _surveyed(self, target: str, results: dict[str, Any]) -> None:
        for path, compat in results.items():
            self.compat[(target, path)] = compat
        if target == self.target_path:
            self._mark_drafts()
            self._refresh()

    def _mark_drafts(self) -> None:
        marks: dict[str, tuple[bool | None, str]] = {}
        for (target, path), c in self.compat.items():
            if target != self.target_path:
                continue
            if isinstance(c, str):
                marks[path] = (False, f"cannot be read: {c}")
            else:
                failed = "\n".join(f"✗ {x.name}: {x.detail}" for x in c.failed)
                marks[path] = (c.compatible, "compatible with the target: every check passed"
                               if c.compatible else f"incompatible with the target:\n{failed}")
        self.models.draft.set_marks(marks)

    def current_compat(self) -> Any | None:
        if not (self.target_path and self.draft_path):
            return None
        c = self.compat.get((self.target_path, self.draft_path))
        return None if isinstance(c, str) else c

    def _refresh(self) -> None:
        """Re-derive everything that depends on the models: tracks, SSM rule, draft view."""
        target, compat = self.target_info, self.current_compat()
        draft = self.draft_info if self.draft_path else None
        self.tracks.set_models(target, draft, compat)
        banner = ssm_banner_text(target, draft)
        if banner:
            self.ssm_banner.show_message("ssm", banner)
        else:
            self.ssm_banner.hide()
        target_ssm = target is not None and not target.speculation_allowed
        running = self.runs.active
        why = target.speculation_reason if target is not None and target_ssm else ""
        self.models.set_draft_enabled(not target_ssm and not running, why)
        self.lab.refresh()
        if self.draft_path and (draft is not None or compat is not None):
            self.models.show_draft(draft, compat)
        elif not self.draft_path:
            self.models.show_draft(None, None)
        self._update_run_enabled()

    def _update_run_enabled(self) -> None:
        track = self.tracks.selected_track()
        ok = (self.target_info is not None and self.tracks.is_available(track.id)
              and self.tracks.settings.problem(track) is None
              and bool(self.prompt.prompt().strip()) and not self.lab.busy)
        self.prompt.set_running(self.runs.active, ok)
        self.run_action.setEnabled(ok and not self.runs.active)
        self.stop_action.setEnabled(self.runs.active)

    def _busy_changed(self, busy: bool) -> None:
        self.busy.setVisible(busy)
        if not busy and not self.runs.active:
            self.state_label.setText("")
            self.models_settled.emit()
        elif busy and not self.runs.active and not self.lab.busy:
            self.state_label.setText("inspecting…")

    # -- fetching ---------------------------------------------------------------------------------
    def fetch(self, name: str) -> None:
        if self.fetcher.fetch(name):
            self.models.fetch_started(name)

    def _fetched(self, name: str, path: str) -> None:
        self.models.fetch_ended(f"{name} is installed: {path}", True)
        if self.target_path is None:
            self.set_target(path)

    def _fetch_failed(self, name: str, message: str, cancelled: bool) -> None:
        self.models.fetch_ended(message, False)
        if not cancelled:
            self.show_error("error", f"Fetching {name} failed: {message}")

    # -- running ----------------------------------------------------------------------------------
    def start_run(self) -> bool:
        """Start the selected track on the prompt; False (and why, in the window) if not."""
        if self.runs.active or self.lab.busy:
            return False
        if self.target_path is None or self.target_info is None:
            self.show_error("refused", "Choose a target model first (it must be readable).")
            return False
        track = self.tracks.selected_track()
        if not self.tracks.is_available(track.id):
            self.show_error("refused", f"{track.label} is not available for these models.")
            return False
        text = self.prompt.prompt()
        if not text.strip():
            self.show_error("refused", "The prompt is empty.")
            return False
        s = self.tracks.settings.settings(track, self.target_info, self.prompt.use_chat(),
                                          self.prompt.system_message())
        self.error_banner.hide()
        return self.runs.start(self.target_path, self.draft_path, text, s)

    def stop_run(self) -> None:
        if self.runs.active:
            self.runs.stop()
            self.state_label.setText("stopping…")

    def _run_started(self) -> None:
        self.state_label.setText("loading the model and evaluating the prompt…")
        self.models.set_locked(True)
        self.tracks.set_locked(True)
        self._update_run_enabled()

    def _run_ended(self, result: Any) -> None:
        self.models.set_locked(False)
        self.tracks.set_locked(False)
        self._refresh()
        if result is not None:
            self.state_label.setText("")
            self.statusBar().showMessage(
                f"{label_of(result.track)}: {result.n_generated} tokens, "
                f"{result.tokens_per_second:.1f} tok/s, stopped: {result.stop_reason}", 15000)
        self.run_ended.emit(result)

    def _run_failed(self, kind: str, message: str) -> None:
        self.state_label.setText("")
        self.show_error("refused" if kind == "refused" else "error",
                        ("Refused: " if kind == "refused" else "The run failed: ") + message)

    def show_error(self, level: str, message: str) -> None:
        log.warning("%s", message)
        self.error_banner.show_message(level, message)
        self.statusBar().showMessage(message.splitlines()[0][:200], 10000)

    # -- remembered state -------------------------------------------------------------------------
    def _restore(self) -> None:
        window_state.restore(self, self.gui_settings)

    def _report_set_aside(self) -> None:
        """Say (banner, status bar, log) which damaged stored files were set aside at start:
        the window settings, the model library, history records."""
        found = [self.gui_settings.set_aside, self.models.library.set_aside,
                 *self.lab.history.history.problems()]
        lines = [str(p) for p in found if p is not None]
        if lines:
            self.show_error("info", "Set aside as damaged: " + " | ".join(lines))

    def restore_chat_choice(self, chat: bool | None) -> None:
        """The user's last chat-template choice, applied when the first target is read."""
        self._restore_chat = chat

    def save_settings(self) -> None:
        window_state.capture(self, self.gui_settings)
        self.gui_settings.save()

    def shutdown(self) -> None:
        """Stop the lanes and save the state; safe to call more than once."""
        if self._closed:
            return
        self._closed = True
        self.runs.stop()
        self.runs.timer.stop()
        self.lab.shutdown()
        self.save_settings()
        self.log_panel.detach()
        self.fetcher.shutdown()
        self.host.shutdown()

    def closeEvent(self, event: QCloseEvent) -> None:
        self.shutdown()
        super().closeEvent(event)

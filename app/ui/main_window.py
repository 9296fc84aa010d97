"""The workbench window: it builds the panels, lays them out and wires them.

It keeps no model state: the chosen models, what is known of them, which tracks can run and
whether the engine is held live in the workbench state (``self.state``), which the panels
and views observe; all work on llama.cpp goes through the engine lane (``self.lane``). The
Run tab's controller decides when Run can start and starts it; the lab runs the other tabs.
What is left here: the banners, the status bar, fetching pinned models, and the remembered
window state.
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

from app.ui.banner import Banner, ssm_banner_text
from app.ui.lab import Lab
from app.ui.lane import Lane
from app.ui.log_panel import LogPanel
from app.ui.menus import build_menus
from app.ui.model_panel import ModelPanel
from app.ui.plots import LivePlots, SummaryPanel
from app.ui.prompt_editor import PromptEditor
from app.ui.run_controller import RUN, RunController
from app.ui.settings import GuiSettings
from app.ui.state import WorkbenchState
from app.ui.token_view import TokenView
from app.ui.track_panel import TrackPanel, label_of
from app.ui.window_state import WindowMemory
from app.ui.worker import FetchHost

log = logging.getLogger("app.ui")


class MainWindow(QMainWindow):
    run_ended = Signal(object)  # RunResult | None (failed)

    def __init__(self, settings: GuiSettings | None = None, log_file: str = "",
                 restore: bool = True) -> None:
        super().__init__()
        self.setWindowTitle("DecodeLab")
        self.resize(1480, 940)
        self.gui_settings = settings or GuiSettings.load()
        self._closed = False
        self.lane = Lane(self)
        self.state = WorkbenchState(self.lane, self)
        self.fetcher = FetchHost(self)
        self._build(log_file)
        self._wire()
        self.memory = WindowMemory(self, {"main": self.splitter, "center": self.center},
                                   self.state, self.tracks, self.prompt, self.token_view)
        if restore:
            self.memory.restore(self.gui_settings)
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
        self.runs = RunController(self.lane, self.state, self.tracks, self.prompt,
                                  self.token_view, self.plots, self.summary, self)
        # Run is the splitter above; Compare, Sweep, Will it pay? and History sit beside it.
        self.lab = Lab(self.lane, self.state, self.runs, self.tracks, self.prompt, self.plots,
                       self.splitter, self)
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
        self.run_action, self.stop_action = build_menus(
            self, self.models, self.lab.tabs, self.log_dock, self.start_run, self.stop_run,
            self.fetch)

    def _wire(self) -> None:
        state, runs = self.state, self.runs
        self.models.observe(state)
        self.tracks.observe(state)
        self.models.fetch_requested.connect(self.fetch)
        self.models.fetch_cancel_requested.connect(self.fetcher.cancel)
        self.fetcher.progress.connect(self.models.fetch_progress)
        self.fetcher.finished.connect(self._fetched)
        self.fetcher.failed.connect(self._fetch_failed)
        state.models_changed.connect(self._show_ssm_rule)
        state.target_read.connect(self._target_read)
        state.inspection_failed.connect(self._inspection_failed)
        for signal in (state.busy_changed, state.settled, self.lane.busy_changed):
            signal.connect(self._show_activity)
        self.prompt.run_requested.connect(self.start_run)
        self.prompt.stop_requested.connect(self.stop_run)
        runs.enabled_changed.connect(self._enable_actions)
        runs.refused.connect(lambda text: self.show_error("refused", text))
        runs.run_started.connect(self._run_started)
        runs.first_token.connect(lambda: self.state_label.setText("generating…"))
        runs.run_ended.connect(self._run_ended)
        runs.run_failed.connect(self._run_failed)
        self.lab.error.connect(self.show_error)
        self._show_ssm_rule()
        runs.update_enabled()

    # -- what the state says ----------------------------------------------------------------
    def _show_ssm_rule(self) -> None:
        text = ssm_banner_text(self.state.target_info, self.state.draft_info)
        if text:
            self.ssm_banner.show_message("ssm", text)
        else:
            self.ssm_banner.hide()

    def _target_read(self, info: Any) -> None:
        self.prompt.set_template_available(info.has_chat_template)
        self.setWindowTitle(f"DecodeLab — {info.file_name}")

    def _inspection_failed(self, role: str, _path: str, message: str) -> None:
        self.show_error("error", f"Could not open the {role} model: {message}")

    def _show_activity(self) -> None:
        """The busy bar while the lane works, and what holds the engine, in the status bar
        (a run says how it goes itself)."""
        self.busy.setVisible(self.lane.busy)
        job = self.state.job
        if job != RUN:
            self.state_label.setText("working on the engine…" if job else
                                     "inspecting…" if self.state.inspecting else "")

    def _enable_actions(self, can_run: bool, running: bool) -> None:
        self.run_action.setEnabled(can_run and not running)
        self.stop_action.setEnabled(running)

    # -- fetching ---------------------------------------------------------------------------------
    def fetch(self, name: str) -> None:
        if self.fetcher.fetch(name):
            self.models.fetch_started(name)

    def _fetched(self, name: str, path: str) -> None:
        self.models.fetch_ended(f"{name} is installed: {path}", True)
        if self.state.target_path is None:
            self.state.set_target(path)

    def _fetch_failed(self, name: str, message: str, cancelled: bool) -> None:
        self.models.fetch_ended(message, False)
        if not cancelled:
            self.show_error("error", f"Fetching {name} failed: {message}")

    # -- running ----------------------------------------------------------------------------------
    def start_run(self) -> bool:
        """Start the selected track on the prompt; False (and why, in the window) if not."""
        return self.runs.start()

    def stop_run(self) -> None:
        if self.runs.stop():
            self.state_label.setText("stopping…")

    def _run_started(self) -> None:
        self.error_banner.hide()
        self.state_label.setText("loading the model and evaluating the prompt…")

    def _run_ended(self, result: Any) -> None:
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
    def _report_set_aside(self) -> None:
        """Say (banner, status bar, log) which damaged stored files were set aside at start:
        the window settings, the model library, history records."""
        found = [self.gui_settings.set_aside, self.models.library.set_aside,
                 *self.lab.history.history.problems()]
        lines = [str(p) for p in found if p is not None]
        if lines:
            self.show_error("info", "Set aside as damaged: " + " | ".join(lines))

    def save_settings(self) -> None:
        self.memory.capture(self.gui_settings)
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
        self.lane.shutdown()

    def closeEvent(self, event: QCloseEvent) -> None:
        self.shutdown()
        super().closeEvent(event)

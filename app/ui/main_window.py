"""The workbench window: it builds the panels, lays them out and wires them.

It keeps no model state: the chosen models, what is known of them, which tracks can run and
whether the engine is held live in the workbench state (``self.state``), which the panels
and views observe; all work on llama.cpp goes through the engine lane (``self.lane``). The
Run tab's controller decides when Run can start and starts it; the lab runs the other tabs.
The Chat tab (``ChatView``) runs each turn with the track and settings chosen in the window
(the track follows the track panel both ways). Every run's settings take where the target's
layers run from the state (``WorkbenchState.placed``), which the "Remote workers" section of
the model panel sets; after a run or a turn the model panel says where they ran.
What is left here: the banners, the status bar, fetching pinned models, the remembered
window state, the light or dark theme, and a layout that fits a laptop screen (usable at
1280x720, smallest about 1000x650: the plots sit in tabs, the log is hidden until asked for
or an engine error opens it).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from PySide6.QtCore import QEvent, Qt, Signal
from PySide6.QtGui import QCloseEvent, QGuiApplication, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QApplication,
    QDockWidget,
    QLabel,
    QMainWindow,
    QProgressBar,
    QScrollArea,
    QSplitter,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from app.core.chat.conversation import Conversation
from app.core.events import RunResult, RunSettings
from app.core.tracks import Track
from app.ui.banner import Banner, ssm_banner_text
from app.ui.chat_view import ChatView
from app.ui.lab import Lab
from app.ui.lane import Lane
from app.ui.log_panel import LogPanel
from app.ui.menus import build_menus
from app.ui.model_panel import ModelPanel
from app.ui.palette import apply_theme, is_dark
from app.ui.plots import LivePlots, SummaryPanel, apply_plot_defaults
from app.ui.prompt_editor import PromptEditor
from app.ui.reproduce_view import ReproduceView
from app.ui.run_controller import RUN, RunController
from app.ui.settings import GuiSettings
from app.ui.state import WorkbenchState, norm
from app.ui.token_view import TokenView
from app.ui.track_panel import TrackPanel, label_of
from app.ui.window_state import WindowMemory
from app.ui.worker import FetchHost

log = logging.getLogger("app.ui")

DEFAULT_SIZE = (1480, 940)  # on a screen that has room for it; else 92 % of the screen


class RunPage(QSplitter):
    """The Run tab: models and tracks, prompt and answer, numbers and plots. Its main
    action (Ctrl+Enter while it is the current tab) is a run."""

    def __init__(self, run: Callable[[], object]) -> None:
        super().__init__(Qt.Orientation.Horizontal)
        self._run = run

    def run_main_action(self) -> None:
        self._run()


class ChatPage(QWidget):
    """The Chat tab: the conversation view; its main action (Ctrl+Enter, as Enter in the
    message box) sends the message."""

    def __init__(self, chat: ChatView) -> None:
        super().__init__()
        self.chat = chat
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(chat)

    def run_main_action(self) -> None:
        self.chat.send()


class MainWindow(QMainWindow):
    run_ended = Signal(object)  # RunResult | None (failed)

    def __init__(self, settings: GuiSettings | None = None, log_file: str = "",
                 restore: bool = True) -> None:
        super().__init__()
        self.setWindowTitle("DecodeLab")
        self.resize(*default_size())
        apply_plot_defaults()  # every view's plots, in the palette's theme
        self.gui_settings = settings or GuiSettings.load()
        self._closed = False
        self.lane = Lane(self)
        self.state = WorkbenchState(self.lane, self)
        self.fetcher = FetchHost(self)
        self._build(log_file)
        self._wire()
        self._dark = is_dark()
        splitters = {"main": self.splitter, "center": self.center}
        self.memory = WindowMemory(self, splitters, self.state, self.tracks, self.prompt,
                                   self.token_view, self.models)
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
        self.center.setChildrenCollapsible(False)
        self.center.setSizes([240, 600])

        self.summary = SummaryPanel()
        self.plots = LivePlots()
        # Numbers above (as tall as their wrapped text), the plots in tabs below.
        self.right = QWidget()
        right_layout = QVBoxLayout(self.right)
        right_layout.setContentsMargins(0, 0, 0, 0)
        right_layout.addWidget(self.summary)
        right_layout.addWidget(self.plots, 1)
        self.right.setMinimumWidth(250)

        self.splitter = RunPage(self.start_run)
        self.splitter.addWidget(self.left_scroll)
        self.splitter.addWidget(self.center)
        self.splitter.addWidget(self.right)
        self.splitter.setChildrenCollapsible(False)
        self.splitter.setStretchFactor(1, 1)
        self.splitter.setSizes([440, 620, 290])

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
        # Chat after the lab's tabs: the lab addresses its own tabs by index.
        self.chat = ChatView(self.state, self.lane, settings_for=self.chat_settings)
        self.chat_page = ChatPage(self.chat)
        self.lab.tabs.addTab(self.chat_page, "Chat")
        # The deprecated tracks measured on the target ("Reproduce…" in the track list).
        self.reproduce = ReproduceView(self.lane, self.state, self.lab.context)
        self.lab.tabs.addTab(self.reproduce, "Reproduce")
        layout.addWidget(self.lab.tabs, 1)
        self.setCentralWidget(central)

        self.log_panel = LogPanel(log_file)
        self.log_dock = QDockWidget("Log", self)
        self.log_dock.setObjectName("LogDock")
        self.log_dock.setWidget(self.log_panel)
        self.log_dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetClosable)
        self.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, self.log_dock)
        self.resizeDocks([self.log_dock], [130], Qt.Orientation.Vertical)
        # llama.cpp's internals are for when something goes wrong: hidden until the View
        # menu shows it or an engine error opens it.
        self.log_dock.hide()

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
            self.fetch, self.statusBar().showMessage)
        put_tabs_first(self, self.lab.tabs)
        # Esc stops whatever runs; where the chat's own Esc is active too, Qt finds the key
        # ambiguous and fires neither: then both stop.
        for shortcut in self.findChildren(QShortcut):
            if shortcut.key() == QKeySequence(Qt.Key.Key_Escape):
                shortcut.activatedAmbiguously.connect(self.stop_run)

    def _wire(self) -> None:
        state, runs = self.state, self.runs
        self.tracks.reproduce_requested.connect(self.open_reproduction)
        self.models.observe(state)
        self.tracks.observe(state)
        self.models.fetch_requested.connect(self.fetch)
        self.models.fetch_cancel_requested.connect(self.fetcher.cancel)
        self.fetcher.progress.connect(self.models.fetch_progress)
        self.fetcher.finished.connect(self._fetched)
        self.fetcher.failed.connect(self._fetch_failed)
        state.models_changed.connect(self._show_ssm_rule)
        state.target_read.connect(self._target_read)
        # A chosen model that cannot be read: said once, in the banner, until the cause goes.
        self.error_banner.show_model_errors(state)
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
        # The chat's track follows the track panel, and the other way round.
        self.tracks.track_changed.connect(self.chat.set_track)
        self.tracks.track_changed.connect(self.lab.pay.set_track)
        self.chat.track.currentIndexChanged.connect(
            lambda _i: self.tracks.select(self.chat.selected_track().id))
        self.tracks.settings.changed.connect(self.chat.update_enabled)
        self.chat.set_track(self.tracks.selected())
        self.chat.turn_started.connect(self.error_banner.hide)
        self.chat.turn_started.connect(self.lab.history.refresh_conversations)
        self.chat.turn_ended.connect(self._turn_ended)
        self.lab.history.conversation_requested.connect(self.open_conversation)
        # Remote workers: into every run's settings, and the model panel says where.
        self.models.workers.workers_changed.connect(self._workers_changed)
        self.state.target_read.connect(self.prompt.show_model)
        self._rpc_split: list[float] = []
        self._workers_changed()
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

    def _show_activity(self) -> None:
        """The busy bar while the lane works, and what holds the engine, in the status bar
        (a run says how it goes itself)."""
        job = self.state.job
        # Not during a run: the bar's animation repaints all the time, and a run says how
        # it goes in the status line and the summary.
        self.busy.setVisible(self.lane.busy and job != RUN)
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

    # -- remote workers ---------------------------------------------------------------------------
    def set_workers(self, endpoints: Sequence[str], split: Sequence[float] = ()) -> None:
        """List these workers (``gui --rpc``), with each one's share of the layers
        (``--rpc-split``, kept while the list stays these workers)."""
        self._rpc_split = list(split)
        self.models.set_workers(endpoints)
        self._workers_changed()

    def _workers_changed(self) -> None:
        placement = self.models.workers.placement()
        if self._rpc_split and len(self._rpc_split) == len(placement["rpc"]):
            placement["rpc_split"] = list(self._rpc_split)
        else:
            self._rpc_split = []
        self.state.set_placement(placement)
        self.chat.update_enabled()

    def _show_devices(self, result: RunResult) -> None:
        self.models.show_placement(result.effective.get("devices", []) or [])

    def open_reproduction(self, track_id: str) -> None:
        """The Reproduce tab, set to ``track_id`` (a deprecated track)."""
        self.reproduce.open_track(track_id)
        self.lab.tabs.setCurrentWidget(self.reproduce)

    # -- chat -------------------------------------------------------------------------------------
    def chat_settings(self, track: Track) -> RunSettings | str:
        """A chat turn's settings: the track panel's (or why they do not fit together),
        placed as every run (the conversation gives the system message)."""
        why = self.tracks.settings.problem(track)
        if why is not None:
            return why
        s = self.tracks.settings.settings(track, self.state.target_info, True, None)
        return self.state.placed(s)

    def _turn_ended(self, result: RunResult | None) -> None:
        if result is not None:
            self._show_devices(result)
        self.lab.history.refresh_conversations()

    def open_conversation(self, conv: Conversation) -> bool:
        """Show a saved conversation in the Chat tab, to read or continue (with its target
        and draft, where their files are still there)."""
        if self.chat.running or self.state.busy:
            self.show_error("refused", "Wait for the current run to end before reopening.")
            return False
        if conv.target and Path(conv.target).is_file() and (
                self.state.target_path is None or norm(conv.target) != self.state.target_path):
            self.state.set_target(conv.target)
            if conv.draft and Path(conv.draft).is_file():
                self.state.set_draft(conv.draft)
        self.chat.open_conversation(conv)
        self.lab.tabs.setCurrentWidget(self.chat_page)
        return True

    # -- running ----------------------------------------------------------------------------------
    def start_run(self) -> bool:
        """Start the selected track on the prompt; False (and why, in the window) if not."""
        return self.runs.start()

    def stop_run(self) -> None:
        if self.runs.stop():
            self.state_label.setText("stopping…")
        self.chat.stop()

    def _run_started(self) -> None:
        self.error_banner.hide()
        self.state_label.setText("loading the model and evaluating the prompt…")

    def _run_ended(self, result: Any) -> None:
        if result is not None:
            self._show_devices(result)
            self.state_label.setText("")
            self.statusBar().showMessage(
                f"{label_of(result.track)}: {result.n_generated} tokens, "
                f"{result.tokens_per_second:.1f} tok/s, stopped: {result.stop_reason}", 15000)
        self.run_ended.emit(result)

    def _run_failed(self, kind: str, message: str) -> None:
        self.state_label.setText("")
        if kind != "refused":  # the engine failed: llama.cpp's log may say why
            self.log_dock.show()
        self.show_error("refused" if kind == "refused" else "error",
                        ("Refused: " if kind == "refused" else "The run failed: ") + message)

    def show_error(self, level: str, message: str) -> None:
        """One place per error: the banner (and the log), not the status bar as well."""
        log.warning("%s", message)
        self.error_banner.show_message(level, message)

    # -- theme ----------------------------------------------------------------------------------
    def changeEvent(self, event: QEvent) -> None:
        # The window hears of a new application palette here (an application-wide event
        # filter would run Python for every event of the app, during runs too).
        super().changeEvent(event)
        if event.type() == QEvent.Type.PaletteChange and is_dark() != self._dark:
            self._dark = is_dark()
            self._theme_changed(self._dark)

    def _theme_changed(self, dark: bool) -> None:
        """The palette turned light or dark: restyle what the window colours itself."""
        app = QApplication.instance()
        if isinstance(app, QApplication) and app.styleSheet():
            apply_theme(app)
        apply_plot_defaults(dark)
        self.plots.apply_theme(dark)
        self.token_view.rebuild()

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
        self.chat.stop()
        self.chat.timer.stop()
        self.save_settings()
        self.log_panel.detach()
        self.fetcher.shutdown()
        self.lane.shutdown()

    def closeEvent(self, event: QCloseEvent) -> None:
        self.shutdown()
        super().closeEvent(event)


def default_size() -> tuple[int, int]:
    """The first size of the window: roomy where the screen allows, never larger than it."""
    screen = QGuiApplication.primaryScreen()
    if screen is None:
        return DEFAULT_SIZE
    room = screen.availableGeometry()
    return (min(DEFAULT_SIZE[0], int(room.width() * 0.92)),
            min(DEFAULT_SIZE[1], int(room.height() * 0.92)))


def put_tabs_first(window: QWidget, tabs: QTabWidget) -> None:
    """Make the lab's tab bar the first stop of the keyboard's tab order, whatever order
    the widgets were created or reparented in (the chain follows that order)."""
    bar = tabs.tabBar()
    chain: list[QWidget] = []
    w = window.nextInFocusChain()
    while w is not None and w is not window and w not in chain:
        if w is not bar and w.focusPolicy() & Qt.FocusPolicy.TabFocus:
            chain.append(w)
        w = w.nextInFocusChain()
    order = [bar, *chain]
    for a, b in itertools.pairwise(order):
        QWidget.setTabOrder(a, b)

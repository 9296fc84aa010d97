"""Application start: QApplication, logging to a file, the uncaught-exception dialog, the
theme, and the scripted session (``decodelab gui --model M --track T --prompt-file F --run
--screenshot P --size 1280x720 --exit``) used for screenshots, benchmarks and smoke tests.
"""

from __future__ import annotations

import argparse
import logging
import logging.handlers
import sys
import traceback
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, QTimer
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import QApplication, QMessageBox

from app import __version__
from app.cli_common import EXIT_FAILED, EXIT_REFUSED
from app.core import paths
from app.ui.palette import apply_theme
from app.ui.resources import resource_path

if TYPE_CHECKING:
    from app.ui.main_window import MainWindow

log = logging.getLogger("app.ui")
LOG_FILE = "decodelab.log"


def configure_logging() -> Path:
    """A rotating log file in paths.log_dir() for the app and llama.cpp (once per process)."""
    from app.core.store import LogFileHandler

    file = paths.log_dir() / LOG_FILE
    root = logging.getLogger()
    if not any(getattr(h, "_decodelab", False) for h in root.handlers):
        # A full disk or unwritable file: one line on stderr, then the file is left alone.
        handler = LogFileHandler(file, max_bytes=2_000_000, backup_count=3)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handler._decodelab = True  # type: ignore[attr-defined]
        root.addHandler(handler)
        llama = logging.getLogger("llama.cpp")
        llama.addHandler(handler)
    # llama.cpp's chatter goes to the file and the log panel, not to the terminal.
    llama = logging.getLogger("llama.cpp")
    llama.setLevel(logging.INFO)
    llama.propagate = False
    logging.getLogger("app").setLevel(logging.INFO)
    return file


def install_excepthook(log_file: Path) -> None:
    """An uncaught exception is logged and shown in a dialog; the app keeps running."""

    def hook(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        if issubclass(kind, KeyboardInterrupt):
            sys.__excepthook__(kind, exc, tb)
            return
        log.error("uncaught exception:\n%s", "".join(traceback.format_exception(kind, exc, tb)))
        app = QApplication.instance()
        if app is None or QApplication.platformName() == "offscreen":
            return
        box = QMessageBox(QMessageBox.Icon.Critical, "DecodeLab: unexpected error",
                          f"Something went wrong: {exc}\n\nThe details are in {log_file}. "
                          "DecodeLab keeps running; what you had is kept.")
        box.exec()

    sys.excepthook = hook


GIL_SWITCH_INTERVAL = 0.001


def make_application() -> QApplication:
    # The engine thread runs Python between llama.cpp calls; with the default 5 ms switch
    # interval every GIL hand-over to the GUI thread (many per repaint: pyqtgraph paints in
    # Python) can wait 5 ms. 1 ms keeps the worst event-loop stalls about half as long.
    sys.setswitchinterval(GIL_SWITCH_INTERVAL)
    app = QApplication.instance()
    if not isinstance(app, QApplication):
        app = QApplication(sys.argv[:1])
    app.setApplicationName("DecodeLab")
    app.setApplicationVersion(__version__)
    app.setOrganizationName("decodelab")
    app.setDesktopFileName("decodelab")  # Wayland/X11 docks match the window to the .desktop
    icon = resource_path("icons", "decodelab.svg")
    if icon.is_file():
        app.setWindowIcon(QIcon(str(icon)))
    app.setStyle("Fusion")
    apply_theme(app)  # the style sheet for the system palette, light or dark
    return app


SCRIPTED_SIZE = (1480, 940)  # every scripted screenshot's size unless --size says otherwise


def parse_size(text: str) -> tuple[int, int]:
    """``WxH`` (e.g. 1280x720) as a window size; ValueError (one line) if it is not one."""
    w, sep, h = text.strip().lower().partition("x")
    if not sep or not w.isdigit() or not h.isdigit():
        raise ValueError(f"--size: expected WIDTHxHEIGHT such as 1280x720, got {text!r}")
    size = int(w), int(h)
    if not (320 <= size[0] <= 10000 and 240 <= size[1] <= 10000):
        raise ValueError(f"--size: {text} is outside 320x240 … 10000x10000")
    return size


class ScriptedSession(QObject):
    """Drive the real window from command-line options: choose, run, screenshot, exit."""

    def __init__(self, window: MainWindow, args: argparse.Namespace) -> None:
        super().__init__()
        self.window = window
        self.args = args
        self.exit_code = 0
        self._stage = "models"
        self._started = False
        self._steps: list[str] = []
        self.timer = QTimer(self)
        self.timer.setInterval(50)
        self.timer.timeout.connect(self._tick)
        window.run_ended.connect(self._run_ended)
        window.runs.run_failed.connect(self._failed)
        lab = window.lab
        for runner in (lab.compare.runner, lab.sweep.runner, lab.pay.runner,
                       lab.pay.experts.runner):
            runner.failed.connect(self._failed)
            runner.ended.connect(self._next_step)

    def _fail(self, code: int) -> None:
        """The exit code of the first failure wins: 2 refused, 1 failed (as the CLI)."""
        self.exit_code = self.exit_code or code

    def _failed(self, kind: str, _message: str) -> None:
        self._fail(EXIT_REFUSED if kind == "refused" else EXIT_FAILED)

    def _inspect_failed(self, _role: str, path: str, _message: str) -> None:
        if path in (self.window.state.target_path, self.window.state.draft_path):
            self._fail(EXIT_FAILED)  # a missing or broken model file

    def start(self) -> None:
        from app.core.errors import DecodeLabError, RefusedError
        from app.core.models.library import resolve_model
        from app.core.settings_check import read_prompt_file

        w, a = self.window, self.args
        size = SCRIPTED_SIZE
        if getattr(a, "size", None):
            try:
                size = parse_size(a.size)
            except ValueError as exc:
                w.show_error("refused", str(exc))
                self._fail(EXIT_REFUSED)
        w.resize(*size)  # the same size for every scripted screenshot (or --size)
        # From here on: the models the window restored from the last session are not ours.
        w.state.inspection_failed.connect(self._inspect_failed)
        try:
            if a.model:
                w.state.set_target(resolve_model(a.model))
            if a.draft:
                w.state.set_draft(resolve_model(a.draft))
            elif a.model:
                w.state.set_draft(None)  # a scripted run uses exactly the models it names
            if a.prompt_file:
                w.prompt.text.setPlainText(read_prompt_file(a.prompt_file))
            if getattr(a, "max_tokens", None):
                w.tracks.settings.max_tokens.setValue(a.max_tokens)
            if getattr(a, "threads", None):
                w.tracks.settings.threads.setValue(a.threads)
        except RefusedError as exc:  # a prompt file that cannot be a prompt
            w.show_error("refused", str(exc))
            self._fail(EXIT_REFUSED)
        except (DecodeLabError, OSError) as exc:
            w.show_error("error", str(exc))
            self._fail(EXIT_FAILED)
        if a.fetch_default and not w.state.target_path:
            from app.core.models import DEFAULT_MODEL

            w.fetch(DEFAULT_MODEL)
        self.timer.start()

    def _tick(self) -> None:
        w, a = self.window, self.args
        if self._stage == "models":
            if w.lane.busy or w.fetcher.active:
                return
            experts = getattr(a, "experts", None)
            if experts is not None and self.exit_code == 0:
                spin = w.tracks.settings.experts
                if not spin.minimum() <= experts <= spin.maximum():
                    w.show_error("refused", f"--experts {experts}: this model allows "
                                            f"{spin.minimum()}–{spin.maximum()}")
                    self._fail(EXIT_REFUSED)
                spin.setValue(experts)
            if a.track and not w.tracks.select(a.track):
                why = w.state.reasons(a.track)
                reason = why[1] if why else "not available"
                if self.exit_code == 0:  # not the consequence of a broken model
                    w.show_error("refused", f"Track {a.track!r} cannot run here: {reason}")
                self._fail(EXIT_REFUSED)
            view = getattr(a, "view", None) or "run"
            if a.run and self.exit_code == 0:
                self._stage = "running"
                # From here the session is driven by the views' signals: no polling that
                # would cost the run it measures.
                self.timer.stop()
                self._steps = self._plan(view)
                self._next_step()
                return
            self._show_view()
            self._finish()

    def _plan(self, view: str) -> list[str]:
        """The scripted work of a view, in order (see ``decodelab gui --help``)."""
        tracks = getattr(self.args, "tracks", None)
        if view == "compare" or (view == "pay" and tracks):
            return ["compare", "pay"] if view == "pay" else ["compare"]
        return {"sweep": ["sweep"], "pay": ["pay"]}.get(view, ["run"])

    def _show_view(self) -> None:
        names = ("run", "compare", "sweep", "pay", "history")
        view = getattr(self.args, "view", None)
        if view in names:
            self.window.lab.tabs.setCurrentIndex(names.index(view))
        elif view == "chat":
            self.window.lab.tabs.setCurrentWidget(self.window.chat_page)

    def _next_step(self) -> None:
        if self._stage != "running":
            return
        if not self._steps:
            self._show_view()
            self._finish()
            return
        step = self._steps.pop(0)
        lab, a = self.window.lab, self.args
        self._show_view()
        if step == "compare":
            lab.tabs.setCurrentIndex(1)
            lab.compare.choose([t.strip() for t in (a.tracks or "lookup").split(",")])
            ok = lab.compare.start()
        elif step == "sweep":
            setting, _, values = (a.sweep or "draft_max=1-8").partition("=")
            lab.sweep.choose(a.track or "lookup", setting.strip(), values)
            ok = lab.sweep.start()
        elif step == "pay":
            if a.track:  # --track draft measures the draft model, lookup prompt lookup
                lab.pay.follow(a.track)
                lab.pay.set_track(a.track)
            # a track that only reduces experts has no K: its expert counts are measured
            ok = lab.pay.run_main_action()
        else:
            ok = self.window.start_run()
        if not ok:
            self._fail(EXIT_REFUSED)
            self._steps = []
            self._finish()

    def _run_ended(self, result: object) -> None:
        if self._stage != "running":
            return
        if result is None:
            self._fail(EXIT_FAILED)  # run_failed has already said whether it was refused
        self._next_step()

    def _finish(self) -> None:
        self._stage = "done"
        self.timer.stop()
        # Let the last batch and plot update paint before the capture.
        QTimer.singleShot(250, self._capture)

    def _capture(self) -> None:
        if self.window.lane.busy:  # a save to the history is still going
            QTimer.singleShot(100, self._capture)
            return
        if self.args.screenshot:
            QApplication.processEvents()
            path = Path(self.args.screenshot)
            path.parent.mkdir(parents=True, exist_ok=True)
            if not self.window.grab().save(str(path)):
                log.error("could not save the screenshot to %s", path)
                self._fail(EXIT_FAILED)
        if self.args.exit:
            self.window.close()
            QApplication.instance().exit(self.exit_code)  # type: ignore[union-attr]


def preload_workers(window: MainWindow, args: argparse.Namespace) -> None:
    """``gui --rpc HOST:PORT[,…] [--rpc-split W,…]``: list these workers in the window's
    "Remote workers" section (instead of the remembered ones)."""
    endpoints = getattr(args, "rpc", None) or []
    if endpoints:
        window.set_workers([str(e) for e in endpoints], getattr(args, "rpc_split", None) or [])


def run_gui(args: argparse.Namespace) -> int:
    """The ``gui`` command: open the workbench (and run the scripted session if asked)."""
    log_file = configure_logging()
    app = make_application()
    install_excepthook(log_file)
    from app.ui.main_window import MainWindow

    window = MainWindow(log_file=str(log_file))
    preload_workers(window, args)
    window.show()
    scripted = any(getattr(args, k, None) for k in ("model", "draft", "track", "prompt_file",
                                                      "run", "screenshot", "fetch_default",
                                                      "view"))
    session = ScriptedSession(window, args) if scripted else None
    if session is not None:
        QTimer.singleShot(0, session.start)
    elif not window.state.target_path and not window.models.draft.paths():
        window.models.first_run.raise_()
    code = app.exec()
    window.shutdown()
    if session is not None:
        return session.exit_code or code
    return code

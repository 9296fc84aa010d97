"""The window's menus (File, Run, View, Help) and keyboard shortcuts: Ctrl+Enter does the
current tab's main action (a run on the Run tab, a comparison on Compare, ...), Esc stops.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtGui import QAction, QKeySequence, QShortcut
from PySide6.QtWidgets import QDockWidget, QMainWindow, QTabWidget

from app.core.models import DEFAULT_MODEL
from app.ui.about_dialog import show_about
from app.ui.model_panel import ModelPanel


def main_action(tabs: QTabWidget, say: Callable[[str, int], object] | None = None) -> bool:
    """Do the current tab's main action: its page's ``run_main_action()``; False (and a
    word in the status bar) if the tab has none (History): never a run the user cannot
    see."""
    page = tabs.currentWidget()
    action = getattr(page, "run_main_action", None)
    if callable(action):
        action()
        return True
    if say is not None:
        say(f"Ctrl+Enter: the {tabs.tabText(tabs.currentIndex())} tab has nothing to run", 5000)
    return False


def build_menus(w: QMainWindow, models: ModelPanel, tabs: QTabWidget, log_dock: QDockWidget,
                run: Callable[[], object], stop: Callable[[], object],
                fetch: Callable[[str], object],
                say: Callable[[str, int], object] | None = None) -> tuple[QAction, QAction]:
    """File, Run, View and Help menus of ``w``; returns the Run and Stop actions. ``say``
    shows a line in the status bar."""
    file_menu = w.menuBar().addMenu("&File")
    for text, slot in (
        ("Open target GGUF…", lambda: models.open_file(models.target)),
        ("Open draft GGUF…", lambda: models.open_file(models.draft)),
        ("Add model folder…", models.choose_folder),
        (f"Fetch {DEFAULT_MODEL}", lambda: fetch(DEFAULT_MODEL)),
    ):
        action = QAction(text, w)
        action.triggered.connect(slot)
        file_menu.addAction(action)
    file_menu.addSeparator()
    quit_action = QAction("Quit", w)
    quit_action.setShortcut(QKeySequence.StandardKey.Quit)
    quit_action.triggered.connect(w.close)
    file_menu.addAction(quit_action)
    run_menu = w.menuBar().addMenu("&Run")
    run_action = QAction("Run", w)
    run_action.triggered.connect(run)
    stop_action = QAction("Stop (Esc)", w)
    stop_action.triggered.connect(stop)
    run_menu.addActions([run_action, stop_action])
    view_menu = w.menuBar().addMenu("&View")
    log_action = log_dock.toggleViewAction()
    log_action.setText("Log (llama.cpp and DecodeLab)")
    log_action.setShortcut(QKeySequence("Ctrl+L"))
    view_menu.addAction(log_action)
    view_menu.addSeparator()
    for i in range(tabs.count()):
        tab = QAction(tabs.tabText(i), w)
        tab.setShortcut(QKeySequence(f"Ctrl+{i + 1}"))
        tab.triggered.connect(lambda _=False, i=i: tabs.setCurrentIndex(i))
        view_menu.addAction(tab)
    help_menu = w.menuBar().addMenu("&Help")
    about_action = QAction("About DecodeLab", w)
    about_action.setMenuRole(QAction.MenuRole.AboutRole)
    about_action.triggered.connect(lambda: show_about(w))
    help_menu.addAction(about_action)
    for key in ("Ctrl+Return", "Ctrl+Enter"):
        QShortcut(QKeySequence(key), w).activated.connect(lambda: main_action(tabs, say))
    QShortcut(QKeySequence("Esc"), w).activated.connect(stop)
    return run_action, stop_action

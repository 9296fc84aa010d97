"""The window's menus (File, Run, View, Help) and keyboard shortcuts (Ctrl+Enter runs,
Esc stops)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtGui import QAction, QKeySequence, QShortcut

from app.core.models import DEFAULT_MODEL
from app.ui.about_dialog import show_about

if TYPE_CHECKING:
    from app.ui.main_window import MainWindow


def build_menus(w: MainWindow) -> tuple[QAction, QAction]:
    """File, Run, View and Help menus; returns the Run and Stop actions."""
    file_menu = w.menuBar().addMenu("&File")
    for text, slot in (
        ("Open target GGUF…", lambda: w.models.open_file(w.models.target)),
        ("Open draft GGUF…", lambda: w.models.open_file(w.models.draft)),
        ("Add model folder…", w.models.choose_folder),
        (f"Fetch {DEFAULT_MODEL}", lambda: w.fetch(DEFAULT_MODEL)),
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
    run_action = QAction("Run (Ctrl+Enter)", w)
    run_action.triggered.connect(w.start_run)
    stop_action = QAction("Stop (Esc)", w)
    stop_action.triggered.connect(w.stop_run)
    run_menu.addActions([run_action, stop_action])
    view_menu = w.menuBar().addMenu("&View")
    view_menu.addAction(w.log_dock.toggleViewAction())
    view_menu.addSeparator()
    for i in range(w.lab.tabs.count()):
        tab = QAction(w.lab.tabs.tabText(i), w)
        tab.setShortcut(QKeySequence(f"Ctrl+{i + 1}"))
        tab.triggered.connect(lambda _=False, i=i: w.lab.tabs.setCurrentIndex(i))
        view_menu.addAction(tab)
    help_menu = w.menuBar().addMenu("&Help")
    about_action = QAction("About DecodeLab", w)
    about_action.setMenuRole(QAction.MenuRole.AboutRole)
    about_action.triggered.connect(lambda: show_about(w))
    help_menu.addAction(about_action)
    for key in ("Ctrl+Return", "Ctrl+Enter"):
        QShortcut(QKeySequence(key), w).activated.connect(w.start_run)
    QShortcut(QKeySequence("Esc"), w).activated.connect(w.stop_run)
    return run_action, stop_action

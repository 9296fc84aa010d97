"""Help > About DecodeLab: the facts (app.core.about) and the dialog (app.ui.about_dialog)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import llama_cpp
import pytest
from PySide6.QtCore import QObject, QUrl, Slot, qVersion
from PySide6.QtGui import QAction, QDesktopServices, QGuiApplication
from PySide6.QtWidgets import QLabel, QPlainTextEdit

from app import __version__
from app.core import about, paths
from app.ui.about_dialog import AboutDialog
from app.ui.main_window import MainWindow


def about_action(w: MainWindow) -> QAction:
    menus = {a.text().replace("&", ""): a.menu() for a in w.menuBar().actions()}
    assert "Help" in menus, list(menus)
    actions = [a for a in menus["Help"].actions() if a.text() == "About DecodeLab"]
    assert len(actions) == 1
    return actions[0]


def shown_text(dialog: AboutDialog) -> str:
    parts = [label.text() for label in dialog.findChildren(QLabel)]
    parts += [edit.toPlainText() for edit in dialog.findChildren(QPlainTextEdit)]
    return "\n".join(parts)


def test_about_opens_from_the_help_menu_and_copies_everything(
    qtbot: Any, window: MainWindow
) -> None:
    about_action(window).trigger()
    dialog = window.findChild(AboutDialog)
    assert dialog is not None
    qtbot.waitUntil(dialog.isVisible, timeout=60000)
    text = shown_text(dialog)
    assert f"DecodeLab {__version__}" in text
    assert llama_cpp.__version__ in text
    assert qVersion() in text
    assert str(paths.models_dir()) in text and str(paths.log_dir()) in text

    QGuiApplication.clipboard().clear()
    dialog.copy_button.click()
    copied = QGuiApplication.clipboard().text()
    assert f"DecodeLab: {__version__}" in copied
    assert f"llama-cpp-python: {llama_cpp.__version__}" in copied
    assert f"Qt: {qVersion()}" in copied
    assert f"models: {paths.models_dir()}" in copied
    assert f"settings: {paths.config_dir()}" in copied
    assert "<" not in copied  # plain text, no markup

    # a second click on the menu brings the same box forward
    about_action(window).trigger()
    assert window.findChildren(AboutDialog) == [dialog]
    dialog.close()


class UrlCatcher(QObject):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[QUrl] = []

    @Slot(QUrl)
    def open(self, url: QUrl) -> None:
        self.urls.append(url)


def test_each_folder_opens_with_desktop_services(qtbot: Any) -> None:
    dialog = AboutDialog()
    qtbot.addWidget(dialog)
    assert set(dialog.folder_labels) == {"models", "history", "logs", "settings"}
    catcher = UrlCatcher()
    QDesktopServices.setUrlHandler("file", catcher, "open")
    try:
        for what, folder in dialog.info.folders:
            label = dialog.folder_labels[what]
            href = label.text().split('href="', 1)[1].split('"', 1)[0]
            label.linkActivated.emit(href)
            assert Path(catcher.urls[-1].toLocalFile()) == folder
    finally:
        QDesktopServices.unsetUrlHandler("file")
    assert len(catcher.urls) == 4
    history = dict(dialog.info.folders)["history"]
    assert history.parent == paths.data_dir()


def test_packaged_app_shows_build_info_and_cpu_backend(
    qtbot: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    bundle = tmp_path / "decodelab"
    (bundle / "_internal").mkdir(parents=True)
    (bundle / "BUILD-INFO.txt").write_text(
        "name: decodelab\nversion: 9.9.9\nllama.cpp build: portable\n", encoding="utf-8")
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "executable", str(bundle / "decodelab"))
    monkeypatch.setattr(sys, "_MEIPASS", str(bundle / "_internal"), raising=False)
    monkeypatch.setenv(about.CPU_BACKEND_ENV, "haswell")
    info = about.gather([("Qt", "6.0")])
    assert info.frozen and info.build_info_path == bundle / "BUILD-INFO.txt"
    text = info.as_text()
    assert f"llama.cpp CPU backend ({about.CPU_BACKEND_ENV}): haswell" in text
    assert "  llama.cpp build: portable" in text and "Qt: 6.0" in text

    dialog = AboutDialog(info=info)
    qtbot.addWidget(dialog)
    shown = shown_text(dialog)
    assert "haswell" in shown and "version: 9.9.9" in shown


def test_from_source_there_is_no_build_info(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(sys, "frozen", raising=False)
    monkeypatch.delenv(about.CPU_BACKEND_ENV, raising=False)
    info = about.gather()
    assert info.build_info is None and not info.frozen
    text = info.as_text()
    assert "Build: from source" in text and about.CPU_BACKEND_ENV not in text
    # llama.cpp's own version and CPU features, from the low-level API
    assert dict(info.versions)["llama.cpp"] != "unknown"
    assert info.system_info and "CPU" in info.system_info

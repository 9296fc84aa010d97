"""Help > About DecodeLab: versions, llama.cpp's build and CPU features, the data folders
(each opens in the file manager) and *Copy*, which copies all of it as plain text for a bug
report. The facts come from :mod:`app.core.about`; this module only lays them out."""

from __future__ import annotations

import html

import PySide6
from PySide6.QtCore import Qt, QUrl, qVersion
from PySide6.QtGui import QDesktopServices, QGuiApplication
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QGroupBox,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.core import about
from app.core.about import AboutInfo


def qt_versions() -> list[tuple[str, str]]:
    return [("Qt", f"{qVersion()} (PySide6 {PySide6.__version__})")]


def _selectable(text: str, rich: bool = False) -> QLabel:
    """A wrapping label whose text can be selected (and, for rich text, links clicked)."""
    label = QLabel(text)
    label.setTextFormat(Qt.TextFormat.RichText if rich else Qt.TextFormat.PlainText)
    label.setWordWrap(True)
    label.setTextInteractionFlags(Qt.TextInteractionFlag.TextBrowserInteraction if rich
                                  else Qt.TextInteractionFlag.TextSelectableByMouse)
    return label


class AboutDialog(QDialog):
    """A modeless dialog; ``info`` is gathered once when it opens."""

    def __init__(self, parent: QWidget | None = None, info: AboutInfo | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("about-dialog")
        self.setWindowTitle("About DecodeLab")
        self.setMinimumWidth(640)  # the system info and the paths wrap less
        self.info = info if info is not None else about.gather(qt_versions())
        layout = QVBoxLayout(self)
        title = QLabel(f"<h2>DecodeLab {html.escape(self.info.versions[0][1])}</h2>"
                       "<p>See what each decoding-acceleration track buys on your GGUF "
                       "model, prompt and CPU.</p>")
        title.setWordWrap(True)
        layout.addWidget(title)

        facts = QFormLayout()
        for what, value in [*self.info.versions[1:], *self.info.system]:
            facts.addRow(f"{what}:", _selectable(value))
        if self.info.system_info:
            system_info = _selectable(self.info.system_info)
            system_info.setToolTip("The CPU features llama.cpp was built for and uses")
            facts.addRow("llama.cpp sees:", system_info)
        layout.addLayout(facts)

        folders = QGroupBox("Folders (click to open)")
        folder_form = QFormLayout(folders)
        self.folder_labels: dict[str, QLabel] = {}
        for what, folder in self.info.folders:
            url = QUrl.fromLocalFile(str(folder)).toString()
            link = _selectable(f'<a href="{html.escape(url)}">{html.escape(str(folder))}</a>',
                               rich=True)
            link.setOpenExternalLinks(False)
            link.linkActivated.connect(self.open_link)
            link.setToolTip(f"Open {folder}")
            folder_form.addRow(f"{what}:", link)
            self.folder_labels[what] = link
        layout.addWidget(folders)

        build = QGroupBox(f"Build ({about.BUILD_INFO_FILE})" if self.info.build_info
                          else "Build")
        build_layout = QVBoxLayout(build)
        if self.info.build_info:
            text = QPlainTextEdit(self.info.build_info)
            text.setReadOnly(True)
            text.setMaximumHeight(text.fontMetrics().lineSpacing() * 9)
            build_layout.addWidget(text)
        else:
            build_layout.addWidget(QLabel(
                f"Packaged, but no {about.BUILD_INFO_FILE} next to the program."
                if self.info.frozen else "Running from source, not a packaged app."))
        layout.addWidget(build)

        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        self.copy_button = QPushButton("Copy")
        self.copy_button.setToolTip("Copy all of this as plain text (for a bug report)")
        buttons.addButton(self.copy_button, QDialogButtonBox.ButtonRole.ActionRole)
        self.copy_button.clicked.connect(self.copy)
        buttons.rejected.connect(self.close)
        layout.addWidget(buttons)

    def text(self) -> str:
        return self.info.as_text()

    def copy(self) -> None:
        QGuiApplication.clipboard().setText(self.text())
        self.copy_button.setText("Copied")

    def open_link(self, link: str) -> None:
        QDesktopServices.openUrl(QUrl(link))


def show_about(parent: QWidget) -> AboutDialog:
    """Open the About box (or raise the one already open) over ``parent``."""
    dialog = parent.findChild(AboutDialog, "about-dialog")
    if dialog is None:
        dialog = AboutDialog(parent)
    dialog.show()
    dialog.raise_()
    dialog.activateWindow()
    return dialog

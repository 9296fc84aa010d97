"""A model combo box over the library: pinned models, folder files, recent files, Open….

Section headers are disabled items; a pinned model that is not installed can be chosen, and
the panel then offers to fetch it. An installed pinned model whose file changed since it
was verified (core models/integrity.py, a cheap size+mtime check) is marked altered (text,
warning colour, tooltip saying how to verify or repair it); it can still be chosen. The
draft picker lists every model and marks the ones the compatibility survey found
incompatible (text, colour and tooltip with failed checks).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QBrush, QColor, QFont, QStandardItem, QStandardItemModel
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QPushButton, QWidget

from app.core.models.catalog import CATALOG
from app.core.models.integrity import ModelState, check_model

PATH_ROLE = Qt.ItemDataRole.UserRole
KIND_ROLE = Qt.ItemDataRole.UserRole + 1
NAME_ROLE = Qt.ItemDataRole.UserRole + 2
LABEL_ROLE = Qt.ItemDataRole.UserRole + 3
ALTERED_ROLE = Qt.ItemDataRole.UserRole + 4  # tooltip line of an altered pinned model

INCOMPATIBLE = QColor("#b3261e")
ALTERED = QColor("#b26a00")
MUTED = QColor("#7a828e")


@dataclass(frozen=True)
class Entry:
    """One row: kind is header, none, pinned, missing (pinned, not installed), file."""

    kind: str
    label: str
    path: str | None = None
    name: str | None = None
    tooltip: str = ""


def human_size(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}" if n < 10 * scale else f"{n / scale:.0f} {unit}"
    return f"{n} B"


class ModelPicker(QWidget):
    """Label, combo and Open… button. ``chosen`` carries the path (None for no model)."""

    chosen = Signal(object)  # str | None
    missing_chosen = Signal(str)  # pinned name that is not installed
    open_requested = Signal()

    def __init__(self, title: str, allow_none: bool, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.allow_none = allow_none
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.title = QLabel(title)
        self.title.setMinimumWidth(44)
        self.combo = QComboBox()
        self.combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.combo.setMinimumContentsLength(12)
        self.combo.setPlaceholderText("choose a model…")
        self.model = QStandardItemModel(self)
        self.combo.setModel(self.model)
        self.open_button = QPushButton("Open…")
        self.open_button.setToolTip(f"Open a GGUF file as the {title.lower().rstrip(':')}")
        self.open_button.clicked.connect(self.open_requested)
        layout.addWidget(self.title)
        layout.addWidget(self.combo, 1)
        layout.addWidget(self.open_button)
        self._current: str | None = None
        self._quiet = False
        self.combo.activated.connect(self._on_activated)

    # -- content ------------------------------------------------------------------------------
    def populate(self, entries: list[Entry]) -> None:
        """Replace the rows, keeping the current path selected if it is still listed."""
        self._quiet = True
        self.model.clear()
        if self.allow_none:
            self._add(Entry("none", "(no draft model)"))
        for e in entries:
            self._add(e)
        self._quiet = False
        self._show_current()

    def _add(self, e: Entry) -> None:
        label, tooltip = e.label, e.tooltip
        warning = _altered_warning(e.name) if e.kind == "pinned" and e.name else ""
        if warning:
            label, tooltip = f"{label}  ⚠ altered", "\n".join(filter(None, (tooltip, warning)))
        item = QStandardItem(label)
        item.setData(e.path, PATH_ROLE)
        item.setData(e.kind, KIND_ROLE)
        item.setData(e.name, NAME_ROLE)
        item.setData(label, LABEL_ROLE)
        item.setData(warning, ALTERED_ROLE)
        if warning:
            item.setForeground(QBrush(ALTERED))
        if tooltip:
            item.setToolTip(tooltip)
        if e.kind == "header":
            item.setFlags(Qt.ItemFlag.NoItemFlags)
            font = QFont()
            font.setBold(True)
            item.setFont(font)
            item.setForeground(QBrush(MUTED))
        elif e.kind == "missing":
            item.setForeground(QBrush(MUTED))
        self.model.appendRow(item)

    def rows(self) -> list[QStandardItem]:
        return [self.model.item(i) for i in range(self.model.rowCount())]

    def row_of(self, path: str | None) -> int:
        for i, item in enumerate(self.rows()):
            kind = item.data(KIND_ROLE)
            if path is None and kind == "none":
                return i
            if path is not None and item.data(PATH_ROLE) and _same(item.data(PATH_ROLE), path):
                return i
        return -1

    def paths(self) -> list[str]:
        return [p for it in self.rows()
                if (p := it.data(PATH_ROLE)) and it.data(KIND_ROLE) != "missing"]

    # -- selection ----------------------------------------------------------------------------
    @property
    def current_path(self) -> str | None:
        return self._current

    def select_path(self, path: str | None, emit: bool = True) -> None:
        """Select ``path`` (adding nothing: populate first); emits ``chosen`` if it changed."""
        changed = not _same(path, self._current)
        self._current = path
        self._show_current()
        if changed and emit:
            self.chosen.emit(path)

    def _show_current(self) -> None:
        row = self.row_of(self._current)
        self._quiet = True
        self.combo.setCurrentIndex(row)
        self._quiet = False

    def _on_activated(self, row: int) -> None:
        if self._quiet or row < 0:
            return
        item = self.model.item(row)
        kind = item.data(KIND_ROLE)
        if kind == "missing":
            self._show_current()
            self.missing_chosen.emit(item.data(NAME_ROLE))
            return
        self.select_path(item.data(PATH_ROLE) if kind != "none" else None)

    # -- compatibility marks (draft picker) ----------------------------------------------------
    def set_marks(self, marks: dict[str, tuple[bool | None, str]]) -> None:
        """Per path: (compatible or None for unknown, tooltip). Unlisted rows are reset."""
        for item in self.rows():
            path, kind = item.data(PATH_ROLE), item.data(KIND_ROLE)
            if kind in ("header", "none", "missing") or not path:
                continue
            ok, tip = next((m for p, m in marks.items() if _same(p, path)), (None, ""))
            label, warning = item.data(LABEL_ROLE), item.data(ALTERED_ROLE)
            if ok is False:
                item.setText(f"{label}  ⚠ incompatible")
                item.setForeground(QBrush(INCOMPATIBLE))
            else:
                item.setText(label + ("  ✓" if ok else ""))
                if warning:
                    item.setForeground(QBrush(ALTERED))
                else:
                    item.setData(None, Qt.ItemDataRole.ForegroundRole)
            item.setToolTip("\n".join(filter(None, (tip or path, warning))))
        row = self.row_of(self._current)
        self.combo.setToolTip(self.model.item(row).toolTip() if row >= 0 else "")


def _altered_warning(name: str) -> str:
    """A tooltip line if the pinned model ``name`` is altered, else "" (never hashes)."""
    entry = CATALOG.get(name)
    if entry is None:
        return ""
    check = check_model(entry)
    if check.state is not ModelState.ALTERED:
        return ""
    return (f"⚠ Altered: {check.detail}. Check it with `decodelab models verify {name}`, "
            f"replace it with `decodelab models fetch --repair {name}`.")


def _same(a: str | None, b: str | None) -> bool:
    if a is None or b is None:
        return a is b
    if a == b:
        return True
    try:
        return Path(a).resolve() == Path(b).resolve()
    except OSError:
        return False

"""A model combo box over the library: pinned models, folder files, recent files, Open….

Section headers are disabled items; a pinned model that is not installed can be chosen, and
the panel then offers to fetch it. An installed pinned model whose file changed since it
was verified (core models/integrity.py, a cheap size+mtime check) is marked altered (text,
warning colour, tooltip saying how to verify or repair it); it can still be chosen. The
draft picker marks what the compatibility survey found (text, colour, tooltip with the
failed checks) and, unless "show all" is on, lists only the models fit to serve as a draft
(``Mark.offered``); the others are hidden, with their reason beside them once shown. A
recent file can be removed from the list (right click, or the Remove button shown when the
chosen recent file could not be read).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from PySide6.QtCore import QPoint, Qt, Signal
from PySide6.QtGui import QBrush, QColor, QFont, QStandardItem, QStandardItemModel
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QListView,
    QMenu,
    QPushButton,
    QWidget,
)

from app.core.models.catalog import CATALOG
from app.core.models.integrity import ModelState, check_model
from app.core.sizes import human_size

__all__ = ["Entry", "Mark", "ModelPicker", "human_size"]

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
    """One row: kind is header, none, pinned, missing (pinned, not installed), file (in a
    model folder) or recent (a recent file: it can be removed from the list)."""

    kind: str
    label: str
    path: str | None = None
    name: str | None = None
    tooltip: str = ""


class Mark(NamedTuple):
    """What the survey found of one draft candidate: compatible (None: unknown yet), the
    tooltip, whether it is offered as a draft by default, and why not (a few words)."""

    compatible: bool | None
    tooltip: str
    offered: bool = True
    reason: str = ""


class ModelPicker(QWidget):
    """Label, combo and Open… button. ``chosen`` carries the path (None for no model)."""

    chosen = Signal(object)  # str | None
    missing_chosen = Signal(str)  # pinned name that is not installed
    open_requested = Signal()
    remove_requested = Signal(str)  # path of a recent file to take off the list

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
        # A list view, whose rows can be hidden (a model not fit to serve as a draft).
        self.combo.setView(QListView(self.combo))
        self.combo.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.combo.customContextMenuRequested.connect(self._context_menu)
        self.open_button = QPushButton("Open…")
        self.open_button.setToolTip(f"Open a GGUF file as the {title.lower().rstrip(':')}")
        self.open_button.clicked.connect(self.open_requested)
        self.remove_button = QPushButton("Remove from list")
        self.remove_button.setToolTip("Take this file off the recent files (it stays on disk)")
        self.remove_button.clicked.connect(self._remove_current)
        self.remove_button.hide()
        layout.addWidget(self.title)
        layout.addWidget(self.combo, 1)
        layout.addWidget(self.remove_button)
        layout.addWidget(self.open_button)
        self._current: str | None = None
        self._quiet = False
        self._marks: dict[str, Mark] = {}
        self.show_all = True  # the draft picker hides unfit models unless this is on
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
        self._apply_marks()
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
        """Every model listed, shown or hidden (the draft candidates to survey)."""
        return [p for it in self.rows()
                if (p := it.data(PATH_ROLE)) and it.data(KIND_ROLE) != "missing"]

    def is_hidden(self, path: str) -> bool:
        row = self.row_of(path)
        view = self.combo.view()
        return row >= 0 and isinstance(view, QListView) and view.isRowHidden(row)

    def hidden_count(self) -> int:
        """How many listed models are hidden (not fit to serve as a draft)."""
        view = self.combo.view()
        return sum(1 for row, it in enumerate(self.rows())
                   if it.data(PATH_ROLE) and it.data(KIND_ROLE) != "missing"
                   and isinstance(view, QListView) and view.isRowHidden(row))

    def kind_of(self, path: str | None) -> str | None:
        row = self.row_of(path)
        return self.model.item(row).data(KIND_ROLE) if row >= 0 else None

    # -- removing a recent file -----------------------------------------------------------------
    def set_removable(self, removable: bool) -> None:
        """Offer the Remove button for the chosen file (a recent file that is broken)."""
        self.remove_button.setVisible(removable and self.kind_of(self._current) == "recent")

    def _remove_current(self) -> None:
        if self._current is not None and self.kind_of(self._current) == "recent":
            self.remove_requested.emit(self._current)

    def _context_menu(self, pos: QPoint) -> None:
        path = self._current
        if path is None or self.kind_of(path) != "recent":
            return
        menu = QMenu(self)
        action = menu.addAction(f"Remove {Path(path).name} from the list")
        action.triggered.connect(lambda: self.remove_requested.emit(path))
        menu.popup(self.combo.mapToGlobal(pos))

    # -- selection ----------------------------------------------------------------------------
    @property
    def current_path(self) -> str | None:
        return self._current

    def select_path(self, path: str | None, emit: bool = True) -> None:
        """Select ``path`` (adding nothing: populate first); emits ``chosen`` if it changed."""
        changed = not _same(path, self._current)
        self._current = path
        if self._marks:
            self._apply_marks()  # the chosen model is listed even when not offered
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
    def set_marks(self, marks: Mapping[str, Mark | tuple[bool | None, str]]) -> None:
        """Per path: a ``Mark`` (or (compatible or None for unknown, tooltip)). Unlisted rows
        are reset."""
        self._marks = {p: m if isinstance(m, Mark) else Mark(*m) for p, m in marks.items()}
        self._apply_marks()

    def set_show_all(self, on: bool) -> None:
        """List every model (with why it is not offered) or only those fit to be a draft."""
        self.show_all = on
        self._apply_marks()

    def _mark_of(self, path: str) -> Mark:
        found = self._marks.get(path)
        if found is None:
            found = next((m for p, m in self._marks.items() if _same(p, path)), None)
        return found or Mark(None, "")

    def _apply_marks(self) -> None:
        view = self.combo.view()
        hide: dict[int, bool] = {}
        for row, item in enumerate(self.rows()):
            path, kind = item.data(PATH_ROLE), item.data(KIND_ROLE)
            if kind in ("header", "none", "missing") or not path:
                continue
            mark = self._mark_of(path)
            label, warning = item.data(LABEL_ROLE), item.data(ALTERED_ROLE)
            if mark.compatible is False:
                item.setText(f"{label}  ⚠ {mark.reason or 'incompatible'}")
                item.setForeground(QBrush(INCOMPATIBLE))
            else:
                note = f"  — {mark.reason}" if not mark.offered and mark.reason else ""
                item.setText(label + ("  ✓" if mark.compatible and mark.offered else "") + note)
                if warning:
                    item.setForeground(QBrush(ALTERED))
                elif not mark.offered:
                    item.setForeground(QBrush(MUTED))
                else:
                    item.setData(None, Qt.ItemDataRole.ForegroundRole)
            item.setToolTip("\n".join(filter(None, (mark.tooltip or path, warning))))
            # The chosen model stays listed, fit or not, so that the combo can show it.
            hide[row] = not (self.show_all or mark.offered or _same(path, self._current))
        if isinstance(view, QListView):
            self._hide_rows(view, hide)
        row = self.row_of(self._current)
        self.combo.setToolTip(self.model.item(row).toolTip() if row >= 0 else "")

    def _hide_rows(self, view: QListView, hide: dict[int, bool]) -> None:
        """Hide (and disable, so that the arrow keys skip them) the rows in ``hide``, and a
        section header all of whose models are hidden."""
        header, shown = -1, False
        for row, item in enumerate([*self.rows(), None]):
            kind = item.data(KIND_ROLE) if item is not None else "header"
            if kind == "header":
                if header >= 0:
                    view.setRowHidden(header, not shown)
                header, shown = row, False
                continue
            hidden = hide.get(row, False)
            view.setRowHidden(row, hidden)
            if item is not None and kind != "none":
                flags = item.flags()
                enabled = Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable
                item.setFlags(flags & ~enabled if hidden else flags | enabled)
            shown = shown or not hidden


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

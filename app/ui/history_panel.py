"""History: every saved run and comparison, newest first, to filter, reopen, re-run,
delete and export (JSON, CSV per run and optionally per token, plots as PNG or SVG); and
below, every saved conversation of the Chat tab (``history_chats.ConversationHistory``,
filtered with the same filters).

Reading the folder happens here (``History.list`` keeps a cache, so a refresh re-reads only
new files); writing records happens on the engine lane, so this panel only learns about a
new record through ``refresh``. Opening, re-running and plot sources are the window's
business: the panel asks through signals and a callable.

Every label comes from the one table of display names (``app.core.labels``); speedups are
shown as they were shown when the run ended (a Run-tab run keeps its own, a comparison's
with the range of its repeats), and each row and comparison carries the one verdict
(``verdict.judge``): a comparison where nothing beat the baseline never names a "best".
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLineEdit,
    QMenu,
    QMessageBox,
    QPushButton,
    QSplitter,
    QToolButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.core import export
from app.core.chat.store import ConversationStore
from app.core.errors import DecodeLabError
from app.core.history import History
from app.core.labels import field_label, setting_label, stop_label, track_label
from app.core.serialization import RunSummary
from app.core.tracks import working
from app.core.verdict import Candidate, Verdict, format_speedup, judge
from app.ui.history_chats import ConversationHistory
from app.ui.jobs import empty_state, fmt_rate, hint, when
from app.ui.plots import export_plot

log = logging.getLogger("app.ui.history")

COLUMNS = ("When", setting_label("track"), field_label("n_generated"),
           field_label("tokens_per_second"), field_label("speedup"), field_label("verdict"),
           field_label("acceptance_rate"), field_label("stop_reason"), "Target", "Draft",
           "Prompt")
TRACK, SPEEDUP, VERDICT, TARGET, DRAFT, PROMPT = 1, 4, 5, 8, 9, 10
NUMBERS = (2, 3, 4, 6)
WIDE = {VERDICT: 260, TARGET: 240, DRAFT: 240, PROMPT: 360}  # long texts must not hide numbers
EMPTY = ("No saved runs yet. Every run and comparison you finish or stop is kept here; "
         "select one to reopen it, run it again, delete it or export it.")
ROLE = Qt.ItemDataRole.UserRole


def candidate(s: RunSummary) -> Candidate:
    """A saved run as the verdict weighs it: its speedups as they were shown."""
    speedups = s.speedups or ([s.speedup] if s.speedup is not None else [])
    return Candidate(s.id, track_label(s.track), tuple(speedups), s.drafted_nothing)


def run_verdict(s: RunSummary) -> Verdict | None:
    """The verdict on one saved run against its baseline (None for the baseline itself)."""
    return None if s.track == "baseline" else judge([candidate(s)])


def _row(s: RunSummary) -> QTreeWidgetItem:
    speedups = s.speedups or s.speedup
    v = run_verdict(s)
    item = QTreeWidgetItem([
        when(s.created_unix), track_label(s.track),
        str(s.n_generated), f"{s.tokens_per_second:.1f}", format_speedup(speedups),
        ("reference" if s.comparison_id else "") if v is None else
        v.short if v.kind != "none" else "",
        fmt_rate(s.acceptance_rate), stop_label(s.stop_reason), s.target, s.draft or "",
        s.prompt_preview])
    item.setData(0, ROLE, s.id)
    for column in NUMBERS:
        item.setTextAlignment(column, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
    item.setToolTip(TARGET, s.target_path)
    item.setToolTip(DRAFT, s.draft_path or "")
    item.setToolTip(PROMPT, s.prompt[:2000])
    said = [s.verdict if s.verdict and not s.comparison_id else "",
            v.text if v is not None else "",
            f"Drafted nothing: {s.drafted_nothing}." if s.drafted_nothing else ""]
    tip = "\n\n".join(dict.fromkeys(t for t in said if t))
    for column in (SPEEDUP, VERDICT):
        item.setToolTip(column, tip)
    return item


def _group(s: RunSummary) -> QTreeWidgetItem:
    item = QTreeWidgetItem([when(s.created_unix), "Comparison"] + [""] * 6
                           + [s.target, s.draft or "", s.prompt_preview])
    item.setData(0, ROLE, s.comparison_id)
    font = item.font(TRACK)
    font.setBold(True)
    item.setFont(TRACK, font)
    return item


def group_verdict(members: list[RunSummary]) -> Verdict:
    """The verdict on a saved comparison from its members' saved speedups."""
    return judge([candidate(m) for m in members if m.track != "baseline"])


class HistoryPanel(QWidget):
    reopen_requested = Signal(object)  # RunRecord | ComparisonRecord
    rerun_requested = Signal(object)  # Rerun
    conversation_requested = Signal(object)  # a saved Conversation, to continue in Chat
    error = Signal(str)

    def __init__(self, plots: Callable[[], dict[str, Any]] | None = None,
                 parent: QWidget | None = None,
                 conversations: ConversationStore | None = None) -> None:
        super().__init__(parent)
        self.history = History()
        self.plots = plots or dict
        # Asked before deleting; tests replace it.
        self.ask: Callable[[str], bool] = self._ask
        self.chats = ConversationHistory(conversations, ask=lambda q: self.ask(q))
        self.chats.conversation_requested.connect(self.conversation_requested)
        self.chats.error.connect(self.error)
        self._build()
        self.refresh()

    def _build(self) -> None:
        layout = QVBoxLayout(self)
        row = QHBoxLayout()
        self.model_filter = QLineEdit()
        self.model_filter.setPlaceholderText("model file contains…")
        self.track_filter = QComboBox()
        self.track_filter.addItem("all tracks", None)
        for t in working():
            self.track_filter.addItem(track_label(t.id), t.id)
        self.prompt_filter = QLineEdit()
        self.prompt_filter.setPlaceholderText("prompt contains…")
        for w in (self.model_filter, self.track_filter, self.prompt_filter):
            row.addWidget(w, 1)
        layout.addLayout(row)
        buttons = QHBoxLayout()
        self.reopen_button = QPushButton("Reopen")
        self.reopen_button.setToolTip("show the answer and plots again (a comparison opens "
                                      "in Compare)")
        self.rerun_button = QPushButton("Run again")
        self.delete_button = QPushButton("Delete")
        self.export_button = QToolButton()
        self.export_button.setText("Export")
        self.export_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        menu = QMenu(self.export_button)
        menu.addAction("JSON (re-importable)…", lambda: self.export_dialog("json"))
        menu.addAction("CSV, one row per run…", lambda: self.export_dialog("csv"))
        menu.addAction("CSV, with per-token rows…", lambda: self.export_dialog("tokens"))
        self.export_button.setMenu(menu)
        self.plot_button = QToolButton()
        self.plot_button.setText("Export plot")
        self.plot_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        self.plot_menu = QMenu(self.plot_button)
        self.plot_menu.aboutToShow.connect(self._fill_plot_menu)
        self.plot_button.setMenu(self.plot_menu)
        for button in (self.reopen_button, self.rerun_button, self.delete_button,
                       self.export_button, self.plot_button):
            buttons.addWidget(button)
        self.status = hint("")
        buttons.addWidget(self.status, 1)
        layout.addLayout(buttons)
        self.tree = QTreeWidget()
        self.tree.setHeaderLabels(list(COLUMNS))
        self.tree.setAlternatingRowColors(True)
        self.tree.setUniformRowHeights(True)
        self.tree.setRootIsDecorated(True)
        self.empty = empty_state(EMPTY)
        runs = QWidget()
        runs_layout = QVBoxLayout(runs)
        runs_layout.setContentsMargins(0, 0, 0, 0)
        runs_layout.addWidget(self.empty, 1)
        runs_layout.addWidget(self.tree, 1)
        self.split = QSplitter(Qt.Orientation.Vertical)
        self.split.setChildrenCollapsible(False)
        self.split.addWidget(runs)
        self.split.addWidget(self.chats)
        self.split.setSizes([500, 260])
        layout.addWidget(self.split, 1)

        self.model_filter.textChanged.connect(self.refresh)
        self.prompt_filter.textChanged.connect(self.refresh)
        self.track_filter.currentIndexChanged.connect(self.refresh)
        self.tree.itemSelectionChanged.connect(self._update_buttons)
        self.tree.itemDoubleClicked.connect(lambda *_: self.reopen())
        self.reopen_button.clicked.connect(self.reopen)
        self.rerun_button.clicked.connect(self.rerun)
        self.delete_button.clicked.connect(lambda: self.delete())

    # -- listing ------------------------------------------------------------------------------
    def refresh(self) -> None:
        """Re-list the folder with the filters; keeps the selection when it still exists."""
        keep = self.selected()
        everything = self.history.list()
        found = self.history.list(self.model_filter.text().strip() or None,
                                  self.track_filter.currentData(),
                                  self.prompt_filter.text().strip() or None)
        self.tree.clear()
        groups: dict[str, QTreeWidgetItem] = {}
        members: dict[str, list[RunSummary]] = {}
        for s in found:  # newest first: a comparison sits where its newest member is
            if s.comparison_id is None:
                self.tree.addTopLevelItem(_row(s))
                continue
            group = groups.get(s.comparison_id)
            if group is None:
                group = groups[s.comparison_id] = _group(s)
                self.tree.addTopLevelItem(group)
            group.insertChild(0, _row(s))  # members were saved in run order
            members.setdefault(s.comparison_id, []).append(s)
        for cid, group in groups.items():
            n = group.childCount()
            runs = members[cid]
            repeats = max((len(m.speedups or []) for m in runs), default=0)
            again = f" × {repeats} repeats" if repeats > 1 else ""
            group.setText(TRACK, f"Comparison · {n} track{'s' * (n != 1)}{again}")
            verdict = group_verdict(runs)
            group.setText(VERDICT, verdict.short)
            # As it was shown when it ended, where that was kept; else judged now.
            shown = next((m.verdict for m in runs if m.verdict), None)
            group.setToolTip(VERDICT, shown or verdict.text)
            if verdict.best is not None:
                best = next(m for m in runs if m.id == verdict.best)
                group.setText(SPEEDUP, format_speedup(best.speedups or best.speedup))
            group.setExpanded(True)
        for i in range(len(COLUMNS)):
            self.tree.resizeColumnToContents(i)
            self.tree.setColumnWidth(i, min(self.tree.columnWidth(i), WIDE.get(i, 10_000)))
        self.empty.setVisible(not everything)
        self.tree.setVisible(bool(everything))
        self.status.setText("" if found or not everything else "Nothing matches the filter.")
        if keep:
            self.select(keep)
        self._update_buttons()
        self.refresh_conversations()

    def refresh_conversations(self) -> None:
        """List the saved conversations that pass the same filters as the runs."""
        self.chats.refresh(self.model_filter.text(), self.track_filter.currentData(),
                           self.prompt_filter.text())

    def ids(self) -> list[str]:
        """Top-level ids shown (runs and comparisons), newest first."""
        return [str(it.data(0, ROLE)) for it in self._tops()]

    def _tops(self) -> list[QTreeWidgetItem]:
        items = (self.tree.topLevelItem(i) for i in range(self.tree.topLevelItemCount()))
        return [it for it in items if it is not None]

    def select(self, item_id: str) -> bool:
        it = self._find(item_id)
        if it is not None:
            self.tree.setCurrentItem(it)
        return it is not None

    def _find(self, item_id: str) -> QTreeWidgetItem | None:
        for top in self._tops():
            for it in [top, *(top.child(j) for j in range(top.childCount()))]:
                if it is not None and it.data(0, ROLE) == item_id:
                    return it
        return None

    def selected(self) -> str | None:
        item = self.tree.currentItem()
        return str(item.data(0, ROLE)) if item is not None else None

    def _update_buttons(self) -> None:
        on = self.selected() is not None
        for w in (self.reopen_button, self.rerun_button, self.delete_button,
                  self.export_button):
            w.setEnabled(on)

    # -- actions ------------------------------------------------------------------------------
    def _guard(self, what: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except (DecodeLabError, OSError, ValueError) as exc:
            text = f"{what} failed: {exc}"
            self.status.setText(text)
            self.error.emit(text)
            return None

    def reopen(self, item_id: str | None = None) -> bool:
        item_id = item_id or self.selected()
        if item_id is None:
            return False
        load = (self.history.load_comparison if item_id.startswith("cmp-")
                else self.history.load)
        record = self._guard("Reopening", lambda: load(item_id))
        if record is not None:
            self.reopen_requested.emit(record)
        return record is not None

    def rerun(self) -> bool:
        item_id = self.selected()
        if item_id is None:
            return False
        plan = self._guard("Preparing the re-run", lambda: self.history.rerun(item_id))
        if plan is not None:
            self.rerun_requested.emit(plan)
        return plan is not None

    def delete(self, item_id: str | None = None) -> int:
        item_id = item_id or self.selected()
        if item_id is None:
            return 0
        what = "this comparison (every track of it)" if item_id.startswith("cmp-") \
            else "this run"
        if not self.ask(f"Delete {what} from the history? This cannot be undone."):
            return 0
        removed = self._guard("Deleting", lambda: self.history.delete(item_id)) or 0
        self.refresh()
        if removed:
            self.status.setText(f"deleted {removed} run{'s' * (removed != 1)}")
        return int(removed)

    def _ask(self, question: str) -> bool:
        answer = QMessageBox.question(self, "Delete from history", question)
        return answer == QMessageBox.StandardButton.Yes

    # -- export -------------------------------------------------------------------------------
    def exportable(self, item_id: str) -> Any:
        if item_id.startswith("cmp-"):
            return self.history.load_comparison(item_id).records
        return self.history.load(item_id)

    def export_to(self, path: str, kind: str, item_id: str | None = None) -> list[str]:
        """Write the selected run or comparison: ``json``, ``csv`` (a row per run) or
        ``tokens`` (that CSV plus ``<name>-tokens.csv``). Returns the files written."""
        item_id = item_id or self.selected()
        if item_id is None:
            return []
        x = self.exportable(item_id)
        if kind == "json":
            export.write_json(x, path)
            return [path]
        export.write_runs_csv(x, path)
        if kind != "tokens":
            return [path]
        p = Path(path)
        tokens = str(p.with_name(f"{p.stem}-tokens{p.suffix or '.csv'}"))
        export.write_tokens_csv(x, tokens)
        return [path, tokens]

    def export_dialog(self, kind: str) -> None:
        item_id = self.selected()
        if item_id is None:
            return
        suffix = "json" if kind == "json" else "csv"
        path, _ = QFileDialog.getSaveFileName(self, "Export", f"decodelab-{item_id}.{suffix}",
                                              f"{suffix.upper()} (*.{suffix})")
        if path:
            written = self._guard("Exporting", lambda: self.export_to(path, kind, item_id))
            if written:
                self.status.setText("exported to " + ", ".join(written))

    def _fill_plot_menu(self) -> None:
        self.plot_menu.clear()
        for name, widget in self.plots().items():
            self.plot_menu.addAction(name, functools.partial(self._export_plot, widget, name))

    def _export_plot(self, widget: Any, name: str) -> None:
        stem = "decodelab-" + "".join(c if c.isalnum() else "-" for c in name.lower())
        path, _ = QFileDialog.getSaveFileName(self, f"Export plot: {name}", f"{stem}.png",
                                              "PNG image (*.png);;SVG drawing (*.svg)")
        if path and self._guard("Exporting the plot", lambda: self._write_plot(widget, path)):
            self.status.setText(f"plot saved to {path}")

    @staticmethod
    def _write_plot(widget: Any, path: str) -> bool:
        export_plot(widget, path)
        return True

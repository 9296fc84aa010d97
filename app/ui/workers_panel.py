"""The "Remote workers" section: llama.cpp RPC workers that hold the target's layers.

Add an endpoint (``host:port`` of a ``decodelab worker``), remove one, test them: a probe
(``app.core.rpc.probe``, plain sockets with a timeout, on a daemon thread) says whether the
worker is reachable, its protocol version and its free and total memory. The panel also says
where the target's layers ran in the last run (``RunResult.effective["devices"]``).

It holds only what it shows; the window reads ``placement()`` into the run settings and
listens to ``workers_changed``.
"""

from __future__ import annotations

import html
import threading
from collections.abc import Sequence
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from app.core import rpc, rpc_native
from app.core.errors import RefusedError

ENDPOINT = Qt.ItemDataRole.UserRole
OK_COLOUR, FAILED_COLOUR = "#2e7d32", "#c62828"
NO_AUTH_NOTE = ("No authentication: run workers on a private network you trust, or reach "
                "them through an SSH tunnel.")


class WorkersPanel(QGroupBox):
    """Endpoints of remote workers, their test results, and how many layers go to them."""

    workers_changed = Signal()
    tested = Signal(str, bool, str)  # endpoint, reachable, the line shown for it
    _probed = Signal(int, str, bool, str)  # from the probe thread: generation, endpoint, ok, text

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Remote workers", parent)
        self._generation = 0  # results of tests started before a change are dropped
        self.list = QListWidget()
        self.list.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.list.setMaximumHeight(90)
        self.address = QLineEdit()
        self.address.setPlaceholderText(f"host:port, e.g. 192.168.1.20:{rpc.DEFAULT_PORT}")
        self.add_button = QPushButton("Add")
        self.remove_button = QPushButton("Remove")
        self.test_button = QPushButton("Test")
        self.layers = QSpinBox()
        self.layers.setRange(-1, 9999)
        self.layers.setValue(-1)
        self.layers.setSpecialValueText("all")
        self.layers.setToolTip("How many of the target's layers the workers hold (llama.cpp "
                               "counts the output layer as one); the rest run here. The "
                               "draft model always runs here.")
        self.message = QLabel()
        self.message.setWordWrap(True)
        self.where = QLabel()
        self.where.setWordWrap(True)
        note = QLabel(NO_AUTH_NOTE)
        note.setWordWrap(True)
        note.setStyleSheet("color: gray;")

        row = QHBoxLayout()
        row.addWidget(self.address, 1)
        for button in (self.add_button, self.remove_button, self.test_button):
            row.addWidget(button)
        layers_row = QHBoxLayout()
        layers_row.addWidget(QLabel("Target layers on the workers:"))
        layers_row.addWidget(self.layers)
        layers_row.addStretch(1)
        box = QVBoxLayout(self)
        box.addWidget(self.list)
        box.addLayout(row)
        box.addLayout(layers_row)
        box.addWidget(self.message)
        box.addWidget(self.where)
        box.addWidget(note)

        self.add_button.clicked.connect(self.add_from_field)
        self.address.returnPressed.connect(self.add_from_field)
        self.remove_button.clicked.connect(self.remove_selected)
        self.test_button.clicked.connect(self.test)
        self.layers.valueChanged.connect(lambda _v: self.workers_changed.emit())
        self.list.itemSelectionChanged.connect(self._update_buttons)
        self._probed.connect(self._show_probe)
        if not rpc_native.supports_rpc():
            self.message.setText(html.escape(rpc.NO_RPC))
            for w in (self.address, self.add_button, self.layers):
                w.setEnabled(False)
        self.show_devices([])
        self._update_buttons()

    # -- what the window reads ------------------------------------------------------------
    def endpoints(self) -> list[str]:
        return [str(self.list.item(i).data(ENDPOINT)) for i in range(self.list.count())]

    def placement(self) -> dict[str, Any]:
        """The ``RunSettings`` fields of the target's placement (none: all layers here)."""
        endpoints = self.endpoints()
        if not endpoints:
            return {"rpc": [], "rpc_split": [], "gpu_layers": 0}
        layers = self.layers.value()
        return {"rpc": endpoints, "rpc_split": [], "gpu_layers": layers if layers else -1}

    def set_endpoints(self, endpoints: Sequence[str]) -> None:
        """Show these workers (e.g. restored settings); unusable addresses are left out."""
        self.list.clear()
        for text in endpoints:
            self._add(text, quiet=True)
        self._changed()

    # -- editing ----------------------------------------------------------------------------
    def add_from_field(self) -> None:
        if self._add(self.address.text(), quiet=False):
            self.address.clear()
            self._changed()
            self.test([self.endpoints()[-1]])

    def _add(self, text: str, quiet: bool) -> bool:
        try:
            endpoint = str(rpc.parse_endpoint(text, rpc.DEFAULT_PORT))
        except RefusedError as exc:
            if not quiet:
                self._say(str(exc), ok=False)
            return False
        if endpoint in self.endpoints():
            if not quiet:
                self._say(f"{endpoint} is already in the list", ok=False)
            return False
        item = QListWidgetItem(endpoint)
        item.setData(ENDPOINT, endpoint)
        self.list.addItem(item)
        return True

    def remove_selected(self) -> None:
        for item in self.list.selectedItems():
            self.list.takeItem(self.list.row(item))
        self._changed()

    def _changed(self) -> None:
        self._generation += 1
        self.message.clear()
        self._update_buttons()
        self.workers_changed.emit()

    def _update_buttons(self) -> None:
        has = self.list.count() > 0
        self.remove_button.setEnabled(bool(self.list.selectedItems()))
        self.test_button.setEnabled(has and rpc_native.supports_rpc())

    # -- testing ----------------------------------------------------------------------------
    def test(self, endpoints: Sequence[str] | None = None) -> None:
        """Probe the given workers (default: the selected ones, or all) off the GUI thread."""
        if not endpoints:
            chosen = [str(i.data(ENDPOINT)) for i in self.list.selectedItems()]
            endpoints = chosen or self.endpoints()
        generation = self._generation
        for endpoint in endpoints:
            self._set_item(endpoint, f"{endpoint} — testing…", None)
            threading.Thread(target=self._probe, args=(generation, endpoint),
                             name=f"probe {endpoint}", daemon=True).start()

    def _probe(self, generation: int, endpoint: str) -> None:
        try:
            text, ok = rpc.probe(endpoint).summary(), True
        except (rpc.WorkerError, RefusedError) as exc:
            text, ok = str(exc).removeprefix(f"worker {endpoint}: "), False
        self._probed.emit(generation, endpoint, ok, text)  # queued to the GUI thread

    def _show_probe(self, generation: int, endpoint: str, ok: bool, text: str) -> None:
        if generation != self._generation:
            return  # the list changed meanwhile
        self._set_item(endpoint, f"{endpoint} — {text}", ok)
        self.tested.emit(endpoint, ok, text)

    def _set_item(self, endpoint: str, text: str, ok: bool | None) -> None:
        for i in range(self.list.count()):
            item = self.list.item(i)
            if item.data(ENDPOINT) == endpoint:
                item.setText(text)
                item.setToolTip(text)
                colour = None if ok is None else OK_COLOUR if ok else FAILED_COLOUR
                item.setForeground(QColor(colour) if colour else self.palette().text().color())

    def _say(self, text: str, ok: bool) -> None:
        colour = OK_COLOUR if ok else FAILED_COLOUR
        self.message.setText(f'<span style="color:{colour}">{html.escape(text)}</span>')

    # -- where the last run's layers were ----------------------------------------------------
    def show_devices(self, devices: Sequence[dict[str, Any]]) -> None:
        """Where the target's layers ran (a result's ``effective["devices"]``)."""
        placed = [rpc.DevicePlacement(**d) for d in devices]
        self.where.setText("Last run: " + html.escape(rpc.describe_placement(placed)))

"""The model panel: target and draft pickers over the library, their metadata, the draft's
compatibility checks, fetching pinned models (with progress and Cancel) and the first-run
offer to fetch the default model.

The panel holds no model state beyond what it shows: it follows the workbench state
(``observe``), which reads the models and checks the draft candidates, and hands the user's
choices to it. Why a chosen model cannot be read is the error banner's to say (one place);
the panel offers to remove such a file from the recent files. The draft picker lists the
models fit to serve as a draft (``app.core.compat.draft_fit``); "show all" lists the others
with their reason. A collapsible "Remote workers" section (``WorkersPanel``) holds the
llama.cpp RPC workers the target's layers may run on, and a line under the target says
where its layers run: planned from the workers listed, or as the last run placed them.
"""

from __future__ import annotations

import contextlib
import html
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QFileDialog,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.core import rpc
from app.core.models import DEFAULT_MODEL, Library
from app.core.sizes import human_size
from app.ui.banner import Banner
from app.ui.model_picker import Entry, Mark, ModelPicker
from app.ui.state import norm
from app.ui.workers_panel import WorkersPanel

if TYPE_CHECKING:
    from app.core.compat import Compatibility, DraftFit
    from app.ui.state import WorkbenchState


def info_html(info: Any) -> str:
    """A compact table of a ModelInfo's metadata."""
    if info.is_recurrent:
        ssm = "<b>recurrent (SSM)</b>: no speculation"
    elif info.is_hybrid:
        ssm = "<b>hybrid (SSM + attention)</b>: no speculation"
    else:
        ssm = "attention only"
    moe = (f"{info.expert_count} experts, {info.expert_used_count} used per token"
           if info.is_moe else "dense (no experts)")
    rows = [
        ("architecture", html.escape(info.architecture)),
        ("size", f"{html.escape(info.size_label)} params, {human_size(info.file_size)}"),
        ("quantization", html.escape(info.quantization_label)),
        ("context", f"{info.context_length:,} tokens"),
        ("vocabulary", f"{info.n_vocab:,} tokens ({html.escape(info.tokenizer_model)})"),
        ("MoE", moe),
        ("SSM", ssm),
        ("chat template", "yes" if info.has_chat_template else "none"),
    ]
    cells = "".join(f"<tr><td style='color:#5b6573;padding-right:8px'>{k}</td><td>{v}</td></tr>"
                    for k, v in rows)
    return f"<b>{html.escape(info.name)}</b><table cellspacing=0>{cells}</table>"


def planned_placement(placement: dict[str, Any]) -> str:
    """Where the next run puts the target's layers, from the placement fields of
    ``RunSettings`` (llama.cpp decides the exact split when it loads the model)."""
    workers = placement.get("rpc") or []
    if not workers:
        return "all layers on this machine"
    layers = int(placement.get("gpu_layers", -1))
    many = "all layers" if layers < 0 else f"{layers} layer{'s' * (layers != 1)}"
    rest = "" if layers < 0 else ", the rest on this machine"
    return f"{many} on {', '.join(workers)}{rest} (placed when the model loads)"


def compat_html(compat: Any) -> str:
    """The verdict, and the failed checks (all checks are in ``compat_tooltip``)."""
    if compat.compatible:
        return (f"<span style='color:#2e7d32'>✓ <b>compatible</b></span>: all "
                f"{len(compat.checks)} checks passed")
    lines = [f"<span style='color:#b3261e'>✗</span> {html.escape(c.name)}: "
             f"<span style='color:#5b6573'>{html.escape(c.detail)}</span>" for c in compat.failed]
    return ("<b style='color:#b3261e'>incompatible with the target</b><br>"
            + "<br>".join(lines))


def compat_tooltip(compat: Any) -> str:
    return "\n".join(f"{'✓' if c.ok else '✗'} {c.name}: {c.detail}" for c in compat.checks)


class ModelPanel(QGroupBox):
    target_chosen = Signal(object)  # path | None
    draft_chosen = Signal(object)
    fetch_requested = Signal(str)
    fetch_cancel_requested = Signal()
    library_changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Models", parent)
        self.library = Library.load()
        layout = QVBoxLayout(self)
        self.first_run = Banner(closable=False)
        self.first_run.action_clicked.connect(lambda: self.fetch_requested.emit(DEFAULT_MODEL))
        layout.addWidget(self.first_run)

        self.target = ModelPicker("Target:", allow_none=False)
        self.target.chosen.connect(self.target_chosen)
        self.target.missing_chosen.connect(self.offer_fetch)
        self.target.open_requested.connect(lambda: self.open_file(self.target))
        self.target.remove_requested.connect(self.remove_recent)
        layout.addWidget(self.target)
        self.target_info = QLabel("No target model chosen.")
        self.target_info.setObjectName("Hint")
        self.target_info.setWordWrap(True)
        self.target_info.setTextFormat(Qt.TextFormat.RichText)
        layout.addWidget(self.target_info)

        # Where the target's layers run: planned from the workers, then as placed.
        self.layers_line = QLabel("")
        self.layers_line.setObjectName("Hint")
        self.layers_line.setWordWrap(True)
        layout.addWidget(self.layers_line)

        self.draft = ModelPicker("Draft:", allow_none=True)
        self.draft.chosen.connect(self.draft_chosen)
        self.draft.missing_chosen.connect(self.offer_fetch)
        self.draft.open_requested.connect(lambda: self.open_file(self.draft))
        self.draft.remove_requested.connect(self.remove_recent)
        self.draft.set_show_all(False)
        layout.addWidget(self.draft)
        self.draft_all = QCheckBox("show all models")
        self.draft_all.setToolTip(
            "The draft list offers the models that can serve this target as a draft: "
            "compatible, smaller (fewer parameters or a smaller file), and neither the target "
            "itself nor its own model in another quantization. Show the others too, each "
            "with its reason.")
        self.draft_all.toggled.connect(self._show_all_drafts)
        self.draft_all.hide()
        layout.addWidget(self.draft_all)
        self.draft_note = QLabel("")
        self.draft_note.setObjectName("Reason")
        self.draft_note.setWordWrap(True)
        self.draft_note.hide()
        layout.addWidget(self.draft_note)
        self.compat = QLabel("")
        self.compat.setWordWrap(True)
        self.compat.setTextFormat(Qt.TextFormat.RichText)
        self.compat.hide()
        layout.addWidget(self.compat)
        self.draft_info = QLabel("")
        self.draft_info.setObjectName("Hint")
        self.draft_info.setWordWrap(True)
        self.draft_info.setTextFormat(Qt.TextFormat.RichText)
        self.draft_info.hide()
        layout.addWidget(self.draft_info)

        row = QHBoxLayout()
        self.add_folder_button = QPushButton("Add folder…")
        self.add_folder_button.setToolTip("List every .gguf file of a folder in the pickers")
        self.add_folder_button.clicked.connect(self.choose_folder)
        row.addWidget(self.add_folder_button)
        row.addStretch(1)
        layout.addLayout(row)

        self.fetch_box = QWidget()
        fetch_row = QHBoxLayout(self.fetch_box)
        fetch_row.setContentsMargins(0, 0, 0, 0)
        self.fetch_label = QLabel()
        self.fetch_label.setWordWrap(True)
        self.fetch_bar = QProgressBar()
        self.fetch_bar.setTextVisible(True)
        self.fetch_button = QPushButton("Fetch")
        self.fetch_cancel = QPushButton("Cancel")
        self.fetch_cancel.clicked.connect(self.fetch_cancel_requested)
        self._offered: str = DEFAULT_MODEL
        self.fetch_button.clicked.connect(lambda: self.fetch_requested.emit(self._offered))
        fetch_col = QVBoxLayout()
        fetch_col.addWidget(self.fetch_label)
        fetch_col.addWidget(self.fetch_bar)
        fetch_row.addLayout(fetch_col, 1)
        fetch_row.addWidget(self.fetch_button)
        fetch_row.addWidget(self.fetch_cancel)
        self.fetch_box.hide()
        layout.addWidget(self.fetch_box)

        self.workers_toggle = QToolButton()
        self.workers_toggle.setText("Remote workers")
        self.workers_toggle.setCheckable(True)
        self.workers_toggle.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.workers_toggle.setAutoRaise(True)
        self.workers_toggle.setToolTip("llama.cpp RPC workers (`decodelab worker`) that hold "
                                       "the target's layers; the draft model stays here")
        self.workers_toggle.toggled.connect(self.show_workers)
        layout.addWidget(self.workers_toggle)
        self.workers = WorkersPanel()
        self.workers.setTitle("")  # the toggle above names it
        self.workers.setFlat(True)
        layout.addWidget(self.workers)
        self.workers.workers_changed.connect(self._workers_changed)
        self._placed: str | None = None  # the last run's placement, while the workers hold
        self.show_workers(False)
        self.show_placement()
        self.refresh_library()

    # -- library ------------------------------------------------------------------------------
    def entries(self) -> list[Entry]:
        out: list[Entry] = [Entry("header", "Pinned models")]
        for st in self.library.pinned_status():
            e = st.entry
            if st.installed and st.path is not None:
                out.append(Entry("pinned", f"{e.name}  ({human_size(st.size)})", norm(st.path),
                                 e.name, f"{e.description}\n{e.role}\n{st.path}"))
            else:
                out.append(Entry("missing", f"{e.name}  — not installed ({human_size(e.size)})",
                                 None, e.name, f"{e.description}\nChoose it to fetch it."))
        listed = {x.path for x in out if x.path}
        scanned = self.library.scan()
        for folder in self.library.folders:
            files = [norm(p) for p in scanned if _under(p, folder)]
            out.append(Entry("header", f"Folder {folder}"))
            out += [Entry("file", Path(p).name, p, None, p) for p in files if p not in listed]
            listed.update(files)
        recent = [norm(p) for p in self.library.recent if norm(p) not in listed]
        if recent:
            out.append(Entry("header", "Recent files"))
            out += [Entry("recent", Path(p).name, p, None, p) for p in recent]
        return out

    def refresh_library(self) -> None:
        entries = self.entries()
        self.target.populate(entries)
        self.draft.populate(entries)
        self._show_hidden_count()
        has_model = any(e.kind in ("pinned", "file", "recent") for e in entries)
        if has_model or self.fetch_box.isVisible():
            self.first_run.hide()
        else:
            self.first_run.show_message(
                "info", f"No model yet. DecodeLab can fetch its small default model, "
                f"<b>{DEFAULT_MODEL}</b> (about 98 MB), or you can open a GGUF file.",
                action=f"Fetch {DEFAULT_MODEL}")
        self.library_changed.emit()

    def use_path(self, picker: ModelPicker, path: str | None, emit: bool = True) -> None:
        """Choose ``path`` in ``picker``, adding it to the recent files if it is not listed
        (``emit``: as the user's choice)."""
        if path is not None:
            path = norm(path)
            if picker.row_of(path) < 0:
                with contextlib.suppress(OSError):
                    self.library.add_recent(path)
                self.refresh_library()
                if picker.row_of(path) < 0:  # e.g. a missing file: list it anyway
                    extra = [*self.entries(), Entry("file", Path(path).name, path, None, path)]
                    self.target.populate(extra)
                    self.draft.populate(extra)
        picker.select_path(path, emit)

    def open_file(self, picker: ModelPicker) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open a GGUF model", str(Path.home()),
                                              "GGUF models (*.gguf);;All files (*)")
        if path:
            self.use_path(picker, path)

    def remove_recent(self, path: str) -> None:
        """Take ``path`` off the recent files; where it was chosen, choose nothing instead."""
        with contextlib.suppress(OSError):  # a read-only config folder: forget it for now
            self.library.remove_recent(path)
        for chosen in (self.target, self.draft):
            if chosen.current_path is not None and norm(chosen.current_path) == norm(path):
                chosen.select_path(None)
        self.refresh_library()

    def _show_all_drafts(self, on: bool) -> None:
        self.draft.set_show_all(on)
        self._show_hidden_count()

    def _show_hidden_count(self) -> None:
        hidden = self.draft.hidden_count()
        on = self.draft_all.isChecked()
        self.draft_all.setVisible(on or hidden > 0)
        self.draft_all.setText("show all models" if on
                               else f"show all models ({hidden} hidden: not fit as a draft)")

    def choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Add a folder of GGUF models")
        if folder:
            self.add_folder(folder)

    def add_folder(self, folder: str) -> None:
        try:
            self.library.add_folder(folder)
        except Exception as exc:  # ModelFileError, OSError: say so, keep going
            self.fetch_label.setText(str(exc))
            return
        self.refresh_library()

    # -- the workbench state ----------------------------------------------------------------
    def observe(self, state: WorkbenchState) -> None:
        """Show ``state`` as it changes, and hand it the user's choices: target, draft and
        the draft candidates listed."""
        self.target_chosen.connect(state.set_target)
        self.draft_chosen.connect(state.set_draft)
        self.library_changed.connect(lambda: state.set_candidates(self.draft.paths()))
        state.models_changed.connect(lambda: self.show_models(state))
        state.candidates_changed.connect(
            lambda: self.show_marks(state.candidates(), state.fits()))
        state.busy_changed.connect(lambda _busy: self.show_enabled(state))
        state.set_candidates(self.draft.paths())
        self.show_models(state)

    def show_models(self, state: WorkbenchState) -> None:
        """The chosen paths in the pickers, what is known of each model, the pair's
        compatibility, and whether a draft can be chosen at all."""
        for picker, path in ((self.target, state.target_path), (self.draft, state.draft_path)):
            if picker.current_path != path:
                self.use_path(picker, path, emit=False)
        # A model that cannot be read: the error banner says why; here, the way out.
        if state.target_info is not None:
            self.show_target(state.target_info)
        elif state.target_error is not None:
            self.show_target(None, "")
        else:
            self.show_target(None, "Inspecting…" if state.target_path
                             else "No target model chosen.")
        self.target.set_removable(state.target_error is not None)
        self.draft.set_removable(state.draft_error is not None)
        compat = state.compatibility
        if not state.draft_path or state.draft_error is not None:
            self.show_draft(None, None)
        elif state.draft_info is not None or compat is not None:
            self.show_draft(state.draft_info, compat)
        else:
            self.show_draft(None, None, "Inspecting…")
        self.show_enabled(state)

    def show_target(self, info: Any | None, note: str = "") -> None:
        self.target_info.setText(info_html(info) if info is not None else note)
        self.target_info.setVisible(info is not None or bool(note))

    def show_draft(self, info: Any | None, compat: Any | None, note: str = "") -> None:
        self.draft_info.setVisible(info is not None)
        self.draft_info.setText(info_html(info) if info is not None else "")
        self.compat.setVisible(compat is not None)
        self.compat.setText(compat_html(compat) if compat is not None else "")
        self.compat.setToolTip(compat_tooltip(compat) if compat is not None else "")
        self.draft_note.setVisible(bool(note))
        self.draft_note.setText(note)

    def show_marks(self, checked: dict[str, Compatibility | str],
                   fits: dict[str, DraftFit] | None = None) -> None:
        """Mark each draft candidate checked against the target (the reason on hover) and
        list only those fit to serve as a draft unless "show all" is on."""
        fits = fits or {}
        marks: dict[str, Mark] = {}
        for path, c in checked.items():
            if isinstance(c, str):
                marks[path] = Mark(False, f"cannot be read: {c}", False, "cannot be read")
                continue
            failed = "\n".join(f"✗ {x.name}: {x.detail}" for x in c.failed)
            tip = ("compatible with the target: every check passed" if c.compatible
                   else f"incompatible with the target:\n{failed}")
            fit = fits.get(path)
            if fit is None:
                marks[path] = Mark(c.compatible, tip, c.compatible)
            else:
                tip += "" if fit.offered else f"\nNot offered as a draft: {fit.reason}"
                marks[path] = Mark(c.compatible, tip, fit.offered, fit.reason)
        self.draft.set_marks(marks)
        self._show_hidden_count()

    def show_enabled(self, state: WorkbenchState) -> None:
        """No model changes while the engine is held; no draft for an SSM target."""
        blocked = state.draft_blocked
        for w in (self.target, self.add_folder_button):
            w.setEnabled(not state.busy)
        self.draft.setEnabled(not state.busy and blocked is None)
        self.draft.setToolTip(blocked or "")
        self.draft_all.setEnabled(self.draft.isEnabled())

    # -- remote workers --------------------------------------------------------------------------
    def show_workers(self, on: bool) -> None:
        """Open or fold the "Remote workers" section."""
        if self.workers_toggle.isChecked() != on:
            self.workers_toggle.setChecked(on)  # comes back here through toggled
            return
        self.workers.setVisible(on)
        self.workers_toggle.setArrowType(Qt.ArrowType.DownArrow if on
                                         else Qt.ArrowType.RightArrow)

    def set_workers(self, endpoints: Sequence[str]) -> None:
        """List these workers (restored or from ``--rpc``); the section opens if any."""
        self.workers.set_endpoints(endpoints)
        if self.workers.endpoints():
            self.show_workers(True)

    def _workers_changed(self) -> None:
        self._placed = None  # the last run's placement no longer says where the next goes
        self.show_placement()

    def show_placement(self, devices: Sequence[dict[str, Any]] | None = None) -> None:
        """Where the target's layers run: as a run placed them (its ``effective["devices"]``)
        or, without, as the workers listed plan it."""
        if devices is not None:
            self._placed = rpc.describe_placement([rpc.DevicePlacement(**d) for d in devices])
            self.workers.show_devices(devices)
        text = (f"Target layers: {self._placed} (last run)" if self._placed is not None
                else f"Target layers: {planned_placement(self.workers.placement())}")
        self.layers_line.setText(text)
        self.layers_line.setToolTip(text)

    # -- fetching -------------------------------------------------------------------------------
    def offer_fetch(self, name: str) -> None:
        from app.core.models import CATALOG

        entry = CATALOG.get(name)
        self._offered = name
        size = human_size(entry.size) if entry else "?"
        self.fetch_label.setText(f"{name} is not installed. Fetch it ({size})?")
        self.fetch_bar.hide()
        self.fetch_button.show()
        self.fetch_cancel.hide()
        self.fetch_box.show()

    def fetch_started(self, name: str) -> None:
        self.first_run.hide()
        self.fetch_label.setText(f"Fetching {name}…")
        self.fetch_bar.setRange(0, 0)
        self.fetch_bar.show()
        self.fetch_button.hide()
        self.fetch_cancel.show()
        self.fetch_cancel.setEnabled(True)
        self.fetch_box.show()

    def fetch_progress(self, p: Any) -> None:
        frac = p.fraction
        if frac is None:
            self.fetch_bar.setRange(0, 0)
        else:
            self.fetch_bar.setRange(0, 1000)
            self.fetch_bar.setValue(int(frac * 1000))
        detail = f" — {p.message}" if p.message and p.stage != "done" else ""
        amount = f" {human_size(p.current)} of {human_size(p.total)}" if p.total else ""
        self.fetch_label.setText(f"{p.model}: {p.stage}{amount}{detail}"[:160])

    def fetch_ended(self, message: str, ok: bool) -> None:
        self.fetch_label.setText(message)
        self.fetch_bar.hide()
        self.fetch_cancel.hide()
        self.fetch_button.setVisible(not ok)
        self.refresh_library()


def _under(path: Path, folder: Path) -> bool:
    try:
        path.relative_to(folder)
    except ValueError:
        return False
    return True

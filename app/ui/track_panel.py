"""The track selector: every track of the registry with its number and a one-line
explanation. Working tracks are selectable where they apply to the loaded models; the
others are disabled with the reason as tooltip and as visible text. Deprecated tracks sit
in their own group, disabled, each with its failure mode and the track to use instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QButtonGroup,
    QGroupBox,
    QLabel,
    QRadioButton,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.core.tracks import BY_ID, DEPRECATED, WORKING, Track, availability
from app.ui.track_settings import TrackSettings


def short_reason(track: Track, target: Any | None, draft: Any | None,
                 compat: Any | None) -> str | None:
    """A few words on why ``track`` is off for this pair (None: it can run)."""
    if availability(track, target, draft, compat) is None:
        return None
    if target is None:
        return "no model loaded"
    if track.speculates and not target.speculation_allowed:
        return "SSM model: speculation off"
    if track.uses_moe and not target.is_moe:
        return "not an MoE model"
    if track.uses_draft:
        if draft is None:
            return "no draft loaded"
        if not draft.speculation_allowed:
            return "draft is an SSM model"
        if compat is not None and not compat.compatible:
            return "draft incompatible (" + ", ".join(c.name for c in compat.failed) + ")"
    return "not available"


@dataclass
class TrackRow:
    track: Track
    radio: QRadioButton
    summary: QLabel
    reason: QLabel


class TrackPanel(QGroupBox):
    track_changed = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Tracks", parent)
        layout = QVBoxLayout(self)
        layout.setSpacing(1)
        self.group = QButtonGroup(self)
        self.group.setExclusive(True)
        self.rows: dict[str, TrackRow] = {}
        for t in WORKING:
            row = self._row(t)
            self.group.addButton(row.radio)
            row.radio.toggled.connect(lambda on, tid=t.id: self._on_toggled(tid) if on else None)
            row.radio.clicked.connect(lambda _=False, tid=t.id: setattr(self, "preferred", tid))
            for w in (row.radio, row.summary, row.reason):
                layout.addWidget(w)
        self.preferred = "baseline"
        # The settings sit right under the working tracks, before the deprecated ones.
        self._target: Any | None = None
        self.settings = TrackSettings()
        layout.addSpacing(6)
        layout.addWidget(self.settings)

        self.deprecated_toggle = QToolButton()
        self.deprecated_toggle.setText(f"Deprecated tracks ({len(DEPRECATED)}): why they fail")
        self.deprecated_toggle.setCheckable(True)
        self.deprecated_toggle.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.deprecated_toggle.setArrowType(Qt.ArrowType.RightArrow)
        self.deprecated_toggle.setAutoRaise(True)
        self.deprecated_toggle.toggled.connect(self._toggle_deprecated)
        layout.addSpacing(6)
        layout.addWidget(self.deprecated_toggle)
        self.deprecated_box = QGroupBox("Deprecated: not runnable on GGUF models")
        dep_layout = QVBoxLayout(self.deprecated_box)
        dep_layout.setSpacing(1)
        for t in DEPRECATED:
            row = self._row(t)
            row.radio.setEnabled(False)
            row.reason.setText(f"Fails: {t.failure}.\nUse instead: {t.instead}.")
            row.reason.show()
            tip = f"{t.label} is deprecated.\nFails: {t.failure}.\nUse instead: {t.instead}."
            for w in (row.radio, row.summary, row.reason):
                w.setToolTip(tip)
                dep_layout.addWidget(w)
        self.deprecated_box.hide()
        layout.addWidget(self.deprecated_box)

        self.select("baseline")

    def _row(self, t: Track) -> TrackRow:
        radio = QRadioButton(t.label)
        summary = QLabel(t.summary)
        summary.setObjectName("TrackSummary")
        summary.setWordWrap(True)
        summary.setContentsMargins(22, 0, 0, 0)
        reason = QLabel("")
        reason.setObjectName("Reason")
        reason.setWordWrap(True)
        reason.setContentsMargins(22, 0, 0, 2)
        reason.hide()
        row = TrackRow(t, radio, summary, reason)
        self.rows[t.id] = row
        return row

    def _on_toggled(self, track_id: str) -> None:
        self._refresh_settings(self._target)
        self.track_changed.emit(track_id)

    def _toggle_deprecated(self, on: bool) -> None:
        self.deprecated_box.setVisible(on)
        arrow = Qt.ArrowType.DownArrow if on else Qt.ArrowType.RightArrow
        self.deprecated_toggle.setArrowType(arrow)

    # -- availability ----------------------------------------------------------------------------
    def set_models(self, target: Any | None, draft: Any | None, compat: Any | None) -> None:
        """Enable the tracks that apply; keep the preferred one if it can run, else baseline."""
        self._target = target
        for t in WORKING:
            row = self.rows[t.id]
            short = short_reason(t, target, draft, compat)
            full = availability(t, target, draft, compat)
            row.radio.setEnabled(short is None)
            row.reason.setVisible(short is not None)
            row.reason.setText(f"unavailable: {short}" if short else "")
            tip = f"{t.label}: {t.summary}" + (f"\n\nUnavailable: {full}" if full else "")
            for w in (row.radio, row.summary, row.reason):
                w.setToolTip(tip)
        current = self.selected()
        want = self.preferred
        if self.rows[want].radio.isEnabled():
            self._check(want)
        elif not self.rows[current].radio.isEnabled():
            self._check("baseline")
        self.settings.set_model(target)
        self._refresh_settings(target)

    def _refresh_settings(self, target: Any | None) -> None:
        ssm = None
        if target is not None and not target.speculation_allowed:
            ssm = target.speculation_reason
        self.settings.update_enabled(BY_ID[self.selected()], target, ssm)

    def _check(self, track_id: str) -> None:
        row = self.rows[track_id]
        if not row.radio.isChecked():
            row.radio.setChecked(True)

    def selected(self) -> str:
        for tid, row in self.rows.items():
            if row.radio.isChecked():
                return tid
        return "baseline"

    def selected_track(self) -> Track:
        return BY_ID[self.selected()]

    def select(self, track_id: str) -> bool:
        """Select ``track_id`` if it is enabled (and remember it as the user's preference)."""
        row = self.rows.get(track_id)
        if row is None or row.track.deprecated:
            return False
        self.preferred = track_id
        if not row.radio.isEnabled():
            return False
        self._check(track_id)
        return True

    def is_available(self, track_id: str) -> bool:
        row = self.rows.get(track_id)
        return bool(row and row.radio.isEnabled() and not row.track.deprecated)

    def set_locked(self, locked: bool) -> None:
        """No track or setting changes while a run is going."""
        self.setEnabled(not locked)

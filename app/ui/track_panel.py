"""The track selector: pick the draft sources and the MoE switch; the track is what they make.

One checkbox per draft source of the registry (its title, its one-line summary) and one for
MoE expert reduction; a line under them names the track that will run (nothing ticked: the
baseline). A box whose part cannot run on the loaded models is disabled, with the core's
short reason as visible text and the whole reason as tooltip; for a recurrent or hybrid
(SSM) target that is every source. Deprecated tracks sit in their own group, disabled, each
with its failure mode, the track to use instead and a "Reproduce…" button
(``reproduce_requested``: the track id) that measures it on the loaded model; the button is
disabled, with the core's reason, where the track cannot be reproduced on that model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QRadioButton,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.core.drafting.registry import sources
from app.core.reproduce.plan import refusal
from app.core.tracks import (
    BASELINE,
    DEPRECATED,
    MOE_NAME,
    MOE_NUMBER,
    Track,
    find_track,
    make_track,
    reasons,
)
from app.ui.track_settings import TrackSettings

if TYPE_CHECKING:
    from app.ui.state import WorkbenchState

MOE = "moe"  # the MoE switch's part of a track id


def label_of(track_id: str) -> str:
    """The track's label ("Track 8: Prompt lookup"), or its id if no source makes it now."""
    track = find_track(track_id)
    return track.label if track is not None else track_id


@dataclass
class PartRow:
    """One part of a track the user can tick: a draft source, or the MoE switch."""

    track: Track  # the track of this part alone: its reasons are the part's
    check: QCheckBox
    summary: QLabel
    reason: QLabel


@dataclass
class TrackRow:
    """A deprecated track: shown, never selectable."""

    track: Track
    radio: QRadioButton
    summary: QLabel
    reason: QLabel
    reproduce: QPushButton


def _small(text: str, name: str, bottom: int = 0) -> QLabel:
    label = QLabel(text)
    label.setObjectName(name)
    label.setWordWrap(True)
    label.setContentsMargins(22, 0, 0, bottom)
    return label


class TrackPanel(QGroupBox):
    track_changed = Signal(str)
    reproduce_requested = Signal(str)  # a deprecated track's id: measure it on the model

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Tracks", parent)
        layout = QVBoxLayout(self)
        layout.setSpacing(1)
        hint = QLabel("Tick the draft sources to combine, and MoE reduction; none = baseline.")
        hint.setObjectName("Hint")
        hint.setWordWrap(True)
        layout.addWidget(hint)
        self.parts: dict[str, PartRow] = {}
        titled = [(src.id, src.title, make_track([src.id], False)) for src in sources()]
        titled.append((MOE, f"{MOE_NAME} (Track {MOE_NUMBER})", make_track([], True)))
        for part, title, track in titled:
            row = PartRow(track, QCheckBox(title), _small(track.summary, "TrackSummary"),
                          _small("", "Reason", 2))
            row.reason.hide()
            row.check.toggled.connect(lambda _on: self._sync())
            # Only a click is the user's choice; set_models ticks boxes too.
            row.check.clicked.connect(lambda _on=False: setattr(self, "preferred",
                                                                 self.selected()))
            self.parts[part] = row
            for w in (row.check, row.summary, row.reason):
                layout.addWidget(w)
        self.runs_line = QLabel("")
        self.runs_line.setObjectName("SectionTitle")
        self.runs_line.setWordWrap(True)
        self.runs_line.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addSpacing(4)
        layout.addWidget(self.runs_line)
        self.preferred = BASELINE.id
        self._models: tuple[Any | None, Any | None, Any | None] = (None, None, None)
        self._reasons: Callable[[Track], tuple[str, str] | None] | None = None
        self._last = ""
        # The settings sit right under the working tracks, before the deprecated ones.
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
        self.deprecated_rows: dict[str, TrackRow] = {}
        for t in DEPRECATED:
            dep = TrackRow(t, QRadioButton(t.label), _small(t.summary, "TrackSummary"),
                           _small(f"Fails: {t.failure}.\nUse instead: {t.instead}.", "Reason", 2),
                           QPushButton("Reproduce…"))
            dep.radio.setEnabled(False)
            dep.radio.setAutoExclusive(False)
            dep.reproduce.setObjectName(f"reproduce-{t.id}")
            dep.reproduce.clicked.connect(lambda _on=False, tid=t.id:
                                          self.reproduce_requested.emit(tid))
            tip = f"{t.label} is deprecated.\nFails: {t.failure}.\nUse instead: {t.instead}."
            head = QHBoxLayout()
            head.addWidget(dep.radio, 1)
            head.addWidget(dep.reproduce)
            dep_layout.addLayout(head)
            for widget in (dep.radio, dep.summary, dep.reason):
                widget.setToolTip(tip)
            for widget in (dep.summary, dep.reason):
                dep_layout.addWidget(widget)
            self.deprecated_rows[t.id] = dep
        self.deprecated_box.hide()
        layout.addWidget(self.deprecated_box)
        self.set_models(None, None, None)

    def _toggle_deprecated(self, on: bool) -> None:
        self.deprecated_box.setVisible(on)
        arrow = Qt.ArrowType.DownArrow if on else Qt.ArrowType.RightArrow
        self.deprecated_toggle.setArrowType(arrow)

    # -- availability ----------------------------------------------------------------------------
    def observe(self, state: WorkbenchState) -> None:
        """Follow the state: its models (what can run, the settings' ranges) and its busy
        engine (no changes while a run or a view's job holds it)."""
        # The state's reasons name the real cause ("target could not be read: …"), where
        # the core's see only that no model is loaded.
        self._reasons = state.reasons

        def show() -> None:
            self.set_models(state.target_info, state.draft_info, state.compatibility)

        state.models_changed.connect(show)
        state.busy_changed.connect(self.set_locked)
        show()

    def set_models(self, target: Any | None, draft: Any | None, compat: Any | None) -> None:
        """Enable the parts that apply; tick the preferred track's parts that can run."""
        self._models = (target, draft, compat)
        for row in self.parts.values():
            why = self._why(row.track)
            row.check.setEnabled(why is None)
            row.reason.setVisible(why is not None)
            row.reason.setText(f"unavailable: {why[0]}" if why else "")
            tip = f"{row.track.label}: {row.track.summary}"
            tip += f"\n\nUnavailable: {why[1]}" if why else ""
            for w in (row.check, row.summary, row.reason):
                w.setToolTip(tip)
        for dep in self.deprecated_rows.values():
            if target is None:
                blocked: str | None = "load a target model first"
            else:
                blocked = refusal(dep.track.id, target)
            dep.reproduce.setEnabled(blocked is None)
            dep.reproduce.setToolTip(
                f"Measure {dep.track.label} on the target, beside the study's number"
                if blocked is None else f"Cannot reproduce here: {blocked}")
        want = find_track(self.preferred) or BASELINE
        self._tick(want if not want.deprecated else BASELINE)
        self.settings.set_model(target)
        self._sync()

    def _tick(self, track: Track) -> None:
        """Tick exactly ``track``'s parts, leaving out those that cannot run now."""
        wanted = {*track.sources, *([MOE] if track.moe else [])}
        for part, row in self.parts.items():
            row.check.blockSignals(True)
            row.check.setChecked(part in wanted and row.check.isEnabled())
            row.check.blockSignals(False)

    def _sync(self) -> None:
        """Name the track the ticks make; tell the settings and the window if it changed."""
        track = self.selected_track()
        why = self._why(track)
        text = f"Runs: {track.label}" + (f"  ({track.id})" if track is not BASELINE else "")
        self.runs_line.setText(text + (f" (unavailable: {why[0]})" if why else ""))
        self.runs_line.setToolTip(track.summary + (f"\n\nUnavailable: {why[1]}" if why else ""))
        target = self._models[0]
        ssm = target.speculation_reason if target is not None \
            and not target.speculation_allowed else None
        self.settings.update_enabled(track, target, ssm)
        if track.id != self._last:
            self._last = track.id
            self.track_changed.emit(track.id)

    def _why(self, track: Track) -> tuple[str, str] | None:
        if self._reasons is not None:
            return self._reasons(track)
        return reasons(track, *self._models)

    # -- selection -------------------------------------------------------------------------------
    def selected(self) -> str:
        return self.selected_track().id

    def selected_track(self) -> Track:
        ticked = [part for part, row in self.parts.items() if row.check.isChecked()]
        return make_track([p for p in ticked if p != MOE], MOE in ticked)

    def select(self, track_id: str) -> bool:
        """Select ``track_id`` if it can run (and remember it as the user's preference)."""
        track = find_track(track_id)
        if track is None or track.deprecated:
            return False
        self.preferred = track.id
        if self._why(track) is not None:
            return False
        self._tick(track)
        self._sync()
        return True

    def is_available(self, track_id: str) -> bool:
        track = find_track(track_id)
        return track is not None and self._why(track) is None

    def reason(self, track_id: str, full: bool = False) -> str | None:
        """Why ``track_id`` cannot run on the loaded models (a few words, or the whole
        reason with ``full``); None if it can."""
        track = find_track(track_id)
        if track is None:
            return "unknown track"
        why = self._why(track)
        return None if why is None else why[1 if full else 0]

    def set_locked(self, locked: bool) -> None:
        """No track or setting changes while the engine is held."""
        self.setEnabled(not locked)

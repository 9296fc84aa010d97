"""The settings of a run next to the track list: drafting, lookup, experts, sampling.

A control is enabled when the selected track uses it and the models allow it; the
speculation controls stay disabled for a recurrent or hybrid (SSM) target, with the reason
as tooltip. ``settings()`` turns the form into the core's ``RunSettings``.
"""

from __future__ import annotations

import os
from typing import Any

from PySide6.QtWidgets import (
    QCheckBox,
    QDoubleSpinBox,
    QGridLayout,
    QGroupBox,
    QLabel,
    QSpinBox,
    QWidget,
)

from app.core.events import RunSettings
from app.core.settings_check import MAX_DRAFT
from app.core.tracks import Track

SPECULATION_FIELDS = ("draft_max", "draft_min", "adaptive", "draft_p_min", "ngram_min", "ngram_max")
SAVED_FIELDS = (*SPECULATION_FIELDS, "temperature", "seed", "max_tokens", "threads")


def _spin(lo: int, hi: int, value: int, tip: str) -> QSpinBox:
    w = QSpinBox()
    w.setRange(lo, hi)
    w.setValue(value)
    w.setToolTip(tip)
    return w


def _dspin(lo: float, hi: float, step: float, value: float, tip: str) -> QDoubleSpinBox:
    w = QDoubleSpinBox()
    w.setRange(lo, hi)
    w.setSingleStep(step)
    w.setDecimals(2)
    w.setValue(value)
    w.setToolTip(tip)
    return w


class TrackSettings(QGroupBox):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Settings", parent)
        d = RunSettings()
        self.draft_max = _spin(1, MAX_DRAFT, d.draft_max, "K: the most tokens drafted per round")
        self.draft_min = _spin(0, 32, d.draft_min, "draft at least this many tokens, or none")
        self.draft_p_min = _dspin(0.0, 1.0, 0.05, d.draft_p_min,
                                  "the draft model stops drafting when its top probability "
                                  "falls below this")
        self.ngram_min = _spin(1, 8, d.ngram_min, "shortest n-gram prompt lookup matches")
        self.ngram_max = _spin(1, 16, d.ngram_max, "longest n-gram prompt lookup matches")
        self.adaptive = QCheckBox("adaptive drafting")
        self.adaptive.setChecked(d.adaptive)
        self.adaptive.setToolTip("draft only as far as the measured acceptance says it pays")
        self.experts = _spin(1, 1, 1, "active experts per token (Track 2)")
        self.temperature = _dspin(0.0, 2.0, 0.1, d.temperature, "0 = greedy (deterministic)")
        self.seed = _spin(0, 999_999, d.seed, "random seed for sampling")
        self.max_tokens = _spin(1, 32768, d.max_tokens, "stop after this many answer tokens")
        self.threads = _spin(0, max(1, (os.cpu_count() or 2) * 2), 0, "CPU threads; 0 = auto")
        self.threads.setSpecialValueText("auto")
        self.ngram_min.valueChanged.connect(lambda v: self.ngram_max.setMinimum(v))
        self.ngram_max.setMinimum(self.ngram_min.value())
        self.experts_label = QLabel("experts")
        grid = QGridLayout(self)
        grid.setHorizontalSpacing(8)
        grid.setVerticalSpacing(4)
        pairs = [
            ("K (draft max)", self.draft_max), ("draft min", self.draft_min),
            ("p-min", self.draft_p_min), (None, self.adaptive),
            ("n-gram min", self.ngram_min), ("n-gram max", self.ngram_max),
            (self.experts_label, self.experts), ("temperature", self.temperature),
            ("seed", self.seed), ("max tokens", self.max_tokens),
            ("threads", self.threads),
        ]
        for i, (label, widget) in enumerate(pairs):
            r, c = divmod(i, 2)
            if label is not None:
                grid.addWidget(label if isinstance(label, QLabel) else QLabel(label), r, 2 * c)
                grid.addWidget(widget, r, 2 * c + 1)
            else:
                grid.addWidget(widget, r, 2 * c, 1, 2)
        self._expert_model: tuple[str, int, int] | None = None

    # -- model and track -------------------------------------------------------------------------
    def set_model(self, info: Any | None) -> None:
        """Range the expert count from the target: 1 … expert_count, default its own."""
        key = (info.path, info.expert_count, info.expert_used_count) if info is not None else None
        if key == self._expert_model:
            return
        self._expert_model = key
        if info is not None and info.is_moe:
            self.experts.setRange(1, info.expert_count)
            self.experts.setValue(info.expert_used_count or info.expert_count)
            self.experts_label.setText(f"experts (1–{info.expert_count})")
        else:
            self.experts.setRange(1, 1)
            self.experts_label.setText("experts")

    def update_enabled(self, track: Track, target: Any | None, ssm_reason: str | None) -> None:
        is_moe = target is not None and target.is_moe
        speculating_ok = ssm_reason is None
        use = {
            self.draft_max: track.speculates, self.draft_min: track.speculates,
            self.adaptive: track.speculates, self.draft_p_min: track.uses_draft,
            self.ngram_min: track.uses_lookup, self.ngram_max: track.uses_lookup,
        }
        for widget, used in use.items():
            widget.setEnabled(used and speculating_ok)
            base = widget.property("baseTip") or widget.toolTip()
            widget.setProperty("baseTip", base)
            if not speculating_ok:
                widget.setToolTip(f"{base}\n\nOff: {ssm_reason}")
            elif not used:
                widget.setToolTip(f"{base}\n\n(not used by {track.label})")
            else:
                widget.setToolTip(base)
        self.experts.setEnabled(is_moe and track.uses_moe)
        self.experts.setToolTip(
            "active experts per token (Track 2)" if is_moe
            else "only for Mixture-of-Experts models (this one has no experts)")

    def speculation_widgets(self) -> list[QWidget]:
        return [getattr(self, name) for name in SPECULATION_FIELDS]

    # -- values ----------------------------------------------------------------------------------
    def settings(self, track: Track, target: Any | None, chat: bool, system: str) -> RunSettings:
        experts = None
        if track.uses_moe and target is not None and target.is_moe:
            experts = self.experts.value()
        return RunSettings(
            track=track.id, max_tokens=self.max_tokens.value(),
            temperature=self.temperature.value(), seed=self.seed.value(),
            draft_max=self.draft_max.value(), draft_min=self.draft_min.value(),
            draft_p_min=self.draft_p_min.value(), ngram_min=self.ngram_min.value(),
            ngram_max=self.ngram_max.value(), adaptive=self.adaptive.isChecked(),
            experts=experts, threads=self.threads.value() or None,
            chat=chat, system=system or None,
        )

    def dump(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in SAVED_FIELDS:
            w = getattr(self, name)
            out[name] = w.isChecked() if isinstance(w, QCheckBox) else w.value()
        return out

    def load(self, values: dict[str, Any]) -> None:
        for name in SAVED_FIELDS:
            if name not in values:
                continue
            w, v = getattr(self, name), values[name]
            try:
                if isinstance(w, QCheckBox):
                    w.setChecked(bool(v))
                elif isinstance(w, QDoubleSpinBox):
                    w.setValue(float(v))
                else:
                    w.setValue(int(v))
            except (TypeError, ValueError):
                continue

"""The settings of a run next to the track list: drafting, experts, sampling, and each draft
source's own settings, made from the registry.

The core controls (K, draft min, adaptive drafting, experts, max tokens, threads, context
size, and the sampling group: temperature, seed, top-k, top-p, min-p, repetition penalty and
its window) are attributes, ranged by the core's limits (``settings_check.LIMITS``, the same
as the command line's); the sampling group states what speculative sampling keeps exact.
A source's settings are generated from its ``Setting`` entries
(int: spin box over its range, float: decimal spin box with its step, bool: checkbox),
grouped under the source's name, and reached with ``widget(name)``. A control is enabled when
the selected track uses it and the models allow it; the speculation controls stay disabled
for a recurrent or hybrid (SSM) target, with the reason as tooltip. A source's own rule
across its settings (``DraftSource.check``) is shown under its group when broken.
``settings()`` turns the form into the core's ``RunSettings``.
"""

from __future__ import annotations

import os
from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QDoubleSpinBox,
    QGridLayout,
    QGroupBox,
    QLabel,
    QSpinBox,
    QWidget,
)

from app.core.drafting.registry import DraftSource, Setting, Value, sources
from app.core.events import RunSettings
from app.core.settings_check import LIMITS, MAX_DRAFT, MAX_INT32
from app.core.tracks import Track

SAMPLING_FIELDS = ("temperature", "seed", "top_k", "top_p", "min_p", "repeat_penalty",
                   "repeat_last_n")
# What only shapes a sampled token: greedy decoding (temperature 0) takes the top one anyway.
TRUNCATION_FIELDS = ("top_k", "top_p", "min_p")
# The core fields the window edits and remembers; the sources' settings come from the registry.
SPECULATION_FIELDS = ("draft_max", "draft_min", "adaptive")
SAVED_FIELDS = (*SPECULATION_FIELDS, *SAMPLING_FIELDS, "max_tokens", "threads", "ctx")
EXACTNESS = ("With temperature > 0, speculative sampling matches the target's distribution, "
             "not the baseline's tokens.")
EXACTNESS_DETAIL = ("A speculating run samples from the same distribution as the baseline, "
                    "but with other random draws (the draft's and the acceptance test's), so "
                    "its text differs from the baseline's even with the same seed; at "
                    "temperature 0 every track gives the baseline's text.")
_INT_LO, _INT_HI = -(2**31), 2**31 - 1  # what a QSpinBox holds
_FLOAT_SPAN = 1e9  # a float setting without a bound
_HELP = {
    "ctx": "context size in tokens: prompt and answer together (at most the model's own)",
    "top_k": "sample among the k most likely tokens; 0 = the whole vocabulary",
    "top_p": "sample among the most likely tokens whose probabilities add up to p; 1 = off",
    "min_p": "drop tokens less likely than min-p times the most likely one; 0 = off",
    "repeat_penalty": "make the tokens of the last n less likely (prompt included)",
    "repeat_last_n": "how many recent tokens the repetition penalty looks at",
}


def limited_spin(name: str, value: float, step: float = 1.0) -> QSpinBox | QDoubleSpinBox:
    """A control for the ``RunSettings`` field ``name`` over the core's range for it."""
    lim = LIMITS[name]
    why = f"; {lim.why}" if lim.why and lim.why not in _HELP.get(name, "") else ""
    span = (f"≥ {lim.lo:,g}" if lim.hi >= MAX_INT32
            else f"{lim.lo:,g}…{lim.hi:,g}" if lim.kind is float
            else f"{int(lim.lo):,}…{int(lim.hi):,}")
    tip = f"{_HELP.get(name, lim.name)} ({span}{why})"
    if lim.kind is int:
        w = _spin(max(_INT_LO, int(lim.lo)), min(_INT_HI, int(lim.hi)), int(value), tip)
        w.setSingleStep(int(step))
        return w
    return _dspin(lim.lo, lim.hi, step, float(value), tip, _decimals(step, float(value)))


def _spin(lo: int, hi: int, value: int, tip: str) -> QSpinBox:
    w = QSpinBox()
    w.setRange(lo, hi)
    w.setValue(value)
    w.setToolTip(tip)
    return w


def _dspin(lo: float, hi: float, step: float, value: float, tip: str,
           decimals: int = 2) -> QDoubleSpinBox:
    w = QDoubleSpinBox()
    w.setDecimals(decimals)
    w.setRange(lo, hi)
    w.setSingleStep(step)
    w.setValue(value)
    w.setToolTip(tip)
    return w


def _decimals(*values: float) -> int:
    """Enough decimals to show each of ``values`` exactly (at least 2)."""
    digits = [len(f"{v:g}".partition(".")[2]) for v in values if "e" not in f"{v:g}"]
    return max(2, *digits)


def setting_widget(spec: Setting) -> QWidget:
    """The control of one source setting: its kind, range, step, default and help."""
    tip = spec.help if spec.kind is bool else f"{spec.help} ({spec.range_text()})"
    if spec.kind is bool:
        box = QCheckBox(spec.label)
        box.setChecked(bool(spec.default))
        box.setToolTip(tip)
        return box
    if spec.kind is int:
        lo = _INT_LO if spec.lo is None else max(_INT_LO, int(spec.lo))
        hi = _INT_HI if spec.hi is None else min(_INT_HI, int(spec.hi))
        return _spin(lo, hi, int(spec.default), tip)
    lo_f = -_FLOAT_SPAN if spec.lo is None else spec.lo
    hi_f = _FLOAT_SPAN if spec.hi is None else spec.hi
    return _dspin(lo_f, hi_f, spec.step, float(spec.default), tip,
                  _decimals(spec.step, float(spec.default)))


def _value(w: QWidget) -> Value:
    if isinstance(w, QCheckBox):
        return w.isChecked()
    assert isinstance(w, QSpinBox | QDoubleSpinBox)
    return w.value()


def _set(w: QWidget, v: Any) -> None:
    """Put a saved value into ``w``; a value of the wrong type is skipped."""
    try:
        if isinstance(w, QCheckBox):
            w.setChecked(bool(v))
        elif isinstance(w, QDoubleSpinBox):
            w.setValue(float(v))
        elif isinstance(w, QSpinBox):
            w.setValue(int(v))
    except (TypeError, ValueError, OverflowError):
        pass


class TrackSettings(QGroupBox):
    changed = Signal()  # a source setting changed (its rule may now pass or fail)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Settings", parent)
        d = RunSettings()
        self.draft_max = _spin(1, MAX_DRAFT, d.draft_max, "K: the most tokens drafted per round")
        self.draft_min = _spin(0, 32, d.draft_min, "draft at least this many tokens, or none")
        self.adaptive = QCheckBox("adaptive drafting")
        self.adaptive.setChecked(d.adaptive)
        self.adaptive.setToolTip("draft only as far as the measured acceptance says it pays")
        self.experts = _spin(1, 1, 1, "active experts per token (Track 2)")
        self.temperature = _dspin(0.0, 2.0, 0.1, d.temperature,
                                  f"0 = greedy (deterministic)\n\n{EXACTNESS} "
                                  f"{EXACTNESS_DETAIL}")
        self.seed = _spin(0, 999_999, d.seed, "random seed for sampling")
        self.max_tokens = _spin(1, 32768, d.max_tokens, "stop after this many answer tokens")
        self.threads = _spin(0, max(1, (os.cpu_count() or 2) * 2), 0, "CPU threads; 0 = auto")
        self.threads.setSpecialValueText("auto")
        self.ctx = limited_spin("ctx", d.ctx, 256)
        self.top_k = limited_spin("top_k", d.top_k)
        self.top_p = limited_spin("top_p", d.top_p, 0.05)
        self.min_p = limited_spin("min_p", d.min_p, 0.01)
        self.repeat_penalty = limited_spin("repeat_penalty", d.repeat_penalty, 0.05)
        self.repeat_last_n = limited_spin("repeat_last_n", d.repeat_last_n, 16)
        self.repeat_last_n.setSpecialValueText("whole context")  # -1
        self.experts_label = QLabel("experts")
        self.grid = QGridLayout(self)
        self.grid.setHorizontalSpacing(8)
        self.grid.setVerticalSpacing(4)
        self._row = 0
        self._pairs([
            ("K (draft max)", self.draft_max), ("draft min", self.draft_min),
            (None, self.adaptive), (self.experts_label, self.experts),
            ("max tokens", self.max_tokens), ("threads", self.threads),
            ("context", self.ctx),
        ])
        self.sampling_header = self._header("Sampling", "How the next token is chosen")
        sampling: list[tuple[str | QLabel | None, QWidget]] = [
            ("temperature", self.temperature), ("seed", self.seed),
            ("top-k", self.top_k), ("top-p", self.top_p), ("min-p", self.min_p),
            ("repeat penalty", self.repeat_penalty), ("last n", self.repeat_last_n)]
        self._pairs(sampling)
        self.exactness = QLabel(EXACTNESS)
        self.exactness.setObjectName("Hint")
        self.exactness.setWordWrap(True)
        self.exactness.setToolTip(EXACTNESS_DETAIL)
        self.grid.addWidget(self.exactness, self._row, 0, 1, 4)
        self._row += 1
        self.temperature.valueChanged.connect(lambda _v: self._show_sampling())
        self._show_sampling()
        # Each source's settings, under its name: generated, so a new source needs no edit here.
        self._widgets: dict[str, QWidget] = {}
        self._source_of: dict[str, DraftSource] = {}
        self.headers: dict[str, QLabel] = {}
        self.problems: dict[str, QLabel] = {}
        for src in sources():
            if src.settings:
                self._add_source(src)
        self._expert_model: tuple[str, int, int] | None = None
        self._track: Track | None = None

    def _pairs(self, pairs: list[tuple[str | QLabel | None, QWidget]]) -> None:
        """Lay ``pairs`` (label, control) out two to a row from the next free row."""
        for i, (label, widget) in enumerate(pairs):
            r, c = self._row + i // 2, i % 2
            if label is None:
                self.grid.addWidget(widget, r, 2 * c, 1, 2)
            else:
                self.grid.addWidget(label if isinstance(label, QLabel) else QLabel(label),
                                    r, 2 * c)
                self.grid.addWidget(widget, r, 2 * c + 1)
        self._row += (len(pairs) + 1) // 2

    def _header(self, title: str, tip: str) -> QLabel:
        """A bold line over a group of settings, across the grid."""
        header = QLabel(title)
        font = header.font()
        font.setBold(True)
        header.setFont(font)
        header.setToolTip(tip)
        self.grid.addWidget(header, self._row, 0, 1, 4)
        self._row += 1
        return header

    def _show_sampling(self) -> None:
        """The truncation settings matter, and the exactness caveat applies, only when a
        token is sampled (temperature > 0)."""
        sampled = self.temperature.value() > 0
        for name in TRUNCATION_FIELDS:
            w = getattr(self, name)
            w.setEnabled(sampled)
            base = w.property("baseTip") or w.toolTip()
            w.setProperty("baseTip", base)
            w.setToolTip(base if sampled else f"{base}\n\n(not used at temperature 0: "
                         "greedy decoding takes the most likely token)")
        self.exactness.setVisible(sampled)

    def _add_source(self, src: DraftSource) -> None:
        header = self._header(src.title, src.summary)
        pairs: list[tuple[str | QLabel | None, QWidget]] = []
        for spec in src.settings:
            w = setting_widget(spec)
            if isinstance(w, QCheckBox):
                w.toggled.connect(lambda _v: self._checked())
            elif isinstance(w, QSpinBox | QDoubleSpinBox):
                w.valueChanged.connect(lambda _v: self._checked())
            pairs.append((None if spec.kind is bool else spec.label, w))
            self._widgets[spec.name] = w
            self._source_of[spec.name] = src
        self._pairs(pairs)
        problem = QLabel("")
        problem.setObjectName("Reason")
        problem.setWordWrap(True)
        problem.hide()
        self.grid.addWidget(problem, self._row, 0, 1, 4)
        self._row += 1
        self.headers[src.id], self.problems[src.id] = header, problem

    def widget(self, name: str) -> QWidget:
        """The control of the source setting ``name`` (KeyError if no source has it)."""
        return self._widgets[name]

    def value(self, name: str) -> Value:
        return _value(self._widgets[name])

    def options(self) -> dict[str, Value]:
        """Every source setting by name, as ``RunSettings.options`` holds them."""
        return {name: _value(w) for name, w in self._widgets.items()}

    # -- model and track -------------------------------------------------------------------------
    def set_model(self, info: Any | None) -> None:
        """Range the expert count from the target: 1 … expert_count, default its own; say
        the target's own context size."""
        key = (info.path, info.expert_count, info.expert_used_count) if info is not None else None
        if key == self._expert_model:
            return
        self._expert_model = key
        base = self.ctx.property("baseTip") or self.ctx.toolTip()
        self.ctx.setProperty("baseTip", base)
        own = getattr(info, "context_length", 0) if info is not None else 0
        self.ctx.setToolTip(f"{base}\n\n{info.file_name} was trained for {own:,} tokens; a "
                            "larger context is cut to that." if info is not None and own
                            else base)
        if info is not None and info.is_moe:
            self.experts.setRange(1, info.expert_count)
            self.experts.setValue(info.expert_used_count or info.expert_count)
            self.experts_label.setText(f"experts (1–{info.expert_count})")
        else:
            self.experts.setRange(1, 1)
            self.experts_label.setText("experts")

    def update_enabled(self, track: Track, target: Any | None, ssm_reason: str | None) -> None:
        self._track = track
        is_moe = target is not None and target.is_moe
        speculating_ok = ssm_reason is None
        use: dict[QWidget, bool] = {getattr(self, name): track.speculates
                                    for name in SPECULATION_FIELDS}
        use.update({w: self._source_of[name].id in track.sources
                    for name, w in self._widgets.items()})
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
        for src_id, header in self.headers.items():
            header.setEnabled(src_id in track.sources and speculating_ok)
        self.experts.setEnabled(is_moe and track.moe)
        self.experts.setToolTip(
            "active experts per token (Track 2)" if is_moe
            else "only for Mixture-of-Experts models (this one has no experts)")
        self._checked(emit=False)

    def speculation_widgets(self, track: Track | None = None) -> list[QWidget]:
        """The controls only a speculating track uses: the core ones, plus the settings of
        ``track``'s sources (of every source when None)."""
        core: list[QWidget] = [getattr(self, name) for name in SPECULATION_FIELDS]
        return core + [w for name, w in self._widgets.items()
                       if track is None or self._source_of[name].id in track.sources]

    def _checked(self, emit: bool = True) -> None:
        """Show each source's broken rule (if any) under its group."""
        for src_id, label in self.problems.items():
            why = self._source_problem(src_id)
            label.setText(why or "")
            label.setVisible(why is not None)
        if emit:
            self.changed.emit()

    def _source_problem(self, src_id: str) -> str | None:
        src = next((s for s in self._source_of.values() if s.id == src_id), None)
        if src is None:
            return None
        for spec in src.settings:
            why = spec.problem(self.value(spec.name))
            if why is not None:
                return why
        return src.check(self.value) if src.check is not None else None

    def problem(self, track: Track) -> str | None:
        """Why the settings of ``track``'s sources do not fit together, or None."""
        return next((why for src in track.sources
                     if (why := self._source_problem(src)) is not None), None)

    # -- values ----------------------------------------------------------------------------------
    def settings(self, track: Track, target: Any | None, chat: bool,
                 system: str | None) -> RunSettings:
        experts = None
        if track.moe and target is not None and target.is_moe:
            experts = self.experts.value()
        return RunSettings(
            track=track.id, max_tokens=self.max_tokens.value(),
            temperature=self.temperature.value(), seed=self.seed.value(),
            top_k=int(self.top_k.value()), top_p=float(self.top_p.value()),
            min_p=float(self.min_p.value()),
            repeat_penalty=float(self.repeat_penalty.value()),
            repeat_last_n=int(self.repeat_last_n.value()),
            draft_max=self.draft_max.value(), draft_min=self.draft_min.value(),
            adaptive=self.adaptive.isChecked(), experts=experts,
            threads=self.threads.value() or None, ctx=int(self.ctx.value()), chat=chat,
            system=system, options=self.options(),
        )

    def dump(self) -> dict[str, Any]:
        """The core fields and every source setting, by name (the window remembers them)."""
        return {name: _value(getattr(self, name)) for name in SAVED_FIELDS} | self.options()

    def load(self, values: dict[str, Any]) -> None:
        """Put back what ``dump`` gave; unknown names and values of a wrong type are skipped."""
        controls = {name: getattr(self, name) for name in SAVED_FIELDS} | self._widgets
        for name, v in values.items():
            if name in controls:
                _set(controls[name], v)

    def load_settings(self, s: RunSettings) -> None:
        """Put back the settings of a run (a re-run from the history)."""
        self.load({name: getattr(s, name) for name in SAVED_FIELDS}
                  | {"threads": s.threads or 0} | s.options)

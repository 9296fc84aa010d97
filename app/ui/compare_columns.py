"""The columns of the Compare view: one track's answer and numbers, and the highlighting
of the first token where an answer parts from the baseline (extra selections on the token
view: the text and its per-token formats stay untouched)."""

from __future__ import annotations

from PySide6.QtGui import QColor, QTextCharFormat, QTextCursor
from PySide6.QtWidgets import (
    QGridLayout,
    QGroupBox,
    QLabel,
    QTextEdit,
    QVBoxLayout,
    QWidget,
)

from app.core.compare import ComparedRun
from app.core.metrics import LiveMetrics
from app.ui.jobs import fmt_rate, fmt_speedup, hint, track_label
from app.ui.token_view import TokenView
from app.ui.worker import EventBuffer

DIFF_BG = "#ffd54f"


def highlight(view: TokenView, positions: list[int], tip: str = "") -> None:
    """Mark the answer tokens at ``positions`` (extra selections: the text is untouched)."""
    selections = []
    for pos in positions:
        span = view.answer_span(pos)
        if span is None:
            continue
        sel = QTextEdit.ExtraSelection()
        cursor = QTextCursor(view.edit.document())
        cursor.setPosition(span[0])
        cursor.setPosition(max(span[1], span[0] + 1), QTextCursor.MoveMode.KeepAnchor)
        fmt = QTextCharFormat()
        fmt.setBackground(QColor(DIFF_BG))
        fmt.setFontUnderline(True)
        fmt.setUnderlineColor(QColor("#c62828"))
        if tip:
            fmt.setToolTip(tip)
        sel.cursor, sel.format = cursor, fmt
        selections.append(sel)
    view.edit.setExtraSelections(selections)
    if selections:  # scroll the first difference into view
        at = QTextCursor(view.edit.document())
        at.setPosition(selections[0].cursor.selectionStart())
        view.edit.setTextCursor(at)
        view.edit.ensureCursorVisible()


class TrackColumn(QGroupBox):
    """One track's answer and numbers; fed from its event buffer while it runs."""

    FIELDS = (("tps", "tokens / s"), ("speedup", "speedup vs baseline"),
              ("acceptance", "acceptance"), ("mean_len", "mean accepted length"),
              ("split", "draft / verify time"), ("same", "same answer as baseline"))

    def __init__(self, track_id: str, parent: QWidget | None = None) -> None:
        super().__init__(track_label(track_id), parent)
        self.track_id = track_id
        self.buffer = EventBuffer()
        self.metrics = LiveMetrics()
        self.diff_positions: list[int] = []
        self.diff_tip = ""
        layout = QVBoxLayout(self)
        grid = QGridLayout()
        grid.setVerticalSpacing(1)
        self.values: dict[str, QLabel] = {}
        for i, (key, name) in enumerate(self.FIELDS):
            label = QLabel(name)
            label.setObjectName("Hint")
            value = QLabel("—")
            value.setObjectName("SummaryValue")
            value.setWordWrap(True)
            grid.addWidget(label, i, 0)
            grid.addWidget(value, i, 1)
            self.values[key] = value
        grid.setColumnStretch(1, 1)
        layout.addLayout(grid)
        self.state = hint("waiting…")
        layout.addWidget(self.state)
        self.tokens = TokenView()
        self.tokens.legend.hide()  # one legend for all columns, above them
        self.tokens.edit.setPlaceholderText("")
        self.tokens.show_rejected.toggled.connect(self._rehighlight)
        layout.addWidget(self.tokens, 1)
        self.setMinimumWidth(300)

    def drain(self) -> bool:
        events = self.buffer.take()
        if events:
            self.tokens.append(events)
            self.metrics.add(events)
        return bool(events)

    def show_result(self, run: ComparedRun, baseline: ComparedRun | None) -> None:
        r = run.result
        v = self.values
        v["tps"].setText(f"{r.tokens_per_second:.1f}")
        v["speedup"].setText("1.00× (reference)" if run is baseline else fmt_speedup(run.speedup))
        v["acceptance"].setText(fmt_rate(r.acceptance_rate)
                                + (f" ({r.n_accepted}/{r.n_drafted})" if r.n_drafted else ""))
        mean = r.mean_accepted_length
        v["mean_len"].setText("—" if mean is None else f"{mean:.2f} in {r.n_rounds} rounds")
        busy = r.draft_seconds + r.verify_seconds
        share = f" ({100 * r.draft_seconds / busy:.0f} % drafting)" if busy > 0 else ""
        v["split"].setText(f"{r.draft_seconds:.2f} s / {r.verify_seconds:.2f} s{share}")
        if run is baseline:
            v["same"].setText("— (this is the baseline)")
        elif run.same_text_as_baseline:
            v["same"].setText("✓ identical")
        elif run.first_difference is not None:
            v["same"].setText(f"✗ differs from token {run.first_difference}")
        else:
            v["same"].setText("—")
        stop = {"eos": "end of text", "max_tokens": "max tokens", "cancelled": "cancelled",
                "context_full": "context full"}.get(r.stop_reason, r.stop_reason)
        self.state.setText(f"{r.n_generated} tokens · stopped: {stop}")
        if r.stop_reason == "cancelled":
            self.tokens.add_note("  ■ cancelled — partial answer")

    def mark_difference(self, positions: list[int], tip: str) -> None:
        self.diff_positions, self.diff_tip = positions, tip
        self._rehighlight()

    def _rehighlight(self) -> None:
        highlight(self.tokens, self.diff_positions, self.diff_tip)


def difference_note(run: ComparedRun) -> str:
    """Plain words on where ``run`` parts from the baseline and whether that is a near tie."""
    d = run.first_difference
    if d is None:
        return ""
    if run.baseline_margin is None:
        return (f"Parts from the baseline at token {d} (one answer is longer, or sampling "
                "was on: no margin to judge).")
    if run.near_tie:
        return (f"Parts from the baseline at token {d}: the baseline's two best tokens there "
                f"are {run.baseline_margin:.3f} apart — a near tie, so batched kernels "
                "rounding differently explain it; not a bug.")
    return (f"Parts from the baseline at token {d}: the baseline's margin there is "
            f"{run.baseline_margin:.3f}, not a near tie — worth a closer look.")

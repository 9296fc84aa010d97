"""The columns of the Compare view: one track's answer and numbers, and the highlighting
of the first token where an answer parts from the baseline (extra selections on the token
view: the text and its per-token formats stay untouched).

With repeats a column streams each of its runs in turn (a fresh answer per run: the engine
thread opens a new feed with ``new_run``), and when the comparison ends it shows the
track's median run, its speedup with the range of the repeats (``verdict.format_speedup``),
and why it drafted nothing if it did not (``verdict.idle_reason``).
"""

from __future__ import annotations

import statistics
import threading

from PySide6.QtGui import QColor, QTextCharFormat, QTextCursor
from PySide6.QtWidgets import (
    QGridLayout,
    QGroupBox,
    QLabel,
    QTextEdit,
    QVBoxLayout,
    QWidget,
)

from app.core.labels import FIELD_HELP, field_label, stop_label, track_label
from app.core.metrics import LiveMetrics, mean_accepted_length
from app.core.tracks import find_track
from app.core.verdict import (
    ComparedRun,
    format_speedup,
    idle_reason,
    speedups_of,
    wrote_nothing,
)
from app.ui.jobs import fmt_rate, hint
from app.ui.token_view import TokenView
from app.ui.worker import EventBuffer

DIFF_BG = "#ffd54f"
DIFF_FG = "#1a1a1a"  # the text on it, light theme or dark


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
        fmt.setForeground(QColor(DIFF_FG))
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
    """One track's answer and numbers; fed from its event buffers while it runs."""

    FIELDS = (("tps", field_label("tokens_per_second")),
              ("speedup", "Speedup vs baseline"),
              ("acceptance", field_label("acceptance_rate")),
              ("mean_len", field_label("mean_accepted_length")),
              ("split", field_label("draft_verify")),
              ("same", field_label("same_text_as_baseline")))

    def __init__(self, track_id: str, parent: QWidget | None = None) -> None:
        super().__init__(track_label(track_id), parent)
        self.track_id = track_id
        # One buffer per run of this track (a repeat opens the next); the GUI reads them in
        # order, starting the answer afresh at each.
        self._feeds = [EventBuffer()]
        self._feeds_lock = threading.Lock()
        self._opened = False
        self._reading = 0
        self.runs_seen = 0  # runs of this track that have begun streaming here
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
            if key == "mean_len":
                for w in (label, value):
                    w.setToolTip(FIELD_HELP["mean_accepted_length"])
            grid.addWidget(label, i, 0)
            grid.addWidget(value, i, 1)
            self.values[key] = value
        grid.setColumnStretch(1, 1)
        layout.addLayout(grid)
        self.idle = QLabel("")  # "drafted nothing: why", in the warning style
        self.idle.setObjectName("Reason")
        self.idle.setWordWrap(True)
        self.idle.hide()
        layout.addWidget(self.idle)
        self.state = hint("waiting…")
        layout.addWidget(self.state)
        self.tokens = TokenView()
        self.tokens.legend.hide()  # one legend for all columns, above them
        self.tokens.edit.setPlaceholderText("")
        self.tokens.show_rejected.toggled.connect(self._rehighlight)
        # Switching inline drafts or token boundaries rebuilds the document: mark again.
        self.tokens.rebuilt.connect(self._rehighlight)
        layout.addWidget(self.tokens, 1)
        self.setMinimumWidth(300)

    @property
    def buffer(self) -> EventBuffer:
        """The buffer of the run streaming now (the last opened)."""
        with self._feeds_lock:
            return self._feeds[-1]

    def new_run(self) -> EventBuffer:
        """Engine thread: a run of this track begins; its events go into the buffer
        returned (the first run uses the first buffer)."""
        with self._feeds_lock:
            if self._opened:
                self._feeds.append(EventBuffer())
            self._opened = True
            return self._feeds[-1]

    def drain(self) -> bool:
        """Show what arrived; True if anything did. A run that ended and has a successor is
        read to its end before the successor starts a fresh answer."""
        grew = False
        while True:
            with self._feeds_lock:
                feeds = list(self._feeds)
            events = feeds[self._reading].take()
            if events:
                if self.runs_seen <= self._reading:
                    self.runs_seen = self._reading + 1
                self.tokens.append(events)
                self.metrics.add(events)
                grew = True
            if self._reading + 1 >= len(feeds):
                return grew
            self._reading += 1  # the run before ended before this one was opened
            self.runs_seen = self._reading + 1
            self.tokens.clear()
            self.metrics = LiveMetrics()
            self.diff_positions = []
            grew = True

    def show_run(self, run: ComparedRun) -> None:
        """Show ``run``'s own answer and curve (with repeats: the median run's)."""
        self.tokens.clear()
        self.metrics = LiveMetrics()
        self.tokens.append(run.result.events)
        self.metrics.add(run.result.events)

    def show_result(self, run: ComparedRun, baseline: ComparedRun | None) -> None:
        r = run.result
        v = self.values
        reps = run.repeats
        many = reps is not None and len(reps.tokens_per_second) > 1
        empty = wrote_nothing(r)
        if empty is not None:  # 0 tokens/s is not a speed: "0.00×" would read as very slow
            v["tps"].setText("— wrote no token")
        elif reps is not None and many:
            tps = reps.tokens_per_second
            v["tps"].setText(f"{statistics.median(tps):.1f} ({min(tps):.1f}–{max(tps):.1f}, "
                             f"{len(tps)} runs)")
        else:
            v["tps"].setText(f"{r.tokens_per_second:.1f}")
        if run is baseline:
            v["speedup"].setText("1.00× (reference)" + (f", run {len(reps.tokens_per_second)}"
                                                        " times" if reps and many else ""))
        elif empty is not None:
            v["speedup"].setText("—")
        else:
            v["speedup"].setText(format_speedup(speedups_of(run)))
        idle = idle_reason(r)
        if idle is not None:
            v["acceptance"].setText("— drafted nothing")
            self.idle.setText(f"Drafted nothing: {idle}.")
            self.idle.show()
        else:
            v["acceptance"].setText(fmt_rate(r.acceptance_rate)
                                    + (f" ({r.n_accepted}/{r.n_drafted})" if r.n_drafted else ""))
            self.idle.setText("")
            self.idle.hide()
        mean = mean_accepted_length(r.events)
        v["mean_len"].setText("—" if mean is None else
                              f"{mean:.2f} tokens per verify, {r.n_rounds} rounds")
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
        state = f"{r.n_generated} tokens · stopped: {stop_label(r.stop_reason).lower()}"
        if many:
            state += " · answer and curve of the median run"
        notes = [n for n in r.notes if idle is None]  # an idle reason is said above
        if empty is not None:
            notes.insert(0, f"No speed: {empty}.")
        self.state.setText("\n".join([state, *notes]))
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
    track = find_track(run.result.track)
    experts = run.result.effective.get("expert_used_count")
    if track is not None and track.moe and experts != run.result.effective.get("expert_count"):
        many = "expert" if experts == 1 else "experts"
        return (f"Parts from the baseline at token {d}: with {experts} {many} the model "
                "itself is another one, so its answer may part anywhere (Track 2 is not "
                "lossless; \u201cWill it pay?\u201d measures how often it agrees).")
    if run.baseline_margin is None:
        return (f"Parts from the baseline at token {d} (one answer is longer, or sampling "
                "was on: no margin to judge).")
    if run.near_tie:
        return (f"Parts from the baseline at token {d}: the baseline's two best tokens there "
                f"are {run.baseline_margin:.3f} apart — a near tie, so batched kernels "
                "rounding differently explain it; not a bug.")
    return (f"Parts from the baseline at token {d}: the baseline's margin there is "
            f"{run.baseline_margin:.3f}, not a near tie — worth a closer look.")

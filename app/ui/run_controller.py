"""Start, stream and finish runs: the bridge between the engine lane and the live widgets.

The engine thread appends events to the run's ``EventBuffer``; a GUI-thread QTimer drains
it about 30 times a second into the token view, the live metrics and the summary, and
redraws one of the three plots at most 10 times a second (each plot about 3 times). When
the run ends, the buffer is drained once more before the final result is shown, so no
event is lost or shown out of order.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from PySide6.QtCore import QObject, QTimer, Signal, Slot

from app.core import metrics
from app.core.events import RunResult, RunSettings
from app.core.tracks import find_track, get_track
from app.core.verdict import baseline_key
from app.ui.plots import LivePlots, SummaryPanel
from app.ui.token_view import TokenView
from app.ui.worker import EngineHost, RunJob

log = logging.getLogger("app.ui.run")

DRAIN_MS = 33
PLOT_INTERVAL = 0.1  # one of the three plots is redrawn per interval (text: ~30 Hz)


class RunController(QObject):
    run_started = Signal()
    first_token = Signal()
    run_ended = Signal(object)  # RunResult, or None when the run failed
    run_failed = Signal(str, str)  # kind, message

    def __init__(self, host: EngineHost, tokens: TokenView, plots: LivePlots,
                 summary: SummaryPanel, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.host, self.tokens, self.plots, self.summary = host, tokens, plots, summary
        self.request: RunJob | None = None
        self.metrics = metrics.LiveMetrics()
        self.baselines: dict[tuple[Any, ...], float] = {}
        self.last_result: RunResult | None = None
        self.last_request: RunJob | None = None  # of the last finished run
        self.last_speedup: float | None = None
        self._next_id = 0
        self._key: tuple[Any, ...] = ()
        self._last_plot = 0.0
        self._seen_token = False
        self.timer = QTimer(self)
        self.timer.setInterval(DRAIN_MS)
        self.timer.timeout.connect(self.drain)
        host.run_finished.connect(self._finished)
        host.run_failed.connect(self._failed)

    @property
    def active(self) -> bool:
        return self.request is not None

    def start(self, target: str, draft: str | None, prompt: str, s: RunSettings) -> bool:
        """Queue a run on the engine lane; False if one is already going."""
        if self.request is not None:
            return False
        self._next_id += 1
        track = get_track(s.track)
        self.request = RunJob(self._next_id, target, draft if track.needs_draft_model else None,
                                  prompt, s)
        self._key = baseline_key(target, prompt, s)
        self.metrics = metrics.LiveMetrics()
        self.tokens.clear()
        self.plots.reset(speculating=track.speculates)
        self.summary.clear(f"{track.label} · running")
        self._seen_token = False
        self._last_plot = 0.0
        self.host.run(self.request)
        self.timer.start()
        self.run_started.emit()
        return True

    def stop(self) -> None:
        if self.request is not None:
            self.request.cancel.set()

    @Slot()
    def drain(self) -> None:
        req = self.request
        if req is None:
            return
        events = req.buffer.take()
        if not events:
            return
        if not self._seen_token:
            self._seen_token = True
            self.first_token.emit()
        self.tokens.append(events)
        self.metrics.add(events)
        now = time.monotonic()
        if now - self._last_plot >= PLOT_INTERVAL:
            self._last_plot = now
            self.plots.update_from(self.metrics)
            self.summary.show_live(self.metrics)

    def _end(self, run_id: int) -> RunJob | None:
        req = self.request
        if req is None or req.run_id != run_id:
            return None
        self.drain()
        self.timer.stop()
        self.request = None
        self.plots.update_from(self.metrics, every_plot=True)
        return req

    @Slot(int, object)
    def _finished(self, run_id: int, result: RunResult) -> None:
        req = self._end(run_id)
        if req is None:
            return
        track = get_track(result.track)
        if result.stop_reason == "cancelled":
            self.tokens.add_note("  ■ cancelled — partial answer")
        elif result.stop_reason == "context_full":
            self.tokens.add_note("  ■ context full")
        if track.id == "baseline" and result.stop_reason != "cancelled":
            self.baselines[self._key] = result.tokens_per_second
        base = self.baselines.get(self._key)
        summary = metrics.summarize(result, base)
        if track.id == "baseline":
            note = "1.00× (this run is the baseline)"
        elif summary.speedup is not None and base is not None:
            note = f"{summary.speedup:.2f}× vs baseline ({base:.1f} tok/s)"
        else:
            note = "— run the baseline on this prompt and model to compare"
        self.summary.show_summary(summary, note)
        self.last_request, self.last_speedup = req, (1.0 if track.id == "baseline"
                                                     else summary.speedup)
        experts = result.effective.get("expert_used_count")
        extra = f" · {experts} experts" if experts and track.moe else ""
        self.summary.track.setText(f"{track.label}{extra} · {result.n_generated} tokens")
        self.last_result = result
        self.run_ended.emit(result)

    def show_saved(self, result: RunResult, speedup: float | None, title: str) -> bool:
        """Render a finished run again (from the history): answer, plots and numbers."""
        if self.request is not None:
            return False
        track = find_track(result.track)
        self.metrics = metrics.LiveMetrics()
        self.tokens.clear()
        self.plots.reset(speculating=track is None or track.speculates)
        self.tokens.append(result.events)
        self.metrics.add(result.events)
        self.plots.update_from(self.metrics, every_plot=True)
        if result.stop_reason == "cancelled":
            self.tokens.add_note("  ■ cancelled — partial answer")
        base = result.tokens_per_second / speedup if speedup else None
        summary = metrics.summarize(result, base)
        note = ("1.00× (this run is the baseline)" if result.track == "baseline"
                else f"{speedup:.2f}× vs its baseline" if speedup is not None
                else "— no baseline was saved with this run")
        self.summary.show_summary(summary, note)
        self.summary.track.setText(title)
        return True

    @Slot(int, str, str)
    def _failed(self, run_id: int, kind: str, message: str) -> None:
        if self._end(run_id) is None:
            return
        if self.tokens.marks:
            self.tokens.add_note("  ✖ the run failed here")
        self.summary.set("stop", "refused" if kind == "refused" else "failed")
        self.summary.track.setText(message)
        self.last_result = None
        self.run_failed.emit(kind, message)
        self.run_ended.emit(None)

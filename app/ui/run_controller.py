"""The Run tab's controller: when Run can start, the request it starts, and the bridge
between the engine lane and the live widgets while the run streams.

Run is possible when the workbench state has a readable target, the selected track can run
on the chosen models (the state's availability, from the core), its settings are valid, the
prompt is not empty and nothing holds the engine. A run holds the engine in the state from
start to end. The engine thread appends events to the run's ``EventBuffer``; a GUI-thread
QTimer drains it up to 10 times a second into the token view and the live metrics, redraws
the plot on screen and the live numbers once a second (hidden ones wait). When the run
ends, the buffer is drained once more before the final result is shown, so no event is
lost or shown out of order.

The window must not slow the run it measures: llama.cpp keeps every core busy, so what the
GUI thread does during a run is taken from the decode. The base rates were cut from 30 Hz
text and 10 Hz plots after measuring the GUI thread (``benchmarks/gui_cost.py``), and again
from 12 and 2 Hz when SmolLM2's lookup runs lost 3-5 % to a GUI thread at 2-2.5 %; the pacer
(``app.ui.pacer``) stretches them while the GUI thread takes more than its budget of the
run; and the summary states the window's own cost: the GUI thread's CPU time during the run
over the run's wall time, read from the thread's CPU clock (``GuiClock``).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

from PySide6.QtCore import QObject, QTimer, Signal, Slot

from app.core import metrics
from app.core.events import RunRequest, RunResult
from app.core.tracks import find_track, get_track
from app.core.verdict import Verdict, baseline_key, judge_run
from app.ui.lane import Lane
from app.ui.pacer import GuiClock, Pacer, gui_share
from app.ui.plots import LivePlots, SummaryPanel
from app.ui.prompt_editor import PromptEditor
from app.ui.state import ENGINE_BUSY, WorkbenchState
from app.ui.token_view import TokenView
from app.ui.track_panel import TrackPanel
from app.ui.worker import RunJob

log = logging.getLogger("app.ui.run")

# The base rates, which the pacer stretches while the GUI thread's share of the run is above
# its budget (app.ui.pacer).
DRAIN_MS = 100  # text: 10 updates a second
PLOT_INTERVAL = 1.0  # the plot on screen and the live numbers: once a second
RUN = "run"  # what holds the engine in the workbench state while a run goes


class RunController(QObject):
    run_started = Signal()
    first_token = Signal()
    run_ended = Signal(object)  # RunResult, or None when the run failed
    run_failed = Signal(str, str)  # kind, message
    refused = Signal(str)  # why Run did not start
    enabled_changed = Signal(bool, bool)  # Run can start, a run is going

    def __init__(self, lane: Lane, state: WorkbenchState, tracks: TrackPanel,
                 prompt: PromptEditor, tokens: TokenView, plots: LivePlots,
                 summary: SummaryPanel, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.lane, self.state, self.tracks, self.prompt = lane, state, tracks, prompt
        self.tokens, self.plots, self.summary = tokens, plots, summary
        self.job: RunJob | None = None
        self.metrics = metrics.LiveMetrics()
        self.baselines: dict[tuple[Any, ...], float] = {}
        self.last_result: RunResult | None = None
        self.last_job: RunJob | None = None  # of the last finished run
        self.last_speedup: float | None = None
        self.last_verdict: Verdict | None = None
        self._next_id = 0
        self._key: tuple[Any, ...] = ()
        self._seen_token = False
        self.pacer = Pacer(DRAIN_MS, PLOT_INTERVAL)
        self.clock = GuiClock()
        self._clock_start = (0.0, 0.0)
        self.gui_share: float | None = None  # of the last run
        self.timer = QTimer(self)
        self.timer.setInterval(DRAIN_MS)
        self.timer.timeout.connect(self.drain)
        tracks.track_changed.connect(lambda _t: self.update_enabled())
        tracks.settings.changed.connect(self.update_enabled)
        prompt.text.textChanged.connect(self.update_enabled)
        state.models_changed.connect(self.update_enabled)
        state.busy_changed.connect(lambda _busy: self.update_enabled())

    @property
    def active(self) -> bool:
        return self.job is not None

    # -- what Run would start ---------------------------------------------------------------
    def choices(self) -> RunRequest | str:
        """The Run tab's choices as a request (its settings' track is the selected track;
        the draft is the chosen one, whatever the track), or why there is none."""
        s, info = self.state, self.state.target_info
        if s.target_path is None or info is None:
            return "Choose a target model first (it must be readable)."
        text = self.prompt.prompt()
        if not text.strip():
            return "Type or load a prompt first."
        settings = self.tracks.settings.settings(self.tracks.selected_track(), info,
                                                 self.prompt.use_chat(),
                                                 self.prompt.system_setting())
        # Where the target's layers run (remote workers) is the window's, for every run.
        return RunRequest(s.target_path, s.draft_path, text, s.placed(settings))

    def problem(self) -> str | None:
        """Why Run cannot start now, or None."""
        if self.state.busy:
            return ENGINE_BUSY
        track = self.tracks.selected_track()
        why = self.state.reasons(track)
        if self.state.target_info is not None and why is not None:
            return f"{track.label} is not available for these models: {why[1]}"
        request = self.choices()
        if isinstance(request, str):
            return request
        return self.tracks.settings.problem(track)

    def update_enabled(self) -> None:
        ok = self.problem() is None
        self.prompt.set_running(self.active, ok)
        self.enabled_changed.emit(ok, self.active)

    # -- running ----------------------------------------------------------------------------
    def start(self) -> bool:
        """Queue the Run tab's choices on the engine lane; False (and ``refused`` saying
        why, unless a run or a view's job holds the engine) if it cannot start."""
        why = self.problem()
        request = self.choices()
        if why is not None or isinstance(request, str):
            if not self.state.busy:
                self.refused.emit(why or str(request))
            return False
        self._clock_start = self.clock.read()
        self.gui_share = None
        self.state.claim(RUN)
        self._next_id += 1
        track = get_track(request.settings.track)
        if not track.needs_draft_model:
            request = replace(request, draft=None)
        job = self.job = RunJob(self._next_id, request)
        self._key = baseline_key(str(request.target), request.prompt, request.settings)
        self.metrics = metrics.LiveMetrics()
        self.tokens.clear()
        self.plots.reset(speculating=track.speculates)
        self.summary.clear(f"{track.label} · running")
        self._seen_token = False
        self.lane.submit(job.run, cancel=job.cancel,
                         done=lambda result: self._finished(job, result),
                         error=lambda kind, message: self._failed(job, kind, message))
        self.pacer.begin(self.timer)
        self.update_enabled()
        self.run_started.emit()
        return True

    def stop(self) -> bool:
        """Ask the run to stop at its next step; False if none is going."""
        if self.job is None:
            return False
        self.job.cancel.set()
        return True

    @Slot()
    def drain(self) -> None:
        job = self.job
        if job is None:
            return
        self.pacer.pace(self.timer)
        events = job.buffer.take()
        if not events:
            return
        if not self._seen_token:
            self._seen_token = True
            self.first_token.emit()
        self.tokens.append(events)
        self.metrics.add(events)
        if self.pacer.plot_due():
            self.plots.update_from(self.metrics)
            self.summary.show_live(self.metrics)

    def _end(self, job: RunJob) -> bool:
        """Show the last events and let go of the engine; False for a run not current."""
        if job is not self.job:
            return False
        self.drain()
        self.timer.stop()
        self.gui_share = gui_share(self._clock_start, self.clock.read())
        self.job = None
        self.plots.update_from(self.metrics, every_plot=True)
        self.summary.show_gui_time(self.gui_share)
        self.state.release(RUN)
        return True

    def _finished(self, job: RunJob, result: RunResult) -> None:
        if not self._end(job):
            return
        track = get_track(result.track)
        if result.stop_reason == "cancelled":
            self.tokens.add_note("  ■ cancelled — partial answer")
        elif result.stop_reason == "context_full":
            self.tokens.add_note("  ■ context full")
        elif result.stop_reason == "error":  # e.g. a remote worker lost: the part is kept
            self.tokens.add_note(f"  ■ stopped by an error — partial answer: {result.error}")
            self.run_failed.emit("error", result.error or "the run stopped with an error")
        if track.id == "baseline" and result.stop_reason not in ("cancelled", "error"):
            self.baselines[self._key] = result.tokens_per_second
        base = self.baselines.get(self._key)
        summary = metrics.summarize(result, base)
        # The one verdict (verdict.judge_run): the same words as Compare, Sweep and History.
        self.last_verdict = judge_run(result, base)
        self.summary.show_summary(summary, self.last_verdict.text)
        self.last_job, self.last_speedup = job, (1.0 if track.id == "baseline"
                                                 else summary.speedup)
        experts = result.effective.get("expert_used_count")
        extra = f" · {experts} experts" if experts and track.moe else ""
        self.summary.track.setText(f"{track.label}{extra} · {result.n_generated} tokens")
        self.last_result = result
        self.run_ended.emit(result)

    def _failed(self, job: RunJob, kind: str, message: str) -> None:
        if not self._end(job):
            return
        if self.tokens.marks:
            self.tokens.add_note("  ✖ the run failed here")
        self.summary.set("stop", "refused" if kind == "refused" else "failed")
        self.summary.track.setText(message)
        self.last_result = None
        self.run_failed.emit(kind, message)
        self.run_ended.emit(None)

    def show_saved(self, result: RunResult, speedup: float | None, title: str) -> bool:
        """Render a finished run again (from the history): answer, plots and numbers."""
        if self.job is not None:
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
        self.summary.show_gui_time(None)  # not measured here: this run is a record
        self.summary.track.setText(title)
        return True

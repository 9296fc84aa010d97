"""The tabs beside Run — Compare, Sweep, Will it pay?, History — and their wiring.

The window keeps the Run tab (models, tracks, prompt, live answer); this controller builds
the other views, gives them the Run tab's choices as a ``RunContext``, saves every finished
or cancelled run and comparison to the history (on the engine lane: saving fingerprints the
model files) with the speedup and verdict it was shown with (``verdict.judge_run``, the
same rules as everywhere; a run cancelled before its first token is not kept), and turns
History's reopen and re-run into actions on the workbench state and the Run tab. The views
follow the workbench state themselves (availability, busy engine).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QTabWidget, QWidget

from app.core.compare import Comparison
from app.core.events import RunResult
from app.core.history import (
    ComparisonRecord,
    History,
    Rerun,
    record_comparison,
    record_run,
    worth_keeping,
)
from app.core.labels import track_label
from app.core.serialization import RunRecord, Shown
from app.core.tracks import find_track
from app.core.verdict import judge_run, speedups_of
from app.ui.compare_view import CompareView
from app.ui.history_panel import HistoryPanel
from app.ui.jobs import RunContext, when
from app.ui.lane import Lane
from app.ui.pay_panel import PayPanel
from app.ui.plots import LivePlots
from app.ui.prompt_editor import PromptEditor
from app.ui.run_controller import RunController
from app.ui.state import ENGINE_BUSY, WorkbenchState
from app.ui.sweep_view import SweepView
from app.ui.track_panel import TrackPanel

log = logging.getLogger("app.ui.lab")

RUN, COMPARE, SWEEP, PAY, HISTORY = range(5)


class Lab(QObject):
    saved = Signal(str)  # history id of a run or comparison just saved
    error = Signal(str, str)  # level ("error", "refused", "info"), one-line message

    def __init__(self, lane: Lane, state: WorkbenchState, runs: RunController,
                 tracks: TrackPanel, prompt: PromptEditor, plots: LivePlots, run_page: QWidget,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.lane, self.state, self.runs = lane, state, runs
        self.tracks, self.prompt, self.plots = tracks, prompt, plots
        self.compare = CompareView(lane, state, self.context)
        self.sweep = SweepView(lane, state, self.context)
        self.pay = PayPanel(lane, state, self.context)
        self.history = HistoryPanel(self.plot_sources)
        self.tabs = QTabWidget()
        self.tabs.setDocumentMode(True)
        for page, name in ((run_page, "Run"), (self.compare, "Compare"), (self.sweep, "Sweep"),
                           (self.pay, "Will it pay?"), (self.history, "History")):
            self.tabs.addTab(page, name)
        self._rerun: tuple[Rerun, str] | None = None
        for view in (self.compare, self.sweep, self.pay):
            view.error.connect(lambda text: self.error.emit("refused", text))
        self.history.error.connect(lambda text: self.error.emit("error", text))
        self.compare.comparison_ended.connect(self._comparison_ended)
        runs.run_ended.connect(self._run_ended)
        self.history.reopen_requested.connect(self.reopen)
        self.history.rerun_requested.connect(self.apply_rerun)
        self.tabs.currentChanged.connect(self._tab_changed)
        state.settled.connect(self._start_rerun)
        state.models_changed.connect(self._show_context)
        state.busy_changed.connect(lambda _busy: self._show_context())
        self.saved.connect(lambda _id: self.history.refresh())

    # -- the Run tab's choices ------------------------------------------------------------
    def context(self) -> RunContext | str:
        """What the views run on, or a sentence saying what is missing."""
        s = self.state
        if s.busy:
            return ENGINE_BUSY
        if s.target_info is None:
            return "Choose a target model in the Run tab first."
        if not self.prompt.prompt().strip():
            return "Type or load a prompt in the Run tab first."
        request = self.runs.choices()
        if isinstance(request, str):
            return request
        if s.target_info.is_moe:  # the MoE tracks of a comparison or sweep use the chosen count
            request = replace(request, settings=replace(
                request.settings, experts=self.tracks.settings.experts.value()))
        available = {tid: why is None for tid, why in s.availability.items()}
        return RunContext(request, s.target_info, s.draft_info, available)

    def _show_context(self) -> None:
        self._tab_changed(self.tabs.currentIndex())

    def _tab_changed(self, index: int) -> None:
        views: dict[int, CompareView | SweepView | PayPanel] = {
            COMPARE: self.compare, SWEEP: self.sweep, PAY: self.pay}
        view = views.get(index)
        if view is not None and not self.state.busy:
            ctx = self.context()
            view.context_line.setText(
                f"Runs on the Run tab's choices: {ctx.describe()}" if isinstance(ctx, RunContext)
                else ctx)

    def plot_sources(self) -> dict[str, Any]:
        p = self.plots
        return {"Run: tokens / s": p.tps, "Run: acceptance by round": p.acc,
                "Run: acceptance by draft position": p.position_plot,
                "Compare: tokens / s per track": self.compare.plot,
                "Sweep: tokens / s": self.sweep.tps, "Sweep: speedup": self.sweep.speed,
                "Sweep: acceptance": self.sweep.acc,
                "Sweep: divergence": self.sweep.div, "Will it pay?: speedup by K": self.pay.plot,
                "Will it pay?: experts": self.pay.experts.plot}

    # -- saving ---------------------------------------------------------------------------
    def _save(self, what: str, fn: Callable[[History], str]) -> None:
        """Save on the engine lane, after what ran there (fingerprints read the models)."""
        root = self.history.history.root
        self.lane.submit(
            lambda _session, _cancel, _report: str(fn(History(root))),
            done=lambda out: self.saved.emit(str(out)),
            error=lambda _kind, message: self.error.emit(
                "error", f"Could not save the {what} to the history: {message}"))

    def _run_ended(self, result: RunResult | None) -> None:
        job = self.runs.last_job
        if result is None or job is None:
            return
        request = job.request  # its draft only if the track used one
        shown = self.shown(result, self.runs.last_speedup)
        if worth_keeping(result):
            self._save("run", lambda h: record_run(result, request, h, shown))
        self.pay.set_measured(result, self.runs.last_speedup)

    @staticmethod
    def shown(result: RunResult, speedup: float | None) -> Shown:
        """The speedup and verdict of a Run-tab run, as the one verdict gives them."""
        base = result.tokens_per_second / speedup if speedup else None
        return Shown(speedup, judge_run(result, base).text)

    def _comparison_ended(self, comparison: Comparison, ctx: RunContext) -> None:
        if any(worth_keeping(r.result) for r in comparison.runs):
            self._save("comparison", lambda h: record_comparison(comparison, ctx.request, h))
        for run in comparison.runs:
            track = find_track(run.result.track)
            if track is not None and track.speculates and run.result.stop_reason != "cancelled":
                self.pay.set_measured(run.result, run.speedup, speedups_of(run))

    # -- reopen and re-run ----------------------------------------------------------------
    def reopen(self, record: RunRecord | ComparisonRecord) -> None:
        if isinstance(record, ComparisonRecord):
            if self.compare.active:
                self.error.emit("refused", "Wait for the comparison to end before reopening.")
                return
            first = record.records[0]
            missing = "" if record.complete else " (some tracks of it were deleted)"
            self.compare.show_comparison(
                record.comparison, title=f"Reopened: comparison of {when(first.created_unix)} "
                f"on {first.target.file_name}{missing}")
            self.tabs.setCurrentIndex(COMPARE)
            return
        speedup = (record.comparison.speedup if record.comparison
                   else record.shown.speedup if record.shown else None)
        title = (f"{track_label(record.result.track)} · reopened from "
                 f"{when(record.created_unix)} · {record.target.file_name}")
        if not self.runs.show_saved(record.result, speedup, title):
            self.error.emit("refused", "Wait for the current run to end before reopening.")
            return
        if record.shown is not None:  # the verdict it was shown with when it ended
            self.runs.summary.set("speedup", record.shown.verdict)
        self.tabs.setCurrentIndex(RUN)

    def apply_rerun(self, plan: Rerun) -> None:
        """Put the saved models, prompt and settings back, then run once they are read."""
        if self.state.busy:
            self.error.emit("refused", "Wait for the current run to end before running again.")
            return
        request = plan.request
        if not Path(request.target).is_file():
            self.error.emit("error", f"The target model is gone: {request.target}")
            return
        s = request.settings
        self.tracks.settings.load_settings(s)
        self.tracks.preferred = plan.tracks[0] if len(plan.tracks) == 1 else "baseline"
        self.prompt.text.setPlainText(request.prompt)
        self.prompt.set_system_setting(s.system)
        self.prompt.restore_chat_choice(s.chat)
        kind = "run" if len(plan.tracks) == 1 else "compare"
        self._rerun = (plan, kind)
        self.state.set_target(request.target)
        draft = request.draft
        self.state.set_draft(draft if draft and Path(draft).is_file() else None)
        if plan.warnings:
            self.error.emit("info", "Running again, but: " + "; ".join(plan.warnings))

    def _start_rerun(self) -> None:
        """The re-run's models have been read: choose its track (or tracks) and start."""
        if self._rerun is None:
            return
        plan, kind = self._rerun
        self._rerun = None
        experts, info = plan.request.settings.experts, self.state.target_info
        if experts is not None and info is not None and info.is_moe:
            self.tracks.settings.experts.setValue(experts)
        if kind == "run":
            self.tracks.select(plan.tracks[0])
            self.tabs.setCurrentIndex(RUN)
            self.runs.start()
        else:
            self.tabs.setCurrentIndex(COMPARE)
            self.compare.choose(plan.tracks)
            self.compare.start()

    def shutdown(self) -> None:
        self.compare.timer.stop()
        for view in (self.compare, self.sweep, self.pay, self.pay.experts):
            view.runner.cancel()

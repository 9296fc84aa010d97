"""The tabs beside Run — Compare, Sweep, Will it pay?, History — and their wiring.

The window keeps the Run tab (models, tracks, prompt, live answer); this controller builds
the other views, gives them the Run tab's choices as a ``RunContext``, keeps the model and
track panels locked while one of them uses the engine lane, saves every finished or
cancelled run and comparison to the history (on the engine lane: saving fingerprints the
model files), and turns History's reopen and re-run into actions on the window.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QTabWidget, QWidget

from app.core.compare import Comparison
from app.core.events import RunRequest, RunResult
from app.core.history import (
    ComparisonRecord,
    History,
    Rerun,
    record_comparison,
    record_run,
)
from app.core.serialization import RunRecord
from app.core.tracks import find_track, reasons, working
from app.ui.compare_view import CompareView
from app.ui.history_panel import HistoryPanel, when
from app.ui.jobs import RunContext
from app.ui.pay_panel import PayPanel
from app.ui.sweep_view import SweepView
from app.ui.track_panel import label_of

if TYPE_CHECKING:
    from app.ui.main_window import MainWindow

log = logging.getLogger("app.ui.lab")

RUN, COMPARE, SWEEP, PAY, HISTORY = range(5)


class Lab(QObject):
    saved = Signal(str)  # history id of a run or comparison just saved
    busy_changed = Signal(bool)

    def __init__(self, w: MainWindow, run_page: QWidget) -> None:
        super().__init__(w)
        self.w = w
        self.compare = CompareView(w.host, self.context)
        self.sweep = SweepView(w.host, self.context)
        self.pay = PayPanel(w.host, self.context)
        self.history = HistoryPanel(self.plot_sources)
        self.tabs = QTabWidget()
        self.tabs.setDocumentMode(True)
        for page, name in ((run_page, "Run"), (self.compare, "Compare"), (self.sweep, "Sweep"),
                           (self.pay, "Will it pay?"), (self.history, "History")):
            self.tabs.addTab(page, name)
        self._rerun: tuple[Rerun, str] | None = None
        self._saves: dict[int, str] = {}  # job id -> what is being saved

    def wire(self) -> None:
        w = self.w
        for view in (self.compare, self.sweep, self.pay):
            view.busy_changed.connect(self._view_busy)
            view.error.connect(lambda text: w.show_error("refused", text))
        self.history.error.connect(lambda text: w.show_error("error", text))
        self.compare.comparison_ended.connect(self._comparison_ended)
        w.run_ended.connect(self._run_ended)
        self.history.reopen_requested.connect(self.reopen)
        self.history.rerun_requested.connect(self.apply_rerun)
        self.tabs.currentChanged.connect(self._tab_changed)
        w.models_settled.connect(self._start_rerun)
        self.saved.connect(lambda _id: self.history.refresh())
        w.host.job_finished.connect(self._save_done)
        w.host.job_failed.connect(self._save_failed)

    @property
    def busy(self) -> bool:
        return self.compare.active or self.sweep.active or self.pay.active

    # -- the Run tab's choices ------------------------------------------------------------
    def context(self) -> RunContext | str:
        """What the views run on, or a sentence saying what is missing."""
        w = self.w
        if w.runs.active or self.busy:
            return "The engine is busy: wait for the current run to end, or stop it."
        if w.target_path is None or w.target_info is None:
            return "Choose a target model in the Run tab first."
        text = w.prompt.prompt()
        if not text.strip():
            return "Type or load a prompt in the Run tab first."
        info = w.target_info
        s = w.tracks.settings.settings(w.tracks.selected_track(), info, w.prompt.use_chat(),
                                       w.prompt.system_message())
        if info.is_moe:  # the MoE tracks of a comparison or sweep use the chosen count
            s = replace(s, experts=w.tracks.settings.experts.value())
        available = {tid: reason is None for tid, reason in self.availability().items()}
        return RunContext(w.target_path, w.draft_path, text, s, info, w.draft_info, available)

    def availability(self) -> dict[str, str | None]:
        w = self.w
        draft = w.draft_info if w.draft_path else None
        compat = w.current_compat()
        return {t.id: why[0] if (why := reasons(t, w.target_info, draft, compat)) else None
                for t in working()}

    def refresh(self) -> None:
        """The models changed: tell each view which tracks can run."""
        available = self.availability()
        self.compare.set_available(available)
        self.sweep.set_available(available, self.w.target_info)
        self.pay.set_available(available)
        self._tab_changed(self.tabs.currentIndex())

    def _tab_changed(self, index: int) -> None:
        views: dict[int, CompareView | SweepView | PayPanel] = {
            COMPARE: self.compare, SWEEP: self.sweep, PAY: self.pay}
        view = views.get(index)
        if view is not None and not self.busy:
            ctx = self.context()
            view.context_line.setText(
                f"Runs on the Run tab's choices: {ctx.describe()}" if isinstance(ctx, RunContext)
                else ctx)

    def _view_busy(self, busy: bool) -> None:
        w = self.w
        w.models.set_locked(busy)
        w.tracks.set_locked(busy)
        w.state_label.setText("working on the engine…" if busy else "")
        w._update_run_enabled()
        self.busy_changed.emit(busy)

    def plot_sources(self) -> dict[str, Any]:
        w = self.w
        return {"Run: tokens / s": w.plots.tps, "Run: acceptance by round": w.plots.acc,
                "Run: acceptance by draft position": w.plots.position_plot,
                "Compare: tokens / s per track": self.compare.plot,
                "Sweep: tokens / s": self.sweep.tps, "Sweep: acceptance": self.sweep.acc,
                "Sweep: divergence": self.sweep.div, "Will it pay?: speedup by K": self.pay.plot}

    # -- saving ---------------------------------------------------------------------------
    def _save(self, what: str, fn: Any) -> None:
        """Save on the engine lane, after what ran there (fingerprints read the models)."""
        root = self.history.history.root
        job = self.w.host.call(lambda _session, _cancel, _progress: str(fn(History(root))))
        self._saves[job.job_id] = what

    def _save_done(self, job_id: int, out: object) -> None:
        if self._saves.pop(job_id, None) is not None:
            self.saved.emit(str(out))

    def _save_failed(self, job_id: int, _kind: str, message: str) -> None:
        what = self._saves.pop(job_id, None)
        if what is not None:
            self.w.show_error("error", f"Could not save the {what} to the history: {message}")

    def _run_ended(self, result: RunResult | None) -> None:
        req = self.w.runs.last_request
        if result is None or req is None:
            return
        track = find_track(result.track)
        draft = req.draft if track is not None and track.needs_draft_model else None
        inputs = RunRequest(req.target, draft, req.prompt, req.settings)
        self._save("run", lambda h: record_run(result, inputs, h))
        self.pay.set_measured(result, self.w.runs.last_speedup)

    def _comparison_ended(self, comparison: Comparison, ctx: RunContext) -> None:
        inputs = RunRequest(ctx.target_path, ctx.draft_path, ctx.prompt, ctx.settings)
        self._save("comparison", lambda h: record_comparison(comparison, inputs, h))
        for run in comparison.runs:
            track = find_track(run.result.track)
            if track is not None and track.speculates and run.result.stop_reason != "cancelled":
                self.pay.set_measured(run.result, run.speedup)

    # -- reopen and re-run ----------------------------------------------------------------
    def reopen(self, record: RunRecord | ComparisonRecord) -> None:
        if isinstance(record, ComparisonRecord):
            if self.compare.active:
                self.w.show_error("refused", "Wait for the comparison to end before reopening.")
                return
            first = record.records[0]
            missing = "" if record.complete else " (some tracks of it were deleted)"
            self.compare.show_comparison(
                record.comparison, title=f"Reopened: comparison of {when(first.created_unix)} "
                f"on {first.target.file_name}{missing}")
            self.tabs.setCurrentIndex(COMPARE)
            return
        speedup = record.comparison.speedup if record.comparison else None
        title = (f"{label_of(record.result.track)} · reopened from "
                 f"{when(record.created_unix)} · {record.target.file_name}")
        if not self.w.runs.show_saved(record.result, speedup, title):
            self.w.show_error("refused", "Wait for the current run to end before reopening.")
            return
        self.tabs.setCurrentIndex(RUN)

    def apply_rerun(self, plan: Rerun) -> None:
        """Put the saved models, prompt and settings back, then run once they are read."""
        w = self.w
        if w.runs.active or self.busy:
            w.show_error("refused", "Wait for the current run to end before running again.")
            return
        if not Path(plan.request.target).is_file():
            w.show_error("error", f"The target model is gone: {plan.request.target}")
            return
        s = plan.request.settings
        w.tracks.settings.load_settings(s)
        w.tracks.preferred = plan.tracks[0] if len(plan.tracks) == 1 else "baseline"
        w.prompt.text.setPlainText(plan.request.prompt)
        w.prompt.system.setText(s.system or "")
        w.restore_chat_choice(s.chat)
        kind = "run" if len(plan.tracks) == 1 else "compare"
        self._rerun = (plan, kind)
        w.set_target(str(plan.request.target))
        w.set_draft(str(plan.request.draft) if plan.request.draft and Path(plan.request.draft).is_file()
                    else None)
        if plan.warnings:
            w.show_error("info", "Running again, but: " + "; ".join(plan.warnings))

    def _start_rerun(self) -> None:
        if self._rerun is None:
            return
        plan, kind = self._rerun
        self._rerun = None
        w = self.w
        if plan.request.settings.experts is not None and w.target_info is not None \
                and w.target_info.is_moe:
            w.tracks.settings.experts.setValue(plan.request.settings.experts)
        if kind == "run":
            w.tracks.select(plan.tracks[0])
            self.tabs.setCurrentIndex(RUN)
            w.start_run()
        else:
            self.tabs.setCurrentIndex(COMPARE)
            self.compare.choose(plan.tracks)
            self.compare.start()

    def shutdown(self) -> None:
        self.compare.timer.stop()
        for view in (self.compare, self.sweep, self.pay):
            view.runner.cancel()

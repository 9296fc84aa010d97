"""Reproduce a deprecated track on the loaded model: the evidence beside the study's number.

Pick a deprecated track (the track selector's "Reproduce…" opens this view with it chosen),
press Reproduce: the job runs on the engine lane on the Run tab's target, prompt and
settings (``app.core.reproduce``) and is kept with the other reproductions. What it shows:

- layer skipping (Tracks 7, 9, 10): acceptance and speedup per depth (bars and points), the
  study's 0.446 % as a line and the papers' 1.3–2.3× with trained exits as a band, both
  labelled as theirs; acceptance by draft position per depth; the table; the answer of the
  depth whose drafts were accepted most, with its rejected drafts struck through;
- SSM speculation (Track 5): tokens/s of the baseline, the naive rollback and the snapshot
  mode, what the snapshots cost, the snapshot run's answer with its rejected drafts;
- EAGLE / Medusa: that they are not reproducible, what the file was searched for.

A one-paragraph verdict in plain words tops it all. Export writes the JSON or a CSV.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.core.errors import DecodeLabError, RefusedError
from app.core.reproduce.plan import (
    PAPERS_LAYER_SKIP,
    STUDY_LAYER_SKIP,
    deprecated_track,
    kind_of,
)
from app.core.reproduce.result import Reproduction, Step, by_position
from app.core.reproduce.verdict import beyond_bound
from app.core.sizes import human_size
from app.core.tracks import DEPRECATED
from app.core.verdict import NEAR_TIE
from app.ui.jobs import (
    ContextProvider,
    JobView,
    fmt_rate,
    fmt_speedup,
    number_item,
    read_only_table,
    splitter,
)
from app.ui.lane import Lane
from app.ui.plots import BLUE, GREEN, GREY, ORANGE, _plot
from app.ui.state import WorkbenchState
from app.ui.token_view import TokenView

EMPTY = ("Pick a deprecated track and press Reproduce: it is measured on the Run tab's "
         "target and prompt, next to the number the study reported.")
COLUMNS = ("run", "drafted", "acceptance", "tok/s", "speedup", "same answer", "draft")
DEPTH_COLOURS = (BLUE, ORANGE, GREEN, "#9467bd", "#8c564b", "#e377c2", GREY, "#17becf")
RED = "#c62828"


def parse_depths(text: str) -> list[int]:
    """``"2, 7 14"`` → [2, 7, 14]; empty → [] (the defaults). RefusedError if unreadable."""
    words = [w for w in text.replace(",", " ").split() if w]
    try:
        depths = [int(w) for w in words]
    except ValueError:
        raise RefusedError(f"depths are block counts like 2, 7, 14 (not {text!r})") from None
    if any(d < 1 for d in depths):
        raise RefusedError("a depth is at least 1 block")
    return depths


class ReproduceView(JobView):
    reproduction_ended = Signal(object)  # Reproduction
    NOUN = "reproduction"

    def __init__(self, lane: Lane, state: WorkbenchState, context: ContextProvider,
                 parent: QWidget | None = None) -> None:
        super().__init__(lane, state, context, parent)
        self.rep: Reproduction | None = None
        self._build()

    # -- layout ---------------------------------------------------------------------------
    def _build(self) -> None:
        layout = self._frame()
        row = QHBoxLayout()
        self.track = QComboBox()
        for t in DEPRECATED:
            self.track.addItem(t.label, t.id)
        self.depths = QLineEdit()
        self.depths.setPlaceholderText("default: 2, L/4, L/2, 3L/4")
        self.depths.setToolTip("block counts to cut the target to (layer-skip tracks)")
        self.start_button = QPushButton("Reproduce")
        self.start_button.setObjectName("RunButton")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.export_button = QPushButton("Export…")
        self.export_button.setEnabled(False)
        for label, w in (("Track", self.track), ("depths", self.depths)):
            text = QLabel(label)
            text.setBuddy(w)
            row.addWidget(text)
            row.addWidget(w, 1 if w is self.depths else 0)
        for b in (self.start_button, self.cancel_button, self.export_button):
            row.addWidget(b)
        self.kept = QComboBox()
        self.kept.setToolTip("reproductions kept earlier: pick one to show it again")
        self.kept.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.kept.setMinimumContentsLength(28)
        row.addWidget(QLabel("kept"))
        row.addWidget(self.kept)
        layout.addLayout(row)
        self.about = QLabel("")
        self.about.setObjectName("Hint")
        self.about.setWordWrap(True)
        layout.addWidget(self.about)
        layout.addLayout(self._status_row())
        self.verdict = QLabel("")
        self.verdict.setObjectName("Verdict")
        self.verdict.setWordWrap(True)
        self.verdict.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.verdict)
        self.figures = QLabel("")
        self.figures.setObjectName("Hint")
        self.figures.setWordWrap(True)
        layout.addWidget(self.figures)

        self.sweep = _plot("acceptance by depth", "accepted drafts (%)", "blocks kept")
        self.speed = _plot("speedup by depth", "× baseline", "blocks kept")
        self.speed.setXLink(self.sweep)
        self.positions = _plot("acceptance by draft position", "accepted (%)",
                               "draft position")
        self.legend = self.positions.addLegend(offset=(-4, 4), labelTextSize="8pt")
        self.legend.setColumnCount(4)  # one row above the curves, not over them
        plots = QWidget()
        plots_layout = QVBoxLayout(plots)
        plots_layout.setContentsMargins(0, 0, 0, 0)
        for w in (self.sweep, self.speed, self.positions):
            plots_layout.addWidget(w, 1)
        self.table = read_only_table(COLUMNS)
        header = self.table.horizontalHeaderItem(COLUMNS.index("speedup"))
        if header is not None:
            header.setToolTip("tokens/s over those of the baseline run made right before it")
        self.table.horizontalHeader().setSectionResizeMode(
            QHeaderView.ResizeMode.ResizeToContents)
        self.tokens = TokenView()
        self.tokens_title = QLabel("")
        self.tokens_title.setObjectName("SectionTitle")
        right = QWidget()
        right_layout = QVBoxLayout(right)
        right_layout.setContentsMargins(0, 0, 0, 0)
        right_layout.addWidget(self.table, 2)
        right_layout.addWidget(self.tokens_title)
        right_layout.addWidget(self.tokens, 3)
        self.split = splitter(Qt.Orientation.Horizontal, plots, right, [560, 700])
        self._place_body(layout, self.split, EMPTY)

        self.track.currentIndexChanged.connect(self._track_changed)
        self.start_button.clicked.connect(self.start)
        self.cancel_button.clicked.connect(self.cancel)
        self.export_button.clicked.connect(self._ask_export)
        self.kept.activated.connect(self._open_kept)
        self._track_changed()
        self.refresh_kept()

    def refresh_kept(self) -> None:
        """List the kept reproductions (newest first); a damaged one is set aside."""
        from app.core.reproduce.store import Reproductions

        self.kept.clear()
        self.kept.addItem("—", None)
        try:
            reps = Reproductions().list()
        except OSError:
            reps = []
        for rep in reps:
            self.kept.addItem(f"{deprecated_track(rep.track).name} · {rep.target_name} · "
                              f"{rep.id[4:19]}", rep.id)

    def _open_kept(self, index: int) -> None:
        from app.core.reproduce.store import Reproductions

        rep_id = self.kept.itemData(index)
        if rep_id is None or self.active:
            return
        try:
            self.show_reproduction(Reproductions().load(rep_id))
        except (OSError, RefusedError, DecodeLabError) as exc:
            self._refuse(f"Cannot show {rep_id}: {exc}")

    def open_track(self, track_id: str) -> None:
        """Show this view for ``track_id`` (the track selector's "Reproduce…")."""
        index = self.track.findData(track_id)
        if index >= 0:
            self.track.setCurrentIndex(index)

    def _track_changed(self) -> None:
        track = deprecated_track(self.track.currentData())
        kind = kind_of(track.id)
        self.depths.setEnabled(kind == "layer-skip" and not self.active)
        what = {
            "layer-skip": "Cuts the target to its first blocks (CLaSp/SWIFT: blocks spread over "
                          "its depth) plus its own head, and runs each cut as a Track 1 draft.",
            "ssm": "Speculates on a recurrent target, rolled back naively and with state "
                   "snapshots (uses the Run tab's draft model, else prompt lookup).",
            "heads": "Searches the target file for trained draft heads; nothing can run "
                     "without them.",
        }[kind]
        self.about.setText(f"{track.label}: {track.summary}. Deprecated because: "
                           f"{track.failure}. {what}")

    # -- running ----------------------------------------------------------------------------
    def run_main_action(self) -> bool:
        return self.start()

    def start(self) -> bool:
        ctx = self._context()
        if ctx is None:
            return False
        from app.core.reproduce.plan import refusal

        track_id = self.track.currentData()
        try:
            depths = parse_depths(self.depths.text())
            why = refusal(track_id, ctx.target_info)
            if why is not None:
                raise RefusedError(why)
        except RefusedError as exc:
            self._refuse(str(exc))
            return False
        r = ctx.request
        kind = kind_of(track_id)

        def job(session: Any, cancel: Any, progress: Any) -> Reproduction:
            from app.core.reproduce.layerskip import reproduce_settings
            from app.core.reproduce.store import Reproductions

            s = reproduce_settings(replace(r.settings, track="baseline"))
            if kind == "heads":
                from app.core.reproduce.heads import check_heads

                rep = check_heads(track_id, r.target, r.prompt, s.to_dict())
            elif kind == "ssm":
                from app.core.reproduce.ssm import run_ssm

                rep = run_ssm(session, r.target, r.prompt, s, r.draft, progress, cancel)
            else:
                from app.core.reproduce.layerskip import run_layer_skip

                rep = run_layer_skip(session, track_id, r.target, r.prompt, s, depths or None,
                                     progress, cancel)
            Reproductions().save(rep)  # kept before it is shown
            return rep

        self.status.setText("")
        return self._begin(job, "starting…", 1)

    def _set_running(self, running: bool) -> None:
        self.start_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)
        self.track.setEnabled(not running)
        self.kept.setEnabled(not running)
        self.depths.setEnabled(not running and kind_of(self.track.currentData()) == "layer-skip")
        self.export_button.setEnabled(not running and self.rep is not None)
        super()._set_running(running)

    def _progress(self, x: Any) -> None:
        if isinstance(x, Step):
            self.progress.setRange(0, max(1, x.total))
            self.progress.setValue(x.done)
            self.status.setText(x.text + "…")

    def _finished(self, out: Any) -> None:
        super()._finished(out)
        if isinstance(out, Reproduction):
            self.show_reproduction(out)
            self.refresh_kept()
            self.status.setText(f"kept as {out.id}")
            self.reproduction_ended.emit(out)

    # -- showing ----------------------------------------------------------------------------
    def show_reproduction(self, rep: Reproduction) -> None:
        """Show ``rep`` (just run, or read back from the kept ones)."""
        self.rep = rep
        self.open_track(rep.track)
        self.verdict.setText(rep.verdict)
        reported = "; ".join(r.text() for r in rep.reported)
        ours = _ours(rep)
        self.figures.setText(f"<b>Measured here:</b> {ours}" + (
            f"<br><b>Reported, not measured here:</b> {reported}" if reported else ""))
        for plot in (self.sweep, self.speed, self.positions):
            plot.clear()
        self.legend.clear()
        self.table.setRowCount(0)
        self.tokens.clear()
        kind = rep.kind
        for w in (self.sweep, self.speed, self.positions, self.table, self.tokens,
                  self.tokens_title):
            w.setVisible(kind != "heads")
        if kind == "layer-skip":
            self._show_depths(rep)
        elif kind == "ssm":
            self._show_ssm(rep)
        self.export_button.setEnabled(not self.active)
        self._show_body()

    def _show_depths(self, rep: Reproduction) -> None:
        self.speed.setXLink(self.sweep)  # both over the same depths
        xs = np.asarray([d.n_blocks for d in rep.depths], dtype=float)
        acc = np.asarray([100 * (d.acceptance or 0.0) for d in rep.depths])
        of = rep.depths[0].of_blocks if rep.depths else 0
        for plot, title, left in ((self.sweep, "acceptance by depth", "accepted drafts (%)"),
                                  (self.speed, "speedup by depth", "× baseline")):
            plot.setTitle(f"{title} (blocks kept of {of})", size="9pt")
            plot.setLabel("left", left)
            plot.setLabel("bottom", "blocks kept")
            plot.getAxis("bottom").setTicks([[(x, f"{x:g}") for x in xs]])
        self.sweep.addItem(pg.BarGraphItem(x=xs, height=acc, width=0.6 * _gap(xs),
                                           brush=BLUE + "bb", pen=BLUE))
        study = 100 * STUDY_LAYER_SKIP.low
        self.sweep.addItem(pg.InfiniteLine(
            study, angle=0, pen=pg.mkPen(RED, width=1.5, style=Qt.PenStyle.DashLine)))
        self.sweep.setTitle(f"acceptance by depth (blocks kept of {of}); <span style='color:"
                            f"{RED}'>dashed: the study's {study:.3g} % (CAS-Spec)</span>",
                            size="9pt")
        top = max(5.0, float(acc.max(initial=0.0)) * 1.2)
        self.sweep.setYRange(0, top, padding=0)
        for x, a in zip(xs, acc, strict=True):  # the number on each bar
            value = pg.TextItem(f"{a:.3g} %", color="#1f4e79", anchor=(0.5, 1))
            value.setPos(float(x), float(a))
            self.sweep.addItem(value, ignoreBounds=True)
        band = pg.LinearRegionItem((PAPERS_LAYER_SKIP.low, PAPERS_LAYER_SKIP.high),
                                   orientation="horizontal", movable=False,
                                   brush=pg.mkBrush(GREEN + "33"), pen=pg.mkPen(None))
        self.speed.addItem(band)
        label = pg.TextItem(f"papers, trained exits: {PAPERS_LAYER_SKIP.low:g}–"
                            f"{PAPERS_LAYER_SKIP.high:g}× (not measured here)",
                            color="#2e7d32", anchor=(0, 0))
        label.setPos(float(xs.min(initial=0.0)), PAPERS_LAYER_SKIP.high)
        self.speed.addItem(label, ignoreBounds=True)
        self.speed.addItem(pg.InfiniteLine(1.0, angle=0, label="baseline", pen=pg.mkPen(
            GREY, width=1.5, style=Qt.PenStyle.DashLine), labelOpts={"position": 0.9}))
        speeds = [(d.n_blocks, d.speedup) for d in rep.depths
                  if d.speedup is not None and not beyond_bound(d)]
        self.speed.plot([a for a, _ in speeds], [b for _, b in speeds],
                        pen=pg.mkPen(BLUE, width=2), symbol="o", symbolSize=8, symbolBrush=BLUE)
        noise = [(d.n_blocks, min(d.speedup or 0.0, 2.45)) for d in rep.depths if beyond_bound(d)]
        if noise:  # more than the drafts could give: shown, crossed out, off the curve
            self.speed.plot([a for a, _ in noise], [b for _, b in noise], pen=None, symbol="x",
                            symbolSize=11, symbolBrush=GREY, symbolPen=GREY)
        self.speed.setYRange(0, 2.6, padding=0)
        for i, d in enumerate(rep.depths):
            proposed, accepted = by_position(d.result)
            rates = [100 * a / p if p else 0.0 for p, a in zip(proposed, accepted, strict=True)]
            colour = DEPTH_COLOURS[i % len(DEPTH_COLOURS)]
            self.positions.plot(list(range(1, len(rates) + 1)), rates,
                                name=f"{d.n_blocks} blocks", pen=pg.mkPen(colour, width=2),
                                symbol="o", symbolSize=6, symbolBrush=colour)
        self.positions.setYRange(0, 100, padding=0.02)
        k = max((len(by_position(d.result)[0]) for d in rep.depths), default=0)
        self.positions.getAxis("bottom").setTicks([[(i, str(i)) for i in range(1, k + 1)]])
        if rep.baseline is not None:
            self._row("baseline (first)", 0, None, rep.baseline.tokens_per_second, 1.0, "—", "")
        for d in rep.depths:
            r = d.result
            same = "yes" if d.first_difference is None else \
                f"from token {d.first_difference}" + _tie(d.margin_at_difference)
            made = "cached" if d.reused else f"derived in {d.derive_seconds:.1f} s"
            self._row(f"{d.n_blocks} of {d.of_blocks} blocks", r.n_drafted, d.acceptance,
                      r.tokens_per_second, d.speedup, same,
                      f"{human_size(d.draft_size)}, {made}", noise=beyond_bound(d))
        best = rep.best_depth
        if best is not None:
            self.tokens_title.setText(
                f"Answer with {best.n_blocks} of {best.of_blocks} blocks drafting (most "
                "accepted): accepted drafts highlighted, rejected ones struck through")
            self.tokens.append(best.result.events)

    def _show_ssm(self, rep: Reproduction) -> None:
        runs = [("baseline", rep.baseline)] + [(r.mode, r.result) for r in rep.ssm]
        names = [n for n, r in runs if r is not None]
        tps = [r.tokens_per_second for _, r in runs if r is not None]
        xs = np.arange(len(names), dtype=float)
        self.sweep.setTitle("tokens / s", size="9pt")
        self.sweep.setLabel("left", "tok/s")
        self.sweep.setLabel("bottom", "")
        self.sweep.addItem(pg.BarGraphItem(x=xs, height=tps, width=0.6, brush=BLUE + "bb",
                                           pen=BLUE))
        self.sweep.getAxis("bottom").setTicks([list(zip(xs.tolist(), names, strict=True))])
        self.sweep.setYRange(0, max(tps, default=1.0) * 1.15, padding=0)
        snap = rep.mode("snapshot")
        self.speed.setXLink(None)  # its own bars, not the runs above
        self.speed.enableAutoRange()
        self.speed.setTitle("where the snapshot mode's time went", size="9pt")
        self.speed.setLabel("left", "seconds")
        self.speed.setLabel("bottom", "")
        if snap is not None:
            res = snap.result
            parts = [("draft", res.draft_seconds), ("verify", res.verify_seconds),
                     ("snapshot", snap.snapshot_seconds), ("restore", snap.restore_seconds),
                     ("replay", snap.replay_seconds)]
            px = np.arange(len(parts), dtype=float)
            self.speed.addItem(pg.BarGraphItem(x=px, height=[v for _, v in parts], width=0.6,
                                               brush=ORANGE + "bb", pen=ORANGE))
            self.speed.getAxis("bottom").setTicks(
                [list(zip(px.tolist(), [n for n, _ in parts], strict=True))])
            proposed, accepted = by_position(snap.result)
            rates = [100 * a / p if p else 0.0 for p, a in zip(proposed, accepted, strict=True)]
            self.positions.plot(list(range(1, len(rates) + 1)), rates, name="snapshot mode",
                                pen=pg.mkPen(BLUE, width=2), symbol="o", symbolBrush=BLUE)
            self.positions.getAxis("bottom").setTicks(
                [[(i, str(i)) for i in range(1, len(rates) + 1)]])
            self.positions.setYRange(0, 100, padding=0.02)
            self.tokens_title.setText("Answer of the snapshot mode: accepted drafts "
                                      "highlighted, rejected ones struck through")
            self.tokens.append(snap.result.events)
        if rep.baseline is not None:
            self._row("baseline", 0, None, rep.baseline.tokens_per_second, 1.0, "—", "")
        for m in rep.ssm:
            r = m.result
            same = "yes" if m.same_as_baseline else (
                f"from token {m.first_difference}" + _tie(m.margin_at_difference)
                if m.first_difference is not None else "stopped")
            extra = (f"{m.refusals} rollbacks refused" if m.mode == "naive" else
                     f"{m.snapshots} × {human_size(m.snapshot_bytes)} snapshots")
            self._row(f"{m.mode} rollback", r.n_drafted, r.acceptance_rate, r.tokens_per_second,
                      m.speedup, same, extra)

    def _row(self, name: str, drafted: int, acc: float | None, tps: float,
             speedup: float | None, same: str, draft: str, noise: bool = False) -> None:
        row = self.table.rowCount()
        self.table.insertRow(row)
        cells = [name, str(drafted) if acc is not None else "—", fmt_rate(acc), f"{tps:.2f}",
                 fmt_speedup(speedup) + (" (noise)" if noise else ""), same, draft]
        for col, text in enumerate(cells):
            item = number_item(text)
            if col not in (1, 2, 3, 4):  # words, not numbers
                item.setTextAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
            self.table.setItem(row, col, item)

    # -- export -----------------------------------------------------------------------------
    def _ask_export(self) -> None:
        if self.rep is None:
            return
        path, _ = QFileDialog.getSaveFileName(self, "Export the reproduction",
                                              f"{self.rep.id}.json",
                                              "JSON (*.json);;CSV, one row per run (*.csv)")
        if path:
            self.export_to(path)

    def export_to(self, path: str | Path) -> Path | None:
        from app.core.reproduce.store import export

        if self.rep is None:
            return None
        try:
            written = export(self.rep, path)
        except OSError as exc:
            self._refuse(f"Not exported: {exc}")
            return None
        self.status.setText(f"exported to {written}")
        return written


def _tie(margin: float | None) -> str:
    """" (near-tie)" where the baseline's two best choices were that close."""
    return " (near-tie)" if margin is not None and margin < NEAR_TIE else ""


def _gap(xs: np.ndarray[Any, Any]) -> float:
    """The smallest distance between neighbouring depths (bar widths follow it)."""
    return float(np.diff(np.sort(xs)).min()) if len(xs) > 1 else 1.0


def _ours(rep: Reproduction) -> str:
    if rep.kind == "layer-skip":
        parts = [f"{d.n_blocks} blocks {fmt_rate(d.acceptance)} accepted, "
                 f"{fmt_speedup(d.speedup)}{' (noise)' if beyond_bound(d) else ''}"
                 for d in rep.depths]
        return "; ".join(parts) or "nothing (cancelled)"
    if rep.kind == "ssm":
        return "; ".join(f"{m.mode}: {'same answer' if m.same_as_baseline else 'differs'}, "
                         f"{fmt_speedup(m.speedup)}" for m in rep.ssm) or "nothing"
    heads = rep.heads
    found = ", ".join((heads.found + heads.keys) if heads else []) or "no draft heads"
    return f"{found} in {heads.n_tensors if heads else 0} tensors: not reproducible"

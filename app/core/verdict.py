"""A compared run's verdict against its baseline: speedup, same text, and where and how
narrowly the texts part; and the one verdict every view gives (Run, Compare, Sweep, Will it
pay?, History, the command line): which candidate, if any, is faster beyond noise. Run data:
imports nothing of the engine (``compare.py`` runs the comparisons).

Batched verification and one-token steps use different CPU kernels, so greedy outputs may
part at a near-tie (the baseline's two best logits within ``NEAR_TIE``) without any bug.

Noise. With repeats, a candidate's speedups are paired (each run against the baseline run
of the same repeat) and its band is their range; one candidate is faster than another (or
than the baseline, 1.0) when the bands do not overlap and the medians differ by at least
``REPEATS_MARGIN``. With a single run there is no spread to judge by, so the medians must
differ by ``SINGLE_RUN_MARGIN``: a shared machine drifts 10-20 % within minutes. A track
that drafted nothing decoded as the baseline does, so its speedup is noise by definition:
it is never crowned, and every view says that it drafted nothing and why (its notes).
"""

from __future__ import annotations

import os
import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from app.core.events import RunResult, RunSettings
from app.core.labels import track_label
from app.core.tracks import find_track

# How far the two kernels move the baseline's top-2 gap, measured (one-token steps against
# batches of 5 over 120 greedy positions): on an AVX-512 Xeon, Q4_K_M and Q5_0 models up to
# 0.41 logits (median 0.08), F16 0.006, Q4_1 0; 0.1 had held on the AMD machines before it
# and failed there on a gap of 0.134.
NEAR_TIE = 0.5
# Relative difference a single run must show to count (one run has no spread).
SINGLE_RUN_MARGIN = 0.10
# With repeats, the least relative difference of the medians, besides separate ranges
# (three runs that happen to agree closely do not prove a 1 % difference).
REPEATS_MARGIN = 0.03


def spread(values: list[float]) -> dict[str, Any]:
    """Median, lowest, highest and relative spread ((highest - lowest) / median) of
    ``values`` (all None when there are none)."""
    if not values:
        return {"median": None, "min": None, "max": None, "spread": None, "values": []}
    mid = statistics.median(values)
    lo, hi = min(values), max(values)
    return {"median": mid, "min": lo, "max": hi,
            "spread": (hi - lo) / mid if mid > 0 else None, "values": list(values)}


@dataclass
class Repeats:
    """A track's figures over the repeats of a comparison: tokens per second of each run and
    its speedup against the baseline run of the same repeat (paired)."""

    tokens_per_second: list[float] = field(default_factory=list)
    speedups: list[float] = field(default_factory=list)

    @property
    def worst_speedup(self) -> float | None:
        return min(self.speedups) if self.speedups else None

    def to_dict(self) -> dict[str, Any]:
        return {"n": len(self.tokens_per_second),
                "tokens_per_second": spread(self.tokens_per_second),
                "speedup": spread(self.speedups)}


@dataclass
class ComparedRun:
    """One track of a comparison. With repeats, ``result`` is the track's median run,
    ``speedup`` the median of its paired speedups and ``repeats`` holds them all."""

    result: RunResult
    speedup: float | None
    same_text_as_baseline: bool | None
    first_difference: int | None = None
    baseline_margin: float | None = None
    repeats: Repeats | None = None

    @property
    def near_tie(self) -> bool | None:
        if self.baseline_margin is None:
            return None
        return self.baseline_margin < NEAR_TIE

    def to_dict(self, with_events: bool = True) -> dict[str, Any]:
        d = self.result.to_dict(with_events)
        d.update(
            speedup=self.speedup,
            same_text_as_baseline=self.same_text_as_baseline,
            first_difference=self.first_difference,
            baseline_margin_at_difference=self.baseline_margin,
            near_tie_at_difference=self.near_tie,
            repeats=self.repeats.to_dict() if self.repeats is not None else None,
            drafted_nothing=idle_reason(self.result),
        )
        return d


@dataclass
class Comparison:
    runs: list[ComparedRun] = field(default_factory=list)
    repeats: int = 1  # how many times the tracks ran, interleaved

    @property
    def verdict(self) -> Verdict:
        return judge_comparison(self)

    def to_dict(self, with_events: bool = True) -> dict[str, Any]:
        v = self.verdict
        return {"runs": [r.to_dict(with_events) for r in self.runs], "repeats": self.repeats,
                "verdict": {"kind": v.kind, "best": v.best, "text": v.text}}


def first_difference(a: list[int], b: list[int]) -> int | None:
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))


def baseline_key(target_path: str, prompt: str, s: RunSettings) -> tuple[Any, ...]:
    """What a remembered baseline speed is valid for: everything that changes the speed of
    a plain run but not the track — the target file as it is now (path, size, time), the
    prompt and its rendering, threads, context, GPU layers, sampling and answer length. A
    baseline measured with 1 thread must not set the speedup of a 2-thread run."""
    try:
        st = os.stat(target_path)
        file_id: tuple[Any, ...] = (os.path.abspath(target_path), st.st_size, st.st_mtime_ns)
    except OSError:
        file_id = (str(target_path),)
    return (*file_id, prompt, s.chat, s.system, s.threads, s.ctx, s.gpu_layers,
            tuple(s.rpc), tuple(s.rpc_split),
            s.temperature, s.top_k, s.top_p, s.min_p, s.repeat_penalty, s.repeat_last_n,
            s.seed if s.temperature > 0 else None, s.max_tokens)


# -- the one verdict ----------------------------------------------------------------------


@dataclass(frozen=True)
class Band:
    """A candidate's speedup: the median of its runs, their lowest and highest, how many."""

    median: float
    low: float
    high: float
    n: int

    @classmethod
    def of(cls, speedups: Sequence[float]) -> Band | None:
        if not speedups:
            return None
        return cls(statistics.median(speedups), min(speedups), max(speedups), len(speedups))


def faster(a: Band, b: Band) -> bool:
    """Whether ``a`` is faster than ``b`` beyond noise (see the module's docstring)."""
    margin = SINGLE_RUN_MARGIN if min(a.n, b.n) < 2 else REPEATS_MARGIN
    return a.median > b.median * (1 + margin) and a.low > b.high


def noise_phrase(n: int) -> str:
    """How noise was judged for runs of ``n`` repeats, in words."""
    if n < 2:
        return (f"one run each, so only a difference of more than {SINGLE_RUN_MARGIN:.0%} "
                "counts; repeat the runs to judge closer")
    return f"the ranges of {n} interleaved runs overlap"


def format_speedup(speedups: Sequence[float] | float | None, times: str = "×",
                   dash: str = "–") -> str:
    """"1.42×", or with repeats "1.42× (1.31–1.50, 3 runs)" (median, lowest–highest);
    "—" when there is none. The command line passes ``times="x", dash="-"``."""
    if speedups is None:
        return "—" if times == "×" else "-"
    values = [speedups] if isinstance(speedups, int | float) else list(speedups)
    band = Band.of(values)
    if band is None:
        return "—" if times == "×" else "-"
    text = f"{band.median:.2f}{times}"
    if band.n > 1:
        text += f" ({band.low:.2f}{dash}{band.high:.2f}, {band.n} runs)"
    return text


def wrote_nothing(result: RunResult) -> str | None:
    """Why ``result`` has no answer to time, if it has none (its 0 tokens/s is not a speed):
    with few experts a model may end its answer before the first token."""
    if result.n_generated or result.stop_reason == "cancelled":
        return None
    if result.stop_reason == "eos":
        return "the model ended its answer at once (end-of-text as the first token)"
    return f"no token written ({result.stop_reason})"


def idle_reason(result: RunResult) -> str | None:
    """Why a speculating track drafted nothing in ``result`` (its notes, or that none was
    recorded); None when it drafted, does not speculate, or stopped before answering."""
    track = find_track(result.track)
    if (track is None or not track.speculates or result.n_drafted
            or result.stop_reason in ("cancelled", "error") or not result.n_generated):
        return None
    # "prompt lookup drafted nothing: no n-gram ..." -> "no n-gram ...": the views say
    # "<track> drafted nothing: <why>" themselves.
    said = [re.sub(r"^[^:]*drafted nothing:\s*", "", n) for n in result.notes]
    return "; ".join(said) if said else "no draft source proposed anything (no reason recorded)"


def speedups_of(run: ComparedRun) -> list[float]:
    """A compared run's speedups: each repeat's paired speedup, or its one speedup."""
    if run.repeats is not None and run.repeats.speedups:
        return list(run.repeats.speedups)
    return [run.speedup] if run.speedup is not None else []


@dataclass(frozen=True)
class Candidate:
    """One thing a verdict weighs against the baseline: a track of a comparison, a value of
    a sweep, a K of a prediction. ``idle``: why it drafted nothing, if it did not."""

    key: str
    label: str
    speedups: tuple[float, ...]
    idle: str | None = None
    empty: str | None = None  # why it wrote no token (``wrote_nothing``): no speed at all

    @property
    def band(self) -> Band | None:
        return Band.of(self.speedups)


Kind = Literal["best", "tie", "noise", "slower", "idle", "none"]


@dataclass(frozen=True)
class Verdict:
    """The verdict on some candidates against the baseline.

    ``kind``: ``best`` (one candidate beats the baseline and every other beyond noise),
    ``tie`` (several beat the baseline, not each other), ``noise`` (none beats it beyond
    noise, some come within noise of it), ``slower`` (all are slower beyond noise), ``idle``
    (none drafted anything), ``none`` (no speedup to judge). ``best`` is the crowned key
    (kind ``best`` only); ``leaders`` the keys that beat the baseline and are within noise
    of the fastest; ``text`` a sentence for a view, ``short`` a few words for a cell."""

    kind: Kind
    best: str | None
    leaders: tuple[str, ...]
    text: str
    short: str


def judge(candidates: Sequence[Candidate], noun: str = "track") -> Verdict:
    """The one verdict: see the module's docstring for what counts as noise."""
    banded = [(c, b) for c in candidates if (b := c.band) is not None]
    idle = [(c, b) for c, b in banded if c.idle is not None]
    active = [(c, b) for c, b in banded if c.idle is None]
    idle_text = _idle_sentences(idle, len(banded), noun) + "".join(
        f" {c.label} wrote no token: {c.empty}." for c in candidates if c.empty)
    single = len(candidates) == 1
    if not banded:
        head = ("No speedup to judge." if any(c.empty for c in candidates)
                else "No speedup to judge: the baseline did not finish.")
        short = "wrote no token" if single and candidates[0].empty else "—"
        return Verdict("none", None, (), head + idle_text, short)
    if not active:
        return Verdict("idle", None, (), "Nothing was drafted, so nothing can beat the "
                       "baseline." + idle_text, "drafted nothing")
    beat = [(c, b) for c, b in active if faster(b, Band(1.0, 1.0, 1.0, b.n))]
    n = max(b.n for _c, b in active)
    if not beat:
        top, tb = max(active, key=lambda cb: cb[1].median)
        slower = all(faster(Band(1.0, 1.0, 1.0, b.n), b) for _c, b in active)
        if slower:
            text = (f"Nothing beat the baseline: {_named(top, single, bool(idle))} "
                    f"{format_speedup(top.speedups)}.")
            return Verdict("slower", None, (), text + idle_text,
                           "slower than the baseline" if single else "nothing beat the baseline")
        text = (f"{top.label}: {format_speedup(top.speedups)} — within noise of the "
                f"baseline ({noise_phrase(n)})." if single else
                f"No clear winner: within noise of the baseline — the fastest"
                f"{' that drafted' if idle else ''}, {top.label}, "
                f"{format_speedup(top.speedups)} ({noise_phrase(n)}).")
        return Verdict("noise", None, (), text + idle_text,
                       "within noise of the baseline" if single
                       else "no clear winner: within noise")
    top, tb = max(beat, key=lambda cb: cb[1].median)
    leaders = [(c, b) for c, b in beat if c is top or not faster(tb, b)]
    if len(leaders) == 1:
        if single:
            text = (f"{top.label}: {format_speedup(top.speedups)}, faster than the baseline "
                    "beyond noise.")
            return Verdict("best", top.key, (top.key,), text + idle_text,
                           f"beats the baseline: {tb.median:.2f}×")
        text = (f"Best: {top.label} — {format_speedup(top.speedups)}, faster than the "
                f"baseline and every other {noun} beyond noise.")
        return Verdict("best", top.key, (top.key,), text + idle_text,
                       f"best: {top.label} {tb.median:.2f}×")
    names = ", ".join(f"{c.label} {format_speedup(c.speedups)}" for c, _b in leaders)
    text = (f"No clear winner: within noise — {names} beat the baseline, but not each other "
            f"({noise_phrase(n)}).")
    return Verdict("tie", None, tuple(c.key for c, _b in leaders), text + idle_text,
                   "no clear winner: within noise")


def _named(c: Candidate, single: bool, drafted: bool = False) -> str:
    return c.label if single else f"the fastest{' that drafted' if drafted else ''}, {c.label},"


def _idle_sentences(idle: list[tuple[Candidate, Band]], total: int, noun: str) -> str:
    """" X drafted nothing: why." once per reason (a sweep's values often share one)."""
    by_reason: dict[str, list[tuple[Candidate, Band]]] = {}
    for c, b in idle:
        by_reason.setdefault(c.idle or "", []).append((c, b))
    out = ""
    for why, group in by_reason.items():
        who = (f"Every {noun}" if len(group) == total > 1
               else ", ".join(c.label for c, _b in group))
        out += f" {who} drafted nothing: {why.rstrip('.')}."
        if any(faster(b, Band(1.0, 1.0, 1.0, b.n)) or faster(Band(1.0, 1.0, 1.0, b.n), b)
               for _c, b in group):
            out += (" A speedup or slowdown without drafts is noise: it decoded as the "
                    "baseline does.")
    return out


def candidate_of(run: ComparedRun) -> Candidate:
    r = run.result
    return Candidate(r.track, track_label(r.track), tuple(speedups_of(run)), idle_reason(r),
                     wrote_nothing(r))


def judge_comparison(c: Comparison) -> Verdict:
    """The verdict on a comparison's tracks (the baseline is the reference, not a
    candidate)."""
    return judge([candidate_of(r) for r in c.runs if r.result.track != "baseline"])


def judge_run(result: RunResult, baseline_tokens_per_second: float | None) -> Verdict:
    """The verdict on one run against a remembered baseline speed (the Run tab): a single
    run, so ``SINGLE_RUN_MARGIN`` is the noise. The baseline itself is its own reference."""
    if result.track == "baseline":
        return Verdict("none", None, (), "1.00× — this run is the baseline.", "baseline")
    idle = idle_reason(result)
    if not baseline_tokens_per_second or baseline_tokens_per_second <= 0:
        text = "No baseline on this prompt and settings yet: run the baseline to compare."
        if idle is not None:
            text = f"Drafted nothing: {idle}. " + text
        return Verdict("none", None, (), text, "drafted nothing" if idle else "—")
    speedup = result.tokens_per_second / baseline_tokens_per_second
    v = judge([Candidate(result.track, track_label(result.track), (speedup,), idle)])
    head = f"{speedup:.2f}× vs baseline ({baseline_tokens_per_second:.1f} tok/s)"
    tail = {"best": "faster beyond noise.",
            "noise": f"within noise of the baseline (a single run must differ by more than "
                     f"{SINGLE_RUN_MARGIN:.0%}).",
            "slower": "slower than the baseline.",
            "idle": f"drafted nothing: {idle}, so this speed is the baseline's, give or take "
                    "noise."}[v.kind]
    return Verdict(v.kind, v.best, v.leaders, f"{head} — {tail}", v.short)

"""Sweeps: one track over a range of one setting, on one prompt, against one baseline.

Guarantees: one ``SweepPoint`` per value, in the order given, each from a full
``Session.run`` with only that setting changed; the baseline run comes first and is the
reference for speed (speedup = tokens/s ratio) and for quality (agreement of the token ids
with the baseline answer, which for an expert sweep is the model's own expert count).
Every value is checked before the first run; a cancel stops between or inside runs and the
partial run is dropped, not reported as a point.

A sweep over K runs with fixed drafting: adaptive drafting chooses how far to draft from
what it measures, so K would only cap it and the points would measure adaptive decisions,
not K. With ``repeats`` the baseline and every value run that many times, interleaved
(baseline, v1, v2, ..., baseline, v1, ...); a point's speedup is then the median of its
paired speedups (each against the baseline of the same repeat). The best value is crowned
only beyond noise (``app.core.verdict.judge``).
"""

from __future__ import annotations

import copy
import math
import statistics
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import app.core.drafting.registry as registry
from app.core.errors import RefusedError
from app.core.events import RunResult, RunSettings
from app.core.gguf_info import inspect_model
from app.core.labels import setting_label
from app.core.session import Session
from app.core.tracks import Track, get_track
from app.core.verdict import Candidate, Verdict, idle_reason, judge, wrote_nothing

# Besides every source setting with sweep values (registry), a sweep can change K and the
# expert count.
CORE_PARAMETERS = ("draft_max", "experts")
# An expert count is "best" only if its answer stays this close to the full-expert one.
MAX_DIVERGENCE = 0.25

Progress = Callable[[int, int, str], None]


def prefix_agreement(reference: Sequence[int], ids: Sequence[int]) -> float:
    """Fraction of ``reference`` reproduced before the first difference (1.0: identical)."""
    if not reference:
        return 1.0 if not ids else 0.0
    n = 0
    for a, b in zip(reference, ids, strict=False):
        if a != b:
            break
        n += 1
    return n / len(reference)


def edit_distance(a: Sequence[int], b: Sequence[int]) -> int:
    """Levenshtein distance between two token-id sequences."""
    # A shared head and tail cost nothing: strip them so that near-equal answers, the
    # common case, cost O(n) instead of O(n * m).
    head = 0
    while head < min(len(a), len(b)) and a[head] == b[head]:
        head += 1
    a, b = a[head:], b[head:]
    while a and b and a[-1] == b[-1]:
        a, b = a[:-1], b[:-1]
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, start=1):
        cur = [i]
        for j, y in enumerate(b, start=1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = cur
    return prev[-1]


def divergence(reference: Sequence[int], ids: Sequence[int]) -> float:
    """Edit distance normalised to 0 (same tokens) … 1 (nothing in common)."""
    longest = max(len(reference), len(ids))
    return edit_distance(reference, ids) / longest if longest else 0.0


@dataclass
class SweepPoint:
    value: float | int
    result: RunResult
    speedup: float | None
    same_as_baseline: bool
    agreement: float  # prefix_agreement with the baseline answer
    divergence: float  # normalised edit distance from the baseline answer
    best: bool = False
    # Each repeat's run and its paired speedup; ``result`` is the median run, ``speedup``
    # the median speedup (quality: from the first repeat, the answers being the same).
    runs: list[RunResult] = field(default_factory=list)
    speedups: list[float] = field(default_factory=list)

    @property
    def tokens_per_second(self) -> float:
        """NaN when the run wrote no token (``wrote_nothing``): there is no speed to show,
        and a 0 would read as a very slow value."""
        return self.result.tokens_per_second if self.result.n_generated else math.nan

    @property
    def wrote_nothing(self) -> str | None:
        """Why this value's run has no answer to time (``verdict.wrote_nothing``)."""
        return wrote_nothing(self.result)

    @property
    def acceptance_rate(self) -> float | None:
        return self.result.acceptance_rate

    @property
    def drafted_nothing(self) -> str | None:
        """Why this value's run drafted nothing (``verdict.idle_reason``), if it did not."""
        return idle_reason(self.result)

    def add(self, run: RunResult, speedup: float | None) -> None:
        """Another repeat of this value: the median run and speedup follow."""
        self.runs.append(run)
        if speedup is not None:
            self.speedups.append(speedup)
        if self.speedups:
            self.speedup = statistics.median(self.speedups)
            if len(self.speedups) == len(self.runs):
                self.result = self.runs[self.speedups.index(statistics.median_low(self.speedups))]


@dataclass
class Sweep:
    parameter: str
    track: str
    baseline: RunResult | None = None
    points: list[SweepPoint] = field(default_factory=list)
    cancelled: bool = False
    repeats: int = 1
    fixed_drafting: bool = False  # adaptive drafting was turned off (a sweep over K)
    baselines: list[RunResult] = field(default_factory=list)  # one per repeat
    verdict: Verdict | None = None  # set by mark_best

    @property
    def best(self) -> SweepPoint | None:
        return next((p for p in self.points if p.best), None)


def parameters(track: Track) -> list[str]:
    """What a sweep of ``track`` can change: K if it speculates, the expert count if it
    reduces experts, and each setting of its sources that has sweep values."""
    names = ["draft_max"] if track.speculates else []
    names += [s.name for src in track.draft_sources for s in src.settings if s.sweep]
    return names + (["experts"] if track.moe else [])


def _unknown(parameter: str) -> RefusedError:
    known = [*CORE_PARAMETERS, *(s.name for s in registry.all_settings() if s.sweep)]
    return RefusedError(f"cannot sweep {parameter!r}: choose one of {', '.join(known)}")


def default_values(
    parameter: str, target_path: str | Path, s: RunSettings
) -> list[float] | list[int]:
    """The range swept when none is given (experts: the model's default count down to 1)."""
    if parameter == "draft_max":
        return list(range(1, 17))
    if parameter == "experts":
        info = inspect_model(target_path)
        if not info.is_moe:
            raise RefusedError(f"{info.file_name} is not a Mixture-of-Experts model")
        return list(range(info.expert_used_count or info.expert_count, 0, -1))
    spec = registry.setting(parameter)
    if spec is None or not spec.sweep:
        raise _unknown(parameter)
    return [spec.kind(v) for v in spec.sweep]


def _settings(s: RunSettings, parameter: str, value: float | int) -> RunSettings:
    if parameter == "draft_max":
        return replace(s, draft_max=int(value))
    if parameter == "experts":
        return replace(s, experts=int(value))
    spec = registry.setting(parameter)
    assert spec is not None  # checked by parameters()
    return s.with_options(**{parameter: spec.kind(value)})


def iter_sweep(
    session: Session,
    target_path: str | Path,
    draft_path: str | Path | None,
    prompt: str,
    s: RunSettings,
    parameter: str,
    values: Sequence[float | int] | None = None,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
    sweep: Sweep | None = None,
    repeats: int = 1,
) -> Iterator[SweepPoint]:
    """Yield a point per value as each run ends (``best`` is not set yet: see run_sweep);
    with ``repeats``, the same point again as each later repeat updates it.
    ``progress(done, total, label)`` is called before each run and once at the end."""
    if repeats < 1:
        raise RefusedError(f"repeats must be at least 1 (got {repeats})")
    if parameter not in CORE_PARAMETERS and registry.setting(parameter) is None:
        raise _unknown(parameter)
    if parameter not in parameters(get_track(s.track)):
        raise RefusedError(f"track {s.track} does not use {parameter}")
    vals = list(values) if values is not None else default_values(parameter, target_path, s)
    sweep = sweep if sweep is not None else Sweep(parameter, s.track)
    sweep.repeats = repeats
    if parameter == "draft_max" and s.adaptive:
        s = replace(s, adaptive=False)  # else K is only a cap on adaptive decisions
        sweep.fixed_drafting = True
    base_s = replace(s, track="baseline", experts=None)
    for v in vals:  # refuse before spending minutes on the first runs
        session.check(target_path, draft_path, _settings(s, parameter, v))
    cancel = cancel or threading.Event()
    total = (len(vals) + 1) * repeats
    say = progress or (lambda _d, _t, _l: None)
    learned = _snapshot(session.memory) if repeats > 1 else None
    done = 0
    for rep in range(repeats):
        if rep and learned is not None:  # each repeat starts from what sources knew before
            session.memory = copy.deepcopy(learned)
        again = f" (repeat {rep + 1} of {repeats})" if repeats > 1 else ""
        say(done, total, "baseline" + again)
        base = session.run(target_path, draft_path, prompt, base_s, cancel=cancel)
        done += 1
        if base.stop_reason == "cancelled":
            sweep.cancelled = True
            return
        sweep.baselines.append(base)
        if sweep.baseline is None:
            sweep.baseline = base
        for i, v in enumerate(vals):
            if cancel.is_set():
                sweep.cancelled = True
                return
            say(done, total, f"{parameter} = {v}{again}")
            r = session.run(target_path, draft_path, prompt, _settings(s, parameter, v),
                            cancel=cancel)
            done += 1
            if r.stop_reason == "cancelled":
                sweep.cancelled = True
                return
            # No speedup for a run that wrote nothing: its 0 tokens/s is not a speed.
            speed = (r.tokens_per_second / base.tokens_per_second
                     if base.tokens_per_second > 0 and r.n_generated else None)
            if rep == 0:
                ref, ids = base.token_ids, r.token_ids
                point = SweepPoint(v, r, speed, ref == ids, prefix_agreement(ref, ids),
                                   divergence(ref, ids))
                point.add(r, speed)
                sweep.points.append(point)
            else:
                point = sweep.points[i]
                point.add(r, speed)
            yield point
    say(total, total, "done")


def _snapshot(memory: dict[str, Any]) -> dict[str, Any] | None:
    """A copy of the sources' memory to start each repeat from (None: cannot be copied)."""
    try:
        return copy.deepcopy(memory)
    except (TypeError, copy.Error, RecursionError):
        return None


def judge_sweep(sweep: Sweep, max_divergence: float = MAX_DIVERGENCE) -> Verdict:
    """The verdict on a sweep's values (``verdict.judge``); in an expert sweep (the only
    lossy one) only values whose answer stays within ``max_divergence`` of the full-expert
    answer are candidates."""
    lossy = sweep.parameter == "experts"
    name = setting_label(sweep.parameter)
    candidates = [
        Candidate(str(i), f"{name} = {p.value:g}",
                  tuple(p.speedups) or ((p.speedup,) if p.speedup is not None else ()),
                  p.drafted_nothing, p.wrote_nothing)
        for i, p in enumerate(sweep.points) if not lossy or p.divergence <= max_divergence
    ]
    return judge(candidates, noun="value")


def mark_best(sweep: Sweep, max_divergence: float = MAX_DIVERGENCE) -> SweepPoint | None:
    """Mark the best point, if the verdict crowns one beyond noise (``judge_sweep``, kept in
    ``sweep.verdict``). Returns it, or None."""
    for p in sweep.points:
        p.best = False
    sweep.verdict = judge_sweep(sweep, max_divergence)
    if sweep.verdict.best is None:
        return None
    best = sweep.points[int(sweep.verdict.best)]
    best.best = True
    return best


def run_sweep(
    session: Session,
    target_path: str | Path,
    draft_path: str | Path | None,
    prompt: str,
    s: RunSettings,
    parameter: str,
    values: Sequence[float | int] | None = None,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
    max_divergence: float = MAX_DIVERGENCE,
    repeats: int = 1,
) -> Sweep:
    """Run the whole sweep and mark its best point (also when cancelled part-way)."""
    sweep = Sweep(parameter, s.track)
    for _ in iter_sweep(
        session, target_path, draft_path, prompt, s, parameter, values, progress, cancel, sweep,
        repeats,
    ):
        pass
    mark_best(sweep, max_divergence)
    return sweep

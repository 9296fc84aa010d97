"""Several tracks on one prompt with identical settings, judged against the baseline.

Batched verification and one-token steps use different CPU kernels, so greedy outputs may
part at a near-tie (the baseline's two best logits within ``NEAR_TIE``) without any bug;
where texts differ we report the first differing position and the baseline's margin there.
"""

from __future__ import annotations

import copy
import statistics
import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from app.core.engine import EventSink
from app.core.errors import RefusedError
from app.core.events import RunResult, RunSettings
from app.core.sampling import SamplerSettings, penalised
from app.core.session import Session, render_prompt
from app.core.verdict import NEAR_TIE, ComparedRun, Comparison, Repeats, first_difference

__all__ = ["NEAR_TIE", "ComparedRun", "Comparison", "Repeats", "compare", "first_difference"]


def baseline_margin(
    session: Session,
    target_path: str | Path,
    prompt: str,
    s: RunSettings,
    answer: list[int],
    position: int,
) -> float:
    """Top-2 logit margin of the baseline at ``position`` (re-evaluated in one batch)."""
    base = replace(s, track="baseline", experts=s.experts)
    model = session.load_target(target_path, base)
    ids = render_prompt(model, prompt, s.chat, s.system) + answer[:position]
    model.reset()
    # The margin of the logits the run chose from: penalised as the sampler penalises them.
    row = penalised(np.array(model.eval(ids, 1)[0], dtype=np.float32),
                    SamplerSettings(repeat_penalty=s.repeat_penalty,
                                    repeat_last_n=s.repeat_last_n), ids).astype(np.float64)
    top2 = np.partition(row, -2)[-2:]
    return float(abs(top2[1] - top2[0]))


def compare(
    session: Session,
    target_path: str | Path,
    draft_path: str | Path | None,
    prompt: str,
    tracks: list[str],
    s: RunSettings,
    on_event: Callable[[str], EventSink | None] | None = None,
    cancel: threading.Event | None = None,
    repeats: int = 1,
    on_run: Callable[[int, int, RunResult], None] | None = None,
) -> Comparison:
    """Run ``tracks`` in order (baseline first, added if missing) on the same prompt.

    ``repeats`` > 1 runs the whole order that many times, interleaved (baseline, A, B,
    baseline, A, B, ...), so that a slow minute of the machine hits every track alike; each
    repeat starts from what the draft sources had learned before the comparison (a suffix
    drafter would otherwise copy the answer of the repeat before). Each track is then
    represented by its median run, its speedup is the median of the paired speedups (run
    against the baseline of the same repeat) and ``ComparedRun.repeats`` holds them all.
    ``on_event(track)`` is asked for a listener before every run; ``on_run(done, total,
    result)`` hears each run as it ends (a comparison takes minutes: progress lines).
    """
    if repeats < 1:
        raise RefusedError(f"repeats must be at least 1 (got {repeats})")
    order = ["baseline", *[t for t in tracks if t != "baseline"]]
    for t in order:  # refuse before spending minutes on the first runs
        session.check(target_path, draft_path, replace(s, track=t))
    learned = _snapshot(session.memory) if repeats > 1 else None
    runs: list[list[RunResult]] = [[] for _ in order]  # by position in ``order``
    for rep in range(repeats):
        if rep and learned is not None:
            session.memory = copy.deepcopy(learned)
        for i, t in enumerate(order):
            if cancel is not None and cancel.is_set():
                break
            sink = on_event(t) if on_event else None
            result = session.run(target_path, draft_path, prompt, replace(s, track=t), sink,
                                 cancel)
            runs[i].append(result)
            if on_run is not None:
                on_run(rep * len(order) + i + 1, repeats * len(order), result)
    if repeats == 1:
        return _judged(session, target_path, prompt, s, [(r[0], None) for r in runs if r])
    runs = _complete_repeats(runs)
    picked: list[tuple[RunResult, Repeats | None]] = []
    for i, track_runs in enumerate(runs):
        if not track_runs:
            continue
        # A run that wrote no token has no speed (``verdict.wrote_nothing``), not 0x.
        paired = [r.tokens_per_second / b.tokens_per_second
                  for r, b in zip(track_runs, runs[0], strict=False)
                  if b.tokens_per_second > 0 and r.n_generated]
        rep_stats = Repeats([r.tokens_per_second for r in track_runs], paired)
        # The median run: by paired speedup where every run has one, else by its speed.
        key = paired if i and len(paired) == len(track_runs) else rep_stats.tokens_per_second
        picked.append((track_runs[key.index(statistics.median_low(key))], rep_stats))
    out = _judged(session, target_path, prompt, s, picked)
    out.repeats = max((len(r) for r in runs), default=1)
    return out


def _complete_repeats(runs: list[list[RunResult]]) -> list[list[RunResult]]:
    """Only the repeats in which every track ran to its end, when there are such: a repeat
    cancelled half-way would pair a partial run (or none) with a full one. Without any
    complete repeat (cancelled in the first), what ran is kept as it is."""
    longest = max((len(r) for r in runs), default=0)
    done = [i for i in range(longest)
            if all(len(r) > i and r[i].stop_reason != "cancelled" for r in runs)]
    if not done or len(done) == longest:
        return runs
    return [[r[i] for i in done] for r in runs]


def _snapshot(memory: dict[str, Any]) -> dict[str, Any] | None:
    """A copy of the sources' memory to start each repeat from (None: cannot be copied)."""
    try:
        return copy.deepcopy(memory)
    except (TypeError, copy.Error, RecursionError):
        return None


def _judged(
    session: Session,
    target_path: str | Path,
    prompt: str,
    s: RunSettings,
    picked: list[tuple[RunResult, Repeats | None]],
) -> Comparison:
    """The comparison of the runs ``picked`` (the baseline's first) with their verdicts."""
    out = Comparison()
    if not picked:
        return out
    base, base_reps = picked[0]
    out.runs.append(ComparedRun(base, 1.0, True, repeats=base_reps))
    for r, reps in picked[1:]:
        if reps is not None and reps.speedups:
            speed: float | None = statistics.median(reps.speedups)
        else:
            speed = (r.tokens_per_second / base.tokens_per_second
                     if base.tokens_per_second > 0 and r.n_generated else None)
        diff = first_difference(base.token_ids, r.token_ids)
        n = min(len(base.token_ids), len(r.token_ids))
        run = ComparedRun(r, speed, diff is None, repeats=reps)
        if diff is not None and diff < n and s.temperature <= 0:
            run.first_difference = diff
            run.baseline_margin = baseline_margin(
                session, target_path, prompt, s, base.token_ids, diff
            )
        elif diff is not None:
            run.first_difference = diff
        out.runs.append(run)
    return out

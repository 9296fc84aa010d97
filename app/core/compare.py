"""Several tracks on one prompt with identical settings, judged against the baseline.

Batched verification and one-token steps use different CPU kernels, so greedy outputs may
part at a near-tie (the baseline's two best logits within ``NEAR_TIE``) without any bug;
where texts differ we report the first differing position and the baseline's margin there.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np

from app.core.engine import EventSink
from app.core.events import RunResult, RunSettings
from app.core.session import Session, render_prompt
from app.core.verdict import NEAR_TIE, ComparedRun, Comparison, first_difference

__all__ = ["NEAR_TIE", "ComparedRun", "Comparison", "compare", "first_difference"]

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
    row = np.array(model.eval(ids, 1)[0], dtype=np.float64)
    top2 = np.partition(row, -2)[-2:]
    return float(abs(top2[1] - top2[0]))


def compare(
    session: Session,
    target_path: str | Path,
    draft_path: str | Path | None,
    prompt: str,
    tracks: list[str],
    s: RunSettings,
    on_event: Callable[[str], EventSink] | None = None,
    cancel: threading.Event | None = None,
) -> Comparison:
    """Run ``tracks`` in order (baseline first, added if missing) on the same prompt."""
    order = ["baseline", *[t for t in tracks if t != "baseline"]]
    for t in order:  # refuse before spending minutes on the first runs
        session.check(target_path, draft_path, replace(s, track=t))
    results: list[RunResult] = []
    for t in order:
        if cancel is not None and cancel.is_set():
            break
        sink = on_event(t) if on_event else None
        results.append(
            session.run(target_path, draft_path, prompt, replace(s, track=t), sink, cancel)
        )
    base = results[0] if results else None
    out = Comparison()
    for r in results:
        if base is None or r is base:
            out.runs.append(ComparedRun(r, 1.0 if r is base else None, True if r is base else None))
            continue
        speed = r.tokens_per_second / base.tokens_per_second if base.tokens_per_second > 0 else None
        diff = first_difference(base.token_ids, r.token_ids)
        n = min(len(base.token_ids), len(r.token_ids))
        run = ComparedRun(r, speed, diff is None)
        if diff is not None and diff < n and s.temperature <= 0:
            run.first_difference = diff
            run.baseline_margin = baseline_margin(
                session, target_path, prompt, s, base.token_ids, diff
            )
        elif diff is not None:
            run.first_difference = diff
        out.runs.append(run)
    return out

"""Sweeps over one setting: one point per value, speedups, quality, best, cancel."""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.core.errors import RefusedError
from app.core.events import RunResult, RunSettings
from app.core.session import Session
from app.core.sweep import (
    Sweep,
    SweepPoint,
    divergence,
    edit_distance,
    iter_sweep,
    mark_best,
    prefix_agreement,
    run_sweep,
)

PROMPT = "alpha beta gamma delta alpha beta gamma delta alpha beta gamma"


@pytest.fixture(scope="module")
def session() -> Iterator[Session]:
    s = Session()
    yield s
    s.close()


def settings(track: str, **kw: object) -> RunSettings:
    s = RunSettings(track=track, max_tokens=16, ctx=512, threads=1, adaptive=False)
    for k, v in kw.items():
        setattr(s, k, v)
    return s


def test_quality_measures_by_hand() -> None:
    kitten, sitting = [1, 2, 3, 3, 4, 5], [6, 2, 3, 3, 2, 5, 7]  # k-i-t-t-e-n / s-i-t-t-i-n-g
    assert edit_distance(kitten, sitting) == 3
    assert edit_distance([], [1, 2]) == 2 and edit_distance([1, 2], [1, 2]) == 0
    assert divergence(kitten, sitting) == pytest.approx(3 / 7)
    assert divergence([], []) == 0.0
    assert prefix_agreement([1, 2, 3, 4], [1, 2, 9, 4]) == 0.5
    assert prefix_agreement([1, 2], [1, 2]) == 1.0


def test_k_sweep_yields_one_point_per_value(session: Session, tiny_dense: Path) -> None:
    calls: list[tuple[int, int, str]] = []
    sweep = run_sweep(
        session,
        tiny_dense,
        None,
        PROMPT,
        settings("lookup"),
        "draft_max",
        [1, 2, 3],
        progress=lambda d, t, label: calls.append((d, t, label)),
    )
    assert not sweep.cancelled and sweep.baseline is not None
    assert [p.value for p in sweep.points] == [1, 2, 3]
    base_tps = sweep.baseline.tokens_per_second
    for p in sweep.points:
        assert p.result.settings["draft_max"] == p.value
        assert p.speedup == pytest.approx(p.tokens_per_second / base_tps)
        assert p.same_as_baseline == (p.result.token_ids == sweep.baseline.token_ids)
        assert 0.0 <= p.divergence <= 1.0 and 0.0 <= p.agreement <= 1.0
    # A best only beyond noise (the rule: test_verdict_noise.py); when crowned, the fastest.
    assert sweep.verdict is not None
    assert [p.best for p in sweep.points].count(True) == (sweep.verdict.kind == "best")
    assert sweep.best is None or sweep.best is max(sweep.points,
                                                   key=lambda p: p.tokens_per_second)
    assert [c[0] for c in calls] == [0, 1, 2, 3, 4] and calls[-1] == (4, 4, "done")


def test_expert_sweep_defaults_from_model_down_to_one(session: Session, tiny_moe: Path) -> None:
    sweep = run_sweep(session, tiny_moe, None, PROMPT, settings("moe"), "experts")
    assert sweep.baseline is not None
    assert [p.value for p in sweep.points] == [2, 1]  # tiny_moe: 2 of 8 experts active
    assert [p.result.effective["expert_used_count"] for p in sweep.points] == [2, 1]
    full = sweep.points[0]  # the model's own count is the baseline's answer
    assert full.same_as_baseline and full.divergence == 0.0 and full.agreement == 1.0
    best = sweep.best  # crowned only beyond noise, and only within the divergence limit
    assert best is None or best.divergence <= 0.25
    assert sweep.verdict is not None and (best is not None) == (sweep.verdict.kind == "best")


def test_cancel_stops_the_sweep(session: Session, tiny_dense: Path) -> None:
    cancel = threading.Event()
    points = []
    for p in iter_sweep(
        session, tiny_dense, None, PROMPT, settings("lookup"), "draft_max", [1, 2, 3],
        cancel=cancel,
    ):  # fmt: skip
        points.append(p)
        cancel.set()
    assert len(points) == 1
    sweep = run_sweep(
        session, tiny_dense, None, PROMPT, settings("lookup"), "ngram_min", [1, 2], cancel=cancel
    )
    assert sweep.cancelled and sweep.points == [] and sweep.best is None


def test_bad_sweeps_are_refused_before_running(
    session: Session, tiny_dense: Path, tiny_moe: Path
) -> None:
    with pytest.raises(RefusedError):
        run_sweep(session, tiny_dense, None, PROMPT, settings("moe"), "experts")
    with pytest.raises(RefusedError):
        run_sweep(session, tiny_dense, None, PROMPT, settings("lookup"), "top_k", [1])
    with pytest.raises(RefusedError):
        run_sweep(session, tiny_dense, None, PROMPT, settings("lookup"), "draft_p_min", [0.5])
    with pytest.raises(RefusedError):  # 9 experts out of 8: refused before the baseline
        run_sweep(session, tiny_moe, None, PROMPT, settings("moe"), "experts", [2, 9])


def _ended_at_once() -> RunResult:
    """A run whose first token was end-of-text (MoEfied Qwen at 1 or 4 experts on code_edit)."""
    return RunResult("moe", "", "eos", 340, 0, 0, 0, 0, 0.0, 0.2, 0.0, 0.0, {}, {})


def test_a_value_whose_run_wrote_nothing_has_no_speed() -> None:
    point = SweepPoint(1, _ended_at_once(), None, False, 0.0, 1.0)
    point.add(point.result, None)
    assert math.isnan(point.tokens_per_second) and point.speedup is None
    assert point.wrote_nothing is not None and "end-of-text" in point.wrote_nothing
    sweep = Sweep("experts", "moe", points=[point])
    assert mark_best(sweep) is None  # never the best value

"""benchmarks.predict_vs_measured: the round-by-round predictor, and one tiny end-to-end run."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.core.events import RoundEvent
from app.core.predict import MeasuredCosts, expected_tokens
from app.core.session import Session
from benchmarks.predict_vs_measured import (
    Config,
    Round,
    bench_target,
    combine_costs,
    inverse_alpha,
    predict_costs_only,
    predict_plain,
    predict_rounds,
    rounds_of,
)

# A verify batch of n costs 1 + 0.25 (n - 1) steps, a draft step 0.1 of a step.
COSTS = MeasuredCosts({n: 1.0 + 0.25 * (n - 1) for n in range(1, 10)}, draft_step=0.1)


def test_rounds_of_caps_the_limit_by_the_tokens_left() -> None:
    events = [
        RoundEvent(1, 4, 4, 5, "lookup", 0, 0, 0),
        RoundEvent(2, 0, 0, 1, None, 0, 0, 0),
        RoundEvent(3, 1, 0, 1, "lookup", 0, 0, 0),
    ]
    # max_tokens 8: 5 tokens done before round 2 (at most 8 - 5 - 1 = 2 drafts), 6 before
    # round 3 (at most 1).
    assert rounds_of(events, 4, 8) == [Round(4, 4, 5), Round(0, 2, 1), Round(1, 1, 1)]


@pytest.mark.parametrize("source", ["draft", "lookup"])
def test_full_rounds_give_the_plain_formula(source: str) -> None:
    rounds = [Round(4, 4, 3)] * 10
    assert predict_rounds(COSTS, 0.7, source, rounds) == pytest.approx(
        predict_plain(COSTS, 0.7, source, 4)
    )


def test_rounds_without_drafts_are_plain_steps() -> None:
    # Half the rounds propose nothing: 1 token per step there.
    rounds = [Round(4, 4, 3), Round(0, 4, 1)] * 5
    e4 = expected_tokens(0.7, 4)
    by_hand = (e4 + 1.0) / (COSTS.verify(4) + COSTS.step) * COSTS.step
    assert predict_rounds(COSTS, 0.7, "lookup", rounds) == pytest.approx(by_hand)
    assert by_hand < predict_plain(COSTS, 0.7, "lookup", 4)


def test_a_draft_stopped_early_paid_for_one_more_draft_step() -> None:
    # Two drafts of a limit of 4: three draft steps (the low-confidence one was computed).
    by_hand = expected_tokens(0.7, 2) / (COSTS.verify(2) + 3 * 0.1) * COSTS.step
    assert predict_rounds(COSTS, 0.7, "draft", [Round(2, 4, 2)]) == pytest.approx(by_hand)


def test_costs_only_uses_the_real_yields() -> None:
    rounds = [Round(4, 4, 5), Round(4, 4, 1), Round(0, 4, 1)]
    # Full rounds: 4 draft steps each; the empty one still computed one draft step.
    by_hand = 7 / (2 * COSTS.verify(4) + 9 * 0.1 + COSTS.step) * COSTS.step
    assert predict_costs_only(COSTS, "draft", rounds) == pytest.approx(by_hand)


def test_inverse_alpha_inverts_expected_tokens() -> None:
    for k in (2, 4, 8):
        for a in (0.1, 0.5, 0.9):
            assert inverse_alpha(expected_tokens(a, k), k) == pytest.approx(a, abs=1e-9)
    assert inverse_alpha(0.5, 4) == 0.0
    assert inverse_alpha(7.0, 4) == 1.0


def test_combined_costs_are_medians() -> None:
    samples = [
        MeasuredCosts({1: 1.0, 3: 2.0}, 0.1),
        MeasuredCosts({1: 3.0, 3: 2.2}, 0.3),
        MeasuredCosts({1: 2.0, 3: 9.0}, 0.2, noisy=True),
    ]
    c = combine_costs(samples)
    assert c.batches == {1: 2.0, 3: 2.2}
    assert c.draft_step == pytest.approx(0.2)
    assert c.noisy


def test_tiny_pair_end_to_end(tiny_dense: Path, tiny_draft: Path) -> None:
    cfg = Config([2], ["draft", "lookup"], repeats=1, max_tokens=8, threads=1, ctx=512)
    session = Session()
    try:
        prompt = {"tiny": "a b c d a b c d a b c d a b c"}
        costs, rows = bench_target(session, str(tiny_dense), str(tiny_draft), prompt, cfg)
    finally:
        session.close()
    assert set(costs.batches) == {1, 2, 3} and costs.draft_step is not None
    assert [(r["source"], r["k"]) for r in rows] == [("draft", 2), ("lookup", 2)]
    for r in rows:
        assert r["same_tokens"]  # greedy speculation is lossless
        assert r["predicted"] > 0 and r["measured"] > 0 and r["rounds"] > 0

"""'Will it pay?': the formulas against hand-computed values, and a measured report."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.core.events import RoundEvent
from app.core.llama_backend import LoadedModel, LoadOptions
from app.core.predict import (
    MAX_K,
    SIZES,
    MeasuredCosts,
    break_even_alpha,
    expected_tokens,
    measure,
    monotone,
    observed_alpha,
    predict,
    proposed_lengths,
    round_seconds,
    speedup,
    will_it_pay,
)

# -- formulas -----------------------------------------------------------------------------


def test_expected_tokens_by_hand() -> None:
    # (1 - 0.8^5) / 0.2 = (1 - 0.32768) / 0.2
    assert expected_tokens(0.8, 4) == pytest.approx(3.3616)
    assert expected_tokens(0.5, 1) == pytest.approx(1.5)
    assert expected_tokens(0.0, 7) == pytest.approx(1.0)
    assert expected_tokens(1.0, 7) == 8.0


def test_speedup_by_hand() -> None:
    assert round_seconds(4, 0.1, 2.0) == pytest.approx(2.4)
    # 3.3616 tokens per 2.4 s of work, baseline 1 token per 1 s.
    assert speedup(0.8, 4, 0.1, 2.0, 1.0) == pytest.approx(3.3616 / 2.4)
    # Same with a 50 ms target step: t_step only scales.
    assert speedup(0.8, 4, 0.005, 0.1, 0.05) == pytest.approx(3.3616 / 2.4)


def test_break_even_by_hand() -> None:
    # K=1: 1 + a = (0.1 + 1.2) / 1  ->  a = 0.3
    assert break_even_alpha(1, 0.1, 1.2, 1.0) == pytest.approx(0.3)
    # K=2: 1 + a + a^2 = 1.75  ->  a = 0.5
    assert break_even_alpha(2, 0.25, 1.25, 1.0) == pytest.approx(0.5)
    # Cheaper than a step: pays whatever the acceptance; dearer than K+1 steps: never.
    assert break_even_alpha(3, 0.0, 0.9, 1.0) == 0.0
    assert break_even_alpha(2, 0.5, 2.5, 1.0) is None


def test_observed_alpha_counts_only_tried_drafts() -> None:
    rounds = [
        RoundEvent(1, 4, 4, 5, "draft", 0, 0, 0),  # 4 accepted, no rejection
        RoundEvent(2, 4, 1, 2, "draft", 0, 0, 0),  # 1 accepted, then 1 rejection
        RoundEvent(3, 3, 0, 1, "draft", 0, 0, 0),  # 1 rejection
        RoundEvent(4, 0, 0, 1, None, 0, 0, 0),  # a plain step: not counted
    ]
    assert observed_alpha(rounds) == pytest.approx(5 / 7)
    assert observed_alpha(rounds[3:]) is None


def test_monotone_removes_inversions_from_interference() -> None:
    noisy = {1: 1.7, 2: 0.8, 3: 2.9, 5: 4.6, 9: 4.3, 17: 5.2}
    assert monotone(noisy) == {1: 0.8, 2: 0.8, 3: 2.9, 5: 4.3, 9: 4.3, 17: 5.2}
    assert monotone({1: 1.0}) == {1: 1.0}


# -- reports from given costs -------------------------------------------------------------

CHEAP = MeasuredCosts({1: 1.0, 2: 1.1, 3: 1.2, 5: 1.4, 9: 1.8, 17: 2.6}, draft_step=0.05)
# A verify batch of n costs 1 + 0.4 (n - 1) steps, the draft 0.6 of a step.
DEAR = MeasuredCosts({1: 1.0, 2: 1.4, 3: 1.8, 5: 2.6, 9: 4.2, 17: 7.4}, draft_step=0.6)


def test_report_follows_the_formula_with_interpolated_batches() -> None:
    r = predict(CHEAP, 0.8, "draft")
    assert [p.k for p in r.predictions] == list(range(1, MAX_K + 1))
    k3 = r.predictions[2]  # batch of 4: halfway between 3 (1.2) and 5 (1.4)
    assert k3.verify_steps == pytest.approx(1.3)
    assert k3.speedup == pytest.approx(expected_tokens(0.8, 3) / (3 * 0.05 + 1.3))
    best = max(r.predictions, key=lambda p: p.speedup)
    assert r.recommended_k == best.k > 0
    assert f"K={best.k} pays" in r.explanation and "(given)" in r.explanation


def test_report_says_when_a_track_never_pays() -> None:
    r = predict(DEAR, 0.9, "draft")
    assert r.recommended_k == 0
    assert all(p.speedup_at_high_alpha < 1.0 for p in r.predictions)
    assert "the draft model costs 0.60 of a target step" in r.explanation.lower()
    assert "even at 99% acceptance this track is slower than baseline" in r.explanation


def test_report_says_from_which_acceptance_it_would_pay() -> None:
    # Prompt lookup on the same CPU: free drafts, so long rounds can pay.
    r = predict(DEAR, 0.2, "lookup", "observed")
    assert r.recommended_k == 0
    assert r.predictions[0].break_even_alpha == pytest.approx(0.4)
    assert "would pay from 40% acceptance (K=1)" in r.explanation
    assert "noisy" not in r.explanation
    assert predict(DEAR, 0.9, "lookup").recommended_k > 0
    noisy = MeasuredCosts(DEAR.batches, 0.6, noisy=True)
    assert predict(noisy, 0.9, "lookup").explanation.endswith("Measure again.)")



def test_a_remote_target_is_explained_by_its_round_trips() -> None:
    # a step pays a round trip (here most of it), a batch pays it once for all its tokens
    remote = MeasuredCosts({1: 0.010, 2: 0.0105, 3: 0.011, 5: 0.012, 9: 0.014, 17: 0.018},
                           draft_step=0.002, workers=2)
    text = predict(remote, 0.7, "draft").explanation
    assert "2 remote workers" in text and "10.0 ms a step" in text
    assert "a verify batch of 5 pays it once for 5 tokens (1.20 steps)" in text
    assert "remote" not in predict(CHEAP, 0.7, "draft").explanation

# -- measured on a tiny model -------------------------------------------------------------


@pytest.fixture(scope="module")
def pair(tiny_dense: Path, tiny_draft: Path) -> Iterator[tuple[LoadedModel, LoadedModel]]:
    opts = LoadOptions(n_ctx=512, threads=1)
    target, draft = LoadedModel(tiny_dense, opts), LoadedModel(tiny_draft, opts)
    yield target, draft
    target.close()
    draft.close()


def test_measured_costs_are_sane_and_caches_are_restored(
    pair: tuple[LoadedModel, LoadedModel],
) -> None:
    target, draft = pair
    target.reset()
    target.eval(target.tokenize("some context", add_bos=False), 0)
    before = target.n_past
    t0 = time.perf_counter()
    costs = measure(target, draft, repeats=2)
    elapsed = time.perf_counter() - t0
    assert target.n_past == before and draft.n_past == 0
    assert sorted(costs.batches) == sorted(SIZES)
    assert all(s > 0 for s in costs.batches.values())
    assert costs.draft_step is not None and costs.draft_step > 0
    # The time it reports is the time it took (no bound on that: it follows the load).
    assert 0 < costs.seconds_spent <= elapsed


def test_measured_report(pair: tuple[LoadedModel, LoadedModel]) -> None:
    target, draft = pair
    r = will_it_pay(target, draft, observed=[RoundEvent(1, 4, 2, 3, "draft", 0, 0, 0)])
    assert r.source == "draft" and r.alpha_source == "observed"
    assert r.alpha == pytest.approx(2 / 3)
    assert len(r.predictions) == MAX_K and 0 <= r.recommended_k <= MAX_K
    assert all(p.speedup > 0 and p.verify_steps > 0 for p in r.predictions)
    assert r.explanation
    lookup = will_it_pay(target, alpha=0.5, costs=r.costs)
    assert lookup.source == "lookup" and lookup.alpha_source == "given"
    assert all(p.draft_steps == 0 for p in lookup.predictions)


def test_recurrent_target_is_not_measured(tiny_mamba: Path) -> None:
    model = LoadedModel(tiny_mamba, LoadOptions(n_ctx=256, threads=1))
    try:
        r = will_it_pay(model)
    finally:
        model.close()
    assert r.recommended_k == 0 and r.costs is None and "recurrent" in r.explanation


def test_lookup_prediction_replays_the_observed_draft_lengths() -> None:
    """Hand-computed: rounds proposed 0, 0, 2, 4 drafts; at K=2 they become 0, 0, 2, 2.
    E(0.5, 2) = (1 - 0.125) / 0.5 = 1.75, so 1 + 1 + 1.75 + 1.75 = 5.5 tokens for
    1.0 + 1.0 + 1.4 + 1.4 = 4.8 s against 1.0 s per baseline token: 1.1458x. The plain
    formula, which assumes 2 drafts every round, would say 1.75 / 1.4 = 1.25x."""
    costs = MeasuredCosts({1: 1.0, 2: 1.2, 3: 1.4, 5: 1.8})
    lengths = [0, 0, 2, 4]
    replayed = predict(costs, 0.5, "lookup", lookup_lengths=lengths).predictions[1]
    assert replayed.speedup == pytest.approx(5.5 / 4.8)
    assert replayed.expected_tokens == pytest.approx(5.5 / 4)
    assert replayed.verify_steps == pytest.approx(4.8 / 4)
    plain = predict(costs, 0.5, "lookup").predictions[1]
    assert plain.speedup == pytest.approx(1.75 / 1.4)
    # The draft model is predicted as before: lengths only concern lookup.
    assert predict(costs, 0.5, "draft", lookup_lengths=lengths).predictions[1].speedup == (
        pytest.approx(predict(costs, 0.5, "draft").predictions[1].speedup))
    assert proposed_lengths([RoundEvent(1, 3, 2, 3, "lookup", 0.0, 0.1, 0.1)]) == [3]

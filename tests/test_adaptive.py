"""The draft-length planner against hand-computed values."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest

from app.core.adaptive import TRUST, CostModel, best_length, expected_tokens, worth_extending

if TYPE_CHECKING:
    from app.core.drafting.draft_model import DraftModel


def test_expected_tokens_formula() -> None:
    assert expected_tokens([]) == 1.0
    # 1 + 0.8 + 0.8*0.5 = 2.2
    assert expected_tokens([0.8, 0.5]) == pytest.approx(2.2)
    # geometric: (1 - a^(k+1)) / (1 - a)
    a, k = 0.7, 5
    assert expected_tokens([a] * k) == pytest.approx((1 - a ** (k + 1)) / (1 - a))


def test_cost_model_takes_medians_and_interpolates_measured_sizes() -> None:
    c = CostModel()
    for _ in range(TRUST):
        for n, seconds in ((1, 0.10), (5, 0.18), (9, 0.26)):
            c.observe(n, seconds)
    assert c.batch(1) == pytest.approx(0.10)
    assert c.batch(5) == pytest.approx(0.18)
    # Between measured sizes: the line through them (batch cost is near linear in n).
    assert c.batch(7) == pytest.approx(0.22, rel=0.02)
    c.observe(1, 0.30)  # one slow step among steady ones: the median does not move
    assert c.batch(1) == pytest.approx(0.10)
    c.observe(5, 0.54)  # nor does a slow batch
    assert c.batch(5) == pytest.approx(0.18)


def test_cost_model_keeps_batch_costs_in_steps_when_the_machine_drifts() -> None:
    """Learned in a steady minute: a batch of 5 costs 1.5 steps, of 9 two. Then the machine
    runs twice as fast while only batches are timed (a drafting run has no plain steps):
    the step's estimate follows, and a batch of 5 still costs about 1.5 steps (separate
    per-size averages made it 0.75: a batch cheaper than a step)."""
    c = CostModel()
    for _ in range(30):
        for n, seconds in ((1, 0.20), (5, 0.30), (9, 0.40)):
            c.observe(n, seconds)
    for _ in range(20):
        c.observe(5, 0.15)
        c.observe(9, 0.20)
    assert c.step == pytest.approx(0.10, rel=0.1)
    assert c.batch(5) / c.batch(1) == pytest.approx(1.5, rel=0.1)
    assert c.batch(9) / c.batch(1) == pytest.approx(2.0, rel=0.1)


def test_best_length_trades_acceptance_against_batch_cost() -> None:
    c = CostModel()
    for n in range(1, 10):
        c.observe(n, 0.1 * (1 + 0.2 * (n - 1)))
    # Certain drafts: 9 tokens for the cost of 2.6 steps beats any shorter prefix.
    assert best_length([0.99] * 8, c) == 8
    # Hopeless drafts: a plain step is better.
    assert best_length([0.05] * 8, c) == 0
    # k=1 at chance 0.5: 1.5 tokens / 1.2 steps = 1.25 > 1, so drafting pays a little.
    assert best_length([0.5], c) == 1
    # A costly drafter (0.1 s per token, a full target step) never pays at 0.5.
    assert best_length([0.5] * 4, c, draft_cost_per_token=0.1) == 0


def test_worth_extending_stops_when_marginal_gain_falls() -> None:
    c = CostModel()
    for n in range(1, 12):
        c.observe(n, 0.1 * (1 + 0.2 * (n - 1)))
    assert worth_extending([0.9, 0.9], 0.9, c, 0.0)
    assert not worth_extending([0.3, 0.3], 0.3, c, 0.0)


def _measured_costs(draft_step: float) -> CostModel:
    """A target step of 0.1 s, batches of 2 and 5 at 1.2 and 1.8 steps, each measured often
    enough to be trusted (a single timing is not: see test_adaptive_noise.py)."""
    costs = CostModel()
    for _ in range(TRUST):
        for n, seconds in ((1, 0.10), (2, 0.12), (5, 0.18)):
            costs.observe(n, seconds)
    costs.observe_draft_step(draft_step)
    return costs


@contextmanager
def _adaptive_drafter(tiny_draft: Path, costs: CostModel,
                      bands: list[list[float]] | None) -> Iterator[DraftModel]:
    """Adaptive greedy Track 1 on the tiny draft model, with the given learned state."""
    from app.core.drafting.draft_model import DraftModel
    from app.core.llama_backend import LoadedModel, LoadOptions
    from app.core.sampling import SamplerSettings

    model = LoadedModel(tiny_draft, LoadOptions(n_ctx=256, threads=1))
    try:
        yield DraftModel(model, SamplerSettings(0.0, 40, 1.0, 0.0), 0.75, True, costs,
                         np.random.default_rng(0), bands)
    finally:
        model.close()


def _probe_rounds(tiny_draft: Path, draft_step: float, bands: list[list[float]] | None,
                  rounds: int) -> list[int]:
    """The 1-based rounds in which adaptive Track 1 drafted, for fixed measured costs."""
    with _adaptive_drafter(tiny_draft, _measured_costs(draft_step), bands) as drafter:
        sizes = [len(drafter.propose([1, 2, 3, 4, 5 + i], 8).tokens) for i in range(rounds)]
    return [i + 1 for i, n in enumerate(sizes) if n]


def test_draft_model_never_drafts_when_even_certain_acceptance_cannot_pay(
    tiny_draft: Path,
) -> None:
    """A draft step as dear as a target step: two tokens for 0.22 s is slower than plain
    steps at 0.10 s whatever the acceptance, so no draft step is spent at all (probing
    would only pay the draft's catch-up batch: 0.8x on a Q4_K_M target)."""
    assert _probe_rounds(tiny_draft, 0.10, None, 40) == []


def test_draft_model_probes_with_backoff_when_acceptance_is_too_low(tiny_draft: Path) -> None:
    """A cheap draft that is almost always rejected: plain steps, with a probe after
    PROBE_EVERY of them and twice as long a wait after each probe that changes nothing."""
    from app.core.drafting.draft_model import CONFIDENCE_BANDS, PROBE_EVERY

    rejected = [[0.0, 50.0] for _ in range(CONFIDENCE_BANDS)]
    probes = _probe_rounds(tiny_draft, 0.01, rejected, 7 * PROBE_EVERY + 3)
    assert probes == [PROBE_EVERY, 3 * PROBE_EVERY, 7 * PROBE_EVERY]


def test_best_length_charges_a_fixed_overhead_to_any_drafting_round() -> None:
    c = CostModel()
    for n in range(1, 10):
        c.observe(n, 0.1 * (1 + 0.2 * (n - 1)))
    assert best_length([0.9] * 8, c) > 0
    # 0.5 s to pay first (five plain steps): no draft of these brings that back.
    assert best_length([0.9] * 8, c, overhead=0.5) == 0


def test_draft_model_weighs_its_catch_up_after_plain_steps(tiny_draft: Path) -> None:
    """A good draft whose cache is 200 tokens behind: catching up (estimated 200 x 0.15
    draft steps) costs more than any draft gains, so the round is a plain step; the same
    draft in sync drafts."""
    from app.core.drafting.draft_model import CONFIDENCE_BANDS

    accepted = [[50.0, 50.0] for _ in range(CONFIDENCE_BANDS)]
    history = [1 + i % 50 for i in range(201)]
    with _adaptive_drafter(tiny_draft, _measured_costs(0.03), accepted) as drafter:
        assert drafter.propose(history, 8).tokens == []
        drafter.prefill(history, threading.Event())
        assert len(drafter.propose(history, 8).tokens) > 0


def test_a_long_pause_does_not_rule_out_probing(tiny_draft: Path) -> None:
    """Drafting is not paying (every draft rejected) and the draft is 200 tokens behind, a
    catch-up of 1 s. Charged whole, not even certain acceptance would repay it in one
    round, and drafting would never be tried again; spread over PROBE_EVERY rounds it is,
    and the probe comes after PROBE_EVERY plain steps."""
    from app.core.drafting.draft_model import CONFIDENCE_BANDS, PROBE_EVERY

    costs = _measured_costs(0.01)
    costs.observe_catch_up(100, 0.5)
    rejected = [[0.0, 50.0] for _ in range(CONFIDENCE_BANDS)]
    history = [1 + i % 50 for i in range(201)]
    with _adaptive_drafter(tiny_draft, costs, rejected) as drafter:
        sizes = [len(drafter.propose(history, 8).tokens) for _ in range(PROBE_EVERY)]
    assert sizes == [0] * (PROBE_EVERY - 1) + [1]

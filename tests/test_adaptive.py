"""The draft-length planner against hand-computed values."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from app.core.adaptive import CostModel, best_length, expected_tokens, worth_extending


def test_expected_tokens_formula() -> None:
    assert expected_tokens([]) == 1.0
    # 1 + 0.8 + 0.8*0.5 = 2.2
    assert expected_tokens([0.8, 0.5]) == pytest.approx(2.2)
    # geometric: (1 - a^(k+1)) / (1 - a)
    a, k = 0.7, 5
    assert expected_tokens([a] * k) == pytest.approx((1 - a ** (k + 1)) / (1 - a))


def test_cost_model_interpolates_measured_sizes() -> None:
    c = CostModel()
    c.observe(1, 0.10)
    c.observe(5, 0.18)
    assert c.batch(3) == pytest.approx(0.14)
    assert c.batch(1) == pytest.approx(0.10)
    c.observe(1, 0.20)  # EMA: 0.10 + 0.2 * (0.20 - 0.10)
    assert c.batch(1) == pytest.approx(0.12)


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


def test_draft_model_skips_drafting_that_cannot_pay(tiny_draft: Path) -> None:
    """When a draft step costs as much as a target step, adaptive Track 1 does plain steps
    (no draft step spent at all), probing one round in PROBE_EVERY to keep learning."""
    from app.core.drafters import PROBE_EVERY, DraftModel
    from app.core.llama_backend import LoadedModel, LoadOptions
    from app.core.sampling import SamplerSettings

    costs = CostModel()
    for n, seconds in ((1, 0.10), (2, 0.12), (5, 0.18)):
        costs.observe(n, seconds)
    costs.observe_draft_step(0.10)
    model = LoadedModel(tiny_draft, LoadOptions(n_ctx=256, threads=1))
    try:
        drafter = DraftModel(model, SamplerSettings(0.0, 40, 1.0, 0.0), 0.75, True, costs,
                             np.random.default_rng(0))
        rounds = range(2 * PROBE_EVERY)
        sizes = [len(drafter.propose([1, 2, 3, 4, 5 + i], 8).tokens) for i in rounds]
    finally:
        model.close()
    assert sum(1 for n in sizes if n) == 2  # the probes
    assert all(n == 0 for i, n in enumerate(sizes) if (i + 1) % PROBE_EVERY)

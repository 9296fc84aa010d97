"""The sampling chain and the speculative-sampling rule keep the target's distribution."""

from __future__ import annotations

import numpy as np
import pytest

from app.core.sampling import (
    Distribution,
    SamplerSettings,
    distribution,
    top_probability,
    verify_sampled,
)


def _tv(counts: np.ndarray, probs: np.ndarray) -> float:
    return 0.5 * float(np.abs(counts / counts.sum() - probs).sum())


def test_chain_truncates_then_applies_temperature() -> None:
    row = np.log(np.array([0.5, 0.3, 0.15, 0.04, 0.01], dtype=np.float32))
    d = distribution(row, SamplerSettings(temperature=1.0, top_k=4, top_p=0.9, min_p=0.0))
    # top-k 4 keeps 0..3; top-p 0.9 keeps 0.5+0.3+0.15 = 0.95 >= 0.9 -> ids 0, 1, 2.
    assert list(d.ids) == [0, 1, 2]
    assert d.probs.sum() == pytest.approx(1.0)
    assert d.probs[0] == pytest.approx(0.5 / 0.95, rel=1e-5)
    d = distribution(row, SamplerSettings(temperature=1.0, top_k=0, top_p=1.0, min_p=0.1))
    # min-p 0.1 of the top 0.5 keeps p >= 0.05: ids 0, 1, 2.
    assert list(d.ids) == [0, 1, 2]
    cold = distribution(row, SamplerSettings(temperature=0.5, top_k=0, top_p=1.0, min_p=0.0))
    assert cold.probs[0] > 0.5 / 0.95


def test_top_probability_is_softmax_of_argmax() -> None:
    row = np.array([1.0, 3.0, 2.0], dtype=np.float32)
    token, p = top_probability(row)
    assert token == 1
    assert p == pytest.approx(np.exp(3) / np.exp([1, 3, 2]).sum(), rel=1e-5)


@pytest.mark.parametrize("deterministic", [False, True])
def test_speculative_sampling_matches_target(deterministic: bool) -> None:
    rng = np.random.default_rng(1)
    ids = np.arange(6)
    p = Distribution(ids, np.array([0.35, 0.25, 0.2, 0.1, 0.06, 0.04]))
    q = Distribution(ids, np.array([0.05, 0.4, 0.1, 0.3, 0.1, 0.05]))
    counts = np.zeros(6)
    n = 20_000
    for _ in range(n):
        if deterministic:
            x, qd = 1, None  # a prompt-lookup style draft: always token 1
        else:
            x, qd = q.sample(rng), q
        out = verify_sampled(p, x, qd, rng)
        counts[x if out is None else out] += 1
    assert _tv(counts, p.probs) < 0.015


def test_ratio_rule_with_argmax_draft_would_be_biased() -> None:
    """Why q must be one-hot for a deterministic draft: passing the draft's soft q for an
    argmax token skews the output (the check the exact rule above passes)."""
    rng = np.random.default_rng(2)
    ids = np.arange(3)
    p = Distribution(ids, np.array([0.5, 0.3, 0.2]))
    q = Distribution(ids, np.array([0.2, 0.7, 0.1]))
    counts = np.zeros(3)
    for _ in range(10_000):
        out = verify_sampled(p, 1, q, rng)  # argmax of q, not a sample from it
        counts[1 if out is None else out] += 1
    assert _tv(counts, p.probs) > 0.05

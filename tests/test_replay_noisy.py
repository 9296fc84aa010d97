"""The noisy-cost replay (benchmarks/replay_noisy.py) on a made-up recording."""

from __future__ import annotations

from typing import Any

import pytest

from benchmarks.replay_noisy import replay, true_steps

BATCHES = {"1": 0.1, "2": 0.15, "3": 0.17, "5": 0.2, "9": 0.27, "17": 0.4}


def _data() -> dict[str, Any]:
    passage = list(range(100, 140))
    # The answer copies the prompt's passage twice over: lookup drafts pay.
    return {"target": "made-up", "batches": BATCHES,
            "prompts": {"copy": {"prompt": passage, "answer": passage + passage}}}


def test_true_steps_interpolates_between_recorded_sizes() -> None:
    assert true_steps(BATCHES, 1) == 1.0
    assert true_steps(BATCHES, 2) == pytest.approx(1.5)
    assert true_steps(BATCHES, 4) == pytest.approx(1.85)
    assert true_steps(BATCHES, 34) == pytest.approx(8.0)  # beyond the last: proportional


def test_a_copying_answer_pays_and_noise_free_draws_agree() -> None:
    data = _data()
    fixed, drafted = replay(data, "copy", 8, False, 0, 80, 0.0, 0.0, False)
    assert fixed > 1.5 and drafted > 40
    quiet = [replay(data, "copy", 8, True, s, 80, 0.0, 0.0, True) for s in range(3)]
    assert len(set(quiet)) == 1  # no noise: the seed changes nothing
    assert quiet[0][0] > 1.5


def test_the_same_seed_replays_the_same_noise() -> None:
    data = _data()
    first = replay(data, "copy", 8, True, 7, 80, 0.2, 0.2, False)
    assert replay(data, "copy", 8, True, 7, 80, 0.2, 0.2, False) == first

"""Will fewer experts pay? (app/core/expert_pay.py): agreement, KL and step cost per expert
count measured on tiny MoE models through llama.cpp, and the words on hand-made reports.

Speeds are measured, never asserted: only that every speedup is the reference's step over
the count's own."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import tiny_models

from app.core.errors import RefusedError
from app.core.expert_pay import (
    ExpertReport,
    ExpertRow,
    explain_experts,
    measure_experts,
)
from app.core.models.catalog import SyntheticMoE
from app.core.models.moefy import Moefied, write_moefied
from app.core.models.synthetic import write_synthetic_moe

PROMPT = "def hello(world):\n    return world * 2\n\nThe quick brown fox"
FOLLOW = 12


def test_reference_agrees_with_itself_and_one_row_per_count(tiny_moe: Path) -> None:
    said: list[tuple[int, int, str]] = []
    r = measure_experts(tiny_moe, PROMPT, counts=[4, 1], threads=1, follow=FOLLOW,
                        progress=lambda d, t, label: said.append((d, t, label)))
    assert (r.reference, r.expert_count, r.random_weights) == (2, 8, False)
    # The reference's own count is always measured: one row per count, descending.
    assert [row.experts for row in r.rows] == [4, 2, 1]
    assert 1 <= r.positions <= FOLLOW and not r.cancelled
    ref = r.row(2)
    assert ref is not None
    # A batch of the same model reproduces its own step-by-step greedy choices.
    assert ref.agreement == 1.0 and ref.kl == pytest.approx(0.0, abs=1e-4)
    assert ref.speedup == 1.0
    for row in r.rows:
        assert 0.0 <= row.agreement <= 1.0 and row.kl >= 0.0 and row.step_seconds > 0
        assert row.speedup == pytest.approx(ref.step_seconds / row.step_seconds)
    one = r.row(1)
    assert one is not None and one.kl > 0.01  # the override really ran with one expert
    assert [d for d, _t, _l in said] == [0, 1, 2, 3, 4] and {t for _d, t, _l in said} == {4}
    assert r.to_dict()["explanation"] == explain_experts(r)


@pytest.mark.parametrize("counts", [[0], [9], [], [2, 1.5]])
def test_counts_are_validated(tiny_moe: Path, counts: list[float]) -> None:
    with pytest.raises(RefusedError):
        measure_experts(tiny_moe, PROMPT, counts=counts)  # type: ignore[arg-type]


def test_a_dense_model_or_a_bad_follow_is_refused(tiny_dense: Path, tiny_moe: Path) -> None:
    with pytest.raises(RefusedError, match="not a Mixture-of-Experts"):
        measure_experts(tiny_dense, PROMPT)
    with pytest.raises(RefusedError, match="follow"):
        measure_experts(tiny_moe, PROMPT, follow=0)


def test_cancel_stops_between_counts(tiny_moe: Path) -> None:
    cancel = threading.Event()

    def progress(done: int, _total: int, _label: str) -> None:
        if done == 2:  # the reference's row is done, the next count not loaded yet
            cancel.set()

    r = measure_experts(tiny_moe, PROMPT, threads=1, follow=FOLLOW, cancel=cancel,
                        progress=progress)
    assert r.cancelled and [row.experts for row in r.rows] == [2]
    assert "cancelled" in explain_experts(r)


def test_cancel_before_the_reference_measures_nothing(tiny_moe: Path) -> None:
    cancel = threading.Event()
    cancel.set()
    r = measure_experts(tiny_moe, PROMPT, threads=1, follow=FOLLOW, cancel=cancel)
    assert r.cancelled and r.rows == []


def test_synthetic_model_is_random_weights(tmp_path: Path) -> None:
    source = tiny_models.dense_llama(tmp_path / "source")
    path = tmp_path / "synthetic.gguf"
    write_synthetic_moe(path, source, SyntheticMoE(
        n_layer=2, n_embd=64, n_head=4, n_head_kv=2, n_ff=64, n_expert=8, n_expert_used=2,
        n_ctx_train=2048, seed=7))
    r = measure_experts(path, PROMPT, threads=1, follow=4)
    assert r.random_weights and [row.experts for row in r.rows] == [2, 1]
    assert explain_experts(r).startswith("Random weights")


def test_moefied_model_compares_with_all_its_experts(tmp_path: Path) -> None:
    dense = tiny_models.dense_llama(tmp_path / "dense")
    path = tmp_path / "moefied.gguf"
    write_moefied(path, dense, Moefied(n_expert=6, n_expert_used=6, n_shared=2, max_tokens=384))
    r = measure_experts(path, PROMPT, counts=[3], threads=1, follow=6)
    assert (r.reference, r.expert_count) == (6, 6)
    assert [row.experts for row in r.rows] == [6, 3]
    assert r.rows[0].agreement == 1.0 and not r.random_weights


# -- words on hand-made reports -----------------------------------------------------------


def report(rows: list[tuple[int, float, float]], reference: int = 16, expert_count: int = 16,
           random_weights: bool = False) -> ExpertReport:
    """(experts, speedup, agreement) per row; steps follow from the speedups."""
    return ExpertReport("m.gguf", expert_count, reference, random_weights, positions=48,
                        rows=[ExpertRow(k, a, 0.1, 0.01 / s, s) for k, s, a in rows])


def test_words_name_the_fastest_that_keeps_90_percent_half_and_fastest() -> None:
    r = report([(16, 1.0, 1.0), (12, 1.05, 0.97), (10, 1.1, 0.88), (8, 1.23, 0.58),
                (4, 1.5, 0.40)])
    best = r.worth_trying
    assert best is not None and best.experts == 12
    text = explain_experts(r)
    assert text.startswith("With 12 of 16 experts")
    assert "1.05×" in text and "97 %" in text and "all 16" in text
    assert "about 0.6 points of agreement lost per 1 % of speed gained" in text  # 3 / 5
    assert "8 experts (half the experts): 1.23×, 58 %, about 1.8 points" in text  # 42 / 23
    assert "4 experts (the fastest): 1.50×" in text and "no longer the model's" in text
    assert "10 experts" not in text  # not worth naming
    assert "Worth trying: 12 experts" in text


def test_words_say_plainly_when_no_count_gains_beyond_noise() -> None:
    r = report([(16, 1.0, 1.0), (8, 1.03, 0.6), (4, 0.97, 0.5)])
    assert r.gains == [] and r.worth_trying is None
    text = explain_experts(r)
    assert text.startswith("No expert count is faster than all 16 beyond noise (3 %")
    assert "do not pay" in text
    just_beyond = report([(16, 1.0, 1.0), (8, 1.031, 0.95)])
    assert [x.experts for x in just_beyond.gains] == [8]


def test_words_when_every_gain_loses_the_answer() -> None:
    r = report([(2, 1.0, 1.0), (1, 1.4, 0.3)], reference=2, expert_count=8)
    text = explain_experts(r)
    assert "With 1 of 8 experts" in text and "the model's own 2" in text
    assert "no longer the model's" in text and text.endswith("Keep the model's own 2.")


def test_words_when_gains_keep_less_than_90_percent() -> None:
    r = report([(16, 1.0, 1.0), (8, 1.2, 0.7), (4, 1.4, 0.55)])
    assert r.worth_trying is None
    text = explain_experts(r)
    assert "No count that gains speed keeps 90 %" in text
    assert "no longer the model's" not in text


def test_random_weights_speak_of_speed_only() -> None:
    r = report([(2, 1.0, 1.0), (1, 1.4, 0.3)], reference=2, expert_count=8, random_weights=True)
    text = explain_experts(r)
    assert text.startswith("Random weights") and "mean nothing" in text
    assert "1.40×" in text and "%" not in text  # no agreement figure
    assert r.worth_trying is None
    slow = report([(2, 1.0, 1.0), (1, 1.01, 0.3)], reference=2, expert_count=8,
                  random_weights=True)
    assert "No expert count is faster" in explain_experts(slow)


def test_words_with_nothing_to_reduce_and_noisy_steps() -> None:
    assert "none to reduce" in explain_experts(report([(1, 1.0, 1.0)], reference=1))
    r = report([(16, 1.0, 1.0), (8, 1.2, 0.95)])
    r.rows[1].noisy = True
    assert explain_experts(r).endswith("Measure again.)")


def test_a_count_that_would_end_the_answer_is_never_worth_trying() -> None:
    """The MoEfied Qwen at 4 of 16 experts: 98 % of the choices on code_edit, but its first
    choice is end-of-text, so a free answer is empty."""
    r = report([(16, 1.0, 1.0), (8, 1.55, 1.0), (4, 1.60, 0.98)])
    r.rows[2].ends_early = 0
    assert r.worth_trying is r.rows[1]  # 8 experts, not the faster 4
    text = explain_experts(r)
    assert "4 experts (the fastest): 1.60×, 98 %" in text
    assert "it would end the answer before its first token" in text
    assert "Worth trying: 8 experts" in text
    r.rows[1].ends_early = 5
    assert r.worth_trying is None
    text = explain_experts(r)
    assert "it would end the answer after 5 tokens" in text
    assert "would end the answer early: keep all 16" in text



def test_noisy_timings_recommend_nothing() -> None:
    r = report([(16, 1.0, 1.0), (8, 1.55, 1.0), (12, 1.2, 1.0)])
    assert r.worth_trying is r.rows[1]
    r.rows[2].noisy = True  # another count's timings: the recommendation stands
    assert r.worth_trying is r.rows[1]
    r.rows[1].noisy = True
    assert r.worth_trying is None
    text = explain_experts(r)
    assert "Worth trying" not in text and "No count is recommended" in text
    assert "Measure again" in text

"""The repetition penalty: llama.cpp's rule, and applied alike in the baseline and in
speculative verification, so that greedy speculation still gives the baseline's tokens."""

from __future__ import annotations

import ctypes
from collections.abc import Iterator
from pathlib import Path

import llama_cpp
import numpy as np
import pytest

from app.core.compare import NEAR_TIE, first_difference
from app.core.errors import RefusedError
from app.core.events import RunResult, RunSettings
from app.core.sampling import SamplerSettings, penalised
from app.core.session import Session, render_prompt
from app.core.settings_check import check_settings

# Prompts on which a tiny random-weight model may come back to a token it has seen (most
# of its choices are new tokens, which the penalty does not touch).
PROMPTS = (
    "The quick brown fox jumps over the lazy dog. The quick brown fox jumps over the lazy "
    "dog. The quick",
    "def add(a, b):\n    return a + b\n\ndef add(a, b):\n    return a + b\n\n"
    "The quick brown fox jumps over the lazy dog. The quick brown fox",
    "one two three one two three one two three one two",
)
PENALTY = 1.3


def llama_penalised(row: np.ndarray, history: list[int], last_n: int, penalty: float
                    ) -> np.ndarray:
    """``row`` after llama.cpp's own penalties sampler has seen ``history``."""
    n = row.shape[0]
    smpl = llama_cpp.llama_sampler_init_penalties(n, last_n, penalty, 0.0, 0.0)
    try:
        for token in history:
            llama_cpp.llama_sampler_accept(smpl, token)
        data = (llama_cpp.llama_token_data * n)(
            *[llama_cpp.llama_token_data(i, float(row[i]), 0.0) for i in range(n)])
        arr = llama_cpp.llama_token_data_array(data, n, -1, False)
        llama_cpp.llama_sampler_apply(smpl, ctypes.byref(arr))
        out = np.zeros(n, dtype=np.float32)
        for i in range(arr.size):
            out[int(arr.data[i].id)] = float(arr.data[i].logit)
        return out
    finally:
        llama_cpp.llama_sampler_free(smpl)


@pytest.mark.parametrize(("last_n", "penalty", "split"),
                         [(1, 1.3, 20), (5, 1.3, 28), (64, 1.3, 20), (64, 0.8, 0), (7, 2.0, 30)])
def test_penalty_is_llama_cpps(last_n: int, penalty: float, split: int) -> None:
    rng = np.random.default_rng(last_n)
    row = rng.normal(size=64).astype(np.float32)  # positive and negative logits
    history = [int(t) for t in rng.integers(0, 64, size=30)]
    before = row.copy()
    s = SamplerSettings(repeat_penalty=penalty, repeat_last_n=last_n)
    # The history split anywhere between what was accepted and the drafts before the row.
    ours = penalised(row, s, history[:split], history[split:])
    assert np.array_equal(ours, llama_penalised(row, history, last_n, penalty))
    assert not np.array_equal(ours, row)
    assert np.array_equal(row, before)  # the caller's row (llama.cpp's buffer) is untouched


def test_penalty_off_and_whole_history() -> None:
    row = np.linspace(-2.0, 2.0, 16, dtype=np.float32)
    history = [1, 2, 14, 15, 2]
    assert penalised(row, SamplerSettings(), history) is row  # 1.0: off
    assert penalised(row, SamplerSettings(repeat_penalty=1.5, repeat_last_n=0), history) is row
    whole = penalised(row, SamplerSettings(repeat_penalty=1.5, repeat_last_n=-1), history)
    assert np.array_equal(whole, llama_penalised(row, history, len(history), 1.5))


@pytest.mark.parametrize(("field", "value"), [("repeat_penalty", 0.0), ("repeat_penalty", 11.0),
                                              ("repeat_last_n", -2)])
def test_penalty_range_is_checked(field: str, value: float) -> None:
    with pytest.raises(RefusedError, match=field.replace("_", "-")):
        check_settings(RunSettings(**{field: value}))  # type: ignore[arg-type]


# -- in the engine ----------------------------------------------------------------------


@pytest.fixture
def session() -> Iterator[Session]:
    s = Session()
    yield s
    s.close()


def settings(track: str, penalty: float, **kw: object) -> RunSettings:
    s = RunSettings(track=track, max_tokens=48, ctx=1024, threads=1, draft_max=6,
                    adaptive=False, repeat_penalty=penalty, repeat_last_n=64, **kw)  # type: ignore[arg-type]
    return s.with_options(draft_p_min=0.0)


def penalised_margin(session: Session, target: Path, prompt: str, s: RunSettings,
                     answer: list[int], position: int) -> float:
    """The baseline's top-2 margin at ``position`` after the penalty (re-evaluated)."""
    model = session.load_target(target, s)
    ids = render_prompt(model, prompt, s.chat, s.system) + answer[:position]
    model.reset()
    row = np.array(model.eval(ids, 1)[0], dtype=np.float32)
    sampler = SamplerSettings(repeat_penalty=s.repeat_penalty, repeat_last_n=s.repeat_last_n)
    top2 = np.partition(penalised(row, sampler, ids), -2)[-2:]
    return float(abs(top2[1] - top2[0]))


def biting_prompt(session: Session, target: Path) -> tuple[str, RunResult]:
    """The first prompt whose greedy baseline the penalty changes, with that baseline."""
    for prompt in PROMPTS:
        plain = session.run(target, None, prompt, settings("baseline", 1.0))
        strict = session.run(target, None, prompt, settings("baseline", PENALTY))
        if strict.token_ids != plain.token_ids:
            return prompt, strict
    raise AssertionError("the repeat penalty changed no baseline answer")


def test_penalty_changes_the_baseline(session: Session, tiny_dense: Path) -> None:
    _prompt, strict = biting_prompt(session, tiny_dense)
    assert strict.settings["repeat_penalty"] == PENALTY


def test_greedy_speculation_with_penalty_equals_baseline(
    session: Session, tiny_dense: Path, tiny_draft: Path
) -> None:
    prompt, base = biting_prompt(session, tiny_dense)
    # The drafters do not see the penalty (tiny_dense drafting for itself proposes the
    # unpenalised choice): only verification with the penalised target keeps the text.
    for track, draft in (("lookup", None), ("draft", tiny_dense), ("draft", tiny_draft),
                         ("draft+lookup", tiny_draft)):
        s = settings(track, PENALTY)
        other = session.run(tiny_dense, draft, prompt, s)
        assert other.n_drafted > 0, f"{track} with {draft} drafted nothing"
        # Batched verification and one-token steps use different kernels: at a near-tie
        # (not a bug) greedy texts may part, as in test_engine.
        diff = first_difference(base.token_ids, other.token_ids)
        if diff is not None:
            margin = penalised_margin(session, tiny_dense, prompt, s, base.token_ids, diff)
            assert margin < NEAR_TIE, f"{track} differs at {diff}, margin {margin:.3f}"

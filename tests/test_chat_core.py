"""Multi-turn chat on tiny generated models: KV reuse across turns (counted by the engine
and by the evaluations the target really did), regenerate and edit against from-scratch
runs, a stopped turn, the context-full path and the SSM rule."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from app.core.chat.conversation import Conversation
from app.core.chat.render import conversation_tokens
from app.core.chat.runner import ConversationFull, continue_trimmed, run_turn
from app.core.compare import NEAR_TIE
from app.core.drafting.base import held_tokens
from app.core.errors import RefusedError
from app.core.events import RunResult, RunSettings, TokenEvent
from app.core.session import Session
from app.core.verdict import first_difference

TURNS = [
    "Write a function that adds two numbers.",
    "Now rename it to total and add a docstring.",
    "Make it a class with one method.",
]


@pytest.fixture
def session() -> Iterator[Session]:
    s = Session()
    yield s
    s.close()


def settings(track: str = "baseline", **kw: Any) -> RunSettings:
    return RunSettings(track=track, max_tokens=kw.pop("max_tokens", 12), ctx=kw.pop("ctx", 1024),
                       threads=1, **kw)


class EvalLog:
    """Every batch the loaded target evaluates (a spy on the real model: it still runs)."""

    def __init__(self, session: Session, monkeypatch: pytest.MonkeyPatch) -> None:
        assert session.target is not None
        self.calls: list[int] = []
        real = session.target.eval

        def spy(tokens: Any, n_logits: int) -> np.ndarray:
            self.calls.append(len(tokens))
            return real(tokens, n_logits)

        monkeypatch.setattr(session.target, "eval", spy)


def kept_after(r: RunResult) -> int:
    """Answer tokens the target's cache holds after a baseline turn: the last one is never
    evaluated unless the turn ended on end-of-generation."""
    return r.n_generated - (0 if r.stop_reason == "eos" else 1)


def margin_at(session: Session, ids: list[int], position: int) -> float:
    """The target's top-2 logit margin after ``ids`` (evaluated from an empty cache)."""
    model = session.target
    assert model is not None
    model.reset()
    row = np.array(model.eval(ids, 1)[0], dtype=np.float64)
    top2 = np.partition(row, -2)[-2:]
    return float(abs(top2[1] - top2[0]))


def same_answer(session: Session, conv: Conversation, a: RunResult, b: RunResult) -> None:
    """Greedy answers to the same prompt agree, or part at a near-tie of the target."""
    diff = first_difference(a.token_ids, b.token_ids)
    if diff is None:
        return
    assert session.target is not None
    prompt = conversation_tokens(session.target, conv.system, conv.in_context()[:-1])
    margin = margin_at(session, prompt + a.token_ids[:diff], diff)
    assert margin < NEAR_TIE, f"answers part at {diff} with margin {margin:.3f}"


def from_scratch(path: Path, conv: Conversation, s: RunSettings) -> RunResult:
    """The last turn of ``conv`` answered again by a fresh session (no cache to keep)."""
    fresh = Session()
    messages = conv.messages[:-1] if conv.messages[-1].role == "assistant" else conv.messages
    try:
        copy = Conversation(system=conv.system, messages=list(messages), start=conv.start)
        return run_turn(fresh, copy, path, None, s)
    finally:
        fresh.close()


def test_second_turn_prefills_only_its_new_tokens(
    session: Session, tiny_dense: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conv = Conversation()
    conv.add_user(TURNS[0])
    first = run_turn(session, conv, tiny_dense, None, settings())
    assert first.reused_tokens == 0 and first.prefill_tokens == first.prompt_tokens
    assert session.target is not None
    prompt1 = conversation_tokens(session.target, None, conv.messages[:1])
    assert held_tokens(session.target) == (prompt1 + first.token_ids)[: prompt1.__len__()
                                                                       + kept_after(first)]
    conv.add_user(TURNS[1])
    prompt2 = conversation_tokens(session.target, None, conv.messages)
    # The answer goes back as the ids the model generated: the cache is a prefix.
    assert prompt2[: len(prompt1) + first.n_generated] == prompt1 + first.token_ids
    log = EvalLog(session, monkeypatch)
    second = run_turn(session, conv, tiny_dense, None, settings())
    kept = len(prompt1) + kept_after(first)
    assert second.reused_tokens == kept
    assert second.prefill_tokens == len(prompt2) - kept == second.prompt_tokens - kept
    # What the target really evaluated: the new tokens but the last in one batch, then the
    # last one with the first round; every later batch is one token (baseline).
    assert log.calls[0] == second.prefill_tokens - 1
    assert log.calls[1:] == [1] * (len(log.calls) - 1)
    assert sum(log.calls) == second.prefill_tokens + second.n_generated - (
        0 if second.stop_reason == "eos" else 1)


def test_a_single_run_still_starts_from_an_empty_cache(session: Session, tiny_dense: Path) -> None:
    a = session.run(tiny_dense, None, TURNS[0], settings(chat=True))
    b = session.run(tiny_dense, None, TURNS[0], settings(chat=True))
    assert b.reused_tokens == 0 and b.prefill_tokens == b.prompt_tokens == a.prompt_tokens


def test_regenerate_and_edit_trim_the_cache_and_answer_as_from_scratch(
    session: Session, tiny_dense: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = settings()
    conv = Conversation()
    conv.add_user(TURNS[0])
    run_turn(session, conv, tiny_dense, None, s)
    conv.add_user(TURNS[1])
    answered = run_turn(session, conv, tiny_dense, None, s)
    assert session.target is not None
    prompt2 = conversation_tokens(session.target, None, conv.messages[:3])

    conv.regenerate()
    assert conv.waiting
    log = EvalLog(session, monkeypatch)
    again = run_turn(session, conv, tiny_dense, None, s)
    # Trimmed back to the prompt, all but its last token kept: one token evaluated again.
    assert again.reused_tokens == len(prompt2) - 1 and again.prefill_tokens == 1
    assert log.calls[0] == 1
    assert again.token_ids == answered.token_ids  # same cache, same greedy steps
    same_answer(session, conv, from_scratch(tiny_dense, conv, s), again)

    conv.edit(2, "Instead, make it subtract.")
    assert len(conv.messages) == 3 and conv.waiting
    prompt_edit = conversation_tokens(session.target, None, conv.messages)
    cached = held_tokens(session.target)
    assert cached is not None
    common = next(i for i, (x, y) in enumerate(zip(cached, prompt_edit, strict=False)) if x != y)
    edited = run_turn(session, conv, tiny_dense, None, s)
    assert edited.reused_tokens == common
    assert edited.prefill_tokens == len(prompt_edit) - common
    same_answer(session, conv, from_scratch(tiny_dense, conv, s), edited)


def test_a_stopped_turn_keeps_its_part_and_the_next_turn_works(
    session: Session, tiny_dense: Path
) -> None:
    s = settings(max_tokens=40)
    conv = Conversation()
    conv.add_user(TURNS[0])
    cancel = threading.Event()
    seen: list[int] = []

    def on_event(e: object) -> None:
        if isinstance(e, TokenEvent):
            seen.append(e.id)
            if len(seen) == 3:
                cancel.set()

    stopped = run_turn(session, conv, tiny_dense, None, s, on_event, cancel)
    assert stopped.stop_reason == "cancelled" and stopped.token_ids == seen
    assert conv.messages[-1].partial and conv.messages[-1].text == stopped.text
    conv.add_user(TURNS[1])
    nxt = run_turn(session, conv, tiny_dense, None, settings())
    assert nxt.stop_reason in ("eos", "max_tokens") and nxt.n_generated > 0
    assert session.target is not None
    prompt1 = conversation_tokens(session.target, None, conv.messages[:1])
    assert nxt.reused_tokens == len(prompt1) + len(seen) - 1  # the partial answer was kept
    same_answer(session, conv, from_scratch(tiny_dense, conv, settings()), nxt)


def test_context_full_says_so_and_continues_from_a_trimmed_history(
    session: Session, tiny_dense: Path
) -> None:
    s = settings(ctx=256, max_tokens=16)
    conv = Conversation()
    long = "Tell me about the weather in the mountains and in the valleys. " * 8
    conv.add_user(long)
    run_turn(session, conv, tiny_dense, None, s)
    conv.add_user(long)
    with pytest.raises(ConversationFull) as caught:
        run_turn(session, conv, tiny_dense, None, s)
    full = caught.value
    assert full.n_ctx == 256 and full.needed > 256
    assert full.fits_turn == 2 and full.fits_from == 2
    assert "continue from turn 2" in str(full) and "new chat" in str(full)
    assert len(conv.messages) == 3 and conv.waiting  # nothing dropped, nothing added
    continue_trimmed(conv, full)
    assert conv.start == 2 and len(conv.messages) == 3
    assert "turn 1 stay" in conv.notes[-1]
    answer = run_turn(session, conv, tiny_dense, None, s)
    assert answer.n_generated > 0 and len(conv.messages) == 4
    assert session.target is not None
    assert answer.prompt_tokens == len(conversation_tokens(session.target, None,
                                                           conv.messages[2:3]))
    # A message that alone does not fit: only a new chat (or a larger context) helps.
    conv.add_user(long * 3)
    with pytest.raises(ConversationFull) as caught:
        run_turn(session, conv, tiny_dense, None, s)
    assert caught.value.fits_from is None and "new chat" in str(caught.value)
    with pytest.raises(RefusedError):
        continue_trimmed(conv, caught.value)


def test_ssm_chat_runs_the_baseline_and_reuses_only_a_whole_prefix(
    session: Session, tiny_mamba: Path, tiny_dense: Path
) -> None:
    conv = Conversation()
    conv.add_user(TURNS[0])
    for track in ("lookup", "draft", "suffix"):
        with pytest.raises(RefusedError):
            run_turn(session, conv, tiny_mamba, tiny_dense, settings(track))
    assert conv.waiting and len(conv.messages) == 1
    first = run_turn(session, conv, tiny_mamba, None, settings())
    assert session.target is not None and session.target.is_recurrent
    conv.add_user(TURNS[1])
    second = run_turn(session, conv, tiny_mamba, None, settings())
    prompt1 = conversation_tokens(session.target, None, conv.messages[:1])
    # The whole earlier state is a prefix of the new prompt: kept.
    assert second.reused_tokens == len(prompt1) + kept_after(first)
    # Regenerating would need the state trimmed: a recurrent state cannot be, so the turn
    # is evaluated again from the start, and answers the same.
    conv.regenerate()
    again = run_turn(session, conv, tiny_mamba, None, settings())
    assert again.reused_tokens == 0 and again.prefill_tokens == again.prompt_tokens
    assert again.token_ids == second.token_ids

"""The engine on tiny generated models: losslessness, accounting, guards, cancel."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from given_costs import give_costs

from app.core.adaptive import CostModel
from app.core.compare import NEAR_TIE, baseline_margin, first_difference
from app.core.drafting import registry
from app.core.drafting.lookup import PromptLookup
from app.core.engine import Generation
from app.core.errors import RefusedError
from app.core.events import RejectionEvent, RoundEvent, RunResult, RunSettings, TokenEvent
from app.core.session import Session

PROMPT = (
    "def add(a, b):\n    return a + b\n\ndef add(a, b):\n    return a + b\n\n"
    "The quick brown fox jumps over the lazy dog. The quick brown fox"
)


@pytest.fixture
def session() -> Iterator[Session]:
    s = Session()
    yield s
    s.close()


def settings(track: str, draft_p_min: float | None = None, **kw: object) -> RunSettings:
    base = RunSettings(track=track, max_tokens=48, ctx=1024, threads=1, draft_max=6)
    s = replace(base, **kw)  # type: ignore[arg-type]
    return s if draft_p_min is None else s.with_options(draft_p_min=draft_p_min)


def check_accounting(r: RunResult) -> None:
    tokens = [e for e in r.events if isinstance(e, TokenEvent)]
    rounds = [e for e in r.events if isinstance(e, RoundEvent)]
    rejected = [e for e in r.events if isinstance(e, RejectionEvent)]
    assert len(tokens) == r.n_generated == len(r.token_ids)
    assert [t.id for t in tokens] == r.token_ids
    assert [t.position for t in tokens] == list(range(r.n_generated))
    assert sum(x.generated for x in rounds) == r.n_generated
    assert sum(x.proposed for x in rounds) == r.n_drafted
    assert sum(x.accepted for x in rounds) == r.n_accepted
    for i, x in enumerate(rounds):
        assert 0 <= x.accepted <= x.proposed
        if i < len(rounds) - 1:  # only the last round may be cut (max tokens / eos)
            assert x.generated == x.accepted + 1
    assert (
        len(rejected) == r.n_drafted - r.n_accepted or rounds[-1].generated <= rounds[-1].accepted
    )
    accepted = [t for t in tokens if t.origin == "accepted"]
    assert len(accepted) == r.n_accepted
    assert all(registry.get_source(t.source or "") is not None for t in accepted)
    assert r.text == "".join(t.text for t in tokens)


def assert_lossless(
    session: Session, target: Path, base: RunResult, other: RunResult, s: RunSettings
) -> None:
    diff = first_difference(base.token_ids, other.token_ids)
    if diff is None:
        return
    margin = baseline_margin(session, target, PROMPT, s, base.token_ids, diff)
    assert margin < NEAR_TIE, f"{other.track} differs at {diff}, baseline margin {margin:.3f}"


@pytest.mark.parametrize("adaptive", [True, False])
def test_greedy_speculation_equals_baseline(
    session: Session, tiny_dense: Path, tiny_draft: Path, adaptive: bool
) -> None:
    # Adaptive drafting decides from given costs (cheap batches, a draft step a tenth of a
    # target step: drafting pays), not from this machine's timings: the same drafts on any
    # machine under any load.
    given = give_costs(session) if adaptive else None
    base = session.run(tiny_dense, None, PROMPT, settings("baseline"))
    check_accounting(base)
    assert base.n_drafted == 0 and base.stop_reason in ("max_tokens", "eos")
    # tiny_dense drafting for itself: nearly everything accepted; tiny_draft (other random
    # weights, flat distributions) is mostly rejected, so a fixed K drafts with it only with
    # p-min 0.
    for track, draft in (
        ("lookup", None),
        ("draft", tiny_dense),
        ("draft", tiny_draft),
        ("draft+lookup", tiny_draft),
        ("suffix", None),  # a source beyond the study's tracks, alone and combined
        ("draft+lookup+suffix", tiny_draft),
    ):
        s = settings(track, adaptive=adaptive, draft_p_min=0.0)
        other = session.run(tiny_dense, draft, PROMPT, s)
        check_accounting(other)
        assert other.n_drafted > 0, f"{track} with {draft} drafted nothing"
        if draft == tiny_draft:
            assert other.n_accepted < other.n_drafted, "expected rejections"
        if draft == tiny_dense:  # a model drafting for itself agrees with itself
            assert (other.acceptance_rate or 0) > 0.8
        assert_lossless(session, tiny_dense, base, other, s)
    assert given is None or given.ignored > 0  # the runs did decide from the given costs


def test_moe_count_is_applied_and_lookup_stays_lossless(session: Session, tiny_moe: Path) -> None:
    give_costs(session)  # what adaptive lookup drafts follows from given costs, not timings
    full = session.run(tiny_moe, None, PROMPT, settings("baseline"))
    assert full.effective["expert_used_count"] == 2
    one = session.run(tiny_moe, None, PROMPT, settings("moe", experts=1))
    assert one.effective["expert_used_count"] == 1
    both = session.run(tiny_moe, None, PROMPT, settings("moe+lookup", experts=1))
    assert both.effective["expert_used_count"] == 1
    check_accounting(both)
    assert both.n_drafted > 0
    assert first_difference(one.token_ids, both.token_ids) is None or both.n_drafted > 0


@pytest.mark.parametrize("count", [0, 9, -1])
def test_expert_count_out_of_range_is_refused(session: Session, tiny_moe: Path, count: int) -> None:
    with pytest.raises(RefusedError, match="out of range"):
        session.run(tiny_moe, None, PROMPT, settings("moe", experts=count))


def test_ssm_model_never_speculates(session: Session, tiny_mamba: Path, tiny_dense: Path) -> None:
    for track in ("lookup", "draft", "draft+lookup", "moe+lookup"):
        with pytest.raises(RefusedError):
            session.run(tiny_mamba, tiny_dense, PROMPT, settings(track))
    result = session.run(tiny_mamba, None, PROMPT, settings("baseline", max_tokens=8))
    assert result.n_generated > 0 and result.n_drafted == 0
    # The engine's own guard, bypassing the session's checks:
    assert session.target is not None and session.target.is_recurrent
    with pytest.raises(RefusedError, match="rolled back"):
        Generation(
            session.target, [PromptLookup(1, 3, False, CostModel())], [1, 2, 3], settings("lookup")
        )


def test_incompatible_draft_is_refused_before_decoding(
    session: Session, tiny_dense: Path, tiny_incompatible: Path
) -> None:
    with pytest.raises(RefusedError, match="token texts"):
        session.run(tiny_dense, tiny_incompatible, PROMPT, settings("draft"))
    assert session.target is None  # refused before anything was loaded


@pytest.mark.parametrize("track", ["eagle", "medusa", "kangaroo"])
def test_deprecated_track_is_refused(session: Session, tiny_dense: Path, track: str) -> None:
    with pytest.raises(RefusedError, match="deprecated"):
        session.run(tiny_dense, None, PROMPT, settings(track))


def test_cancel_is_prompt_and_keeps_partial_output(session: Session, tiny_dense: Path) -> None:
    cancel = threading.Event()
    seen: list[int] = []

    def on_event(e: object) -> None:
        if isinstance(e, TokenEvent):
            seen.append(e.id)
            if len(seen) == 5:
                cancel.set()

    r = session.run(
        tiny_dense, None, PROMPT, settings("baseline", max_tokens=500), on_event, cancel
    )
    assert r.stop_reason == "cancelled"
    assert 5 <= r.n_generated <= 6 and r.token_ids == seen
    assert r.text


def test_cancel_during_prefill(session: Session, tiny_dense: Path) -> None:
    cancel = threading.Event()
    cancel.set()
    r = session.run(tiny_dense, None, PROMPT * 20, settings("baseline"), None, cancel)
    assert r.stop_reason == "cancelled" and r.n_generated == 0


def test_context_overflow_stops_cleanly(session: Session, tiny_dense: Path) -> None:
    for track in ("baseline", "lookup"):
        r = session.run(tiny_dense, None, PROMPT, settings(track, ctx=256, max_tokens=2000))
        assert r.stop_reason == "context_full"
        # The last answer token is never fed back: the context holds all but it.
        assert r.prompt_tokens + r.n_generated - 1 <= 256
        check_accounting(r)


def test_sampling_is_reproducible_with_a_seed(
    session: Session, tiny_dense: Path, tiny_draft: Path
) -> None:
    # Fixed K: adaptive draft lengths follow measured timings, which no seed fixes.
    s = settings("draft", temperature=0.9, seed=7, adaptive=False, draft_p_min=0.0)
    a = session.run(tiny_dense, tiny_draft, PROMPT, s)
    b = session.run(tiny_dense, tiny_draft, PROMPT, s)
    c = session.run(tiny_dense, tiny_draft, PROMPT, replace(s, seed=8))
    assert a.token_ids == b.token_ids
    assert a.token_ids != c.token_ids
    check_accounting(a)

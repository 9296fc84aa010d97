"""app.core.metrics: plain functions and the incremental accumulator agree."""

from __future__ import annotations

import pytest

from app.core import metrics
from app.core.events import Event, NoteEvent, RejectionEvent, RoundEvent, RunResult, TokenEvent


def tok(pos: int, t: float, origin: str = "target", src: str | None = None) -> TokenEvent:
    return TokenEvent(pos, f"<{pos}>", pos, origin, src, 0, t)  # type: ignore[arg-type]


def rnd(i: int, proposed: int, accepted: int, t: float = 0.0) -> RoundEvent:
    return RoundEvent(
        i, proposed, accepted, accepted + 1, "lookup" if proposed else None, 0.01, 0.02, t
    )


def test_throughput_rolling_and_cumulative() -> None:
    times = [0.0, 0.5, 1.0, 1.5, 2.0, 2.5]
    s = metrics.throughput(times, window=1.0)
    assert s.t == [0.5, 1.0, 1.5, 2.0, 2.5]  # t < MIN_TIME left out
    assert s.cumulative[-1] == pytest.approx(6 / 2.5)
    # (1.5, 2.5] holds 2.0 and 2.5
    assert s.rolling[-1] == pytest.approx(2.0)
    assert s.rolling[0] == s.cumulative[0]  # before a full window: cumulative


def test_acceptance_series_and_positions() -> None:
    rounds = [rnd(0, 0, 0), rnd(1, 4, 2), rnd(2, 2, 2), rnd(3, 3, 0)]
    a = metrics.acceptance(rounds)
    assert a.round == [1, 2, 3]
    assert a.rate == [0.5, 1.0, 0.0]
    assert a.cumulative[-1] == pytest.approx(4 / 9)
    assert a.rolling == pytest.approx(a.cumulative)  # fewer rounds than the window
    proposed, accepted = metrics.acceptance_by_position(rounds)
    assert proposed == [3, 3, 2, 1]
    assert accepted == [2, 2, 0, 0]
    assert metrics.position_rates(proposed, accepted) == pytest.approx([2 / 3, 2 / 3, 0, 0])
    # accepted drafts + the bonus token, per round that drafted: (3 + 3 + 1) / 3
    assert metrics.mean_accepted_length(rounds) == pytest.approx(7 / 3)
    assert metrics.mean_accepted_length([rnd(0, 0, 0)]) is None


def test_rolling_acceptance_forgets_old_rounds() -> None:
    rounds = [rnd(i, 2, 2) for i in range(1, 21)] + [rnd(i, 2, 0) for i in range(21, 31)]
    a = metrics.acceptance(rounds)
    assert a.rolling[19] == 1.0
    assert a.rolling[-1] == pytest.approx(0.5)  # last 20 rounds: 10 full, 10 empty
    assert a.cumulative[-1] == pytest.approx(40 / 60)


def test_live_metrics_matches_batch_functions() -> None:
    events: list[Event] = [tok(0, 0.0), rnd(0, 0, 0, 0.0)]
    t = 0.0
    for i in range(1, 40):
        t += 0.1
        events += [
            tok(2 * i - 1, t, "accepted", "lookup"),
            tok(2 * i, t),
            RejectionEvent(7, "x", 2 * i, "lookup", i),
            rnd(i, 2, 1, t),
        ]
    events.append(NoteEvent("adaptive drafting paused", 78, t))  # not a rejected draft
    live = metrics.LiveMetrics()
    for k in range(0, len(events), 7):  # batches, as the GUI drains them
        live.add(events[k : k + 7])
    tokens = [e for e in events if isinstance(e, TokenEvent)]
    rounds = [e for e in events if isinstance(e, RoundEvent)]
    assert live.throughput == metrics.throughput([e.t for e in tokens])
    assert live.acceptance == metrics.acceptance(rounds)
    assert live.n_tokens == len(tokens) and live.n_rejected == 39
    assert live.acceptance_rate == pytest.approx(0.5)
    assert live.mean_accepted_length == pytest.approx(2.0)  # 1 accepted + 1 bonus
    assert live.mean_accepted_length == metrics.mean_accepted_length(events)
    assert live.position_rates == [1.0, 0.0]
    assert metrics.answer_text(events) == "".join(e.text for e in tokens)


def test_summary_and_speedup() -> None:
    result = RunResult(
        "lookup",
        "abc",
        "max_tokens",
        5,
        100,
        60,
        30,
        20,
        2.0,
        0.1,
        0.2,
        1.0,
        {},
        {},
        events=[rnd(1, 3, 3), rnd(2, 3, 0)],
    )
    s = metrics.summarize(result, baseline_tokens_per_second=25.0)
    assert s.result.tokens_per_second == pytest.approx(50.0)
    assert s.speedup == pytest.approx(2.0)
    assert s.result.acceptance_rate == pytest.approx(0.5)
    assert s.result.mean_accepted_length == pytest.approx(2.5)
    assert metrics.speedup(10.0, None) is None
    assert metrics.speedup(10.0, 0.0) is None

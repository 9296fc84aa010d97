"""The one verdict (app.core.verdict.judge): no best within noise, nothing crowned when
nothing beat the baseline, a track that drafted nothing said so and why. Pure data: the
runs are fabricated, the rules are the subject."""

from __future__ import annotations

import pytest

from app.core.events import RunResult
from app.core.predict import MeasuredCosts, predict
from app.core.sweep import Sweep, SweepPoint, mark_best
from app.core.verdict import (
    REPEATS_MARGIN,
    SINGLE_RUN_MARGIN,
    Candidate,
    ComparedRun,
    Comparison,
    Repeats,
    format_speedup,
    idle_reason,
    judge,
    judge_comparison,
    judge_run,
)

IDLE = "adaptive drafting judged a verify batch too costly: 1.6 steps for 2 tokens"


def result(track: str, tps: float = 10.0, drafted: int = 5, notes: list[str] | None = None,
           stop: str = "max_tokens") -> RunResult:
    n = 20
    return RunResult(track, "x" * n, stop, 5, n, drafted, drafted // 2, n, n / tps,  # type: ignore[arg-type]
                     0.1, 0.1, 0.5, {}, {}, notes=notes or [])


def run(track: str, speedups: list[float], **kw: object) -> ComparedRun:
    reps = Repeats([10.0 * s for s in speedups], speedups) if len(speedups) > 1 else None
    median = sorted(speedups)[len(speedups) // 2]
    return ComparedRun(result(track, 10.0 * median, **kw), median, True,  # type: ignore[arg-type]
                       repeats=reps)


def comparison(*runs: ComparedRun, repeats: int = 1) -> Comparison:
    return Comparison([run("baseline", [1.0] * repeats), *runs], repeats)


def test_single_runs_within_the_margin_crown_nothing() -> None:
    c = comparison(run("lookup", [1.30]), run("draft", [1.25]))
    v = judge_comparison(c)
    assert v.kind == "tie" and v.best is None and set(v.leaders) == {"lookup", "draft"}
    assert v.text.startswith("No clear winner: within noise")
    assert v.short == "no clear winner: within noise"
    assert c.to_dict(with_events=False)["verdict"]["best"] is None


def test_a_clear_single_run_winner_is_crowned() -> None:
    v = judge_comparison(comparison(run("lookup", [1.50]), run("draft", [1.20])))
    assert v.kind == "best" and v.best == "lookup"
    assert v.text.startswith("Best: Track 8 · Prompt lookup — 1.50×")
    # Just inside the margin of the other: no longer clear.
    close = 1.20 * (1 + SINGLE_RUN_MARGIN) - 0.01
    assert judge_comparison(comparison(run("lookup", [close]), run("draft", [1.20]))).best is None


def test_within_noise_of_the_baseline_is_not_a_win() -> None:
    v = judge_comparison(comparison(run("lookup", [1.04])))
    assert v.kind == "noise" and v.best is None and v.leaders == ()
    assert v.short == "within noise of the baseline"
    many = judge_comparison(comparison(run("lookup", [1.04]), run("draft", [0.97])))
    assert many.kind == "noise" and many.short == "no clear winner: within noise"


def test_nothing_beat_the_baseline_is_never_a_best() -> None:
    v = judge_comparison(comparison(run("lookup", [0.68]), run("draft", [0.55])))
    assert v.kind == "slower" and v.best is None
    assert v.short == "nothing beat the baseline" and "best" not in v.short
    assert "0.68×" in v.text and v.text.startswith("Nothing beat the baseline")


def test_repeats_judge_by_their_ranges() -> None:
    apart = comparison(run("lookup", [1.50, 1.55, 1.60]), run("draft", [1.20, 1.25, 1.30]),
                       repeats=3)
    assert judge_comparison(apart).best == "lookup"
    overlap = comparison(run("lookup", [1.30, 1.40, 1.50]), run("draft", [1.20, 1.35, 1.45]),
                         repeats=3)
    v = judge_comparison(overlap)
    assert v.kind == "tie" and "3 interleaved runs" in v.text
    # One repeat below the baseline: the range reaches 1.0, so no win.
    assert judge_comparison(comparison(run("lookup", [0.95, 1.20, 1.30]), repeats=3)).kind \
        == "noise"
    # Ranges apart, but medians closer than the least margin of repeats.
    tight = [1.0 + REPEATS_MARGIN / 2 + d for d in (0.001, 0.002, 0.003)]
    assert judge_comparison(comparison(run("lookup", tight), repeats=3)).kind == "noise"


def test_a_track_that_drafted_nothing_is_never_crowned_and_says_why() -> None:
    """The issue's Sweep: a 4.38x "best" resting on a slow baseline while nothing was
    drafted at all."""
    idle = run("lookup", [4.38], drafted=0, notes=[IDLE])
    v = judge_comparison(comparison(idle))
    assert v.kind == "idle" and v.best is None
    assert "Track 8 · Prompt lookup drafted nothing: " + IDLE in v.text
    assert "noise" in v.text
    both = judge_comparison(comparison(idle, run("draft", [1.5])))
    assert both.best == "draft" and "drafted nothing" in both.text
    assert idle_reason(idle.result) == IDLE
    # The source's own prefix is not repeated after "drafted nothing:".
    said = result("lookup", drafted=0, notes=["prompt lookup drafted nothing: no n-gram matched"])
    assert idle_reason(said) == "no n-gram matched"
    assert idle_reason(result("lookup", drafted=0)) is not None  # no note: still said
    assert idle_reason(result("baseline", drafted=0)) is None
    assert idle_reason(result("moe", drafted=0)) is None  # does not draft by design
    assert idle_reason(result("lookup", drafted=0, stop="cancelled")) is None


def test_speedups_are_written_with_their_spread() -> None:
    assert format_speedup([1.42, 1.31, 1.50]) == "1.42× (1.31–1.50, 3 runs)"
    assert format_speedup([1.42]) == "1.42×" and format_speedup(1.42) == "1.42×"
    assert format_speedup(None) == "—" and format_speedup([]) == "—"
    assert format_speedup([1.0, 2.0], times="x", dash="-") == "1.50x (1.00-2.00, 2 runs)"


def test_run_tab_verdict() -> None:
    v = judge_run(result("lookup", 15.0), 10.0)
    assert v.kind == "best" and v.text.startswith("1.50× vs baseline (10.0 tok/s)")
    assert judge_run(result("lookup", 10.5), 10.0).kind == "noise"
    idle = judge_run(result("lookup", 15.6, drafted=0, notes=[IDLE]), 10.0)
    assert idle.kind == "idle" and IDLE in idle.text and idle.best is None
    assert "run the baseline" in judge_run(result("lookup"), None).text
    assert "this run is the baseline" in judge_run(result("baseline"), 10.0).text


def point(value: int, speedups: list[float], drafted: int = 5) -> SweepPoint:
    p = SweepPoint(value, result("lookup", 10.0, drafted=drafted, notes=[IDLE]), None, True,
                   1.0, 0.0)
    for s in speedups:
        p.add(result("lookup", 10.0 * s, drafted=drafted, notes=[IDLE]), s)
    return p


def test_sweep_best_only_beyond_noise() -> None:
    sweep = Sweep("draft_max", "lookup", points=[point(1, [1.2]), point(2, [1.25]),
                                                 point(3, [1.22])])
    assert mark_best(sweep) is None and not any(p.best for p in sweep.points)
    assert sweep.verdict is not None and sweep.verdict.kind == "tie"
    assert "K (draft max) = 2" in sweep.verdict.text
    sweep.points.append(point(4, [1.9]))
    best = mark_best(sweep)
    assert best is sweep.points[3] and best.best and sum(p.best for p in sweep.points) == 1
    # Every K drafted nothing: no best however fast a point looks, and the reason once.
    idle = Sweep("draft_max", "lookup", points=[point(k, [4.38 - k / 10], drafted=0)
                                                for k in range(1, 9)])
    assert mark_best(idle) is None and idle.verdict is not None
    assert idle.verdict.kind == "idle" and idle.verdict.text.count(IDLE) == 1
    assert "Every value drafted nothing" in idle.verdict.text


def test_sweep_point_with_repeats_takes_the_median() -> None:
    p = point(4, [1.1, 1.5, 1.3])
    assert p.speedup == pytest.approx(1.3) and p.speedups == [1.1, 1.5, 1.3]
    assert p.result is p.runs[2]  # the run of the median paired speedup


def test_pay_recommends_nothing_within_noise_and_names_the_tied_ks() -> None:
    # A verify batch costs nearly as much as its tokens: the best K predicts ~1.05x.
    flat = MeasuredCosts({1: 1.0, 2: 1.8, 3: 2.7, 5: 4.5, 9: 8.1, 17: 15.3})
    r = predict(flat, 0.9, "lookup")
    assert r.best is not None and 1.0 < r.best.speedup < 1 + SINGLE_RUN_MARGIN
    assert r.recommended_k == 0 and r.leaders == []
    assert "within noise" in r.explanation and "No recommendation" in r.explanation
    cheap = MeasuredCosts({1: 1.0, 2: 1.0, 3: 1.02, 5: 1.05, 9: 1.2, 17: 1.6})
    r = predict(cheap, 0.8, "lookup")
    assert r.recommended_k in r.leaders and len(r.leaders) > 1
    best = max(p.speedup for p in r.predictions)
    for k in r.leaders:  # every named K is within the margin of the best
        assert r.predictions[k - 1].speedup * (1 + SINGLE_RUN_MARGIN) >= best
    assert "within noise of it" in r.explanation


def test_judge_of_nothing() -> None:
    v = judge([Candidate("x", "X", ())])
    assert v.kind == "none" and v.best is None


def silent(track: str) -> RunResult:
    """A run whose model ended its answer at once: no token, so no speed."""
    return RunResult(track, "", "eos", 5, 0, 0, 0, 0, 0.0, 0.1, 0.0, 0.0,  # type: ignore[arg-type]
                     {}, {})


def test_a_track_that_wrote_no_token_has_no_speed_and_is_never_crowned() -> None:
    from app.core.verdict import wrote_nothing

    assert wrote_nothing(silent("moe")) == (
        "the model ended its answer at once (end-of-text as the first token)")
    assert wrote_nothing(result("moe")) is None
    c = Comparison([run("baseline", [1.0]), ComparedRun(silent("moe"), None, False),
                    run("lookup", [1.5])])
    v = judge_comparison(c)
    assert v.kind == "best" and v.best == "lookup"
    assert "wrote no token: the model ended its answer at once" in v.text
    alone = judge_comparison(Comparison([run("baseline", [1.0]),
                                         ComparedRun(silent("moe"), None, False)]))
    assert alone.kind == "none" and alone.short == "wrote no token"
    assert alone.text.startswith("No speedup to judge. ")
    assert "did not finish" not in alone.text

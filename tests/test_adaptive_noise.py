"""Adaptive drafting must not flip on noise, nor on what earlier runs concluded.

Every cost here is given (``CostModel.observe`` with chosen seconds, ``GivenCosts``), and
acceptance is either given (``observe`` of a proposal with a chosen accepted count) or fixed
by greedy decoding of the tiny models: nothing depends on this machine's timings.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from given_costs import GivenCosts, give_costs

from app.core.adaptive import (
    FLOOR_ACCEPTANCE,
    HIGH_ACCEPTANCE,
    STEP_SAMPLES,
    TRUST,
    CostModel,
    Recent,
    best_length,
    floor_length,
)
from app.core.compare import compare
from app.core.drafting.draft_model import CONFIDENCE_BANDS, PROBE_LENGTH, DraftModel
from app.core.drafting.lookup import PROBE_EVERY, PromptLookup
from app.core.events import Event, NoteEvent, RunResult, RunSettings
from app.core.session import Session

PROMPT = "red green blue red green blue red green blue red green"
STEP = 0.1


def steady_costs(slope: float = 0.13, sizes: tuple[int, ...] = (1, 2, 3, 5, 9)) -> CostModel:
    """A target step of STEP seconds and batches of n at 1 + slope (n - 1) steps, each size
    measured TRUST times."""
    costs = CostModel(slope=slope)
    for _ in range(TRUST):
        for n in sizes:
            costs.observe(n, STEP * (1 + slope * (n - 1)))
    return costs


# -- the cost model ---------------------------------------------------------------------------
def test_a_fresh_cost_model_measures_several_plain_steps_first() -> None:
    costs = CostModel()
    wanted = []
    for seconds in (0.30, 0.10, 0.10, 0.10):  # the first plain step is 3x slow
        wanted.append(costs.wants_step())
        costs.observe(1, seconds)
    assert wanted == [True] * STEP_SAMPLES + [False]
    assert costs.step == pytest.approx(0.10)  # the median, not the first timing


def test_one_slow_batch_does_not_shorten_or_stop_drafting() -> None:
    clean = steady_costs(sizes=(1,))
    noisy = steady_costs(sizes=(1,))
    noisy.observe(5, 3 * STEP * 1.52)  # one batch of 5 timed 3x slow
    chances = [0.8] * 8
    plan = best_length(chances, clean, 0.02, optimistic=True)
    assert plan > 0
    assert best_length(chances, noisy, 0.02, optimistic=True) >= plan
    # Once the size is measured often enough, its median is the truth, not the outlier.
    for _ in range(TRUST):
        noisy.observe(5, STEP * 1.52)
    assert noisy.steps(5) == pytest.approx(1.52)


def test_the_first_step_of_a_slow_minute_does_not_make_batches_look_dear() -> None:
    """The level is a median over recent observations: one 3x-slow plain step among steady
    ones moves no batch estimate (the old model's first step fixed the unit for good)."""
    costs = steady_costs()
    before = [costs.batch(n) for n in (2, 5, 9)]
    costs.observe(1, 3 * STEP)
    assert [costs.batch(n) for n in (2, 5, 9)] == pytest.approx(before)


def test_the_prior_follows_the_bytes_per_parameter() -> None:
    from app.core.adaptive import prior_slope

    f16 = prior_slope(file_size=3_000_000_000, n_params=1_500_000_000)
    q4 = prior_slope(file_size=900_000_000, n_params=1_500_000_000)
    assert f16 == pytest.approx(0.13) and q4 > 3 * f16


# -- the floor --------------------------------------------------------------------------------
def _recent(rounds: int, proposed: int, accepted: int) -> Recent:
    recent = Recent()
    for _ in range(rounds):
        recent.add(proposed, accepted)
    return recent


def test_floor_follows_recent_acceptance() -> None:
    costs = steady_costs()
    assert floor_length(_recent(8, 4, 4), 4, costs, 0.02 * STEP) == 4
    assert floor_length(_recent(8, 4, 0), 4, costs) == 0  # acceptance 0: no floor
    assert floor_length(Recent(), 4, costs) == 0  # nothing judged yet
    # Acceptance just above the threshold still keeps a short draft where batches are cheap.
    rate = _recent(8, 4, 2).rate
    assert rate is not None and rate >= FLOOR_ACCEPTANCE
    assert floor_length(_recent(8, 4, 2), 4, costs) >= 1


def test_high_acceptance_floors_at_the_whole_fixed_k() -> None:
    """At 0.875 recent acceptance, chances taken as independent support a shorter draft than
    8 where each batch token costs 0.3 steps; a draft model's floor is the user's K then."""
    costs = GivenCosts(step=STEP, slope=0.3)
    recent = _recent(8, 8, 7)  # 7 of 8 accepted, the 8th judged: 56 of 64 = 0.875
    assert recent.rate == pytest.approx(0.875)
    independent = floor_length(recent, 8, costs, 0.1 * STEP)
    assert 0 < independent < 8
    assert floor_length(recent, 8, costs, 0.1 * STEP, high=HIGH_ACCEPTANCE) == 8
    # below the mark, the same as without it
    middling = _recent(8, 8, 3)  # 3 of 4 judged: 0.75
    assert floor_length(middling, 8, costs, 0.1 * STEP, high=HIGH_ACCEPTANCE) == \
        floor_length(middling, 8, costs, 0.1 * STEP)
    # and never a K that does not pay at that acceptance: each draft costs a whole step
    assert floor_length(recent, 8, costs, 1.0 * STEP, high=HIGH_ACCEPTANCE) < 8


# -- the draft model (tiny models, given costs and acceptance) ---------------------------------
@contextmanager
def drafter(model_path: Path, costs: CostModel, bands: list[list[float]] | None,
            p_min: float = 0.0) -> Iterator[DraftModel]:
    from app.core.llama_backend import LoadedModel, LoadOptions
    from app.core.sampling import SamplerSettings

    model = LoadedModel(model_path, LoadOptions(n_ctx=512, threads=1))
    try:
        yield DraftModel(model, SamplerSettings(0.0, 40, 1.0, 0.0), p_min, True, costs,
                         np.random.default_rng(0), bands)
    finally:
        model.close()


def rounds(d: DraftModel, prompt: list[int], n: int, accept: bool) -> list[int]:
    """``n`` rounds after ``prompt``: the target takes every draft (``accept``) or none; the
    draft lengths proposed."""
    d.prefill(prompt, threading.Event())
    history = list(prompt)
    sizes = []
    for _ in range(n):
        prop = d.propose(history, 8)
        sizes.append(len(prop.tokens))
        taken = len(prop.tokens) if accept else 0
        if prop.tokens:
            d.observe(prop, taken)
        history += [*prop.tokens[:taken], 7 + len(history) % 50]
    return sizes


def test_a_previous_run_where_drafting_did_not_pay_does_not_stop_this_one(
    tiny_draft: Path,
) -> None:
    """Earlier runs saw every draft rejected (500 times). This run's drafts are all
    accepted: its first round probes, and from then on it drafts every round."""
    rejected = [[0.0, 50.0] for _ in range(CONFIDENCE_BANDS)]
    costs = GivenCosts(step=STEP, slope=0.1, draft_step=0.005)
    with drafter(tiny_draft, costs, rejected) as d:
        sizes = rounds(d, list(range(5, 40)), 12, accept=True)
    assert sizes[0] == PROBE_LENGTH  # the early probe, by the fixed rule
    assert all(n > 0 for n in sizes), sizes
    assert rejected[0][1] > 50  # what it learned is kept for later runs


def test_a_first_round_drafts_the_whole_k_as_fixed_drafting_would(tiny_draft: Path) -> None:
    """Before this run's acceptance is known, a fresh pair (or one whose earlier drafts were
    mostly accepted) drafts the user's K by the fixed rule: a shorter first draft cost a
    whole round against fixed K."""
    costs = GivenCosts(step=STEP, slope=0.1, draft_step=0.005)
    with drafter(tiny_draft, costs, None) as d:
        assert rounds(d, list(range(5, 40)), 1, accept=True) == [8]
    accepted = [[45.0, 50.0] for _ in range(CONFIDENCE_BANDS)]
    with drafter(tiny_draft, costs, accepted) as d:
        assert rounds(d, list(range(5, 40)), 1, accept=True) == [8]
    # ... and by the fixed rule: a draft token below p-min ends it, as in fixed drafting
    with drafter(tiny_draft, costs, None, p_min=0.999) as d:
        assert rounds(d, list(range(5, 40)), 1, accept=True) == [1]


def test_early_rounds_draft_the_whole_k_until_the_first_rejection(tiny_draft: Path) -> None:
    """Until FLOOR_JUDGED drafts were judged, a run that has seen no rejection drafts the
    whole K, although its costs (a batch dear enough that 0.7 acceptance pays for about 2
    drafts) and a fresh pair's prior would plan short; a rejection ends that."""
    costs = GivenCosts(step=STEP, slope=0.3, draft_step=0.005)
    prompt = list(range(5, 40))
    for taken, expect_whole_k in ((3, True), (0, False)):
        with drafter(tiny_draft, costs, None) as d:
            d.prefill(prompt, threading.Event())
            first = d.propose(prompt, 3)  # a short first draft: 3 judged, under FLOOR_JUDGED
            assert len(first.tokens) == 3
            d.observe(first, taken)
            history = [*prompt, *first.tokens[:taken], 7]
            assert (len(d.propose(history, 8).tokens) == 8) is expect_whole_k


def test_high_acceptance_keeps_drafting_at_the_floor(tiny_draft: Path) -> None:
    """The pair's long-run acceptance says drafting hardly pays, but this run's drafts are
    accepted: the drafts stay at least as long as the fixed K that acceptance supports."""
    middling = [[15.0, 50.0] for _ in range(CONFIDENCE_BANDS)]
    costs = GivenCosts(step=STEP, slope=0.1, draft_step=0.005)
    with drafter(tiny_draft, costs, middling) as d:
        sizes = rounds(d, list(range(5, 40)), 10, accept=True)
        floor = floor_length(d.recent, 8, costs, costs.draft_step)
    assert floor >= 4
    assert min(sizes[2:]) >= floor, sizes


def test_a_run_of_rejections_stops_drafting_and_says_why(tiny_draft: Path) -> None:
    costs = GivenCosts(step=STEP, slope=0.1, draft_step=0.005)
    with drafter(tiny_draft, costs, None) as d:
        sizes = rounds(d, list(range(5, 40)), 3 * PROBE_EVERY, accept=False)
        notes = list(d.notes)
    assert sizes[0] > 0 and sizes[-PROBE_EVERY:].count(0) >= PROBE_EVERY - 1
    assert any("paused" in n for n in notes), notes


def test_a_draft_cut_to_nothing_rests_the_draft_model(tiny_draft: Path) -> None:
    """The plan says draft (a fresh pair is assumed to be accepted at 0.7), the drafted
    token's own chance (its confidence, below 0.2) says it does not pay: the next round
    does not run the draft model at all (it used to pay a sync and a draft step every
    round for nothing)."""
    from app.core.sampling import top_probability

    costs = GivenCosts(step=STEP, slope=0.3, draft_step=0.001)
    with drafter(tiny_draft, costs, None, p_min=0.75) as d:
        unsure = None
        for start in range(5, 200):  # a text after which the draft is unsure (greedy: fixed)
            history = list(range(start, start + 30))
            d.model.reset()
            if top_probability(d.model.eval(history, 1)[0])[1] < 0.2:
                unsure = history
                break
        assert unsure is not None
        d.reset()
        first = d.propose(unsure, 8)
        cached = list(d._cached)
        second = d.propose([*unsure, 9], 8)
        assert first.tokens == [] and second.tokens == []
        assert d._cached == cached  # the draft model did not run in the second round


# -- prompt lookup ------------------------------------------------------------------------------
def test_lookup_probes_when_the_costs_say_nothing_pays() -> None:
    """Batches measured (wrongly, say) at 3 steps each: the cut keeps nothing that fixed K
    would draft, round after round; a one-token probe comes after PROBE_EVERY rounds."""
    costs = CostModel()
    for _ in range(TRUST):
        for n in range(1, 10):
            costs.observe(n, STEP * (1 if n == 1 else 3.0))
    lookup = PromptLookup(1, 4, True, costs)
    history = [*range(10, 30), 99, *range(10, 14)] * 2
    sizes = [len(lookup.propose(history, 8).tokens) for _ in range(PROBE_EVERY)]
    assert sizes == [0] * (PROBE_EVERY - 1) + [1]


def test_lookup_keeps_the_fixed_drafts_while_acceptance_is_high() -> None:
    """A split vote (two earlier continuations of "1 2 3") is a doubtful draft on dear
    batches; while the run's drafts are being accepted, the drafts fixed K would make are
    kept (up to the length that acceptance supports)."""
    costs = steady_costs(slope=0.6)
    history = [1, 2, 3, 10, 11, 12, 13, 14, 50, 1, 2, 3, 20, 21, 22, 23, 24, 60, 1, 2, 3]
    cautious = PromptLookup(1, 4, True, costs).propose(history, 8).tokens
    trusted = PromptLookup(1, 4, True, costs)
    trusted.recent = _recent(8, 4, 4)
    kept = trusted.propose(history, 8).tokens
    fixed = PromptLookup(1, 4, False, costs).propose(history, 8).tokens
    assert len(kept) > len(cautious) and kept == fixed[: len(kept)]


# -- the run says why -------------------------------------------------------------------------
@pytest.fixture
def session() -> Iterator[Session]:
    s = Session()
    yield s
    s.close()


def test_a_run_that_cannot_pay_drafts_nothing_and_says_why(
    session: Session, tiny_dense: Path, tiny_draft: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    # A draft step dearer than a target step and batches of two at 1.6 steps.
    give_costs(session, GivenCosts(step=0.01, slope=0.6, draft_step=0.02))
    heard: list[Event] = []
    s = RunSettings(track="draft", max_tokens=8, ctx=512, threads=1)
    r = session.run(tiny_dense, tiny_draft, PROMPT, s, heard.append)
    assert r.n_drafted == 0
    assert r.notes and "cannot pay" in r.notes[0]
    assert [e.text for e in heard if isinstance(e, NoteEvent)] == r.notes
    assert not any(isinstance(e, NoteEvent) for e in r.events)  # history keeps the text only
    assert json.loads(json.dumps(r.to_dict()))["notes"] == r.notes
    from app.core.serialization import result_from_dict

    assert result_from_dict(r.to_dict()) == r
    from app.cli_output import print_result

    print_result(r, streamed=False)
    assert "cannot pay" in capsys.readouterr().err


def test_lookup_that_drafted_nothing_says_why() -> None:
    never = PromptLookup(1, 4, True, steady_costs())
    never.propose(list(range(100, 140)), 8)  # nothing repeats: no match
    never.finish(list(range(100, 140)), 30)
    assert len(never.notes) == 1 and "no n-gram" in never.notes[0]
    dear = CostModel()
    for _ in range(TRUST):
        for n in range(1, 10):
            dear.observe(n, STEP * (1 if n == 1 else 3.0))
    cut = PromptLookup(1, 4, True, dear)
    guess = [1, 2, 9, 1, 3, 8, 1, 4, 7, 1]  # split votes: doubtful drafts
    assert cut.propose(guess, 4).tokens == []
    cut.finish(guess, 5)
    assert len(cut.notes) == 1 and "none likely enough" in cut.notes[0]


# -- repeated comparisons ----------------------------------------------------------------------
def test_compare_repeats_interleave_and_report_medians(
    session: Session, tiny_dense: Path, tiny_draft: Path
) -> None:
    order: list[str] = []

    def listen(track: str) -> None:
        order.append(track)  # asked for a listener before each run: the runs' order

    s = RunSettings(max_tokens=8, ctx=512, threads=1, draft_max=4, adaptive=False)
    c = compare(session, tiny_dense, tiny_draft, PROMPT, ["lookup", "draft"], s,
                on_event=listen, repeats=3)
    assert order == ["baseline", "lookup", "draft"] * 3
    assert c.repeats == 3 and [r.result.track for r in c.runs] == ["baseline", "lookup", "draft"]
    for run in c.runs:
        reps = run.repeats
        assert reps is not None and len(reps.tokens_per_second) == 3 and len(reps.speedups) == 3
        assert run.result.tokens_per_second in reps.tokens_per_second  # one of its runs
        assert run.speedup == pytest.approx(statistics.median(reps.speedups))
        d = run.to_dict(with_events=False)["repeats"]
        assert d["n"] == 3 and d["speedup"]["min"] <= d["speedup"]["median"] <= d["speedup"]["max"]
    assert c.runs[0].speedup == 1.0
    assert c.to_dict(with_events=False)["repeats"] == 3


def test_each_repeat_starts_from_what_the_sources_knew_before(
    session: Session, tiny_dense: Path
) -> None:
    """A suffix drafter keeps the answers of earlier runs: without a fresh start each repeat
    would copy the repeat before."""
    s = RunSettings(max_tokens=8, ctx=512, threads=1, adaptive=False)
    compare(session, tiny_dense, None, PROMPT, ["suffix"], s, repeats=3)
    kept = next(iter(session.memory["suffix"].values()))
    assert len(kept.answers) == 1


def cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "app", *map(str, args)], capture_output=True,
                          text=True, timeout=300, env=dict(os.environ))


def test_cli_compare_repeats(tiny_dense: Path) -> None:
    common = ("compare", "--model", tiny_dense, "--tracks", "lookup", "--prompt", PROMPT,
              "--max-tokens", "6", "--threads", "1", "--fixed", "--no-save")
    proc = cli(*common, "--repeats", "2")
    assert proc.returncode == 0, proc.stderr
    assert "2 interleaved repeats" in proc.stdout
    proc = cli(*common, "--repeats", "2", "--json", "--no-events")
    data = json.loads(proc.stdout)
    assert data["repeats"] == 2 and data["runs"][1]["repeats"]["n"] == 2
    refused = cli(*common, "--repeats", "0")
    assert refused.returncode == 2 and "repeats" in refused.stderr


def test_results_without_notes_still_load() -> None:
    """Older history records have no ``notes``: they load with none."""
    from app.core.serialization import result_from_dict

    r = RunResult("baseline", "x", "eos", 1, 1, 0, 0, 0, 0.1, 0.1, 0.0, 0.1, {}, {})
    d = r.to_dict()
    del d["notes"]
    assert result_from_dict(d).notes == []

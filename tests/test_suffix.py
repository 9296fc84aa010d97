"""Suffix drafting: the suffix trie against a naive reference, the drafting rules on
hand-made token lists, the answers kept across runs, and losslessness in the engine."""

from __future__ import annotations

import random
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from given_costs import GivenCosts

from app.core.adaptive import CostModel
from app.core.compare import NEAR_TIE, first_difference
from app.core.drafting.registry import BuildContext, get_source, register, unregister
from app.core.drafting.suffix import (
    SOURCE,
    AnswerHistory,
    SuffixDrafter,
    SuffixIndex,
    build,
)
from app.core.engine import Generation
from app.core.events import RoundEvent, RunResult, RunSettings, TokenEvent
from app.core.llama_backend import LoadedModel, LoadOptions
from app.core.session import render_prompt

PASSAGE = list(range(10, 40))


def drafter(depth: int = 32, factor: float = 2.0, min_prob: float = 0.1,
            answers: AnswerHistory | None = None) -> SuffixDrafter:
    return SuffixDrafter(depth, factor, min_prob, False, CostModel(), answers)


# -- a naive reference: count by scanning, the same drafting rules ---------------------------
def followers(seqs: list[list[int]], path: list[int], depth: int) -> dict[int, int]:
    """What followed each occurrence of ``path`` (in order of first reaching each count)."""
    if len(path) >= depth:
        return {}
    counts: dict[int, int] = {}
    best: list[int] = []  # tokens in the order the trie prefers on ties: first to a count
    n = len(path)
    for seq in seqs:
        for end in range(n, len(seq)):
            if seq[end - n : end] == path:
                t = seq[end]
                counts[t] = counts.get(t, 0) + 1
                if not best or counts[t] > counts[best[0]]:
                    best[:] = [t]
    return {best[0]: counts[best[0]], -1: sum(counts.values())} if best else {}


def reference(seqs: list[list[int]], text: list[int], depth: int, factor: float,
              min_prob: float, limit: int) -> tuple[list[int], float]:
    matched = 0
    for length in range(min(len(text), depth - 1), 0, -1):
        if followers(seqs, text[len(text) - length :], depth):
            matched = length
            break
    if not matched:
        return [], 0.0
    path, draft, score, expected = text[len(text) - matched :], [], 1.0, 0.0
    max_spec = max(1, -(-factor * matched // 1))
    while len(draft) < limit:
        if len(path) >= depth:
            path = (text + draft)[-(depth // 2) :]
        f = followers(seqs, path, depth)
        if not f:
            break
        token = next(t for t in f if t != -1)
        share = f[token] / f[-1]
        if len(draft) >= max_spec or score * share < min_prob:
            break
        score *= share
        expected += score
        draft.append(token)
        path = [*path, token]
    return draft, expected


@pytest.mark.parametrize("seed", range(60))
def test_proposals_match_the_naive_reference(seed: int) -> None:
    rng = random.Random(seed)
    vocab = rng.choice([2, 3, 5, 12])
    depth = rng.choice([2, 3, 4, 6, 32])
    factor, min_prob = rng.choice([0.5, 1.0, 2.0, 4.0]), rng.choice([0.0, 0.1, 0.4])
    history = [rng.randrange(vocab) for _ in range(rng.randrange(2, 80))]
    d = drafter(depth, factor, min_prob)
    # Grow the text in steps, as generation does: the incremental index is exercised.
    for cut in sorted({len(history) // 3, len(history) // 2, len(history) - 1, len(history)}):
        if cut < 1:
            continue
        text = history[:cut]
        limit = rng.randrange(1, 12)
        want, _ = reference([text], text, depth, factor, min_prob, limit)
        assert d.propose(text, limit).tokens == want, (text, limit)
        # The run's trie knows its longest match; the generic search finds the same.
        a, b = d.index.match(), d.index.longest_match(text)
        assert (a and a[2]) == (b and b[2])


@pytest.mark.parametrize("seed", range(20))
def test_earlier_answers_match_the_naive_reference(seed: int) -> None:
    rng = random.Random(100 + seed)
    vocab, depth = rng.choice([3, 6]), rng.choice([3, 5, 32])
    answers = [[rng.randrange(vocab) for _ in range(rng.randrange(1, 30))] for _ in range(3)]
    kept = AnswerHistory()
    for a in answers:
        kept.add(a, depth)
    glob = kept.index(depth)
    text = [rng.randrange(vocab) for _ in range(rng.randrange(1, 20))]
    found = glob.longest_match(text)
    d = SuffixDrafter(depth, 2.0, 0.1, False, CostModel())
    want, _ = reference(answers, text, depth, 2.0, 0.1, 8)
    got = d._walk(glob, found, text, 8, 1) if found else None
    assert (got.tokens if got else []) == want


def test_a_repeated_passage_is_proposed() -> None:
    d = drafter()
    prop = d.propose([*PASSAGE, 99, *PASSAGE[:5]], 8)
    assert prop.tokens == PASSAGE[5:13]
    assert prop.q == [None] * 8 and prop.source == SOURCE.id and prop.drafter is d
    assert prop.seconds >= 0.0
    assert d.propose([*PASSAGE, 99, *PASSAGE[:5]], 3).tokens == PASSAGE[5:8]  # the limit
    assert drafter().propose(list(range(100, 140)), 8).tokens == []  # nothing repeats


def test_the_longest_match_wins_over_a_more_frequent_short_one() -> None:
    # "7" was followed by 2 twice and by 1 once, but "5 6 7" only by 1.
    history = [5, 6, 7, 1, 8, 7, 2, 8, 7, 2, 4, 5, 6, 7]
    assert drafter().propose(history, 1).tokens == [1]


def test_the_most_frequent_continuation_is_drafted() -> None:
    # "1" was followed by 2 once and by 3 twice; "9 1" etc. never occurred before.
    history = [1, 2, 9, 1, 3, 8, 1, 3, 7, 1]
    assert drafter().propose(history, 1).tokens == [3]
    # Threshold: 3 has a share of 2/3, then "1 3" was followed by 8 once and 7 once (1/2):
    # score 1/3 passes 0.3 but not 0.4.
    assert drafter(min_prob=0.3).propose(history, 4).tokens == [3, 8]
    assert drafter(min_prob=0.4).propose(history, 4).tokens == [3]
    assert drafter(min_prob=0.7).propose(history, 4).tokens == []


@pytest.mark.parametrize(("factor", "length"), [(0.5, 1), (1.0, 1), (2.0, 2), (4.0, 4)])
def test_the_draft_is_at_most_factor_times_the_match(factor: float, length: int) -> None:
    history = [*PASSAGE, 99, PASSAGE[0]]  # a one-token match
    assert drafter(factor=factor).propose(history, 8).tokens == PASSAGE[1 : 1 + length]
    # A longer minimum than the factor allows is honoured when the tokens are likely.
    assert drafter(factor=factor).propose(history, 8, 3).tokens == PASSAGE[1 : 1 + max(3, length)]


def test_the_walk_goes_on_past_the_trie_depth() -> None:
    # Copying a passage twice as long as the trie is deep: the match is depth - 1 tokens,
    # and the draft re-matches on a shorter context instead of stopping at the depth.
    passage = list(range(100, 140))
    history = [*passage, 7, *passage[:20]]
    assert drafter(depth=8).propose(history, 12).tokens == passage[20:32]


def test_history_growing_in_steps_gives_the_proposals_of_a_fresh_index() -> None:
    rng = random.Random(5)
    history = [rng.randrange(6) for _ in range(300)]
    grown = drafter()
    for cut in range(1, len(history), 7):
        assert grown.propose(history[:cut], 6).tokens == drafter().propose(history[:cut], 6).tokens
    # A history that shrinks or changes is indexed afresh.
    other = [*history[:100], 5, 5, 5, 4]
    assert grown.propose(other, 6).tokens == drafter().propose(other, 6).tokens
    assert grown.propose(history[:50], 6).tokens == drafter().propose(history[:50], 6).tokens


def test_prefill_indexes_the_prompt_and_stops_when_cancelled() -> None:
    prompt = [*PASSAGE, 99, *PASSAGE[:5]]
    d = drafter()
    d.prefill(prompt, threading.Event())
    assert d.index.seq == prompt
    assert d.propose(prompt, 8).tokens == PASSAGE[5:13]
    cancelled = threading.Event()
    cancelled.set()
    late = drafter()
    late.prefill(prompt, cancelled)
    assert late.index.seq == []
    assert late.propose(prompt, 8).tokens == PASSAGE[5:13]  # indexed in the first round


def test_earlier_answers_are_drafted_in_a_later_run() -> None:
    kept = AnswerHistory()
    answer = [50, 51, 52, 53, 54, 55, 56, 57, 58, 59]
    first = drafter(answers=kept)
    prompt = [1, 2, 3]
    assert first.propose([*prompt, *answer[:3]], 8).tokens == []  # nothing seen yet
    first.finish([*prompt, *answer], len(prompt))
    assert kept.answers == [answer]  # the answer only, not the prompt
    second = drafter(answers=kept)
    assert second.propose([4, 5, *answer[:3]], 8).tokens == answer[3:9]
    # Without the earlier answers (suffix_history off) nothing is drafted.
    assert drafter().propose([4, 5, *answer[:3]], 8).tokens == []


def test_the_candidate_with_more_expected_tokens_wins() -> None:
    kept = AnswerHistory()
    kept.add([70, 71, 72, 73, 74, 75], 32)
    # The run's own text saw "70" followed by 80 once and by 81 once (expected accepted
    # 1/2 + 1/2); the earlier answer continues "70" with certainty (1 + 1).
    history = [70, 80, 5, 70, 81, 6, 70]
    assert drafter(answers=kept).propose(history, 2).tokens == [71, 72]
    assert drafter().propose(history, 2).tokens == [80, 5]


def test_earlier_answers_are_bounded() -> None:
    kept = AnswerHistory(max_nodes=300)
    answers = [list(range(1000 + 100 * i, 1040 + 100 * i)) for i in range(30)]
    for a in answers:
        kept.add(a, 32)
        assert kept.index(32).nodes <= 300
    assert kept.answers[-1] == answers[-1] and len(kept.answers) < len(answers)
    newest, oldest = answers[-1], answers[0]
    assert drafter(answers=kept).propose([1, *newest[:4]], 8).tokens == newest[4:12]
    assert drafter(answers=kept).propose([1, *oldest[:4]], 8).tokens == []
    # The trie of the kept answers is the one a fresh history builds from them.
    fresh = AnswerHistory()
    for a in kept.answers:
        fresh.add(a, 32)
    assert fresh.index(32).nodes == kept.index(32).nodes


def test_the_trie_stays_small_on_text_that_does_not_repeat() -> None:
    index = SuffixIndex(32)
    index.extend(range(5000))
    assert index.nodes == 5001  # one lazy node per token, not depth of them


# -- adaptive drafting, from given costs --------------------------------------------------
def adaptive(costs: CostModel) -> SuffixDrafter:
    return SuffixDrafter(32, 4.0, 0.0, True, costs)


def test_adaptive_cuts_where_batches_stop_paying() -> None:
    history = [*PASSAGE, 99, *PASSAGE[:12]]  # copying a passage, 12 tokens in
    cheap = adaptive(GivenCosts(slope=0.05)).propose(history, 16).tokens
    assert cheap == PASSAGE[12 : 12 + len(cheap)] and len(cheap) >= 8
    dear = adaptive(GivenCosts(slope=0.4)).propose(history, 16).tokens
    assert dear == cheap[: len(dear)] and 0 < len(dear) < len(cheap)
    # Two tokens into the copy the chances are lower: a shorter draft for the same costs.
    early = adaptive(GivenCosts(slope=0.05)).propose([*PASSAGE, 99, *PASSAGE[:2]], 16).tokens
    assert early == PASSAGE[2 : 2 + len(early)] and 0 < len(early) < len(cheap)
    # A guess from one earlier token with a split vote: not worth a batch that costs 1.6 steps.
    guess = [1, 2, 9, 1, 3, 8, 1, 4, 7, 1]
    assert drafter(min_prob=0.0).propose(guess, 4).tokens  # fixed drafting would draft it
    assert adaptive(GivenCosts(slope=0.6)).propose(guess, 4).tokens == []


def test_adaptive_learns_from_rejections() -> None:
    costs = GivenCosts(slope=0.1)
    d = adaptive(costs)
    history = [*range(10, 30), 99, 10, 11, 12, 13]
    assert d.propose(history, 8).tokens
    for _ in range(40):  # the target never agrees with these drafts
        prop = d.propose(history, 8)
        if not prop.tokens:
            break
        d.observe(prop, 0)
    assert d.propose(history, 8).tokens == []
    assert costs.ignored == 0  # nothing measured: decided from the given costs


def test_the_tokens_a_cut_left_out_are_judged_in_hindsight() -> None:
    """The cut kept part of a copy; the text the target wrote next teaches the chances of
    the rest as if they had been drafted (accepted up to and including the first miss)."""
    d = adaptive(GivenCosts(slope=0.4))
    history = [*PASSAGE, 99, *PASSAGE[:12]]
    prop = d.propose(history, 16)
    kept = len(prop.tokens)
    assert 0 < kept < 16
    d.observe(prop, kept)  # all accepted: the left-out tokens are judged next round
    before = sum(cell[1] for cell in d.stats.counts.values())
    assert before == kept
    written = [*history, *PASSAGE[12 : 12 + kept + 2], 12345]  # 2 more right, then a miss
    d.propose(written, 16)
    counts = d.stats.counts.values()
    assert sum(cell[1] for cell in counts) == before + 3
    assert sum(cell[0] for cell in counts) == kept + 2


# -- the registry entry ---------------------------------------------------------------------
@pytest.fixture
def registered() -> Iterator[None]:
    """The source in the registry (``RunSettings.option`` reads defaults from it)."""
    known = get_source(SOURCE.id) is not None
    if not known:
        register(SOURCE)
    yield
    if not known:
        unregister(SOURCE.id)


def test_source_entry_and_build(registered: None) -> None:
    assert SOURCE.cost == "free" and not SOURCE.needs_draft_model
    assert SOURCE.plot_colour.lower() not in ("#1f77b4", "#2ca02c", "#9467bd", "#3a4250")
    for s in SOURCE.settings:
        assert s.name.startswith(SOURCE.id + "_") and s.problem(s.default) is None
    memory: dict[Any, Any] = {}

    def ctx(s: RunSettings, path: str = "/models/a.gguf") -> BuildContext:
        return BuildContext(s, SimpleNamespace(path=path), None, CostModel(), memory)

    one = build(ctx(RunSettings(adaptive=False)))
    assert isinstance(one, SuffixDrafter) and one.answers is memory["/models/a.gguf"]
    assert (one.depth, one.factor, one.min_prob, one.adaptive) == (32, 2.0, 0.1, False)
    assert build(ctx(RunSettings())).answers is one.answers  # kept across runs of the target
    assert build(ctx(RunSettings(), "/models/b.gguf")).answers is not one.answers
    off = build(ctx(RunSettings(options={"suffix_history": False, "suffix_max_depth": 8})))
    assert off.answers is None and off.adaptive and off.index.depth == 8


def test_reading_the_module_loads_no_model_code() -> None:
    code = ("import sys, app.core.drafting.suffix\n"
            "sys.exit(1 if 'llama_cpp' in sys.modules else 0)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


# -- the engine -----------------------------------------------------------------------------
PROMPT = (
    "def add(a, b):\n    return a + b\n\ndef add(a, b):\n    return a + b\n\n"
    "The quick brown fox jumps over the lazy dog. The quick brown fox"
)


@pytest.fixture
def tiny(tiny_dense: Path) -> Iterator[LoadedModel]:
    model = LoadedModel(tiny_dense, LoadOptions(n_ctx=1024, threads=1))
    yield model
    model.close()


def margin(model: LoadedModel, ids: list[int], answer: list[int], position: int) -> float:
    """The baseline's top-2 logit margin where two answers part (one batch)."""
    model.reset()
    row = np.array(model.eval(ids + answer[:position], 1)[0], dtype=np.float64)
    top2 = np.partition(row, -2)[-2:]
    return float(abs(top2[1] - top2[0]))


def assert_lossless(model: LoadedModel, ids: list[int], base: RunResult, other: RunResult) -> None:
    # Batched verification and single steps use different kernels: a near-tie may part them.
    diff = first_difference(base.token_ids, other.token_ids)
    if diff is not None:
        assert margin(model, ids, base.token_ids, diff) < NEAR_TIE, f"differs at {diff}"


def check_rounds(r: RunResult) -> None:
    rounds = [e for e in r.events if isinstance(e, RoundEvent)]
    assert all(0 <= x.accepted <= x.proposed for x in rounds)
    assert sum(x.proposed for x in rounds) == r.n_drafted
    accepted = [e for e in r.events if isinstance(e, TokenEvent) and e.origin == "accepted"]
    assert len(accepted) == r.n_accepted and all(e.source == SOURCE.id for e in accepted)


def test_greedy_suffix_drafting_equals_the_baseline(tiny: LoadedModel) -> None:
    ids = tiny.tokenize(PROMPT, add_bos=tiny.info.add_bos)
    s = RunSettings(track="baseline", max_tokens=48, ctx=1024, threads=1, draft_max=6,
                    adaptive=False)
    base = Generation(tiny, [], ids, s).run()
    kept = AnswerHistory()
    first = Generation(tiny, [drafter(answers=kept)], ids, replace(s, track=SOURCE.id)).run()
    check_rounds(first)
    # The prompt repeats itself (the random tiny model's answer hardly does): drafts are
    # proposed, and mostly rejected.
    assert first.n_drafted > 0
    assert_lossless(tiny, ids, base, first)
    # The engine handed the answer on (``finish``): on the same prompt again, the first
    # answer is an earlier answer to copy from.
    assert kept.answers == [first.token_ids]
    second = Generation(tiny, [drafter(answers=kept)], ids, replace(s, track=SOURCE.id)).run()
    check_rounds(second)
    assert second.n_accepted > first.n_accepted
    assert second.n_accepted >= second.n_generated // 2
    assert_lossless(tiny, ids, base, second)


@pytest.mark.integration
def test_smollm2_greedy_suffix_drafting_is_lossless(smollm2_path: Path) -> None:
    model = LoadedModel(smollm2_path, LoadOptions(n_ctx=2048, threads=1))
    try:
        text = ("List the planets in order: Mercury, Venus, Earth, Mars, Jupiter, Saturn, "
                "Uranus, Neptune. Now list them again.")
        ids = render_prompt(model, text, True, None)
        s = RunSettings(track="baseline", max_tokens=96, ctx=2048, threads=1, chat=True,
                        adaptive=False)
        base = Generation(model, [], ids, s).run()
        kept = AnswerHistory()
        for _ in range(2):  # the second run also copies from the first one's answer
            run = Generation(model, [drafter(answers=kept)], ids, replace(s, track=SOURCE.id)).run()
            check_rounds(run)
            assert run.n_accepted > 0
            assert_lossless(model, ids, base, run)
    finally:
        model.close()

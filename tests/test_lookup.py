"""Track 8's drafter: fixed K votes as llama-lookup does; adaptive K learns and cuts."""

from __future__ import annotations

import random

import pytest

from app.core.adaptive import CostModel
from app.core.drafting.lookup import LookupStats, PromptLookup, prior_chance

# llama.cpp common/ngram-cache.cpp, "lax" thresholds indexed by n - 1.
MIN_SAMPLES = (2, 2, 1, 1)
MIN_PERCENT = (66, 50, 50, 50)


def reference_draft(history: list[int], k: int) -> list[int]:
    """An independent transcription of common_ngram_cache_draft (context cache only,
    n-grams 1..4), written from its description: count every n-gram's followers, then
    draft while the longest n-gram with a clear majority names a token."""
    counts: dict[tuple[int, ...], dict[int, int]] = {}
    for end in range(1, len(history)):
        for n in range(1, min(4, end) + 1):
            followers = counts.setdefault(tuple(history[end - n : end]), {})
            followers[history[end]] = followers.get(history[end], 0) + 1
    draft: list[int] = []
    while len(draft) < k:
        text = history + draft
        token = None
        for n in range(4, 0, -1):
            followers = counts.get(tuple(text[-n:]))
            if not followers:
                continue
            total = sum(followers.values())
            best, count = max(followers.items(), key=lambda kv: kv[1])
            if total < MIN_SAMPLES[n - 1] or 100 * count < MIN_PERCENT[n - 1] * total:
                continue
            token = best
            break
        if token is None:
            break
        draft.append(token)
    return draft


def test_fixed_k_hand_computed() -> None:
    lookup = PromptLookup(1, 4, adaptive=False, costs=CostModel())
    # (2, 3, 1, 2) was followed by 3, then (3, 1, 2, 3) by 1, then (1, 2, 3, 1) by 2.
    assert lookup.propose([1, 2, 3, 1, 2, 3, 1, 2], 3).tokens == [3, 1, 2]
    # One earlier "5" followed by 7 and one by 8: no 66% majority for a 1-gram, no draft.
    split = PromptLookup(1, 4, adaptive=False, costs=CostModel())
    assert split.propose([5, 7, 5, 8, 5], 3).tokens == []


@pytest.mark.parametrize("seed", range(40))
def test_fixed_k_matches_llama_lookup(seed: int) -> None:
    rng = random.Random(seed)
    vocab = rng.choice([3, 5, 8])
    history = [rng.randrange(vocab) for _ in range(rng.randrange(2, 60))]
    lookup = PromptLookup(1, 4, adaptive=False, costs=CostModel())
    # Grow the text in steps, as generation does, so the incremental index is exercised.
    for cut in sorted({len(history) // 3, len(history) // 2, len(history)}):
        if cut >= 1:
            k = rng.randrange(1, 9)
            assert lookup.propose(history[:cut], k).tokens == reference_draft(history[:cut], k)


def test_adaptive_drafts_nothing_without_a_match() -> None:
    lookup = PromptLookup(1, 4, adaptive=True, costs=CostModel())
    assert lookup.propose(list(range(100, 140)), 8).tokens == []


def test_adaptive_copies_a_long_agreeing_passage_further() -> None:
    costs = CostModel()
    for n, seconds in ((1, 0.10), (2, 0.11), (5, 0.14), (9, 0.18), (17, 0.26)):
        costs.observe(n, seconds)
    passage = list(range(10, 40))
    lookup = PromptLookup(1, 4, adaptive=True, costs=costs)
    # The text is copying the passage and is 12 tokens into it: draft far ahead.
    long_run = lookup.propose([*passage, 99, *passage[:12]], 16).tokens
    assert long_run == passage[12 : 12 + len(long_run)] and len(long_run) >= 6
    # Only the last token matches: a short, cautious draft, if any.
    lookup2 = PromptLookup(1, 4, adaptive=True, costs=costs)
    short = lookup2.propose([*passage, 99, 7, 8, passage[12]], 16).tokens
    assert len(short) < len(long_run)


def test_adaptive_learns_from_rejections() -> None:
    costs = CostModel()
    for n, seconds in ((1, 0.10), (2, 0.11), (5, 0.14), (9, 0.18)):
        costs.observe(n, seconds)
    stats = LookupStats()
    history = [*range(10, 30), 99, 10, 11, 12, 13]
    first = PromptLookup(1, 4, adaptive=True, costs=costs, stats=stats).propose(history, 8)
    assert first.tokens
    for _ in range(30):  # the target never agrees with these drafts
        lookup = PromptLookup(1, 4, adaptive=True, costs=costs, stats=stats)
        prop = lookup.propose(history, 8)
        if not prop.tokens:
            break
        lookup.observe(prop, 0)
    assert PromptLookup(1, 4, True, costs, stats).propose(history, 8).tokens == []


def test_prior_rises_with_agreement_and_falls_with_a_split_vote() -> None:
    assert prior_chance(1, 1.0) < prior_chance(4, 1.0) < prior_chance(16, 1.0) < 1.0
    assert prior_chance(8, 0.5) < prior_chance(8, 1.0)


def costly_batches() -> CostModel:
    """A target where a batch of 2 costs 1.6 steps (the F16 target here, some minutes)."""
    costs = CostModel()
    for n, seconds in ((1, 0.100), (2, 0.160), (3, 0.185), (5, 0.210), (9, 0.300)):
        costs.observe(n, seconds)
    return costs


def test_left_out_votes_are_learned_in_hindsight() -> None:
    """A vote the cut left out is judged against the text written after it: a kind of vote
    that looked too unlikely to draft is drafted once it has been right often enough."""
    costs = costly_batches()
    stats = LookupStats()
    lookup = PromptLookup(1, 4, adaptive=True, costs=costs, stats=stats)
    # "7" was once followed by 8: a one-token match, a coin toss by the prior.
    text = [1, 7, 8, 2, 3, 4, 5, 6, 9, 10, 11, 12, 7]
    assert lookup.propose(text, 4).tokens == []
    assert stats.counts == {}
    judged = 0
    for _ in range(12):  # the target keeps writing 8 after 7: the votes were right
        text = [*text, 8, 2, 7]
        prop = lookup.propose(text, 4)
        judged = sum(cell[1] for cell in stats.counts.values())
        if prop.tokens:
            break
    assert prop.tokens[:1] == [8]
    assert judged > 0
    # Every first vote (8 after 7) was right; later ones were judged up to a miss each.
    firsts = [cell for key, cell in stats.counts.items() if not key[2]]
    assert firsts and all(accepted == seen for accepted, seen in firsts)


def test_nothing_is_learned_past_a_rejected_draft() -> None:
    costs = CostModel()
    for n, seconds in ((1, 0.10), (2, 0.11), (5, 0.14), (9, 0.18)):
        costs.observe(n, seconds)
    stats = LookupStats()
    lookup = PromptLookup(1, 4, adaptive=True, costs=costs, stats=stats)
    passage = list(range(20, 40))
    history = [*passage, 99, *passage[:6]]
    prop = lookup.propose(history, 2)  # the limit cuts a longer copy: more votes left out
    assert prop.tokens == passage[6:8]
    lookup.observe(prop, 0)  # the first draft was wrong
    before = {k: list(v) for k, v in stats.counts.items()}
    assert sum(v[1] for v in before.values()) == 1  # one judged: the rejected first draft
    lookup.propose([*history, 1234], 2)
    assert {k: list(v) for k, v in stats.counts.items()} == before


def test_a_draft_must_beat_a_plain_step_by_a_margin() -> None:
    """A draft whose planned rate beats a plain step by less than ROUND_MARGIN of a step is
    not taken (the best of noisy estimates is biased up); a clearly paying one is."""
    from app.core.drafting import lookup as module

    costs = costly_batches()
    # A chance at which a draft of one pays 3 % over a plain step: inside the margin.
    stats = LookupStats()
    drafter = PromptLookup(1, 4, adaptive=True, costs=costs, stats=stats)
    margin_free = module.best_length([0.65], costs, 0.0, 1, optimistic=True)
    with_margin = module.best_length([0.65], costs, 0.0, 1,
                                     module.ROUND_MARGIN * costs.batch(1), optimistic=True)
    assert margin_free == 1 and with_margin == 0
    assert drafter._adaptive_cut([0.65], lax=1, limit=1, min_length=1) == 0
    assert drafter._adaptive_cut([0.9], lax=1, limit=1, min_length=1) == 1

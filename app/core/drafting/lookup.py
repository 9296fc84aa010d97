"""Track 8, prompt lookup: drafts voted from the continuations of n-grams seen so far.

Every n-gram (n from ngram-min to ngram-max) of the prompt and the answer so far counts the
tokens that followed it. A draft is built token by token: the longest n-gram ending the
text (drafts included) that has been seen votes for its most frequent continuation.

- Fixed K reproduces llama.cpp's ``llama-lookup`` (common_ngram_cache_draft with empty
  static and dynamic caches): a vote counts only with enough samples and a clear majority
  (the "lax" thresholds below), and drafting stops at the first token without one.
- Adaptive drafting takes every vote but weighs it: each token's chance of acceptance is
  learned per (agreeing-context length, vote share, first or later token), starting from a
  prior that rises with the length of the context the text shares with the earlier
  occurrence, and the draft is cut where the expected tokens per second peak for the
  measured batch costs. A long agreeing context means the answer is copying a passage;
  a bare one-token match is a guess that still pays when a batch of two costs little more
  than one step. Nothing is drafted when nothing matches. Decisions come from the cost
  model's optimistic view (a batch size measured too few times to trust costs its fastest
  timing, at most a little above what the other sizes and the prior say);
  while the run's recent acceptance is high, the votes fixed K would draft are kept up to
  the length that acceptance supports (``floor_length``); and when the cut keeps none of
  what fixed K would draft, round after round, one token is drafted anyway after 8, 16 ...
  such rounds, so that a wrong view of the costs cannot stop drafting for a whole run.
  A draft is taken only if it beats a plain step by ROUND_MARGIN of a step, and the votes
  the cut leaves out are learned from in hindsight, against the text written after them
  (votes are free, so a kind of vote never drafted still gets judged).
  ``notes`` says why a run drafted nothing.
"""

from __future__ import annotations

import bisect
import time
from dataclasses import dataclass, field

from app.core.adaptive import MAX_CHANCE, CostModel, Recent, best_length, floor_length
from app.core.drafting.base import Proposal

# llama.cpp's common/ngram-cache.cpp "lax" thresholds for n = 1, 2 (n >= 3: one sample, 50%).
LAX_MIN_SAMPLES = {1: 2, 2: 2}
LAX_MIN_SHARE = {1: 0.66}
DEFAULT_MIN_SHARE = 0.5
# Bounds of the agreeing-context lengths that acceptance is learned for.
AGREEMENT_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24)
MAX_CONTEXT = 32
MAX_SPOTS = 16  # recent occurrences kept per n-gram, to measure agreeing context
PRIOR_WEIGHT = 4.0  # pseudo-observations behind the prior of each learned chance
# Rounds whose fixed-K draft the adaptive cut removed before one token of it is drafted
# anyway; doubling after each such probe, up to MAX_PROBE_EVERY.
PROBE_EVERY = 8
MAX_PROBE_EVERY = 128
# A drafting round must beat a plain step by this share of a step: the chances and costs it
# is planned from are estimates, and the best of several noisy estimates is biased up (a
# draft planned to pay 2 % pays nothing on average). Replayed on 8 recorded answers
# (benchmarks/replay_lookup.py), 0.06-0.15 all lift the worst prompt from 0.97 to 0.99 of
# the best fixed K; none of them costs a prompt where drafting pays.
ROUND_MARGIN = 0.1

# A learned chance's features: (agreement band, vote-share band, later token, fixed K would
# draft it) here; the suffix drafter's own (app.core.drafting.suffix).
Key = tuple[int, ...]


def prior_chance(agreement: int, share: float) -> float:
    """Chance assumed before anything is learned: a one-token match is a coin toss at best,
    a long shared context is a copy in progress; a split vote discounts both."""
    return (1.0 - 0.6 / max(1, agreement) ** 0.5) * share**1.5


@dataclass
class LookupStats:
    """What adaptive lookup learned in a run: per feature key, [accepted, judged] tokens."""

    counts: dict[Key, list[float]] = field(default_factory=dict)

    def chance(self, key: Key, prior: float) -> float:
        accepted, judged = self.counts.get(key, (0.0, 0.0))
        return min(MAX_CHANCE, (accepted + PRIOR_WEIGHT * prior) / (judged + PRIOR_WEIGHT))

    def record(self, key: Key, accepted: bool) -> None:
        cell = self.counts.setdefault(key, [0.0, 0.0])
        cell[0] += 1.0 if accepted else 0.0
        cell[1] += 1.0


class Hindsight:
    """Judges the votes a cut left out against the text the target wrote after them.

    Votes cost nothing to make and the text is known a round later, so the chances of votes
    that were not drafted are learned as if they had been: each left-out token counts as
    accepted if it is the token written there, up to and including the first that is not
    (as the verifier judges drafts). Without this, a kind of vote that two early misses made
    look unlikely was never drafted again and never learned better: on an extraction prompt
    adaptive lookup skipped lax bigram votes that were right 4 times in 5
    (benchmarks/replay_lookup.py).
    """

    def __init__(self, stats: LookupStats) -> None:
        self.stats = stats
        # (text position of the draft, its tokens and keys before the cut, the first index
        # the verifier does not judge)
        self._pending: tuple[int, list[int], list[Key], int] | None = None

    def hold(self, start: int, tokens: list[int], keys: list[Key], drafted: int) -> None:
        """A draft of ``tokens`` at text position ``start`` of which ``drafted`` were kept."""
        self._pending = (start, list(tokens), list(keys), drafted) if drafted < len(
            tokens) else None

    def rejected(self) -> None:
        """A kept draft was rejected: what followed it says nothing of the rest."""
        self._pending = None

    def learn(self, history: list[int]) -> None:
        """Judge the held draft's left-out tokens against ``history`` (the text now)."""
        pending, self._pending = self._pending, None
        if pending is None:
            return
        start, tokens, keys, first = pending
        written = history[start:]
        for i in range(first, min(len(tokens), len(written))):
            hit = tokens[i] == written[i]
            self.stats.record(keys[i], hit)
            if not hit:
                return


@dataclass
class Vote:
    token: int
    agreement: int  # tokens of context shared with an earlier occurrence followed by token
    share: float  # the token's fraction of the votes
    lax: bool = True  # fixed K (llama.cpp's thresholds) would draft it too


def share_band(share: float) -> int:
    return 0 if share >= 0.999 else 1 if share >= 0.66 else 2 if share >= 0.5 else 3


class PromptLookup:
    """Drafts for Track 8; see the module docstring."""

    source = "lookup"

    def __init__(
        self,
        ngram_min: int,
        ngram_max: int,
        adaptive: bool,
        costs: CostModel,
        stats: LookupStats | None = None,
    ):
        self.ngram_min = max(1, ngram_min)
        self.ngram_max = max(self.ngram_min, ngram_max)
        self.adaptive = adaptive
        self.costs = costs
        self.stats = stats if stats is not None else LookupStats()
        self._votes: dict[tuple[int, ...], dict[int, int]] = {}
        self._spots: dict[tuple[int, ...], list[int]] = {}
        self._indexed = 0
        self._keys: list[Key] = []
        self.hindsight = Hindsight(self.stats)
        self.recent = Recent()
        self._starved = 0
        self._probe_every = PROBE_EVERY
        self._matched = self._drafted = 0
        self._best_chance = 0.0
        self.notes: list[str] = []

    def reset(self) -> None:
        self._votes.clear()
        self._spots.clear()
        self._indexed = 0

    def _extend_index(self, history: list[int]) -> None:
        for end in range(max(self._indexed, 1), len(history)):
            follower = history[end]
            for n in range(self.ngram_min, min(self.ngram_max, end) + 1):
                gram = tuple(history[end - n : end])
                votes = self._votes.setdefault(gram, {})
                votes[follower] = votes.get(follower, 0) + 1
                spots = self._spots.setdefault(gram, [])
                spots.append(end)
                if len(spots) > MAX_SPOTS:
                    del spots[0]
        self._indexed = max(self._indexed, len(history))

    @staticmethod
    def _context_length(text: list[int], start: int, n: int) -> int:
        """How many tokens before the matched n-gram also agree with the current text."""
        i, j, length = start - n - 1, len(text) - n - 1, 0
        while length < MAX_CONTEXT and i >= 0 and text[i] == text[j]:
            i, j, length = i - 1, j - 1, length + 1
        return length

    def _vote(self, text: list[int]) -> Vote | None:
        for n in range(min(self.ngram_max, len(text)), self.ngram_min - 1, -1):
            gram = tuple(text[-n:])
            votes = self._votes.get(gram)
            if not votes:
                continue
            total = sum(votes.values())
            token, count = max(votes.items(), key=lambda kv: kv[1])
            lax = (total >= LAX_MIN_SAMPLES.get(n, 1)
                   and count >= LAX_MIN_SHARE.get(n, DEFAULT_MIN_SHARE) * total)
            if not self.adaptive and not lax:
                continue  # llama.cpp falls back to a shorter n-gram
            if not self.adaptive:
                # Fixed K only needs the token: agreement weighs adaptive drafts.
                return Vote(token, n, count / total)
            context = max(
                (
                    self._context_length(text, p, n)
                    for p in self._spots.get(gram, ())
                    if p < len(text) and text[p] == token
                ),
                default=0,
            )
            return Vote(token, n + context, count / total, lax)
        return None

    def propose(self, history: list[int], limit: int, min_length: int = 1) -> Proposal:
        t0 = time.perf_counter()
        self.hindsight.learn(history)
        self._extend_index(history)
        prop = Proposal(self.source, drafter=self)
        text = list(history)
        keys: list[Key] = []
        chances: list[float] = []
        lax = 0  # leading drafts fixed K would draft
        while len(prop.tokens) < limit:
            vote = self._vote(text)
            if vote is None:
                break
            band = bisect.bisect_right(AGREEMENT_BUCKETS, vote.agreement)
            key = (band, share_band(vote.share), bool(prop.tokens), vote.lax)
            prop.tokens.append(vote.token)
            keys.append(key)
            chances.append(self.stats.chance(key, prior_chance(vote.agreement, vote.share)))
            text.append(vote.token)
            if vote.lax and lax == len(prop.tokens) - 1:
                lax += 1
        keep = len(prop.tokens)
        self._matched += keep > 0
        if self.adaptive and keep:
            keep = self._adaptive_cut(chances, lax, limit, min_length)
        if keep < min_length:
            keep = 0
        if self.adaptive:
            self.hindsight.hold(len(history), prop.tokens, keys, keep)
        prop.tokens = prop.tokens[:keep]
        prop.q = [None] * keep
        self._keys = keys[:keep]
        prop.seconds = time.perf_counter() - t0
        return prop

    def _adaptive_cut(self, chances: list[float], lax: int, limit: int, min_length: int) -> int:
        """How many of the drafts to keep: the most expected tokens per second, at least the
        floor's share of the fixed-K drafts, and a one-token probe now and then."""
        self._best_chance = max(self._best_chance, chances[0])
        margin = ROUND_MARGIN * self.costs.batch(1)
        keep = best_length(chances, self.costs, 0.0, min_length, margin, optimistic=True)
        floor = min(lax, floor_length(self.recent, limit, self.costs, 0.0, min_length))
        keep = max(keep, floor)
        if keep == 0 and lax >= min_length:
            self._starved += 1
            if self._starved >= self._probe_every:
                self._starved = 0
                self._probe_every = min(MAX_PROBE_EVERY, 2 * self._probe_every)
                keep = min_length
        return keep

    def observe(self, proposal: Proposal, accepted: int) -> None:
        # The accepted drafts and the first rejected one were judged; later ones were not.
        for i, key in enumerate(self._keys[: accepted + 1]):
            self.stats.record(key, i < accepted)
        self.recent.add(len(proposal.tokens), accepted)
        self._drafted += 1
        if accepted < len(proposal.tokens):
            self.hindsight.rejected()

    def finish(self, history: list[int], prompt_tokens: int) -> None:
        """Say why a run drafted nothing (``notes``)."""
        self.hindsight.learn(history)
        if self._drafted:
            return
        if not self._matched:
            strict = "" if self.adaptive else " with a clear enough vote for fixed drafting"
            self.notes.append("prompt lookup drafted nothing: no n-gram of the answer matched "
                              f"the prompt or the answer before it{strict}")
        elif self.adaptive:
            rounds = f"{self._matched} round{'s' if self._matched != 1 else ''}"
            self.notes.append(
                f"adaptive prompt lookup drafted nothing: {rounds} found a match, none likely "
                f"enough (best chance {self._best_chance:.2f}) to pay for a verify batch of 2 "
                f"at {self.costs.steps(2, True):.2f} steps")

"""Suffix drafting: SuffixDecoding (Oliaro et al. 2024), model-free drafts from suffix trees.

Two depth-limited suffix tries count every substring (up to ``suffix_max_depth`` tokens) and
what followed it: one over this run's text (prompt + answer so far, grown as tokens are
accepted), and, with ``suffix_history``, one over the earlier answers of the same target
model in this session (``AnswerHistory``, fed by ``finish``). Each round:

- match: the longest suffix of the text that occurred before and was followed by something
  (a longer such suffix implies every shorter one, so the global tree binary-searches the
  length; the run's own trie knows it already, see ``SuffixIndex.match``);
- draft: from there, follow the most frequent next token; its estimate is its share of what
  followed (count / sum of the counts), the draft's score the product of the estimates. Fixed
  drafting stops when the score would fall below ``suffix_min_prob`` or the draft reaches
  ``ceil(suffix_factor * matched length)`` (SuffixDecoding's adaptive length), or the limit.
  At the trie's depth the walk re-matches on the last ``depth // 2`` tokens and goes on.
- choose: the candidate of the two tries with more expected accepted tokens (the sum of the
  path-prefix scores, as SuffixDecoding scores a speculation), then the longer one.
- adaptive drafting also weighs each token's chance of acceptance (the estimate, calibrated
  by the acceptance observed in this run per context length and estimate band, as prompt
  lookup does) and cuts the draft where the expected tokens per second peak, if that beats
  a plain step by a margin; the tokens it cut are judged in hindsight against the text
  written after them (``lookup.Hindsight``), so calibration does not wait for drafts.

Drafts are deterministic (one-hot q): greedy output equals the baseline, and sampling stays
exact speculative sampling.
"""

from __future__ import annotations

import bisect
import math
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from app.core.adaptive import CostModel, best_length
from app.core.drafting.base import Proposal
from app.core.drafting.lookup import (
    AGREEMENT_BUCKETS,
    ROUND_MARGIN,
    Hindsight,
    Key,
    LookupStats,
    prior_chance,
    share_band,
)
from app.core.drafting.registry import BuildContext, DraftSource, Setting

# Memory bound of one target model's earlier answers: a node costs 130-280 bytes (measured
# with tracemalloc, its dict included) and a token adds about two on prose and code (up to
# six on text that copies itself a lot; never more than ``depth``): at most about 25 MB, some
# 20 000-50 000 answer tokens. Past it the oldest half of the answers is forgotten and the
# trie rebuilt (in ``finish``, outside any round).
MAX_HISTORY_NODES = 100_000
PREFILL_CHUNK = 1024  # prompt tokens indexed between checks of the cancel flag


class _Node:
    """A substring of the indexed sequences (the path from the root) occurring ``count``
    times; ``total`` of those occurrences are followed by a token (within the depth limit),
    ``best`` is the most frequent such child (first to reach its count on ties).

    A substring seen once is lazy (``children`` None): nothing below it is stored, its one
    occurrence continues with ``seq[ref]``, ``seq[ref + 1]``, ... (depth permitting). This
    keeps the trie about two nodes per token instead of ``depth``.
    """

    __slots__ = ("best", "children", "count", "depth", "ref", "seq", "token", "total")

    def __init__(self, token: int, depth: int, seq: list[int], ref: int) -> None:
        self.token = token
        self.count = 1
        self.total = 0
        self.depth = depth
        self.children: dict[int, _Node] | None = None
        self.best: _Node | None = None
        self.seq = seq
        self.ref = ref


# The shared children of realised nodes at the depth limit: they never get any.
_NO_CHILDREN: dict[int, _Node] = {}

# A position in the trie: a node, or ``k`` > 0 tokens down a lazy node's single occurrence.
Position = tuple[_Node, int]


class SuffixIndex:
    """A suffix trie of depth ``depth`` over token sequences, extended a token at a time.

    Appending a token costs O(u) with u <= depth the length of the longest suffix of the
    sequence that occurred before: only those suffixes (the active nodes) gain a child.
    """

    def __init__(self, depth: int) -> None:
        if depth < 2:
            raise ValueError("a suffix trie needs a depth of at least 2")
        self.depth = depth
        self.root = _Node(-1, 0, [], 0)
        self.root.count = 0
        self.root.children = {}
        self.nodes = 1
        self.seq: list[int] = []
        # The suffixes of ``seq`` shorter than ``depth`` that occurred before, by length.
        self._active: list[_Node] = [self.root]

    def begin(self) -> None:
        """Start a new sequence: no substring spans two sequences."""
        self.seq = []
        self._active = [self.root]

    def extend(self, tokens: Iterable[int]) -> None:
        """Append ``tokens`` to the current sequence and index them."""
        seq, limit, root = self.seq, self.depth, self.root
        for t in tokens:
            seq.append(t)
            end = len(seq)
            active = [root]
            for node in self._active:
                children = node.children
                assert children is not None  # active nodes occurred twice: not lazy
                child = children.get(t)
                node.total += 1
                if child is None:
                    child = children[t] = _Node(t, node.depth + 1, seq, end)
                    self.nodes += 1
                    if node.best is None:
                        node.best = child
                    continue  # seen once: lazy, not active
                child.count += 1
                best = node.best
                if best is None or child.count > best.count:
                    node.best = child
                if child.children is None:
                    self._realise(child)
                if child.depth < limit:
                    active.append(child)
            self._active = active

    def _realise(self, node: _Node) -> None:
        """A lazy node occurs a second time: store what followed its first occurrence (the
        new one's next token arrives later, through the active list)."""
        ref, seq = node.ref, node.seq
        if node.depth >= self.depth:
            node.children = _NO_CHILDREN
            return
        node.children = {}
        if ref < len(seq):
            child = node.children[seq[ref]] = _Node(seq[ref], node.depth + 1, seq, ref + 1)
            node.total, node.best = 1, child
            self.nodes += 1

    def match(self) -> tuple[_Node, int, int] | None:
        """The longest suffix of the current sequence that occurred before with a follower:
        (position, 0, its length), or None. Same as ``longest_match(self.seq)``, in O(1)."""
        if len(self._active) < 2:
            return None
        node = self._active[-1]
        return node, 0, node.depth

    def locate(self, tokens: Sequence[int]) -> Position | None:
        """Where the path ``tokens`` from the root is, or None if it never occurred."""
        node, k = self.root, 0
        for t in tokens:
            if k == 0 and node.children is not None:
                child = node.children.get(t)
                if child is None:
                    return None
                node = child
            else:
                pos = node.ref + k
                if node.depth + k >= self.depth or pos >= len(node.seq) or node.seq[pos] != t:
                    return None
                k += 1
        return node, k

    def follow(self, node: _Node, k: int) -> tuple[int, float, _Node, int] | None:
        """The most frequent token after a position, its share of the followers, and the
        position after it; None when nothing followed (or at the depth limit)."""
        if k == 0 and node.children is not None:
            best = node.best
            if best is None:
                return None
            return best.token, best.count / node.total, best, 0
        pos = node.ref + k
        if node.depth + k >= self.depth or pos >= len(node.seq):
            return None
        return node.seq[pos], 1.0, node, k + 1

    def longest_match(self, text: Sequence[int]) -> tuple[_Node, int, int] | None:
        """The longest suffix of ``text`` (shorter than the depth) found in the trie with a
        follower: (node, k, its length), or None. Binary search: a longer suffix with a
        follower implies every shorter one has one."""
        lo, hi = 0, min(len(text), self.depth - 1)
        found: Position | None = None
        while lo < hi:
            mid = (lo + hi + 1) // 2
            pos = self.locate(text[len(text) - mid :])
            if pos is not None and self.follow(*pos) is not None:
                lo, found = mid, pos
            else:
                hi = mid - 1
        return (found[0], found[1], lo) if found is not None else None


class AnswerHistory:
    """Earlier answers of one target model (SuffixDecoding's global tree), newest last.

    Bounded by ``max_nodes`` trie nodes: past it the oldest half of the answers (all of them
    if only one is left) is dropped and the trie rebuilt.
    """

    def __init__(self, max_nodes: int = MAX_HISTORY_NODES) -> None:
        self.max_nodes = max_nodes
        self.answers: list[list[int]] = []
        self._index: SuffixIndex | None = None

    def index(self, depth: int) -> SuffixIndex:
        """The trie of the kept answers at ``depth`` (rebuilt when the depth changed)."""
        if self._index is None or self._index.depth != depth:
            self._index = SuffixIndex(depth)
            for answer in self.answers:
                self._index.begin()
                self._index.extend(answer)
        return self._index

    def add(self, answer: Sequence[int], depth: int) -> None:
        if not answer:
            return
        index = self.index(depth)
        self.answers.append(list(answer))
        index.begin()
        index.extend(self.answers[-1])
        while index.nodes > self.max_nodes and self.answers:
            del self.answers[: max(1, len(self.answers) // 2)]
            self._index = None
            index = self.index(depth)


@dataclass
class _Candidate:
    tokens: list[int] = field(default_factory=list)
    shares: list[float] = field(default_factory=list)  # each token's frequency estimate
    contexts: list[int] = field(default_factory=list)  # matched context length at each
    expected: float = 0.0  # sum of the path-prefix scores: expected accepted tokens

    def better_than(self, other: _Candidate | None) -> bool:
        rank = (self.expected, len(self.tokens))
        return other is None or rank > (other.expected, len(other.tokens))


class SuffixDrafter:
    """Drafts from the run's suffix trie and the target's earlier answers; see the module
    docstring. One per run: the run's trie grows with ``history`` between rounds."""

    def __init__(self, depth: int, factor: float, min_prob: float, adaptive: bool,
                 costs: CostModel, answers: AnswerHistory | None = None) -> None:
        self.depth = depth
        self.factor = factor
        self.min_prob = min_prob
        self.adaptive = adaptive
        self.costs = costs
        self.answers = answers
        self.index = SuffixIndex(depth)
        self.stats = LookupStats()
        self.hindsight = Hindsight(self.stats)
        self._keys: list[Key] = []
        self._all_keys: list[Key] = []  # of the whole draft before the last cut

    def _sync(self, history: list[int], cancel: threading.Event | None = None) -> None:
        """Index the tokens ``history`` gained since the last call; all of it when it is
        shorter or its last ``depth`` indexed tokens changed. (Comparing all of it cost 40 us
        a round at 8000 tokens; a rewrite further back could only make drafts worse, never
        the output: the target verifies every draft.)"""
        seq = self.index.seq
        n = len(seq)
        back = max(0, n - self.depth)
        if len(history) < n or history[back:n] != seq[back:]:
            self.index = SuffixIndex(self.depth)
            n = 0
        while n < len(history) and not (cancel is not None and cancel.is_set()):
            self.index.extend(history[n : n + PREFILL_CHUNK])
            n = len(self.index.seq)

    def prefill(self, prompt: list[int], cancel: threading.Event) -> None:
        """Index the prompt before the first round."""
        self._sync(prompt, cancel)

    def propose(self, history: list[int], limit: int, min_length: int = 1) -> Proposal:
        t0 = time.perf_counter()
        prop = Proposal(SOURCE.id, drafter=self)
        self._keys = []
        if limit > 0 and history:
            if self.adaptive:
                self.hindsight.learn(history)
            self._sync(history)
            best: _Candidate | None = None
            start = self.index.match()
            if start is not None:
                best = self._walk(self.index, start, history, limit, min_length)
            if self.answers is not None:
                glob = self.answers.index(self.depth)
                start = glob.longest_match(history)
                if start is not None:
                    cand = self._walk(glob, start, history, limit, min_length)
                    if cand.better_than(best):
                        best = cand
            if best is not None:
                keep = len(best.tokens)
                if self.adaptive and keep:
                    keep = self._adaptive_cut(best, min_length)
                    self.hindsight.hold(len(history), best.tokens, self._all_keys, keep)
                if keep >= min_length:
                    prop.tokens = best.tokens[:keep]
                    prop.q = [None] * keep
        prop.seconds = time.perf_counter() - t0
        return prop

    def _walk(
        self, index: SuffixIndex, start: tuple[_Node, int, int], text: Sequence[int],
        limit: int, min_length: int,
    ) -> _Candidate:
        """The greedy most-frequent path from a match of ``matched`` tokens."""
        node, k, matched = start
        # A longer minimum than the factor allows is the caller's to ask for.
        max_spec = max(min_length, math.ceil(self.factor * matched))
        keep = index.depth // 2
        cand = _Candidate()
        score = 1.0
        while len(cand.tokens) < limit:
            context = node.depth + k
            if context >= index.depth:
                # The trie ends here: go on from the last ``keep`` tokens of text + draft.
                n = len(cand.tokens)
                tail = cand.tokens[n - keep :] if n >= keep else [
                    *text[len(text) - (keep - n) :], *cand.tokens]
                pos = index.locate(tail)
                if pos is None:
                    break
                (node, k), context = pos, keep
            step = index.follow(node, k)
            if step is None:
                break
            token, share, node, k = step
            if len(cand.tokens) >= max_spec or score * share < self.min_prob:
                break
            score *= share
            cand.tokens.append(token)
            cand.shares.append(share)
            cand.contexts.append(context)
            cand.expected += score
        return cand

    def _adaptive_cut(self, cand: _Candidate, min_length: int) -> int:
        """The draft length with the most expected tokens per second (suffix drafts cost
        nothing to make, so only the verify batch weighs), if it beats a plain step by
        ROUND_MARGIN of a step (as prompt lookup's)."""
        pairs = list(zip(cand.contexts, cand.shares, strict=True))
        keys: list[Key] = [
            (bisect.bisect_right(AGREEMENT_BUCKETS, context), share_band(share), i > 0)
            for i, (context, share) in enumerate(pairs)]
        chances = [self.stats.chance(key, prior_chance(context, share))
                   for key, (context, share) in zip(keys, pairs, strict=True)]
        keep = best_length(chances, self.costs, 0.0, min_length,
                           ROUND_MARGIN * self.costs.batch(1))
        self._keys, self._all_keys = keys[:keep], keys
        return keep

    def observe(self, proposal: Proposal, accepted: int) -> None:
        # The accepted drafts and the first rejected one were judged; later ones were not.
        for i, key in enumerate(self._keys[: accepted + 1]):
            self.stats.record(key, i < accepted)
        if accepted < len(proposal.tokens):
            self.hindsight.rejected()

    def finish(self, history: list[int], prompt_tokens: int) -> None:
        """Keep this run's answer for later runs of the same target model."""
        if self.adaptive:
            self.hindsight.learn(history)
        if self.answers is not None:
            self.answers.add(history[prompt_tokens:], self.depth)


SETTINGS = (
    Setting("suffix_max_depth", "tree depth", "longest context (tokens) suffix drafting "
            "indexes; a match and its draft reach this deep before re-matching", 32, 4, 64),
    Setting("suffix_factor", "length factor", "suffix drafting drafts at most this many "
            "tokens per matched token (SuffixDecoding's adaptive length)", 2.0, 0.5, 8.0, 0.5),
    Setting("suffix_min_prob", "min probability", "suffix drafting stops where the draft's "
            "estimated probability (product of continuation frequencies) falls below this",
            0.1, 0.0, 1.0, 0.05),
    Setting("suffix_history", "earlier answers", "suffix drafting also copies from earlier "
            "answers of the same target model in this session", True),
)


def build(ctx: BuildContext) -> SuffixDrafter:
    answers = None
    if ctx.option("suffix_history"):
        # One global tree per target model: answers of another model mislead.
        kept = ctx.memory.get(ctx.target.path)
        answers = kept if isinstance(kept, AnswerHistory) else AnswerHistory()
        ctx.memory[ctx.target.path] = answers
    return SuffixDrafter(int(ctx.option("suffix_max_depth")), float(ctx.option("suffix_factor")),
                         float(ctx.option("suffix_min_prob")), bool(ctx.settings.adaptive),
                         ctx.costs, answers)


SOURCE = DraftSource(
    id="suffix", label="suffix drafting", name="Suffix drafting", number=None,
    summary="drafts the most frequent continuation of the longest matching suffix, from the "
            "prompt, the answer so far and earlier answers (SuffixDecoding)",
    colour="#fde0c2", dark_colour="#5c3a16", plot_colour="#ff7f0e",
    cost="free", needs_draft_model=False, priority=20, build=build, settings=SETTINGS,
)

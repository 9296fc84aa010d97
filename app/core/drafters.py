"""Draft sources: where proposed tokens come from (Track 1 draft model, Track 8 lookup).

A drafter proposes up to ``limit`` tokens continuing ``history`` (prompt + answer so far)
and is told afterwards how many the target accepted, so that adaptive drafting can learn
how far to trust it.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from app.core.adaptive import CostModel, best_length, expected_tokens, worth_extending
from app.core.events import Source
from app.core.llama_backend import ContextFull, LoadedModel
from app.core.sampling import Distribution, SamplerSettings, distribution, top_probability

# Chance assumed for an unseen n-gram continuation before any round was verified.
LOOKUP_PRIOR = 0.6


@dataclass
class Proposal:
    source: Source | None = None
    tokens: list[int] = field(default_factory=list)
    # Distribution each token was drawn from; None: deterministic (one-hot q).
    q: list[Distribution | None] = field(default_factory=list)
    seconds: float = 0.0
    # The drafter that made it, told the outcome after verification.
    drafter: Any = None


class PromptLookup:
    """Track 8: continue the longest recent n-gram match found in prompt + answer.

    An incremental index maps each n-gram to the position after its latest occurrence, so
    a lookup is O(ngram_max) whatever the length of the text.
    """

    source: Source = "lookup"

    def __init__(self, ngram_min: int, ngram_max: int, adaptive: bool, costs: CostModel):
        self.ngram_min = max(1, ngram_min)
        self.ngram_max = max(self.ngram_min, ngram_max)
        self.adaptive = adaptive
        self.costs = costs
        self._index: dict[tuple[int, ...], int] = {}
        self._indexed = 0
        # Per match length: [accepted drafts, verified drafts], for the acceptance chance.
        self._stats = {n: [0.0, 0.0] for n in range(self.ngram_min, self.ngram_max + 1)}
        self._last_n = 0

    def reset(self) -> None:
        self._index.clear()
        self._indexed = 0

    def _extend_index(self, history: list[int]) -> None:
        # Index continuations strictly before the end: the suffix itself is the query.
        for end in range(max(self._indexed, 1), len(history)):
            for n in range(self.ngram_min, min(self.ngram_max, end) + 1):
                self._index[tuple(history[end - n : end])] = end
        self._indexed = max(self._indexed, len(history))

    def chance(self, n: int) -> float:
        accepted, seen = self._stats[n]
        # A Beta prior keeps early rounds from swinging to 0 or 1.
        return (accepted + LOOKUP_PRIOR * 4) / (seen + 4)

    def propose(self, history: list[int], limit: int, min_length: int = 1) -> Proposal:
        t0 = time.perf_counter()
        self._extend_index(history)
        prop = Proposal(self.source, drafter=self)
        for n in range(min(self.ngram_max, len(history)), self.ngram_min - 1, -1):
            start = self._index.get(tuple(history[-n:]))
            if start is None:
                continue
            tokens = history[start : start + limit]
            if self.adaptive:
                c = self.chance(n)
                tokens = tokens[: best_length([c] * len(tokens), self.costs, 0.0, min_length)]
            if len(tokens) >= min_length:
                prop.tokens = tokens
                prop.q = [None] * len(tokens)
                self._last_n = n
            break
        prop.seconds = time.perf_counter() - t0
        return prop

    def observe(self, proposal: Proposal, accepted: int) -> None:
        stats = self._stats[self._last_n]
        # Conditional chance per draft: accepted ones, plus the first rejection.
        stats[0] += accepted
        stats[1] += min(len(proposal.tokens), accepted + 1)


class DraftModel:
    """Track 1: a small model with the target's tokenizer drafts token by token."""

    source: Source = "draft"

    def __init__(
        self,
        model: LoadedModel,
        sampler: SamplerSettings,
        p_min: float,
        adaptive: bool,
        costs: CostModel,
        rng: np.random.Generator,
    ):
        self.model = model
        self.sampler = sampler
        self.p_min = p_min
        self.adaptive = adaptive
        self.costs = costs
        self.rng = rng
        self._cached: list[int] = []
        # Calibration: how acceptance compares with the draft's own confidence.
        self._accepted = 0.0
        self._expected = 0.0
        self._last_expected = 0.0

    def reset(self) -> None:
        self.model.reset()
        self._cached = []

    def prefill(self, prompt: list[int], cancel: threading.Event) -> None:
        """Evaluate all but the last prompt token, as the target does."""
        self.reset()
        if len(prompt) > 1:
            with self.model.abortable(cancel):
                self.model.eval(prompt[:-1], 0)
        self._cached = list(prompt[:-1])

    def _sync(self, history: list[int]) -> np.ndarray:
        """Bring the draft's KV cache to ``history`` and return the next-token logits."""
        common = 0
        limit = min(len(self._cached), len(history) - 1)
        while common < limit and self._cached[common] == history[common]:
            common += 1
        self.model.trim(common)
        self._cached = self._cached[:common]
        todo = history[common:]
        row = self.model.eval(todo, 1)[0]
        self._cached.extend(todo)
        return row

    @property
    def calibration(self) -> float:
        return (self._accepted + 4.0) / (self._expected + 4.0)

    def propose(self, history: list[int], limit: int, min_length: int = 1) -> Proposal:
        prop = Proposal(self.source, drafter=self)
        if limit <= 0:
            return prop
        t0 = time.perf_counter()
        try:
            row = self._sync(history)
        except ContextFull:
            return prop
        chances: list[float] = []
        while True:
            step0 = time.perf_counter()
            if self.sampler.greedy:
                token, conf = top_probability(row)
                q: Distribution | None = None
            else:
                q = distribution(row, self.sampler)
                token = q.sample(self.rng)
                conf = q.prob(token)
            if conf < self.p_min and len(prop.tokens) >= min_length:
                break
            prop.tokens.append(token)
            prop.q.append(q)
            chances.append(min(0.99, conf * self.calibration))
            if len(prop.tokens) >= limit:
                break
            if (
                self.adaptive
                and len(prop.tokens) >= min_length
                and not worth_extending(chances, chances[-1], self.costs, self.costs.draft_step)
            ):
                break
            try:
                row = self.model.eval([token], 1)[0]
            except ContextFull:
                break
            self._cached.append(token)
            self.costs.observe_draft_step(time.perf_counter() - step0)
        if self.adaptive and prop.tokens:
            keep = best_length(chances, self.costs, self.costs.draft_step, min_length)
            prop.tokens, prop.q = prop.tokens[:keep], prop.q[:keep]
        self._last_expected = expected_tokens(chances[: len(prop.tokens)]) - 1.0
        prop.seconds = time.perf_counter() - t0
        return prop

    def observe(self, proposal: Proposal, accepted: int) -> None:
        self._accepted += accepted
        self._expected += self._last_expected

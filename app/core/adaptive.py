"""Choosing the draft length each round from measured costs and expected acceptance.

A round that verifies k drafts costs one target batch of k+1 tokens (plus the drafting)
and yields 1 + E[accepted] tokens, where E[accepted] = sum_i prod_{j<=i} c_j for the
conditional acceptance chances c_j of the drafts. ``CostModel`` learns, on this machine,
what a batch of each size costs relative to a single step, and ``best_length`` picks the
k with the most tokens per second; k = 0 means: do a plain step, drafting does not pay.
"""

from __future__ import annotations

from collections.abc import Sequence

EMA = 0.2
# Once a batch size has this many observations, each new one moves its shape by this much.
SHAPE_EMA = 0.05
# Before anything is measured: a batch of n costs about 1 + 0.15 (n - 1) single steps on a
# CPU (LLAMA_NOTES / MODELS.md: 5 tokens about 1.6-2.6 steps, 9 about 2.5).
PRIOR_SLOPE = 0.15
# No learned acceptance chance is taken as certain: one surprise must not cost a long draft.
MAX_CHANCE = 0.99


class CostModel:
    """Seconds per target batch of n tokens, learned from the run itself.

    A batch of n costs ``level * shape[n]``: ``level`` is what a plain step costs now and
    follows every observation quickly, since the whole machine drifts (10-20% within
    minutes here); ``shape[n]`` (1 for a single step) is the batch's cost in steps, a
    property of model and CPU, averaged over its observations and then moved only slowly.
    Kept as separate per-size averages instead, a step measured during a slow minute and a
    batch of 5 during a fast one made that batch look as cheap as a step (1.06 steps,
    against 1.4-1.6), and adaptive Track 1 planned 4-token drafts where 8 paid.
    """

    def __init__(self, max_batch: int = 33) -> None:
        self.max_batch = max_batch
        self._level: float | None = None
        self._shape: dict[int, float] = {}
        self._count: dict[int, int] = {}
        self.draft_step: float = 0.0
        self.catch_up_per_token: float = 0.0

    def observe(self, n_tokens: int, seconds: float) -> None:
        n = n_tokens
        count = self._count.get(n, 0)
        self._count[n] = count + 1
        if n == 1 and count == 0:
            # The first plain step fixes the unit: sizes seen before keep their seconds.
            if self._level is not None:
                for size in self._shape:
                    self._shape[size] *= self._level / seconds
            self._level = seconds
            self._shape[1] = 1.0
            return
        if self._level is None:
            self._level = seconds / (1.0 + PRIOR_SLOPE * (n - 1))
        if count == 0:
            self._shape[n] = seconds / self._level
            return
        if n != 1:
            weight = max(SHAPE_EMA, 1.0 / (count + 1))
            self._shape[n] += weight * (seconds / self._level - self._shape[n])
        self._level += EMA * (seconds / self._shape[n] - self._level)

    def observe_catch_up(self, tokens: int, seconds: float) -> None:
        """A draft batch of ``tokens`` that brought its cache up to the text."""
        per_token = seconds / tokens
        if self.catch_up_per_token == 0.0:
            self.catch_up_per_token = per_token
        else:
            self.catch_up_per_token += EMA * (per_token - self.catch_up_per_token)

    def catch_up(self, tokens: int) -> float:
        """Estimated seconds for the draft to catch up on ``tokens`` (prior: a batch of n
        costs 1 + PRIOR_SLOPE (n - 1) draft steps)."""
        if tokens <= 0:
            return 0.0
        if self.catch_up_per_token:
            return tokens * self.catch_up_per_token
        return self.draft_step * PRIOR_SLOPE * tokens

    def observe_draft_step(self, seconds: float) -> None:
        if self.draft_step == 0.0:
            self.draft_step = seconds
        else:
            self.draft_step += EMA * (seconds - self.draft_step)

    @property
    def step(self) -> float | None:
        return self._level if 1 in self._shape else None

    def batch(self, n: int) -> float:
        """Estimated seconds for a batch of n.

        Measured sizes answer for themselves; other sizes come from a least-squares line
        through the measured ones (batch cost is close to linear in n on a CPU), or, with a
        single measured size, from the prior slope scaled to it.
        """
        if self._level is None:
            return 1.0 + PRIOR_SLOPE * (n - 1)
        return self._level * self._shape_of(n)

    def _shape_of(self, n: int) -> float:
        known = self._shape
        if n in known:
            return known[n]
        if len(known) == 1:
            (size, shape), = known.items()
            return shape / (1.0 + PRIOR_SLOPE * (size - 1)) * (1.0 + PRIOR_SLOPE * (n - 1))
        xs, ys = list(known), list(known.values())
        mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
        sxx = sum((x - mx) ** 2 for x in xs)
        slope = max(0.0, sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx)
        return max(1e-6, my + slope * (n - mx))


def expected_tokens(chances: Sequence[float]) -> float:
    """1 + expected number of accepted drafts for conditional chances c_1..c_k."""
    total, run = 1.0, 1.0
    for c in chances:
        run *= c
        total += run
    return total


def best_length(
    chances: Sequence[float],
    costs: CostModel,
    draft_cost_per_token: float = 0.0,
    min_length: int = 1,
    overhead: float = 0.0,
) -> int:
    """The prefix length of ``chances`` with the highest expected tokens per second.

    ``overhead``: seconds a drafting round pays whatever its length (a draft model that
    must first catch up on the tokens of the plain steps before it). Returns 0 when no
    prefix of at least ``min_length`` beats a plain single step.
    """
    best_k, best_rate = 0, 1.0 / costs.batch(1)
    run, gained = 1.0, 1.0
    for k, c in enumerate(chances, start=1):
        run *= c
        gained += run
        cost = costs.batch(k + 1) + k * draft_cost_per_token + overhead
        rate = gained / cost
        if k >= min_length and rate > best_rate:
            best_k, best_rate = k, rate
    return best_k


def worth_extending(
    chances: Sequence[float], next_chance: float, costs: CostModel, draft_cost: float
) -> bool:
    """Would one more draft (of chance ``next_chance``) raise the best achievable rate?

    Used while drafting token by token with a draft model, whose later chances are unknown
    until drafted: optimistic about one more step, never about several.
    """
    k = len(chances)
    now = expected_tokens(chances) / (costs.batch(k + 1) + k * draft_cost)
    more = expected_tokens([*chances, next_chance]) / (costs.batch(k + 2) + (k + 1) * draft_cost)
    return more > now

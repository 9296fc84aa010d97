"""Choosing the draft length each round from measured costs and expected acceptance.

A round that verifies k drafts costs one target batch of k+1 tokens (plus the drafting)
and yields 1 + E[accepted] tokens, where E[accepted] = sum_i prod_{j<=i} c_j for the
conditional acceptance chances c_j of the drafts. ``CostModel`` learns, on this machine,
what a batch of each size costs relative to a single step, and ``best_length`` picks the
k with the most tokens per second; k = 0 means: do a plain step, drafting does not pay.

Timings on a shared CPU are noisy (one step in a few runs 2-3x slow, the whole machine
drifting 10-20% within minutes), so no decision rests on one of them: every estimate is a
median over recent observations, and in the ``optimistic`` view, which the drafters decide
from, a batch size seen fewer than ``TRUST`` times costs its fastest timing but at most a
little more than the curve of the other sizes or the prior from the model's bytes per
parameter say (interference only ever slows a timing down; a size that agrees with its
neighbours, as injected test costs do, is taken as measured).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from statistics import median

# Recent observations kept per batch size (in steps), of the step level, of draft steps.
WINDOW = 15
LEVEL_WINDOW = 7
# A batch size's own median stands alone from this many observations; before that its
# observations are blended with the curve the other sizes (and the prior) draw.
TRUST = 3
# A fresh cost model's first observations are plain steps: one timing is not a unit.
STEP_SAMPLES = 3
# Before anything is measured: a batch of n costs about 1 + 0.15 (n - 1) single steps on a
# CPU (LLAMA_NOTES / MODELS.md: 5 tokens about 1.6-2.6 steps, 9 about 2.5).
PRIOR_SLOPE = 0.15
# An extra token in a batch costs compute against a step's memory traffic: measured here,
# F16 (2 bytes a parameter) 0.13 steps a token, Q4_K_M (0.6 bytes) 0.44-0.51.
SLOPE_BYTES = 0.26
# The pseudo-observations behind the prior line when the curve is fitted.
PRIOR_POINTS = 2.0
# How far above the curve of the other sizes (or the prior) a size measured fewer than
# TRUST times may be believed in the optimistic view.
TOLERANCE = 0.15
# No learned acceptance chance is taken as certain: one surprise must not cost a long draft.
MAX_CHANCE = 0.99


def prior_slope(file_size: int, n_params: int) -> float:
    """Steps an extra batch token costs, guessed from the model's bytes per parameter."""
    if file_size <= 0 or n_params <= 0:
        return PRIOR_SLOPE
    return min(1.0, max(0.05, SLOPE_BYTES / (file_size / n_params)))


class CostModel:
    """Seconds per target batch of n tokens, learned from the runs on this target.

    A batch of n costs ``level * shape(n)``: ``level`` is what a plain step costs now (the
    median of the last LEVEL_WINDOW observations, each turned into a step's cost), since the
    whole machine drifts; ``shape(n)`` (1 for a single step) is the batch's cost in steps, a
    property of model and CPU: the median of the size's last WINDOW observations. Kept as
    separate per-size averages instead, a step measured during a slow minute and a batch of
    5 during a fast one made that batch look as cheap as a step.
    """

    def __init__(self, max_batch: int = 33, slope: float = PRIOR_SLOPE) -> None:
        self.max_batch = max_batch
        self.prior = slope
        self._level: float | None = None
        self._levels: deque[float] = deque(maxlen=LEVEL_WINDOW)
        self._ratios: dict[int, deque[float]] = {}
        self._count: dict[int, int] = {}
        self._remembered: set[int] = set()  # sizes still standing on ``remember``
        self._from_memory = False  # the unit is the remembered shapes' step, not a timing
        self._observed = 0
        self._draft_steps: deque[float] = deque(maxlen=WINDOW)
        self._catch_ups: deque[float] = deque(maxlen=WINDOW)
        self.draft_step: float = 0.0
        self.catch_up_per_token: float = 0.0
        self._cache: dict[tuple[int, bool], float] = {}
        # (size, robust value in steps, weight) of every measured size; None: to compute.
        self._points: list[tuple[float, float, float]] | None = None

    # -- learning -------------------------------------------------------------------------
    def use_prior(self, slope: float) -> None:
        """The prior line for this target (``prior_slope`` of its file)."""
        if slope != self.prior:
            self.prior = slope
            self._forget()

    def remember(self, shapes: dict[int, float]) -> None:
        """Start from the batch shapes (cost in plain steps) an earlier run measured on this
        target (``app.core.cost_memory``): each stands for TRUST observations, so it is
        believed at once, until the size has been measured TRUST times here. A model that
        starts from them needs no plain steps first (``wants_step``)."""
        for n, steps in shapes.items():
            if n > 1 and n <= self.max_batch and steps >= 1.0 and n not in self._ratios:
                self._ratios[n] = deque([steps] * TRUST, maxlen=WINDOW)
                self._remembered.add(n)
                self._from_memory = self._observed == 0
        self._forget()

    def shapes(self) -> dict[int, float]:
        """The batch sizes known well enough to remember, in plain steps."""
        return {n: median(r) for n, r in self._ratios.items() if len(r) >= TRUST}

    def wants_step(self) -> bool:
        """Should the next round be a plain step, to measure the unit? True until a plain
        step was seen and the first STEP_SAMPLES observations were plain steps (the median
        of three survives one slow timing). Never for a model started from remembered
        shapes: its first verify batch over that batch's remembered shape is a step's cost
        now, and the plain rounds it saves drafted nothing (three of them cost adaptive
        Track 1 a 1 % against fixed K=8 in a 160-token answer, benchmarks/RESULTS.md)."""
        if self._from_memory:
            return False
        steps = self._count.get(1, 0)
        return steps == 0 or (steps < STEP_SAMPLES and self._observed < STEP_SAMPLES)

    def observe(self, n_tokens: int, seconds: float) -> None:
        n = n_tokens
        if n < 1 or not seconds > 0.0 or not math.isfinite(seconds):
            return
        self._forget()
        self._observed += 1
        count = self._count.get(n, 0)
        self._count[n] = count + 1
        if n == 1 and count == 0 and self._level is not None and not self._from_memory:
            # The first plain step fixes the unit: sizes seen before keep their seconds.
            # (Remembered shapes are in steps already: one timing must not rescale them.)
            scale = self._level / seconds
            for size, ratios in list(self._ratios.items()):
                self._ratios[size] = deque((r * scale for r in ratios), maxlen=WINDOW)
            self._levels.clear()
            self._level = None
        if self._level is None:
            self._level = seconds / self._shape(n, False)
        if n != 1:
            ratios = self._ratios.setdefault(n, deque(maxlen=WINDOW))
            ratios.append(seconds / self._level)
            if n in self._remembered and count + 1 >= TRUST:
                # Measured here often enough: the memory has done its work.
                self._remembered.discard(n)
                self._ratios[n] = deque(list(ratios)[-TRUST:], maxlen=WINDOW)
            self._forget()
        if n == 1 or self._count[n] >= TRUST or not self._levels:
            # Only a size whose shape was measured here tells what a step costs now (not
            # one only remembered: a wrong memory would move the step instead of itself).
            self._levels.append(seconds / self._shape(n, False))
            self._level = median(self._levels)
            self._cache.clear()

    def _forget(self) -> None:
        """Drop the estimates computed from the observations so far."""
        self._cache.clear()
        self._points = None

    def observe_catch_up(self, tokens: int, seconds: float) -> None:
        """A draft batch of ``tokens`` that brought its cache up to the text."""
        if tokens > 0 and seconds >= 0.0:
            self._catch_ups.append(seconds / tokens)
            self.catch_up_per_token = median(self._catch_ups)

    def catch_up(self, tokens: int) -> float:
        """Estimated seconds for the draft to catch up on ``tokens`` (prior: a batch of n
        costs 1 + PRIOR_SLOPE (n - 1) draft steps)."""
        if tokens <= 0:
            return 0.0
        if self.catch_up_per_token:
            return tokens * self.catch_up_per_token
        return self.draft_step * PRIOR_SLOPE * tokens

    def observe_draft_step(self, seconds: float) -> None:
        if seconds > 0.0 and math.isfinite(seconds):
            self._draft_steps.append(seconds)
            self.draft_step = median(self._draft_steps)

    # -- estimates ------------------------------------------------------------------------
    @property
    def step(self) -> float | None:
        return self._level if self._count.get(1) else None

    def trusted(self, n: int) -> bool:
        """Has a batch of n been seen often enough for its own median to stand alone?"""
        return n <= 1 or len(self._ratios.get(n, ())) >= TRUST

    def batch(self, n: int, optimistic: bool = False) -> float:
        """Estimated seconds for a batch of n.

        Measured sizes answer with the median of their recent observations, others come
        from the least-squares line through the measured ones (batch cost is close to linear
        in n on a CPU) and, while few are measured, the prior. ``optimistic``: a size seen
        fewer than TRUST times costs its fastest observation, capped at TOLERANCE above the
        line of the other sizes or the prior, whichever is higher (decisions to draft less
        wait for evidence).
        """
        if self._level is None:  # nothing timed yet: in steps, as remembered or the prior
            return self._shape(n, optimistic)
        return self._level * self._shape(n, optimistic)

    def steps(self, n: int, optimistic: bool = False) -> float:
        """A batch of n in plain steps."""
        return self._shape(n, optimistic)

    def _shape(self, n: int, optimistic: bool) -> float:
        if n <= 1:
            return 1.0
        key = (n, optimistic)
        found = self._cache.get(key)
        if found is not None:
            return found
        ratios = self._ratios.get(n)
        if ratios and (len(ratios) >= TRUST or not optimistic):
            shape = median(ratios)
        else:
            support = self._curve(n)
            shape = min(ratios) if ratios else support
            if ratios:
                # Not yet trusted: at most a little above what the other sizes and the prior
                # say, since a lone slow timing is likelier noise than the truth.
                cap = max(1.0 + self.prior * (n - 1), support) * (1.0 + TOLERANCE)
                shape = min(shape, cap)
        self._cache[key] = shape
        return shape

    def _curve(self, n: int) -> float:
        """Batch of n in steps from the line through the other sizes' robust values (each
        weighing up to TRUST observations), or with fewer than two of them also through two
        points of the prior line."""
        if self._points is None:
            self._points = [
                (float(size), median(r) if len(r) >= TRUST else min(r), float(min(len(r), TRUST)))
                for size, r in self._ratios.items() if r
            ]
        pts = [p for p in self._points if p[0] != n]
        if len(pts) < 2:  # a line needs two sizes: the prior stands in
            half = PRIOR_POINTS / 2
            pts += [(2.0, 1.0 + self.prior, half), (9.0, 1.0 + 8 * self.prior, half)]
        sw = sum(w for _, _, w in pts)
        mx = sum(w * x for x, _, w in pts) / sw
        my = sum(w * y for _, y, w in pts) / sw
        sxx = sum(w * (x - mx) ** 2 for x, _, w in pts)
        sxy = sum(w * (x - mx) * (y - my) for x, y, w in pts)
        slope = max(0.0, sxy / sxx) if sxx > 0 else self.prior
        return max(1.0, my + slope * (n - mx))


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
    optimistic: bool = False,
) -> int:
    """The prefix length of ``chances`` with the highest expected tokens per second.

    ``overhead``: seconds a drafting round pays whatever its length (a draft model that
    must first catch up on the tokens of the plain steps before it). Returns 0 when no
    prefix of at least ``min_length`` beats a plain single step. ``optimistic``: batch
    sizes with too few observations cost at most the prior (``CostModel.batch``).
    """
    best_k, best_rate = 0, 1.0 / costs.batch(1)
    run, gained = 1.0, 1.0
    for k, c in enumerate(chances, start=1):
        run *= c
        gained += run
        cost = costs.batch(k + 1, optimistic) + k * draft_cost_per_token + overhead
        rate = gained / cost
        if k >= min_length and rate > best_rate:
            best_k, best_rate = k, rate
    return best_k


def worth_extending(
    chances: Sequence[float], next_chance: float, costs: CostModel, draft_cost: float,
    optimistic: bool = False,
) -> bool:
    """Would one more draft (of chance ``next_chance``) raise the best achievable rate?

    Used while drafting token by token with a draft model, whose later chances are unknown
    until drafted: optimistic about one more step, never about several.
    """
    k = len(chances)
    now = expected_tokens(chances) / (costs.batch(k + 1, optimistic) + k * draft_cost)
    more = expected_tokens([*chances, next_chance]) / (
        costs.batch(k + 2, optimistic) + (k + 1) * draft_cost)
    return more > now


class Recent:
    """The pair's conditional acceptance over the last few rounds of this run: how many
    drafts were judged (the accepted ones and the first rejected) and how many accepted."""

    def __init__(self, rounds: int = 8) -> None:
        self._rounds: deque[tuple[int, int]] = deque(maxlen=rounds)

    def add(self, proposed: int, accepted: int) -> None:
        if proposed > 0:
            self._rounds.append((accepted, min(proposed, accepted + 1)))

    @property
    def judged(self) -> int:
        return sum(j for _, j in self._rounds)

    @property
    def rate(self) -> float | None:
        judged = self.judged
        return sum(a for a, _ in self._rounds) / judged if judged else None


# A floor keeps drafting at the fixed-K level while the pair's recent acceptance is at least
# this, over at least FLOOR_JUDGED drafts.
FLOOR_ACCEPTANCE = 0.6
FLOOR_JUDGED = 4
# From this recent acceptance a draft model's floor is the whole fixed K. A draft model's
# acceptances come in runs (it agrees through an easy span, then misses), so chances taken
# as independent undervalue long drafts: on the F16 pair here, at 0.88 acceptance, they
# planned about 5 drafts a round where fixed K=8 drafted 6.7 and gave 3 % more tokens/s
# (benchmarks/stability.py, RESULTS session 7).
HIGH_ACCEPTANCE = 0.8


def floor_length(recent: Recent, limit: int, costs: CostModel, draft_cost: float = 0.0,
                 min_length: int = 1, high: float | None = None) -> int:
    """The shortest draft adaptive drafting plans while acceptance is high: the fixed K that
    the recent acceptance supports on optimistic costs (0 while acceptance is not high);
    with ``high``, from that acceptance on the whole ``limit`` (the user's fixed K) as long
    as drafting it pays at that acceptance at all."""
    rate = recent.rate
    if rate is None or recent.judged < FLOOR_JUDGED or rate < FLOOR_ACCEPTANCE or limit <= 0:
        return 0
    chances = [min(rate, MAX_CHANCE)] * limit
    if high is not None and rate >= high:
        full = best_length(chances, costs, draft_cost, max(min_length, limit), optimistic=True)
        if full:
            return full
    return best_length(chances, costs, draft_cost, min_length, optimistic=True)

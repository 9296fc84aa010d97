"""Will it pay? The predicted speedup of speculation for each draft length K, and why.

Speculation with K drafts and a per-token acceptance chance alpha yields, per round,
E = (1 - alpha^(K+1)) / (1 - alpha) tokens (Leviathan et al. 2023) for the price of K
draft steps and one target batch of K+1; baseline yields one token per target step. So

    speedup(K) = E / (K * t_draft + t_verify(K+1)) * t_step.

The formula functions are pure; ``measure`` times the real eval calls of a loaded pair on a
short synthetic context (bounded token counts, a few seconds at most) and trims the KV
caches back to where they were; ``predict`` turns costs and alpha into a ``PayReport``.

The recommendation follows the verdict's rules (``app.core.verdict``): a prediction rests on
one measurement, so a K is recommended only when it predicts more than
``SINGLE_RUN_MARGIN`` over the baseline, and the Ks within that margin of the best are named
with it (``leaders``) rather than one of them being crowned over the others.
"""

from __future__ import annotations

import itertools
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

import app.core.drafting.registry as registry
from app.core.adaptive import CostModel
from app.core.events import Event, RoundEvent
from app.core.llama_backend import LoadedModel
from app.core.sampling import top_probability
from app.core.verdict import SINGLE_RUN_MARGIN, Candidate, judge

MAX_K = 16
SIZES = (1, 2, 3, 5, 9, 17)  # batch sizes measured; the rest are interpolated
CONTEXT_TOKENS = 48
DRAFT_STEPS = 8
HIGH_ALPHA = 0.99  # "even at near-perfect acceptance"
DEFAULT_ALPHA = 0.7  # assumed when nothing was observed or given
NOISY_SPREAD = 1.5  # slowest / fastest sample of one size beyond which timings are noisy
_SYNTHETIC = (
    "def mean(values):\n    total = 0\n    for v in values:\n        total += v\n"
    "    return total / len(values)\n\nThe quick brown fox jumps over the lazy dog. "
)


# -- pure formulas ------------------------------------------------------------------------


def expected_tokens(alpha: float, k: int) -> float:
    """Expected tokens per round with k drafts: (1 - alpha^(k+1)) / (1 - alpha)."""
    if alpha >= 1.0:
        return float(k + 1)
    return (1.0 - alpha ** (k + 1)) / (1.0 - alpha)


def round_seconds(k: int, t_draft: float, t_verify: float) -> float:
    """Cost of one round: k draft steps plus one verification batch of k+1."""
    return k * t_draft + t_verify


def speedup(alpha: float, k: int, t_draft: float, t_verify: float, t_step: float) -> float:
    """Predicted tokens/s of speculation over tokens/s of baseline (one token per step)."""
    return expected_tokens(alpha, k) / round_seconds(k, t_draft, t_verify) * t_step


def break_even_alpha(k: int, t_draft: float, t_verify: float, t_step: float) -> float | None:
    """The acceptance at which k drafts per round exactly match baseline; 0.0 when they pay
    even with nothing accepted, None when they cannot pay even with everything accepted."""
    need = round_seconds(k, t_draft, t_verify) / t_step  # tokens a round must yield
    if need <= 1.0:
        return 0.0
    if need > k + 1:
        return None
    lo, hi = 0.0, 1.0  # expected_tokens rises monotonically in alpha from 1 to k+1
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if expected_tokens(mid, k) < need else (lo, mid)
    return (lo + hi) / 2


def observed_alpha(events: Iterable[Event]) -> float | None:
    """Per-draft acceptance chance from verification rounds: accepted / (accepted + first
    rejections). Drafts after a round's first rejection were never really tried, so they do
    not count, unlike in ``RunResult.acceptance_rate``. None if nothing was drafted."""
    accepted = rejections = 0
    for e in events:
        if isinstance(e, RoundEvent) and e.proposed > 0:
            accepted += e.accepted
            rejections += e.accepted < e.proposed
    total = accepted + rejections
    return accepted / total if total else None


def proposed_lengths(events: Iterable[Event]) -> list[int]:
    """Drafts proposed in each round of a run, 0 for plain steps. Prompt lookup proposes
    nothing when no n-gram matches and fewer than K when the match runs out, so its rounds
    are not the K drafts the plain formula assumes."""
    return [e.proposed for e in events if isinstance(e, RoundEvent)]


def lookup_speedup(
    alpha: float, k: int, lengths: Sequence[int], costs: MeasuredCosts
) -> tuple[float, float, float]:
    """Speedup of prompt lookup capped at K drafts, replaying the observed draft lengths:
    a round that proposed n drafts would propose min(n, K) and yield E(alpha, min(n, K))
    tokens for a verification batch of min(n, K) + 1 (a plain step when n = 0).
    Returns (speedup, tokens per round, verify steps per round)."""
    # Few distinct lengths, many rounds: cost each length once (verify fits a cost line).
    capped = Counter(min(n, k) for n in lengths)
    tokens = sum(count * expected_tokens(alpha, n) for n, count in capped.items())
    seconds = sum(count * costs.verify(n) for n, count in capped.items())
    rounds = max(1, len(lengths))
    return tokens / seconds * costs.step, tokens / rounds, seconds / rounds / costs.step


def monotone(batches: dict[int, float]) -> dict[int, float]:
    """Batch costs where no size costs more than a larger one: a bigger batch does all the
    work of a smaller one, so an inversion is interference on the smaller's timing."""
    out = dict(batches)
    sizes = sorted(out, reverse=True)
    for large, small in itertools.pairwise(sizes):
        out[small] = min(out[small], out[large])
    return out


# -- reports ------------------------------------------------------------------------------


@dataclass
class MeasuredCosts:
    """Seconds per target batch of n tokens (n logit rows), and per draft-model token."""

    batches: dict[int, float]
    draft_step: float | None = None
    seconds_spent: float = 0.0
    noisy: bool = False  # samples disagreed: something else was using the CPU
    workers: int = 0  # llama.cpp RPC workers holding the target's layers (0: all local)

    @property
    def step(self) -> float:
        return self.batches[1]

    def verify(self, k: int) -> float:
        """A verification batch of k+1, interpolated between the measured sizes."""
        model = CostModel()
        for n, s in self.batches.items():
            model.observe(n, s)
        return model.batch(k + 1)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class KPrediction:
    k: int
    expected_tokens: float
    verify_steps: float  # verification batch of k+1, in target steps
    draft_steps: float  # k drafts, in target steps
    speedup: float
    speedup_at_high_alpha: float
    break_even_alpha: float | None


@dataclass
class PayReport:
    """Predictions for K = 1..max_k; ``recommended_k`` 0 means: do not speculate."""

    source: str  # the draft source's registry id
    alpha: float
    alpha_source: str  # "given", "observed" or "assumed"
    costs: MeasuredCosts | None
    predictions: list[KPrediction] = field(default_factory=list)
    recommended_k: int = 0
    explanation: str = ""
    # The Ks that beat the baseline beyond noise and predict within noise of the best
    # (the recommended one among them); empty when none pays beyond noise.
    leaders: list[int] = field(default_factory=list)

    @property
    def best(self) -> KPrediction | None:
        return max(self.predictions, key=lambda p: p.speedup, default=None)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _cost_kind(source: str) -> str:
    """What a source's drafts cost: "model" (a draft step each) or "free"."""
    src = registry.get_source(source)
    if src is None:
        raise ValueError(f"unknown draft source {source!r}")
    return src.cost


def predict(
    costs: MeasuredCosts,
    alpha: float,
    source: str,
    alpha_source: str = "given",
    max_k: int = MAX_K,
    lookup_lengths: Sequence[int] | None = None,
) -> PayReport:
    """The report for ``costs`` at acceptance ``alpha`` (prompt lookup drafts for free).

    For prompt lookup, ``lookup_lengths`` (``proposed_lengths`` of a run) replaces "K drafts
    every round" by the draft lengths lookup really found on that prompt (capped at each K):
    measured on the Qwen pair, the plain formula over-predicted lookup by up to 51%, this
    one stays within 15% (benchmarks/RESULTS.md)."""
    alpha = min(max(alpha, 0.0), 1.0)
    t_step = costs.step
    model_cost = _cost_kind(source) == "model"
    t_draft = (costs.draft_step or 0.0) if model_cost else 0.0
    preds = []
    replay = lookup_lengths if not model_cost and any(lookup_lengths or ()) else None
    for k in range(1, max_k + 1):
        t_verify = costs.verify(k)
        if replay is not None:
            sp, tokens, verify_steps = lookup_speedup(alpha, k, replay, costs)
            preds.append(
                KPrediction(k, tokens, verify_steps, 0.0, sp,
                            lookup_speedup(HIGH_ALPHA, k, replay, costs)[0],
                            break_even_alpha(k, t_draft, t_verify, t_step))
            )
            continue
        preds.append(
            KPrediction(
                k,
                expected_tokens(alpha, k),
                t_verify / t_step,
                k * t_draft / t_step,
                speedup(alpha, k, t_draft, t_verify, t_step),
                speedup(HIGH_ALPHA, k, t_draft, t_verify, t_step),
                break_even_alpha(k, t_draft, t_verify, t_step),
            )
        )
    report = PayReport(source, alpha, alpha_source, costs, preds)
    best = report.best
    verdict = judge([Candidate(str(p.k), f"K={p.k}", (p.speedup,)) for p in preds], noun="K")
    report.leaders = sorted(int(k) for k in verdict.leaders)
    report.recommended_k = best.k if best is not None and report.leaders else 0
    report.explanation = explain(report, t_draft / t_step)
    return report


def explain(report: PayReport, draft_ratio: float) -> str:
    """Plain words: what drafting and verifying cost here, and whether that pays."""
    text = _verdict(report, draft_ratio)
    if report.costs is not None and report.costs.workers and report.predictions:
        text += " " + _remote(report.costs, report.predictions)
    if report.costs is not None and report.costs.noisy:
        text += " (Timings were noisy: is another program using the CPU? Measure again.)"
    return text


def _verdict(report: PayReport, draft_ratio: float) -> str:
    preds = report.predictions
    if not preds:
        return report.explanation
    high = max(preds, key=lambda p: p.speedup_at_high_alpha)
    shown = preds[report.recommended_k - 1] if report.recommended_k else high
    src = registry.get_source(report.source)
    label = src.label if src else report.source
    cost = (
        f"the {label} costs {draft_ratio:.2f} of a target step"
        if _cost_kind(report.source) == "model"
        else f"{label} drafts almost for free"
    )
    head = (
        f"{cost.capitalize()}; a verify batch of {shown.k + 1} costs "
        f"{shown.verify_steps:.2f} steps on this CPU"
    )
    a = f"{report.alpha:.0%} acceptance ({report.alpha_source})"
    if report.recommended_k:
        be = shown.break_even_alpha
        others = [k for k in report.leaders if k != shown.k]
        tied = (f" K={_ks(report.leaders)} all predict within noise of it "
                f"({SINGLE_RUN_MARGIN:.0%}): any of them will do." if others else "")
        return (
            f"{head}. At {a}, K={shown.k} pays: a round yields {shown.expected_tokens:.2f} "
            f"tokens for {shown.draft_steps + shown.verify_steps:.2f} steps of work, "
            f"{shown.speedup:.2f}x baseline; K={shown.k} breaks even from "
            f"{(be or 0.0):.0%} acceptance.{tied}"
        )
    best = report.best
    if best is not None and best.speedup > 1.0:
        return (
            f"{head}. At {a} the best K={best.k} predicts {best.speedup:.2f}x baseline, "
            f"within noise of it: a prediction from one measurement must beat the baseline "
            f"by more than {SINGLE_RUN_MARGIN:.0%}. No recommendation; measure real runs "
            "(Compare with repeats) to decide."
        )
    if high.speedup_at_high_alpha <= 1.0:
        return (
            f"{head}: even at {HIGH_ALPHA:.0%} acceptance this track is slower than baseline "
            f"(best K={high.k}: {high.speedup_at_high_alpha:.2f}x). Do not speculate here."
        )
    reachable = [p for p in preds if p.break_even_alpha is not None]
    low = min(reachable, key=lambda p: p.break_even_alpha or 0.0)
    best = report.best or high
    return (
        f"{head}. At {a} no K beats baseline (best K={best.k}: {best.speedup:.2f}x); "
        f"it would pay from {(low.break_even_alpha or 0.0):.0%} acceptance (K={low.k})."
    )


def _remote(costs: MeasuredCosts, preds: Sequence[KPrediction]) -> str:
    """Why speculation and remote workers go together: a network round trip per target call,
    which a verify batch pays once for all its tokens (the costs above include it)."""
    n = costs.workers
    k = min(4, len(preds))
    where = "a remote worker" if n == 1 else f"{n} remote workers (one after the other)"
    return (f"The target's layers are on {where}: each target call is a network round "
            f"trip ({1000 * costs.step:.1f} ms a step here, round trips included); a verify "
            f"batch of {k + 1} pays it once for {k + 1} tokens ({preds[k - 1].verify_steps:.2f} "
            "steps), so the slower the link, the more speculation saves.")


def _ks(ks: Sequence[int]) -> str:
    """"2-5" for a run of Ks, else "2, 4, 7"."""
    if len(ks) > 2 and list(ks) == list(range(ks[0], ks[-1] + 1)):
        return f"{ks[0]}-{ks[-1]}"
    return ", ".join(map(str, ks))


# -- measuring ----------------------------------------------------------------------------


def _context(model: LoadedModel, n: int) -> list[int]:
    ids = model.tokenize(_SYNTHETIC, add_bos=False, special=False) or [1, 2, 3]
    return (ids * (n // len(ids) + 1))[:n]


def _room(model: LoadedModel, need: int) -> int:
    """Where measuring starts: after what is cached, unless that leaves too little room."""
    if model.n_past + need > model.n_ctx:
        model.reset()
    return model.n_past


def measure(
    target: LoadedModel,
    draft: LoadedModel | None = None,
    sizes: Sequence[int] = SIZES,
    repeats: int = 3,
    budget_seconds: float = 4.0,
) -> MeasuredCosts:
    """Time target batches of ``sizes`` (fastest of up to ``repeats`` passes, fewer once
    ``budget_seconds`` is spent; one pass at least) and the draft's per-token step (fastest
    of DRAFT_STEPS). The KV caches are trimmed back to where they were."""
    t_begin = time.perf_counter()
    sizes = sorted({1, *sizes})
    ctx = _context(target, CONTEXT_TOKENS + max(sizes))
    start = _room(target, len(ctx))
    samples: dict[int, list[float]] = {n: [] for n in sizes}
    try:
        target.eval(ctx[:CONTEXT_TOKENS], 0)
        base = target.n_past
        # Untimed: the first batch of the largest size reserves llama.cpp's buffers.
        target.eval(ctx[CONTEXT_TOKENS:], max(sizes))
        target.trim(base)
        for _ in range(max(1, repeats)):
            for n in sizes:
                t0 = time.perf_counter()
                logits = target.eval(ctx[CONTEXT_TOKENS : CONTEXT_TOKENS + n], n)
                np.argmax(logits, axis=1)  # the verifier's own per-row work
                samples[n].append(time.perf_counter() - t0)
                target.trim(base)
            if time.perf_counter() - t_begin > budget_seconds:
                break
    finally:
        target.trim(start)
    draft_step = _draft_step(draft, ctx) if draft is not None else None
    # Other work on a shared CPU only ever adds time: take the fastest sample.
    fastest = {n: min(v) for n, v in samples.items()}
    batches = monotone(fastest)
    noisy = any(batches[n] < 0.9 * fastest[n] for n in sizes) or any(
        max(v) > NOISY_SPREAD * min(v) for v in samples.values()
    )
    return MeasuredCosts(batches, draft_step, time.perf_counter() - t_begin, noisy,
                         workers=len(target.options.devices))


def _draft_step(draft: LoadedModel, ctx: list[int]) -> float:
    """Seconds of one drafting step (one token in, its logits and confidence out): the
    fastest of DRAFT_STEPS, for the same reason as the target's batches."""
    start = _room(draft, CONTEXT_TOKENS + DRAFT_STEPS)
    times = []
    try:
        row = draft.eval(ctx[:CONTEXT_TOKENS], 1)[0]
        for _ in range(DRAFT_STEPS):
            t0 = time.perf_counter()
            token, _conf = top_probability(row)
            row = draft.eval([token], 1)[0]
            times.append(time.perf_counter() - t0)
    finally:
        draft.trim(start)
    return min(times)


def will_it_pay(
    target: LoadedModel,
    draft: LoadedModel | None = None,
    alpha: float | None = None,
    observed: Iterable[Event] | None = None,
    source: str | None = None,
    costs: MeasuredCosts | None = None,
) -> PayReport:
    """Measure (unless ``costs`` are given) and predict for ``source`` (default: the first
    source that costs a model step when a draft is given, else the first free one). Alpha:
    ``alpha``, else observed in ``observed`` events, else DEFAULT_ALPHA. A recurrent or
    hybrid target gets a report recommending K = 0."""
    kind = "model" if draft is not None else "free"
    source = source or next(s.id for s in registry.sources() if s.cost == kind)
    needs_model = _cost_kind(source) == "model"
    seen = observed_alpha(observed) if observed is not None else None
    a, how = (
        (alpha, "given")
        if alpha is not None
        else (seen, "observed")
        if seen is not None
        else (DEFAULT_ALPHA, "assumed")
    )
    if not target.info.speculation_allowed or target.is_recurrent or target.is_hybrid:
        return PayReport(source, a, how, None, explanation=target.info.speculation_reason)
    if needs_model and draft is None:
        raise ValueError("a draft-model prediction needs the draft model")
    costs = costs or measure(target, draft if needs_model else None)
    return predict(costs, a, source, how)

"""Token choice from logits: greedy, llama.cpp's repetition penalty and truncation chain,
and the exact speculative-sampling acceptance rule.

The chain is llama.cpp's order: the repetition penalty on the raw logits, then top-k,
top-p, min-p on temperature-1 probabilities, then the temperature, then a draw. The penalty
depends on the tokens before the position being sampled, so the engine applies it to every
row it verifies with the history up to that row (``penalised``): the baseline and every
speculative track then choose from the same logits, and greedy speculation still gives the
baseline's tokens. Verification with speculative sampling (Leviathan et al.
2023, Chen et al. 2023) keeps the output distribution exactly the target's, provided the
draft token was drawn from the very distribution ``q`` passed here; a deterministic drafter
(prompt lookup, or a greedy draft) passes ``q=None``, meaning one-hot.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SamplerSettings:
    temperature: float = 0.0
    top_k: int = 40
    top_p: float = 0.95
    min_p: float = 0.05
    # llama.cpp's repetition penalty: the logits of tokens among the last ``repeat_last_n``
    # (-1: all, 0: none) are divided by it when positive, multiplied when not; 1.0 = off.
    repeat_penalty: float = 1.0
    repeat_last_n: int = 64

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0.0


@dataclass(frozen=True)
class Distribution:
    """A sparse distribution: candidate ids with their probabilities (summing to 1)."""

    ids: np.ndarray
    probs: np.ndarray

    def prob(self, token: int) -> float:
        hit = np.nonzero(self.ids == token)[0]
        return float(self.probs[hit[0]]) if hit.size else 0.0

    def sample(self, rng: np.random.Generator) -> int:
        return int(self.ids[rng.choice(self.probs.size, p=self.probs)])


def penalised(
    row: np.ndarray, s: SamplerSettings, history: Sequence[int], extra: Sequence[int] = ()
) -> np.ndarray:
    """``row`` with the repetition penalty of ``s`` applied for the tokens of ``history``
    followed by ``extra`` (the drafts accepted before this row); ``row`` itself when the
    penalty is off. Never changes ``row`` (a view into llama.cpp's logits)."""
    n = s.repeat_last_n
    if s.repeat_penalty == 1.0 or n == 0 or not (history or extra):
        return row
    if n < 0:
        recent = [*history, *extra]
    else:  # the tail only: the history can be the whole context
        tail = list(extra[-n:])
        need = n - len(tail)
        recent = [*history[max(0, len(history) - need):], *tail] if need else tail
    ids = np.unique(np.asarray(recent, dtype=np.int64))
    ids = ids[(ids >= 0) & (ids < row.shape[0])]
    out = np.array(row, copy=True)
    hit = out[ids]
    out[ids] = np.where(hit <= 0, hit * s.repeat_penalty, hit / s.repeat_penalty)
    return out


def greedy(row: np.ndarray) -> int:
    return int(np.argmax(row))


def top_probability(row: np.ndarray) -> tuple[int, float]:
    """Argmax and its softmax probability (the drafter's confidence)."""
    best = int(np.argmax(row))
    peak = row[best]
    total = float(np.exp(row - peak, dtype=np.float32).sum())
    return best, 1.0 / total


def distribution(row: np.ndarray, s: SamplerSettings) -> Distribution:
    """The truncated, temperature-scaled distribution that ``s`` samples from."""
    n = row.shape[0]
    if 0 < s.top_k < n:
        cand = np.argpartition(row, n - s.top_k)[n - s.top_k :]
    else:
        cand = np.arange(n)
    logits = row[cand].astype(np.float64)
    order = np.argsort(-logits, kind="stable")
    cand, logits = cand[order], logits[order]
    p = np.exp(logits - logits[0])
    p /= p.sum()
    keep = p.size
    if s.top_p < 1.0:
        keep = min(keep, int(np.searchsorted(np.cumsum(p), s.top_p)) + 1)
    if s.min_p > 0.0:
        keep = min(keep, max(1, int(np.count_nonzero(p >= s.min_p * p[0]))))
    cand, logits = cand[:keep], logits[:keep]
    t = max(s.temperature, 1e-6)
    q = np.exp((logits - logits[0]) / t)
    q /= q.sum()
    return Distribution(cand, q)


def choose(row: np.ndarray, s: SamplerSettings, rng: np.random.Generator) -> int:
    return greedy(row) if s.greedy else distribution(row, s).sample(rng)


def verify_sampled(
    p: Distribution,
    token: int,
    q: Distribution | None,
    rng: np.random.Generator,
) -> int | None:
    """Speculative-sampling test of a draft ``token``.

    Returns None if accepted, otherwise the replacement token drawn from the residual
    distribution normalise(max(0, p - q)).
    """
    px = p.prob(token)
    qx = 1.0 if q is None else q.prob(token)
    if qx > 0.0 and rng.random() < min(1.0, px / qx):
        return None
    residual = p.probs.copy()
    if q is None:
        residual[p.ids == token] = 0.0
    else:
        q_on_p = np.zeros_like(residual)
        index = {int(t): i for i, t in enumerate(p.ids)}
        for t, prob in zip(q.ids, q.probs, strict=True):
            i = index.get(int(t))
            if i is not None:
                q_on_p[i] = prob
        residual = np.maximum(residual - q_on_p, 0.0)
    total = residual.sum()
    if total <= 0.0:
        return p.sample(rng)
    return int(p.ids[rng.choice(residual.size, p=residual / total)])

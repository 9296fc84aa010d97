"""A compared run's verdict against its baseline: speedup, same text, and where and how
narrowly the texts part. Run data: imports nothing of the engine (``compare.py`` runs the
comparisons).

Batched verification and one-token steps use different CPU kernels, so greedy outputs may
part at a near-tie (the baseline's two best logits within ``NEAR_TIE``) without any bug.
"""

from __future__ import annotations

import os
import statistics
from dataclasses import dataclass, field
from typing import Any

from app.core.events import RunResult, RunSettings

NEAR_TIE = 0.1


def spread(values: list[float]) -> dict[str, Any]:
    """Median, lowest, highest and relative spread ((highest - lowest) / median) of
    ``values`` (all None when there are none)."""
    if not values:
        return {"median": None, "min": None, "max": None, "spread": None, "values": []}
    mid = statistics.median(values)
    lo, hi = min(values), max(values)
    return {"median": mid, "min": lo, "max": hi,
            "spread": (hi - lo) / mid if mid > 0 else None, "values": list(values)}


@dataclass
class Repeats:
    """A track's figures over the repeats of a comparison: tokens per second of each run and
    its speedup against the baseline run of the same repeat (paired)."""

    tokens_per_second: list[float] = field(default_factory=list)
    speedups: list[float] = field(default_factory=list)

    @property
    def worst_speedup(self) -> float | None:
        return min(self.speedups) if self.speedups else None

    def to_dict(self) -> dict[str, Any]:
        return {"n": len(self.tokens_per_second),
                "tokens_per_second": spread(self.tokens_per_second),
                "speedup": spread(self.speedups)}


@dataclass
class ComparedRun:
    """One track of a comparison. With repeats, ``result`` is the track's median run,
    ``speedup`` the median of its paired speedups and ``repeats`` holds them all."""

    result: RunResult
    speedup: float | None
    same_text_as_baseline: bool | None
    first_difference: int | None = None
    baseline_margin: float | None = None
    repeats: Repeats | None = None

    @property
    def near_tie(self) -> bool | None:
        if self.baseline_margin is None:
            return None
        return self.baseline_margin < NEAR_TIE

    def to_dict(self, with_events: bool = True) -> dict[str, Any]:
        d = self.result.to_dict(with_events)
        d.update(
            speedup=self.speedup,
            same_text_as_baseline=self.same_text_as_baseline,
            first_difference=self.first_difference,
            baseline_margin_at_difference=self.baseline_margin,
            near_tie_at_difference=self.near_tie,
            repeats=self.repeats.to_dict() if self.repeats is not None else None,
        )
        return d


@dataclass
class Comparison:
    runs: list[ComparedRun] = field(default_factory=list)
    repeats: int = 1  # how many times the tracks ran, interleaved

    def to_dict(self, with_events: bool = True) -> dict[str, Any]:
        return {"runs": [r.to_dict(with_events) for r in self.runs], "repeats": self.repeats}


def first_difference(a: list[int], b: list[int]) -> int | None:
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))


def baseline_key(target_path: str, prompt: str, s: RunSettings) -> tuple[Any, ...]:
    """What a remembered baseline speed is valid for: everything that changes the speed of
    a plain run but not the track — the target file as it is now (path, size, time), the
    prompt and its rendering, threads, context, GPU layers, sampling and answer length. A
    baseline measured with 1 thread must not set the speedup of a 2-thread run."""
    try:
        st = os.stat(target_path)
        file_id: tuple[Any, ...] = (os.path.abspath(target_path), st.st_size, st.st_mtime_ns)
    except OSError:
        file_id = (str(target_path),)
    return (*file_id, prompt, s.chat, s.system or "", s.threads, s.ctx, s.gpu_layers,
            s.temperature, s.top_k, s.top_p, s.min_p, s.seed if s.temperature > 0 else None,
            s.max_tokens)

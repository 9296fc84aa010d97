"""Adaptive prompt lookup replayed with noisy timings: what learning costs from noise does.

``replay_lookup`` charges and teaches every round the exact recorded batch cost; live, the
cost model learns from timings that are noisy (a shared CPU: a few percent of jitter, now
and then one timing 1.5-3x slow). Here each replayed round is charged its exact cost (the
figure) but the cost model observes a noisy timing (what decides), as in a fresh process
that ran the baseline first (its plain steps observed, batch sizes unknown). ``--memory``
starts the cost model from the batch shapes an earlier session remembered
(``app.core.cost_memory``; here the recorded ones).

Prints per recorded prompt, over --seeds noise draws: adaptive K=8 against the best fixed
K (4 or 8, exact replay), median and worst, and the median number of drafted tokens.

    .venv/bin/python -m benchmarks.replay_noisy benchmarks/data/replay_f16_own.json
    .venv/bin/python -m benchmarks.replay_noisy benchmarks/data/replay_f16_own.json --memory
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
from typing import Any

from app.core.adaptive import CostModel
from app.core.drafting.base import Proposal
from app.core.drafting.lookup import PromptLookup


def true_steps(batches: dict[str, float], n: int) -> float:
    """A batch of n in plain steps, from the recorded costs (linear between sizes)."""
    if str(n) in batches:
        return batches[str(n)] / batches["1"]
    sizes = sorted(int(k) for k in batches)
    lo = max(x for x in sizes if x <= n)
    hi = min((x for x in sizes if x >= n), default=lo)
    if hi == lo:
        return batches[str(lo)] / batches["1"] * n / lo
    f = (n - lo) / (hi - lo)
    return (batches[str(lo)] * (1 - f) + batches[str(hi)] * f) / batches["1"]


def replay(data: dict[str, Any], name: str, k: int, adaptive: bool, seed: int, tokens: int,
           noise: float, outliers: float, memory: bool) -> tuple[float, int]:
    """(speedup over baseline, drafted tokens) of one replayed run."""
    rng = random.Random(seed)
    batches = data["batches"]

    def timing(n: int) -> float:
        t = batches["1"] * true_steps(batches, n) * rng.lognormvariate(0.0, noise)
        return t * rng.uniform(1.5, 3.0) if rng.random() < outliers else t

    costs = CostModel()
    for _ in range(tokens):  # the baseline run before it, in the same session
        costs.observe(1, timing(1))
    if memory:
        costs.remember({int(n): true_steps(batches, int(n)) for n in batches if n != "1"})
    prompt = data["prompts"][name]["prompt"]
    answer = data["prompts"][name]["answer"][:tokens]
    drafter = PromptLookup(1, 4, adaptive, costs)
    pos, steps, drafted = 0, 0.0, 0
    while pos < len(answer):
        limit = min(k, len(answer) - pos - 1)
        plain = (adaptive and costs.wants_step()) or limit <= 0
        prop = Proposal() if plain else drafter.propose(prompt + answer[:pos], limit, 1)
        accepted = 0
        while (accepted < len(prop.tokens)
               and prop.tokens[accepted] == answer[pos + accepted]):
            accepted += 1
        n = len(prop.tokens) + 1
        costs.observe(n, timing(n))
        if prop.tokens:
            drafter.observe(prop, accepted)
            drafted += len(prop.tokens)
        steps += true_steps(batches, n)
        pos += accepted + 1
    return len(answer) / steps, drafted


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("file")
    ap.add_argument("--tokens", type=int, default=160)
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--noise", type=float, default=0.08, help="lognormal sigma of a timing")
    ap.add_argument("--outliers", type=float, default=0.05, help="share of 1.5-3x slow timings")
    ap.add_argument("--memory", action="store_true", help="start from remembered shapes")
    a = ap.parse_args()
    with open(a.file) as fh:
        data = json.load(fh)
    print(f"# {data['target']}: adaptive K=8 / best fixed K, {a.seeds} noise draws "
          f"(sigma {a.noise}, {a.outliers:.0%} outliers), {a.tokens} tokens, "
          f"{'remembered shapes' if a.memory else 'batch shapes learned from scratch'}")
    medians = []
    for name in data["prompts"]:
        best = max(replay(data, name, k, False, 0, a.tokens, 0.0, 0.0, False)[0]
                   for k in (4, 8))
        runs = [replay(data, name, 8, True, s, a.tokens, a.noise, a.outliers, a.memory)
                for s in range(a.seeds)]
        ratios = sorted(sp / best for sp, _ in runs)
        medians.append(statistics.median(ratios))
        print(f"{name:<15} median {medians[-1]:.3f}  worst {ratios[0]:.3f}  drafted "
              f"{statistics.median(d for _, d in runs):.0f}")
    print(f"median of medians {statistics.median(medians):.3f}, lowest {min(medians):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

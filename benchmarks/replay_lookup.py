"""Replay free drafters (Track 8, suffix drafting) on recorded greedy answers, free of the
machine's noise.

At temperature 0 the answer does not depend on the drafter (lossless speculation), so a
drafter's rounds can be replayed on the recorded prompt and answer tokens: each round
proposes from the text so far, accepts the prefix that matches the answer, and is charged
the measured cost of its verification batch. The speedup is tokens per replayed second over
tokens per baseline step. Compared: llama-lookup's algorithm (our fixed-K mode reproduces
its drafts), our adaptive mode, and an oracle that drafts exactly the longest correct copy
of an earlier passage (an upper bound for any lookup drafter).

    # record answers and batch costs once (needs the model; a few minutes):
    .venv/bin/python -m benchmarks.replay_lookup record --target qwen2.5-coder-1.5b-f16 \
        --out benchmarks/data/replay_f16.json
    # replay (milliseconds); --breakdown adds where the steps go:
    .venv/bin/python -m benchmarks.replay_lookup replay benchmarks/data/replay_f16.json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from app.core.adaptive import CostModel
from app.core.drafting.base import Proposal
from app.core.drafting.lookup import PromptLookup
from app.core.drafting.suffix import SuffixDrafter
from app.core.events import RunSettings
from app.core.models.library import resolve_model
from app.core.predict import measure
from app.core.session import Session, render_prompt
from benchmarks.common import PROMPT_NAMES, templated, warm_page_cache

SIZES = (1, 2, 3, 5, 9, 17)


def record(target_spec: str, out: str, max_tokens: int, threads: int,
           names: tuple[str, ...] = PROMPT_NAMES) -> None:
    target = str(resolve_model(target_spec))
    warm_page_cache(target)
    session = Session()
    s = RunSettings(max_tokens=max_tokens, threads=threads, ctx=4096, track="baseline")
    data: dict[str, Any] = {"target": target_spec, "prompts": {}}
    try:
        for name in names:
            prompt = templated(target, name)
            result = session.run(target, None, prompt, s)
            assert session.target is not None
            ids = render_prompt(session.target, prompt, s.chat, s.system)
            data["prompts"][name] = {"prompt": ids, "answer": result.token_ids}
        assert session.target is not None
        samples = [measure(session.target, sizes=SIZES, repeats=5, budget_seconds=30).batches
                   for _ in range(2)]
    finally:
        session.close()
    data["batches"] = {n: min(c[n] for c in samples) for n in SIZES}
    with open(out, "w") as fh:
        json.dump(data, fh)


class Oracle:
    """Drafts the longest correct continuation found after any earlier occurrence of the
    longest matching suffix (up to 8 tokens): what no real lookup drafter can beat."""

    def __init__(self, answer_start: int, answer: list[int]):
        self.answer_start, self.answer = answer_start, answer

    def propose(self, history: list[int], limit: int, min_length: int = 1) -> Proposal:
        future = self.answer[len(history) - self.answer_start :]
        best: list[int] = []
        for n in range(min(8, len(history)), 0, -1):
            suffix = history[-n:]
            for p in range(n, len(history)):
                if history[p - n : p] == suffix:
                    length = 0
                    while (length < min(limit, len(future)) and p + length < len(history)
                           and history[p + length] == future[length]):
                        length += 1
                    if length > len(best):
                        best = future[:length]
            if best:
                break
        return Proposal("lookup", tokens=best, q=[None] * len(best), drafter=self)

    def observe(self, proposal: Proposal, accepted: int) -> None:
        pass


@dataclass
class Tally:
    """Where one replayed drafter's time went, in target steps (a plain step is 1)."""

    tokens: int = 0
    rounds: int = 0
    steps: float = 0.0
    empty_rounds: int = 0  # nothing drafted: a plain step
    missed_rounds: int = 0  # drafts proposed, the first one rejected
    drafted: int = 0
    accepted: int = 0
    wasted_steps: float = 0.0  # verify cost of the rejected drafts

    @property
    def speedup(self) -> float:
        return self.tokens / self.steps if self.steps else 0.0

    @property
    def acceptance(self) -> float:
        return self.accepted / max(1, self.drafted)


def replay_tally(data: dict[str, Any], name: str, make: Callable[[CostModel, list[int],
                 list[int]], Any], k_max: int, adaptive: bool, n_tokens: int) -> Tally:
    """One drafter replayed on one recorded answer."""
    # The same cost model adaptive drafting uses: measured sizes exact, a fitted line between.
    costs = CostModel()
    for n, seconds in data["batches"].items():
        costs.observe(int(n), float(seconds))

    def steps(n: int) -> float:
        return costs.batch(n) / costs.batch(1)

    prompt = data["prompts"][name]["prompt"]
    answer = data["prompts"][name]["answer"][:n_tokens]
    drafter = make(costs, prompt, answer)
    t = Tally(tokens=len(answer))
    first = adaptive  # the engine's first adaptive round is a plain, measuring step
    pos = 0
    while pos < len(answer):
        limit = min(k_max, len(answer) - pos - 1)
        prop = Proposal() if first or limit <= 0 else drafter.propose(
            prompt + answer[:pos], limit, 1)
        first = False
        accepted = 0
        while accepted < len(prop.tokens) and prop.tokens[accepted] == answer[pos + accepted]:
            accepted += 1
        if prop.tokens:
            drafter.observe(prop, accepted)
            t.drafted += len(prop.tokens)
            t.accepted += accepted
            t.missed_rounds += accepted == 0
            t.wasted_steps += steps(len(prop.tokens) + 1) - steps(accepted + 1)
        else:
            t.empty_rounds += 1
        t.rounds += 1
        t.steps += steps(len(prop.tokens) + 1)
        pos += accepted + 1
    return t


def replay(data: dict[str, Any], name: str, make: Callable[[CostModel, list[int], list[int]],
           Any], k_max: int, adaptive: bool, n_tokens: int) -> tuple[float, float]:
    """(speedup over baseline, acceptance) of one drafter on one recorded answer."""
    t = replay_tally(data, name, make, k_max, adaptive, n_tokens)
    return t.speedup, t.acceptance


def llama_lookup(costs: CostModel, prompt: list[int], answer: list[int]) -> PromptLookup:
    return PromptLookup(1, 4, False, costs)  # our fixed-K mode drafts exactly as llama-lookup


def ours_adaptive(costs: CostModel, prompt: list[int], answer: list[int]) -> PromptLookup:
    return PromptLookup(1, 4, True, costs)


def suffix_fixed(costs: CostModel, prompt: list[int], answer: list[int]) -> SuffixDrafter:
    # The registry's defaults: depth 32, length factor 2, min probability 0.1. One answer
    # per prompt: the tree over earlier answers (on in the app) has nothing to add here.
    return SuffixDrafter(32, 2.0, 0.1, False, costs)


def suffix_adaptive(costs: CostModel, prompt: list[int], answer: list[int]) -> SuffixDrafter:
    return SuffixDrafter(32, 2.0, 0.1, True, costs)


def oracle(costs: CostModel, prompt: list[int], answer: list[int]) -> Oracle:
    return Oracle(len(prompt), answer)


def print_breakdown(data: dict[str, Any], n_tokens: int) -> None:
    """Where the steps go: llama-lookup's best K, our adaptive drafter and the oracle."""
    print(f"\n# where the steps go ({n_tokens} tokens; steps = plain target steps)")
    print(f"{'prompt':<11}{'drafter':<18}{'speedup':>8}{'steps':>7}{'rounds':>7}{'empty':>6}"
          f"{'missed':>7}{'tok/round':>10}{'wasted':>7}")
    for name in data["prompts"]:
        fixed = [(f"llama-lookup K={k}", replay_tally(data, name, llama_lookup, k, False,
                                                       n_tokens)) for k in (2, 4, 8)]
        rows = [
            max(fixed, key=lambda row: row[1].speedup),
            ("ours adaptive", replay_tally(data, name, ours_adaptive, 16, True, n_tokens)),
            ("suffix K<=16", replay_tally(data, name, suffix_fixed, 16, False, n_tokens)),
            ("suffix adaptive", replay_tally(data, name, suffix_adaptive, 16, True, n_tokens)),
            ("oracle", replay_tally(data, name, oracle, 16, False, n_tokens)),
        ]
        for label, t in rows:
            print(f"{name:<11}{label:<18}{t.speedup:8.2f}{t.steps:7.1f}{t.rounds:7d}"
                  f"{t.empty_rounds:6d}{t.missed_rounds:7d}{t.tokens / t.rounds:10.2f}"
                  f"{t.wasted_steps:7.1f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    rec = sub.add_parser("record")
    rec.add_argument("--target", required=True)
    rec.add_argument("--out", required=True)
    rec.add_argument("--max-tokens", type=int, default=160)
    rec.add_argument("--threads", type=int, default=2)
    rec.add_argument("--prompts", default=",".join(PROMPT_NAMES),
                     help="comma-separated prompt names (shared, or benchmarks/prompts/)")
    rep = sub.add_parser("replay")
    rep.add_argument("file")
    rep.add_argument("--tokens", type=int, default=128)
    rep.add_argument("--adaptive-k", type=int, default=16,
                     help="draft-max of the adaptive drafters (the app's default is 8)")
    rep.add_argument("--breakdown", action="store_true",
                     help="also print where the steps go: rounds, empty and missed rounds, "
                          "tokens per round, steps spent verifying rejected drafts")
    args = ap.parse_args()
    if args.cmd == "record":
        record(args.target, args.out, args.max_tokens, args.threads,
               tuple(n for n in args.prompts.split(",") if n))
        return 0
    with open(args.file) as fh:
        data = json.load(fh)
    print(f"# {data['target']}: speedup / acceptance over {args.tokens} tokens")
    for name in data["prompts"]:
        cells = []
        for k in (2, 4, 8):
            sp, acc = replay(data, name, llama_lookup, k, False, args.tokens)
            cells.append(f"K={k} {sp:.2f}/{acc:.2f}")
        sp, acc = replay(data, name, ours_adaptive, args.adaptive_k, True, args.tokens)
        cells.append(f"adaptive {sp:.2f}/{acc:.2f}")
        sp, acc = replay(data, name, suffix_fixed, 16, False, args.tokens)
        cells.append(f"suffix {sp:.2f}/{acc:.2f}")
        sp, acc = replay(data, name, suffix_adaptive, args.adaptive_k, True, args.tokens)
        cells.append(f"suffix-adaptive {sp:.2f}/{acc:.2f}")
        sp, acc = replay(data, name, oracle, 16, False, args.tokens)
        cells.append(f"oracle {sp:.2f}")
        print(f"{name:<15}" + "  ".join(cells))
    if args.breakdown:
        print_breakdown(data, args.tokens)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Stability of adaptive drafting: the same comparison many times on prompts of each kind.

For every prompt (the shared prompts of ../shared/prompts and benchmarks/prompts/*.txt:
a refactor, an extraction, a translation of code, a long summary), each repeat runs, one
after the other: the baseline, then per track (Track 1 ``draft``, Track 8 ``lookup``)
adaptive drafting at each K of --adaptive-ks and fixed drafting at each K of --ks (each
repeat starting one configuration later, round the list), then the baseline again.
Speedups are paired: over the mean of the repeat's two baselines (one baseline per repeat
made the baseline the noisiest figure of all: here its tokens/s varied
by 8-9 % between repeats, the drafting runs' by 3-6 %, and every speedup of a repeat moved
with it; two, before and after, halve that and cancel a steady drift). The table gives per
configuration the median, lowest and highest speedup and the spread ((highest - lowest) /
median), and judges each adaptive configuration against the best fixed K's median of its
track:

- worst: its worst run >= 0.9 x the best fixed K's median;
- median: its median >= the best fixed K's median;
- floor: where the best fixed K pays >= 1.2x, no run below baseline (worst >= 1.0).

The same judgement is also made on tokens/s alone (columns "tok/s"), which no baseline
timing moves: it tells what adaptive drafting did from what the baseline's noise did.
``--rejudge FILE`` prints both from the runs of an earlier --json file without measuring.

By default each repeat starts a new session, as separate ``decodelab compare`` commands do
(what the sources learned starts empty; the batch costs start from what earlier sessions of
this benchmark measured, as the app remembers them, unless --no-cost-memory); --keep-session
keeps one session for the whole benchmark, as the window does (state carried across runs
and prompts).

The lead's measurement (about 3 minutes per repeat and prompt on the F16 pair here):

    nice .venv/bin/python -m benchmarks.stability --target qwen2.5-coder-1.5b-f16 \
        --draft qwen2.5-coder-0.5b --runs 10 --max-tokens 160 --json stability.json

A quick check that it works: ``--runs 1 --max-tokens 16`` (any pair, e.g. the tiny test
models).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from app.core.cost_memory import CostMemory
from app.core.events import RunResult, RunSettings
from app.core.models.library import resolve_model
from app.core.session import Session
from app.core.verdict import spread
from benchmarks.common import (
    OWN_PROMPTS,
    PROMPT_NAMES,
    PROMPTS_DIR,
    machine_summary,
    warm_page_cache,
)

WORST_OF_BEST = 0.9  # the worst adaptive run against the best fixed K's median
PAYS = 1.2  # where the best fixed K pays this much, adaptive never falls below baseline


@dataclass(frozen=True)
class Config:
    track: str
    adaptive: bool
    k: int

    @property
    def name(self) -> str:
        return f"{self.track} {'adaptive' if self.adaptive else 'fixed'} K={self.k}"


def prompts(names: str | None) -> dict[str, str]:
    """Every benchmark prompt by name: the shared ones, then this folder's."""
    found = {n: PROMPTS_DIR / f"{n}.txt" for n in PROMPT_NAMES}
    found.update({p.stem: p for p in sorted(OWN_PROMPTS.glob("*.txt"))})
    chosen = names.split(",") if names else list(found)
    missing = [n for n in chosen if n not in found or not found[n].is_file()]
    if missing:
        raise SystemExit(f"stability: no prompt file for {', '.join(missing)}")
    return {n: found[n].read_text(encoding="utf-8") for n in chosen}


def judge(runs: dict[Config, list[float]], track: str) -> list[tuple[Config, dict[str, Any]]]:
    # ``runs``: per configuration the figure judged (speedups, or tokens/s: the same rules)
    """Each adaptive configuration of ``track`` against the best fixed K's median."""
    fixed = [spread(v)["median"] for c, v in runs.items()
             if c.track == track and not c.adaptive and v]
    if not fixed:
        return []
    best = max(fixed)
    out = []
    for c, values in runs.items():
        if c.track != track or not c.adaptive or not values:
            continue
        s = spread(values)
        out.append((c, {
            "best_fixed_median": best,
            "worst_vs_best_fixed": s["min"] / best if best else None,
            "median_vs_best_fixed": s["median"] / best if best else None,
            "worst_ok": s["min"] >= WORST_OF_BEST * best,
            "median_ok": s["median"] >= best,
            "floor_ok": s["min"] >= 1.0 if best >= PAYS else None,
        }))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--target", required=True)
    ap.add_argument("--draft", required=True)
    ap.add_argument("--tracks", default="draft,lookup")
    ap.add_argument("--prompts", help="comma-separated prompt names (default: all)")
    ap.add_argument("--runs", type=int, default=10, help="repeats per prompt")
    ap.add_argument("--max-tokens", type=int, default=160)
    ap.add_argument("--ks", default="4,8", help="fixed draft lengths to compare against")
    ap.add_argument("--adaptive-ks", default="4,8", help="K (draft-max) of adaptive runs")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--keep-session", action="store_true",
                    help="one session for everything (the window's case)")
    ap.add_argument("--no-cost-memory", action="store_true",
                    help="every new session learns batch costs from the prior alone")
    ap.add_argument("--json", help="write every run's figures and the verdicts to this file")
    ap.add_argument("--rejudge", metavar="FILE",
                    help="judge the runs of an earlier --json file again; measure nothing")
    if "--rejudge" in sys.argv:  # the model arguments are not needed then
        args, _ = ap.parse_known_args([a for a in sys.argv[1:]
                                       if a not in ("--target", "--draft")] + ["--target", "-",
                                                                              "--draft", "-"])
        return rejudge(Path(args.rejudge))
    args = ap.parse_args()

    target = str(resolve_model(args.target))
    draft = str(resolve_model(args.draft))
    tracks = [t for t in args.tracks.split(",") if t]
    configs = [Config(t, True, int(k)) for t in tracks for k in args.adaptive_ks.split(",")]
    configs += [Config(t, False, int(k)) for t in tracks for k in args.ks.split(",")]
    texts = prompts(args.prompts)
    base = RunSettings(max_tokens=args.max_tokens, threads=args.threads, chat=True, ctx=4096)
    print(f"# {machine_summary()}")
    print(f"# target {args.target}, draft {args.draft}, {args.runs} runs per prompt, "
          f"{args.max_tokens} tokens, {args.threads} threads, chat, greedy, "
          f"{'one session' if args.keep_session else 'a new session per repeat'}, "
          f"batch costs {'not ' if args.no_cost_memory else ''}remembered across sessions")
    warm_page_cache(target, draft)
    records: list[dict[str, Any]] = []
    # As the app's runs do, sessions remember the batch costs earlier ones measured; in a
    # memory of this benchmark's own, so that its first repeat starts from the prior.
    memory = None if args.no_cost_memory else CostMemory(
        Path(tempfile.mkdtemp(prefix="decodelab-stability-")) / "batch_costs.json")
    session = Session(memory)
    try:
        for name, text in texts.items():
            for rep in range(args.runs):
                if not args.keep_session:
                    session.close()
                    session = Session(memory)
                b = session.run(target, None, text, replace(base, track="baseline"))
                # Each repeat starts the round at the next configuration: none always runs
                # first after a load or at the same point of the machine's drift.
                turn = rep % len(configs)
                done = [(c, session.run(target, draft, text, replace(
                    base, track=c.track, adaptive=c.adaptive, draft_max=c.k)))
                    for c in configs[turn:] + configs[:turn]]
                after = session.run(target, None, text, replace(base, track="baseline"))
                base_tps = (b.tokens_per_second + after.tokens_per_second) / 2
                for c, r in done:
                    sp = r.tokens_per_second / base_tps if base_tps else 0.0
                    records.append(_record(name, rep, c, r, b, after, sp))
                    print(f"  {name:<14} {rep + 1:>2} {c.name:<22} {sp:5.2f}x drafted "
                          f"{r.n_drafted:>4} acc {r.acceptance_rate or 0:.2f}"
                          + "".join(f"\n      note: {n}" for n in r.notes),
                          file=sys.stderr, flush=True)
    finally:
        session.close()
    verdicts = report(records, tracks)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump({"runs": records, "verdicts": verdicts}, fh, indent=1)
    return 0


def _record(name: str, rep: int, c: Config, r: RunResult, b: RunResult, after: RunResult,
            sp: float) -> dict[str, Any]:
    return {"prompt": name, "repeat": rep, "config": c.name, "track": c.track,
            "adaptive": c.adaptive, "k": c.k, "speedup": sp,
            "tokens_per_second": r.tokens_per_second,
            "baseline_tokens_per_second": b.tokens_per_second,
            "baseline_after_tokens_per_second": after.tokens_per_second,
            "n_drafted": r.n_drafted,
            "n_accepted": r.n_accepted, "n_rounds": r.n_rounds,
            "same_text_as_baseline": r.token_ids == b.token_ids, "notes": r.notes}


def _config(rec: dict[str, Any]) -> Config:
    if "track" in rec:
        return Config(rec["track"], rec["adaptive"], rec["k"])
    track, mode, k = rec["config"].split()  # files written before these keys
    return Config(track, mode == "adaptive", int(k.removeprefix("K=")))


def _missed(v: dict[str, Any]) -> list[str]:
    return [k[:-3] for k in ("worst_ok", "median_ok", "floor_ok") if v[k] is False]


def report(records: list[dict[str, Any]], tracks: list[str]) -> list[dict[str, Any]]:
    """Print the table and the verdicts (on speedups and on tokens/s); return the verdicts."""
    speedups: dict[str, dict[Config, list[float]]] = defaultdict(lambda: defaultdict(list))
    rates: dict[str, dict[Config, list[float]]] = defaultdict(lambda: defaultdict(list))
    bases: dict[str, list[float]] = defaultdict(list)
    for rec in records:
        speedups[rec["prompt"]][_config(rec)].append(rec["speedup"])
        rates[rec["prompt"]][_config(rec)].append(rec["tokens_per_second"])
    for rec in records:  # each repeat's baselines once
        if rec["config"] == records[0]["config"]:
            bases[rec["prompt"]] += [rec["baseline_tokens_per_second"]] + (
                [rec["baseline_after_tokens_per_second"]]
                if "baseline_after_tokens_per_second" in rec else [])
    print(f"{'prompt':<15}{'configuration':<24}{'median':>7}{'min':>7}{'max':>7}{'spread':>8}"
          f"{'worst/best':>11}{'med/best':>9}  verdict{'':<20}{'tok/s':>7}{'spread':>7}"
          f"{'worst/best':>11}{'med/best':>9}  verdict")
    verdicts = []
    for name, runs in speedups.items():
        judged = {c: v for t in tracks for c, v in judge(runs, t)}
        judged_tps = {c: v for t in tracks for c, v in judge(rates[name], t)}
        for c, values in runs.items():
            s, t = spread(values), spread(rates[name][c])
            line = (f"{name:<15}{c.name:<24}{s['median']:7.2f}{s['min']:7.2f}{s['max']:7.2f}"
                    f"{s['spread'] or 0:8.2f}")
            v, w = judged.get(c), judged_tps.get(c)
            if v is not None and w is not None:
                verdict = "ok" if not _missed(v) else "FAILS " + ",".join(_missed(v))
                verdict_tps = "ok" if not _missed(w) else "FAILS " + ",".join(_missed(w))
                line += (f"{v['worst_vs_best_fixed']:11.2f}{v['median_vs_best_fixed']:9.2f}  "
                         f"{verdict:<27}{t['median']:7.2f}{t['spread'] or 0:7.2f}"
                         f"{w['worst_vs_best_fixed']:11.2f}{w['median_vs_best_fixed']:9.2f}  "
                         f"{verdict_tps}")
                verdicts.append({"prompt": name, "config": c.name, **s, **v,
                                 "tokens_per_second": {**t, **w}})
            else:
                line += f"{'':<56}{t['median']:7.2f}{t['spread'] or 0:7.2f}"
            print(line)
        b = spread(bases[name])
        print(f"{name:<15}{'baseline':<24}{'':<76}{b['median']:7.2f}{b['spread'] or 0:7.2f}")
    for key, label in (("", "speedups"), ("tokens_per_second", "tokens/s")):
        failed = [v for v in verdicts if _missed(v[key] if key else v)]
        print(f"# on {label}: adaptive configurations judged: {len(verdicts)}, failing: "
              f"{len(failed)}" + "".join(f"\n#   {v['prompt']} {v['config']}: "
                                         + ",".join(_missed(v[key] if key else v))
                                         for v in failed))
    return verdicts


def rejudge(path: Path) -> int:
    """The table and verdicts of an earlier run's --json file."""
    records = json.loads(path.read_text(encoding="utf-8"))["runs"]
    report(records, sorted({_config(r).track for r in records}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

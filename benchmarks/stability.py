"""Stability of adaptive drafting: the same comparison many times on prompts of each kind.

For every prompt (the shared prompts of ../shared/prompts and benchmarks/prompts/*.txt:
a refactor, an extraction, a translation of code, a long summary), each repeat runs, one
after the other: the baseline, then per track (Track 1 ``draft``, Track 8 ``lookup``)
adaptive drafting at each K of --adaptive-ks and fixed drafting at each K of --ks. Speedups
are paired (against the baseline of the same repeat). The table gives per configuration the
median, lowest and highest speedup and the spread ((highest - lowest) / median), and judges
each adaptive configuration against the best fixed K's median of its track:

- worst: its worst run >= 0.9 x the best fixed K's median;
- median: its median >= the best fixed K's median;
- floor: where the best fixed K pays >= 1.2x, no run below baseline (worst >= 1.0).

By default each repeat starts a new session, as separate ``decodelab compare`` commands do
(costs and what the sources learned start empty); --keep-session keeps one session for the
whole benchmark, as the window does (state carried across runs and prompts).

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
from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from app.core.events import RunResult, RunSettings
from app.core.models.library import resolve_model
from app.core.session import Session
from app.core.verdict import spread
from benchmarks.common import PROMPT_NAMES, PROMPTS_DIR, machine_summary, warm_page_cache

OWN_PROMPTS = Path(__file__).resolve().parent / "prompts"
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
    ap.add_argument("--json", help="write every run's figures and the verdicts to this file")
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
          f"{'one session' if args.keep_session else 'a new session per repeat'}")
    warm_page_cache(target, draft)
    speedups: dict[str, dict[Config, list[float]]] = defaultdict(lambda: defaultdict(list))
    records: list[dict[str, Any]] = []
    session = Session()
    try:
        for name, text in texts.items():
            for rep in range(args.runs):
                if not args.keep_session:
                    session.close()
                    session = Session()
                b = session.run(target, None, text, replace(base, track="baseline"))
                for c in configs:
                    s = replace(base, track=c.track, adaptive=c.adaptive, draft_max=c.k)
                    r = session.run(target, draft, text, s)
                    sp = r.tokens_per_second / b.tokens_per_second if b.tokens_per_second else 0
                    speedups[name][c].append(sp)
                    records.append(_record(name, rep, c, r, b, sp))
                    print(f"  {name:<14} {rep + 1:>2} {c.name:<22} {sp:5.2f}x drafted "
                          f"{r.n_drafted:>4} acc {r.acceptance_rate or 0:.2f}"
                          + "".join(f"\n      note: {n}" for n in r.notes),
                          file=sys.stderr, flush=True)
    finally:
        session.close()
    verdicts = report(speedups, tracks)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump({"runs": records, "verdicts": verdicts}, fh, indent=1)
    return 0


def _record(name: str, rep: int, c: Config, r: RunResult, b: RunResult,
            sp: float) -> dict[str, Any]:
    return {"prompt": name, "repeat": rep, "config": c.name, "speedup": sp,
            "tokens_per_second": r.tokens_per_second,
            "baseline_tokens_per_second": b.tokens_per_second, "n_drafted": r.n_drafted,
            "n_accepted": r.n_accepted, "n_rounds": r.n_rounds,
            "same_text_as_baseline": r.token_ids == b.token_ids, "notes": r.notes}


def report(speedups: dict[str, dict[Config, list[float]]],
           tracks: list[str]) -> list[dict[str, Any]]:
    """Print the table and the verdicts; return the verdicts."""
    print(f"{'prompt':<15}{'configuration':<24}{'median':>7}{'min':>7}{'max':>7}{'spread':>8}"
          f"{'worst/best':>11}{'med/best':>9}  verdict")
    verdicts = []
    for name, runs in speedups.items():
        judged = {c: v for t in tracks for c, v in judge(runs, t)}
        for c, values in runs.items():
            s = spread(values)
            line = (f"{name:<15}{c.name:<24}{s['median']:7.2f}{s['min']:7.2f}{s['max']:7.2f}"
                    f"{s['spread'] or 0:8.2f}")
            v = judged.get(c)
            if v is not None:
                ok = [k for k in ("worst_ok", "median_ok", "floor_ok") if v[k] is not None]
                missed = [k[:-3] for k in ok if not v[k]]
                line += (f"{v['worst_vs_best_fixed']:11.2f}{v['median_vs_best_fixed']:9.2f}  "
                         + ("ok" if not missed else "FAILS " + ",".join(missed)))
                verdicts.append({"prompt": name, "config": c.name, **s, **v})
            print(line)
    failed = [v for v in verdicts if not (v["worst_ok"] and v["median_ok"]
                                          and v["floor_ok"] is not False)]
    print(f"# adaptive configurations judged: {len(verdicts)}, failing: {len(failed)}"
          + "".join(f"\n#   {v['prompt']} {v['config']}" for v in failed))
    return verdicts


if __name__ == "__main__":
    sys.exit(main())

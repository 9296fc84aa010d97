"""Every applicable track on every benchmark prompt: tokens/s, speedup, acceptance.

Runs are interleaved (baseline, track A, track B, baseline, ...) and repeated, and the
table reports medians, so that a slow minute of the shared machine hits all tracks alike.

    .venv/bin/python -m benchmarks.bench_tracks --target qwen2.5-coder-1.5b-f16 \
        --draft qwen2.5-coder-0.5b --repeats 3 --max-tokens 128
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from dataclasses import replace

from app.core.events import RunResult, RunSettings
from app.core.gguf_info import inspect_model
from app.core.models.library import resolve_model
from app.core.session import Session
from app.core.tracks import availability, get_track, working
from benchmarks.common import (
    PROMPT_NAMES,
    machine_summary,
    median,
    templated,
    warm_page_cache,
)


def applicable_tracks(target: str, draft: str | None) -> list[str]:
    from app.core.compat import check_draft

    t = inspect_model(target)
    d = inspect_model(draft) if draft else None
    compat = check_draft(t, d) if d else None
    return [tr.id for tr in working() if availability(tr, t, d, compat) is None]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--target", required=True)
    ap.add_argument("--draft")
    ap.add_argument("--tracks", help="comma-separated (default: every applicable track)")
    ap.add_argument("--prompts", default=",".join(PROMPT_NAMES))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--draft-max", type=int, default=8)
    ap.add_argument("--fixed", action="store_true", help="fixed K instead of adaptive")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", help="write all runs to this file")
    args = ap.parse_args()

    target = str(resolve_model(args.target))
    draft = str(resolve_model(args.draft)) if args.draft else None
    tracks = args.tracks.split(",") if args.tracks else applicable_tracks(target, draft)
    if "baseline" not in tracks:
        tracks.insert(0, "baseline")
    base = RunSettings(
        max_tokens=args.max_tokens,
        draft_max=args.draft_max,
        threads=args.threads,
        adaptive=not args.fixed,
        ctx=4096,
    )
    print(f"# {machine_summary()}")
    print(
        f"# target {args.target}, draft {args.draft}, {args.repeats} repeats, "
        f"{args.max_tokens} tokens, K={args.draft_max}, "
        f"{'fixed' if args.fixed else 'adaptive'}, {args.threads} threads"
    )
    warm_page_cache(target, draft)
    session = Session()
    results: dict[tuple[str, str], list[RunResult]] = defaultdict(list)
    try:
        for name in args.prompts.split(","):
            text = templated(target, name)
            for _ in range(args.repeats):
                for track in tracks:
                    s = replace(base, track=track, experts=1 if get_track(track).moe else None)
                    r = session.run(target, draft, text, s)
                    results[(name, track)].append(r)
                    print(
                        f"  {name:<10} {track:<16} {r.tokens_per_second:7.2f} tok/s "
                        f"acc {r.acceptance_rate or 0:.2f}",
                        file=sys.stderr,
                        flush=True,
                    )
    finally:
        session.close()
    print(
        f"{'prompt':<11}{'track':<17}{'tok/s':>7}{'speedup':>9}{'accept':>8}{'mean len':>9}"
        f"{'same':>6}"
    )
    for name in args.prompts.split(","):
        base_runs = results[(name, "baseline")]
        base_tps = median([r.tokens_per_second for r in base_runs])
        for track in tracks:
            runs = results[(name, track)]
            tps = median([r.tokens_per_second for r in runs])
            acc = [r.acceptance_rate for r in runs if r.acceptance_rate is not None]
            mal = [r.mean_accepted_length for r in runs if r.mean_accepted_length is not None]
            same = all(r.token_ids == base_runs[0].token_ids for r in runs)
            print(
                f"{name:<11}{track:<17}{tps:7.2f}{tps / base_tps:9.2f}"
                f"{median(acc) if acc else float('nan'):8.2f}"
                f"{median(mal) if mal else float('nan'):9.2f}{'yes' if same else 'no':>6}"
            )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(
                {f"{k[0]}/{k[1]}": [r.to_dict(False) for r in v] for k, v in results.items()},
                fh,
                indent=1,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())

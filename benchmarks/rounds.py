"""Round by round: what adaptive drafting drafted where fixed K drafted what.

One session, a baseline run first (as the stability benchmark's repeats start), then fixed
K and adaptive K alternately; for each run one line of totals and one of every round's
proposed/accepted drafts, then the draft and verify seconds of each round. Two runs that
draft the same tokens show the same sequence; where they part is where adaptive drafting
decided otherwise (session 10 found adaptive Track 1's extra round on the refactor prompt
this way: its early rounds drafted 4-5 where fixed K=8 drafted 8).

    nice .venv/bin/python -m benchmarks.rounds --target qwen2.5-coder-1.5b-f16 \
        --draft qwen2.5-coder-0.5b --prompt refactor --track draft --k 8
"""

from __future__ import annotations

import argparse
from dataclasses import replace

from app.core.events import RoundEvent, RunResult, RunSettings
from app.core.models.library import resolve_model
from app.core.session import Session
from benchmarks.common import machine_summary, prompt_text, warm_page_cache


def show(name: str, r: RunResult) -> None:
    rounds = [e for e in r.events if isinstance(e, RoundEvent)]
    print(f"{name}: {r.tokens_per_second:.2f} tok/s, {len(rounds)} rounds, drafted "
          f"{r.n_drafted}, accepted {r.n_accepted}, draft {r.draft_seconds:.2f} s, verify "
          f"{r.verify_seconds:.2f} s")
    print("  drafts   " + " ".join(f"{e.proposed}/{e.accepted}" for e in rounds))
    print("  draft s  " + " ".join(f"{e.draft_seconds:.2f}" for e in rounds))
    print("  verify s " + " ".join(f"{e.verify_seconds:.2f}" for e in rounds))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", required=True, help="GGUF path or pinned name")
    ap.add_argument("--draft", help="draft model (Track 1)")
    ap.add_argument("--prompt", default="refactor", help="a prompt name (benchmarks.common)")
    ap.add_argument("--track", default="draft")
    ap.add_argument("--k", type=int, default=8, help="K (draft-max) of both runs")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--max-tokens", type=int, default=160)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    target = str(resolve_model(a.target))
    draft = str(resolve_model(a.draft)) if a.draft else None
    text = prompt_text(a.prompt)
    base = RunSettings(max_tokens=a.max_tokens, threads=a.threads, chat=True, ctx=4096)
    print(f"# {machine_summary()}")
    warm_page_cache(target, draft)
    session = Session()
    try:
        show("baseline", session.run(target, None, text, replace(base, track="baseline")))
        for _ in range(a.repeats):
            for adaptive in (False, True):
                r = session.run(target, draft, text, replace(
                    base, track=a.track, adaptive=adaptive, draft_max=a.k))
                show(f"{'adaptive' if adaptive else 'fixed'} K={a.k}", r)
    finally:
        session.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Track 2 measured: tokens/s for every number of active experts, ours and llama.cpp's.

For each expert count N (default 1 … the model's expert count) and each repeat: our `moe`
track with ``experts=N``, `llama-completion --override-kv <arch>.expert_used_count=int:N`
right after it on the same prompt tokens and threads, our `moe+lookup` (Track 2 with
prompt lookup, adaptive as the app runs it) and `llama-lookup` with the same override. The
table gives medians, and each N's speed over the file's own N in the same repeat
("paired", which cancels the machine's drifts between repeats).

The default model, `synthetic-moe-8x` (`decodelab models fetch synthetic-moe-8x`), has
RANDOM WEIGHTS: its speeds are real, its text and prompt lookup's acceptance on it mean
nothing about real text. Build llama.cpp's tools first for their columns
(`bash benchmarks/build_llama_tools.sh`); without them only ours run. On a quiet machine:

    .venv/bin/python -m benchmarks.moe_experts --model synthetic-moe-8x --repeats 3 \
        --max-tokens 128 --threads 2
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

from app.core.errors import DecodeLabError
from app.core.events import RunSettings
from app.core.gguf_info import inspect_model
from app.core.models.library import resolve_model
from app.core.session import Session
from benchmarks.common import machine_summary, median, templated, warm_page_cache
from benchmarks.vs_llama_cpp import TOOLS, run_tool, stop_args

Rows = dict[tuple[str, int], list[float]]


def paired(rows: Rows, label: str, n: int, ref: int) -> float:
    """Median over repeats of (tokens/s at n) / (tokens/s at ref) for one configuration."""
    here, there = rows.get((label, n), []), rows.get((label, ref), [])
    return median([a / b for a, b in zip(here, there, strict=False) if b > 0])


def print_table(rows: Rows, acc: Rows, experts: list[int], default: int) -> None:
    """One line per expert count: each configuration's median tokens/s and its paired
    speedup over the file's own expert count."""
    labels = [lb for lb in ("ours moe", "llama-completion", "ours moe+lookup", "llama-lookup")
              if any((lb, n) in rows for n in experts)]
    head = "".join(f"{lb:>18}{'paired':>8}" for lb in labels)
    print(f"{'experts':<9}{head}{'lookup accept':>15}{'ours/llama':>12}")
    for n in experts:
        mark = "*" if n == default else " "
        cells = "".join(f"{median(rows.get((lb, n), [])):18.2f}{paired(rows, lb, n, default):8.2f}"
                        for lb in labels)
        a = acc.get(("ours moe+lookup", n))
        ours, theirs = rows.get(("ours moe", n), []), rows.get(("llama-completion", n), [])
        ratio = median([o / t for o, t in zip(ours, theirs, strict=False) if t > 0])
        print(f"{n:>6} {mark} {cells}{median(a) if a else float('nan'):15.2f}{ratio:12.2f}")
    print("(* the file's own expert count; paired = median of each repeat's ratio to it;"
          " ours/llama = ours moe over llama-completion, paired by repeat)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="synthetic-moe-8x", help="a pinned name or a GGUF path")
    ap.add_argument("--prompt", default="code_edit", help="a prompt of shared/prompts")
    ap.add_argument("--experts", default="", help="comma-separated counts (default: all)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ctx", type=int, default=4096)
    ap.add_argument("--lookup-k", type=int, default=8, help="llama-lookup's draft length")
    ap.add_argument("--tools", default=str(TOOLS))
    ap.add_argument("--skip-theirs", action="store_true", help="ours only")
    ap.add_argument("--skip-lookup", action="store_true", help="no moe+lookup, no llama-lookup")
    args = ap.parse_args()

    try:
        path = str(resolve_model(args.model))
        info = inspect_model(path)
        synthetic = info.random_weights
    except DecodeLabError as exc:
        print(f"moe_experts: {exc}", file=sys.stderr)
        return 1
    if not info.is_moe:
        print(f"moe_experts: {args.model} is not a Mixture-of-Experts model", file=sys.stderr)
        return 2
    total, default = info.expert_count, info.expert_used_count
    experts = ([int(x) for x in args.experts.split(",")] if args.experts
               else list(range(1, total + 1)))
    if any(not 1 <= n <= total for n in experts):
        print(f"moe_experts: expert counts must be in 1…{total}", file=sys.stderr)
        return 2
    if default not in experts:
        experts = sorted({*experts, default})  # the reference of the paired ratios
    tools = Path(args.tools)
    theirs = not args.skip_theirs and (tools / "llama-completion").is_file()
    t, key = str(args.threads), f"{info.architecture}.expert_used_count"
    # "-n" per tool: see vs_llama_cpp.stop_args.
    common = ["--temp", "0", "-t", t, "-tb", t, "-c", str(args.ctx), "--seed", "0"]

    print(f"# {machine_summary()}")
    print(f"# model {args.model}: {total} experts, {default} active by default; prompt "
          f"{args.prompt}, {args.max_tokens} tokens, {args.threads} threads, ctx {args.ctx}, "
          f"{args.repeats} repeats (medians)")
    if synthetic:
        print("# random weights: speed only (the text, and prompt lookup's acceptance on it, "
              "mean nothing)")
    if not theirs and not args.skip_theirs:
        print(f"# llama.cpp's tools not found in {tools}: ours only "
              "(bash benchmarks/build_llama_tools.sh)")
    prompt = templated(path, args.prompt)
    warm_page_cache(path)
    rows: Rows = defaultdict(list)
    acc: Rows = defaultdict(list)
    session = Session()
    try:
        for rep in range(args.repeats):
            for n in experts:
                # Each of ours runs right next to llama.cpp's counterpart at the same N, so
                # that the machine's drifts hit both alike.
                override = ["--override-kv", f"{key}=int:{n}"]
                steps: list[tuple[str, RunSettings | list[str]]] = [
                    ("ours moe", RunSettings(track="moe", experts=n, max_tokens=args.max_tokens,
                                             threads=args.threads, ctx=args.ctx))]
                if theirs:
                    steps.append(("llama-completion", [str(tools / "llama-completion"), "-m",
                                                       path, "-p", prompt, "-no-cnv", "-n",
                                                       str(args.max_tokens), *common, *override]))
                if not args.skip_lookup:
                    steps.append(("ours moe+lookup", RunSettings(
                        track="moe+lookup", experts=n, max_tokens=args.max_tokens,
                        threads=args.threads, ctx=args.ctx)))
                    if theirs and (tools / "llama-lookup").is_file():
                        steps.append(("llama-lookup", [str(tools / "llama-lookup"), "-m", path,
                                                       "--spec-draft-n-max", str(args.lookup_k),
                                                       "-p", prompt, *stop_args(args.max_tokens),
                                                       *common, *override]))
                for label, job in steps:
                    if isinstance(job, list):
                        res = run_tool(job, args.max_tokens)
                        tps = res["tps"]
                        rate = res["n_accept"] / res["n_drafted"] if res.get("n_drafted") else None
                        note = ""
                    else:
                        r = session.run(path, None, prompt, job)
                        tps, rate = r.tokens_per_second, r.acceptance_rate
                        used = r.effective.get("expert_used_count")
                        note = f" ({r.n_generated} tokens, {r.stop_reason}, {used} experts)"
                    rows[(label, n)].append(tps)
                    if rate is not None:
                        acc[(label, n)].append(rate)
                    print(f"  [{rep}] N={n} {label}: {tps:.2f} tok/s{note}", file=sys.stderr,
                          flush=True)
    finally:
        session.close()
    print_table(rows, acc, experts, default)
    return 0


if __name__ == "__main__":
    sys.exit(main())

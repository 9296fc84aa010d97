"""Our tracks next to llama.cpp's own C++ tools, on the same files, prompt tokens, K, threads.

Speedups are ratios taken within one run on this machine: ours against our baseline, and
llama.cpp's speculative tools against `llama-completion`'s decode speed. Each configuration
is repeated; each of ours runs right next to its llama.cpp counterpart. The table gives the
median tokens/s, their ratio ("speedup"), and the median of each repeat's own ratio
("paired", which cancels drifts between repeats).
Build the tools first: `bash benchmarks/build_llama_tools.sh`.

    .venv/bin/python -m benchmarks.vs_llama_cpp --target qwen2.5-coder-1.5b-f16 \
        --draft qwen2.5-coder-0.5b --prompts code_edit,summarize --ks 4,8 --repeats 3
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

from app.core.drafting.draft_model import learned_acceptance
from app.core.events import RunResult, RunSettings
from app.core.models.library import resolve_model
from app.core.session import Session
from benchmarks.common import (
    PROMPT_NAMES,
    machine_summary,
    median,
    templated,
    warm_page_cache,
)

TOOLS = Path.home() / ".cache/decodelab/llama-tools/build-0.3.36/bin"
SPEED = re.compile(r"decoded\s+(\d+) tokens in\s+([\d.]+) seconds, speed:\s+([\d.]+) t/s")
EVAL = re.compile(r"\beval time =\s+([\d.]+) ms /\s+(\d+) runs")
PROMPT_EVAL = re.compile(r"prompt eval time =\s+([\d.]+) ms")
ENCODED = re.compile(r"encoded\s+\d+ tokens in\s+([\d.]+) seconds")
DRAFT_MS = re.compile(r"\bt_draft\s*=\s*([\d.]+) ms")
COUNT = re.compile(r"\b(n_drafted|n_accept)\s*=\s*(\d+)")


def stop_args(n_tokens: int) -> list[str]:
    """``-n`` for llama-lookup and llama-speculative-simple so that they stop where ours does.

    Both stop only once they have *passed* ``-n`` (``n_predict > -n``, checked after each
    round): with ``-n N``, a round that ends exactly on N is followed by one more whole
    round that ours never makes. With ``-n N-1`` their loops end with the round that reaches
    N (which may run past it: the speed is counted at N, see ``run_tool``)."""
    return ["-n", str(max(1, n_tokens - 1))]


def run_tool(args: list[str], n_tokens: int | None = None,
             last_prompt_token_untimed: bool | None = None) -> dict[str, float]:
    """Run one of llama.cpp's tools; its decode speed and draft counts.

    With ``n_tokens`` the speed is counted at exactly that many tokens, as ours is
    ("printed_tps" keeps theirs): the tools may decode past it (see ``stop_args``).

    ``last_prompt_token_untimed``: llama-lookup decodes the prompt's last token alone, before
    its timer starts, and takes its first answer token from those logits for free. Ours (and
    llama-speculative-simple) evaluate that token in the first timed round, together with the
    first drafts. So that both clocks start at the same point (the prompt but its last token
    in the cache), one of its single-token decodes (its own mean, from its perf print) is
    added to its loop's time; "printed_tps" keeps its own figure. None: by the tool's name.
    """
    if last_prompt_token_untimed is None:
        last_prompt_token_untimed = Path(args[0]).name == "llama-lookup"
    # errors="replace": a random-weight model (the synthetic MoE) prints bytes that are not
    # UTF-8, and only the timing lines are read.
    proc = subprocess.run(args, capture_output=True, text=True, errors="replace", timeout=1800)
    out = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise RuntimeError(f"{Path(args[0]).name} failed: {out[-800:]}")
    found: dict[str, float] = {}
    evals, batches = EVAL.findall(out), PROMPT_EVAL.findall(out)
    if evals:
        # The target's perf print comes last (llama-speculative-simple prints the draft's
        # first). llama.cpp files a decode of one token under "eval", of several (the
        # prompt, and every verify batch) under "prompt eval".
        found["eval_ms"], found["eval_runs"] = float(evals[-1][0]), float(evals[-1][1])
    if batches:
        found["batch_ms"] = float(batches[-1])
    if m := ENCODED.search(out):
        found["encode_s"] = float(m.group(1))
    if m := DRAFT_MS.search(out):
        found["draft_ms"] = float(m.group(1))
    if m := SPEED.search(out):
        found["printed_tps"] = float(m.group(3))
        found["n_decoded"] = float(m.group(1))
        found["seconds"] = float(m.group(2))
        counted = min(int(m.group(1)), n_tokens) if n_tokens else int(m.group(1))
        seconds = found["seconds"]
        if last_prompt_token_untimed:
            if not evals:
                raise RuntimeError(f"no eval time in output of {Path(args[0]).name}")
            found["untimed_s"] = found["eval_ms"] / found["eval_runs"] / 1000.0
            seconds += found["untimed_s"]
        found["tps"] = counted / seconds
    elif evals:
        found["tps"] = found["eval_runs"] / (found["eval_ms"] / 1000.0)
    for key, value in COUNT.findall(out):
        found[key] = float(value)
    if "tps" not in found:
        raise RuntimeError(f"no speed in output of {Path(args[0]).name}: {out[-800:]}")
    return found


Job = tuple[RunSettings, str | None] | list[str]


def plan(args: argparse.Namespace, ks: list[int], base: RunSettings, target: str, draft: str,
         tools: Path, t: str, common: list[str], prompt: str) -> list[tuple[str, Job]]:
    """The configurations of one repeat, ours next to llama.cpp's counterpart."""
    theirs = not args.skip_theirs
    n = base.max_tokens
    # Suffix drafting without its tree of earlier answers: every repeat answers the same
    # prompt, and the earlier identical answer would be drafted whole (not a fair figure).
    suffix_base = base.with_options(suffix_history=False)
    steps: list[tuple[str, Job]] = [("ours baseline", (replace(base, track="baseline"), None))]
    if theirs:
        steps.append(("llama-completion", [str(tools / "llama-completion"), "-m", target, "-p",
                                           prompt, "-no-cnv", "-n", str(n), *common]))
    wanted = set(args.tracks.split(","))
    for k in [] if args.adaptive_only else ks:
        if "draft" in wanted:
            steps.append((f"ours draft K={k}",
                          (replace(base, track="draft", draft_max=k, adaptive=False), draft)))
        if theirs and "draft" in wanted:
            steps.append((f"llama-speculative-simple K={k}",
                          [str(tools / "llama-speculative-simple"), "-m", target, "-md", draft,
                           "--spec-type", "draft-simple", "--spec-draft-n-max", str(k), "-p",
                           prompt, "-td", t, "-tbd", t, *stop_args(n), *common]))
        if "lookup" in wanted:
            steps.append((f"ours lookup K={k}",
                          (replace(base, track="lookup", draft_max=k, adaptive=False), None)))
        if theirs and "lookup" in wanted:
            steps.append((f"llama-lookup K={k}",
                          [str(tools / "llama-lookup"), "-m", target, "--spec-draft-n-max",
                           str(k), "-p", prompt, *stop_args(n), *common]))
        if "suffix" in wanted:
            fixed = replace(suffix_base, track="suffix", draft_max=k, adaptive=False)
            steps.append((f"ours suffix K={k}", (fixed, None)))
    if "suffix" in wanted:
        adaptive = replace(suffix_base, track="suffix", draft_max=16)
        steps.append(("ours suffix adaptive", (adaptive, None)))
    if "draft" in wanted:
        steps.append(("ours draft adaptive", (replace(base, track="draft", draft_max=16),
                                              draft)))
    if "lookup" in wanted:
        steps.append(("ours lookup adaptive", (replace(base, track="lookup", draft_max=16),
                                               None)))
    return steps


def their_time_split(res: dict[str, float]) -> str:
    """Where a llama.cpp tool's decode loop spent its time (the target's decodes, drafting,
    the rest), to set against ours at identical drafts."""
    if not {"seconds", "eval_ms", "batch_ms", "encode_s"} <= res.keys():
        return ""
    # Its multi-token decodes include the prompt, timed apart as "encoded".
    batched = res["batch_ms"] / 1000.0 - res["encode_s"]
    single, draft = res["eval_ms"] / 1000.0, res.get("draft_ms", 0.0) / 1000.0
    rest = res["seconds"] - batched - single - draft
    return (f" [target decode {batched + single:.2f} s ({res['eval_runs']:.0f} single-token"
            f" calls {single:.2f} s), draft {draft:.2f} s, rest {rest:.2f} s]")


def our_time_split(r: RunResult) -> str:
    calls = r.n_generated - r.n_accepted
    rest = r.generation_seconds - r.verify_seconds - r.draft_seconds
    return (f" [verify {r.verify_seconds:.2f} s in {calls} calls, draft {r.draft_seconds:.2f} s,"
            f" rest {rest:.2f} s]")


def plan_inputs(session: Session, result: RunResult) -> str:
    """What adaptive drafting planned from, as it stood after the run: the learned costs
    (in plain steps), the draft pair's acceptance so far, and what it then drafted."""
    costs = session.learned_costs()
    if costs is None or not costs.step or result.n_rounds == 0:
        return ""
    sizes = ", ".join(f"{n}: {costs.batch(n) / costs.step:.2f}" for n in (2, 5, 9, 17))
    learned = (learned_acceptance(session.memory.get("draft", {}), session.target.path,
                                  session.draft.path)
               if "draft" in result.track and session.target and session.draft else None)
    chance = f", pair's acceptance {learned[0]:.3f} of {learned[1]}" if learned else ""
    return (f" [step {costs.step * 1000:.1f} ms, draft step {costs.draft_step / costs.step:.2f},"
            f" batch {sizes}{chance}; drafted {result.n_drafted / result.n_rounds:.1f}/round"
            f" in {result.n_rounds} rounds]")


def print_table(prompts: list[str], rows: dict[tuple[str, str], list[float]],
                acc: dict[tuple[str, str], list[float]]) -> None:
    """Medians of tokens/s, and of each repeat's speedup over its own side's baseline of
    the same repeat (pairing cancels the slow drifts that a ratio of medians keeps)."""
    print(f"{'prompt':<11}{'configuration':<34}{'tok/s':>8}{'speedup':>9}{'paired':>8}"
          f"{'accept':>8}")
    for name in prompts:
        for (pname, label), values in rows.items():
            if pname != name:
                continue
            ref_label = "ours baseline" if label.startswith("ours") else "llama-completion"
            ref = rows.get((name, ref_label), [])
            ratio = median(values) / median(ref) if ref else float("nan")
            paired = median([v / b for v, b in zip(values, ref, strict=False)])
            a = acc.get((name, label))
            print(f"{name:<11}{label:<34}{median(values):8.2f}{ratio:9.2f}{paired:8.2f}"
                  f"{median(a) if a else float('nan'):8.2f}")
        ours, theirs = rows.get((name, "ours baseline")), rows.get((name, "llama-completion"))
        if ours and theirs:
            pairs = [o / t for o, t in zip(ours, theirs, strict=False)]
            print(f"{name:<11}{'ours baseline / llama-completion':<34}{'':8}{'':9}"
                  f"{median(pairs):8.2f}   (each repeat: {', '.join(f'{x:.2f}' for x in pairs)})")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--target", required=True)
    ap.add_argument("--draft", required=True)
    ap.add_argument("--prompts", default=",".join(PROMPT_NAMES))
    ap.add_argument("--ks", default="4,8")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ctx", type=int, default=4096)
    ap.add_argument("--tools", default=str(TOOLS))
    ap.add_argument("--skip-theirs", action="store_true")
    ap.add_argument("--tracks", default="draft,lookup",  # also: suffix
                    help="which speculating tracks to run (baselines always run)")
    ap.add_argument("--adaptive-only", action="store_true",
                    help="only baseline and the adaptive tracks (ours)")
    args = ap.parse_args()

    target, draft = str(resolve_model(args.target)), str(resolve_model(args.draft))
    tools, t = Path(args.tools), str(args.threads)
    ks = [int(k) for k in args.ks.split(",")]
    # "-n" per tool: see stop_args.
    common = ["--temp", "0", "-t", t, "-tb", t, "-c", str(args.ctx), "--seed", "0"]
    base = RunSettings(max_tokens=args.max_tokens, threads=args.threads, ctx=args.ctx)
    print(f"# {machine_summary()}")
    print(f"# target {args.target}, draft {args.draft}, {args.max_tokens} tokens, "
          f"{args.threads} threads, ctx {args.ctx}, {args.repeats} repeats (medians)")
    rows: dict[tuple[str, str], list[float]] = defaultdict(list)
    acc: dict[tuple[str, str], list[float]] = defaultdict(list)
    warm_page_cache(target, draft)
    session = Session()
    try:
        for name in args.prompts.split(","):
            prompt = templated(target, name)
            steps = plan(args, ks, base, target, draft, tools, t, common, prompt)
            for rep in range(args.repeats):
                # Each of our configurations runs right next to llama.cpp's counterpart, so
                # that the machine's drifts (10-20% here within minutes) hit both alike.
                for label, job in steps:
                    if isinstance(job, list):
                        res = run_tool(job, args.max_tokens)
                        tps, rate = res["tps"], (res["n_accept"] / res["n_drafted"]
                                                 if res.get("n_drafted") else None)
                        note = (f" (printed {res['printed_tps']:.2f} for "
                                f"{res['n_decoded']:.0f} tokens)" if "printed_tps" in res else "")
                        if "untimed_s" in res:
                            note += f" (+{res['untimed_s']:.3f} s: its last prompt token)"
                        note += their_time_split(res)
                    else:
                        settings, d = job
                        r = session.run(target, d, prompt, settings)
                        tps, rate = r.tokens_per_second, r.acceptance_rate
                        note = our_time_split(r)
                        note += plan_inputs(session, r) if settings.adaptive else ""
                    rows[(name, label)].append(tps)
                    if rate is not None:
                        acc[(name, label)].append(rate)
                    print(f"  [{rep}] {name} {label}: {tps:.2f} tok/s{note}", file=sys.stderr,
                          flush=True)
    finally:
        session.close()
    print_table(args.prompts.split(","), rows, acc)
    return 0


if __name__ == "__main__":
    sys.exit(main())

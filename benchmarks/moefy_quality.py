"""Track 2 on a model that writes real text: quality and speed of a MoEfied dense model for
every number of active experts.

The MoE comes from app/core/models/moefy.py (a real dense model's FFN neurons split into
experts, routers fitted on calibration text; not a trained MoE). For each expert count k:

- quality, on a held-out text the derivation never saw (resources/calibration/heldout.txt,
  each document evaluated on its own, teacher-forced): top-1 agreement of the MoE's next
  token with the dense model's and with the MoE's own all-experts answer, the mean
  KL(dense ‖ MoE) in nats per token and the perplexity of the text;
- speed: our `moe` track with ``experts=k`` (greedy, the chat-templated prompt) and, when
  llama.cpp's tools are built, `llama-completion --override-kv deepseek.expert_used_count=
  int:k` right after it; medians over repeats and each k's speed over the file's own k in
  the same repeat ("paired"). The dense source's baseline speed is measured alongside.
  "same" = how many of the greedy answer's first tokens equal the dense model's.

    .venv/bin/python -m benchmarks.moefy_quality --model /path/to/moefied.gguf \\
        --dense qwen2.5-coder-0.5b --repeats 3 --max-tokens 64 --threads 2
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from app.core.errors import DecodeLabError
from app.core.events import RunSettings
from app.core.gguf_info import inspect_model
from app.core.llama_backend import LoadedModel, LoadOptions
from app.core.models.library import resolve_model
from app.core.models.moefy import calibration_path
from app.core.models.moefy_plan import DOC_SEPARATOR
from app.core.session import Session
from benchmarks.common import machine_summary, median, templated, warm_page_cache
from benchmarks.vs_llama_cpp import TOOLS, run_tool

Rows = dict[tuple[str, int], list[float]]


def documents(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    return [d.strip("\n") for d in text.split(DOC_SEPARATOR) if d.strip()]


def log_probs(path: str, docs: list[str], experts: int | None,
              threads: int) -> list[np.ndarray]:
    """Each document's next-token log-probabilities (float32, one row per token but the
    last), teacher-forced; ``experts`` overrides the active expert count."""
    model = LoadedModel(path, LoadOptions(n_ctx=2048, n_batch=512, threads=threads,
                                          expert_used_count=experts))
    out = []
    try:
        for doc in docs:
            tokens = model.tokenize(doc, add_bos=True, special=False)[:512]
            model.reset()
            logits = np.array(model.eval(tokens, len(tokens)), dtype=np.float64)[:-1]
            logits -= logits.max(axis=1, keepdims=True)
            logits -= np.log(np.exp(logits).sum(axis=1, keepdims=True))
            out.append(logits.astype(np.float32))
    finally:
        model.close()
    return out


def targets(path: str, docs: list[str]) -> list[np.ndarray]:
    """Each document's actual next tokens (for the perplexity)."""
    model = LoadedModel(path, LoadOptions(n_ctx=2048, n_batch=512, threads=1))
    try:
        return [np.array(model.tokenize(d, add_bos=True, special=False)[:512][1:]) for d in docs]
    finally:
        model.close()


def quality(dense: list[np.ndarray], full: list[np.ndarray], moe: list[np.ndarray],
            truth: list[np.ndarray]) -> dict[str, float]:
    """Agreement with the dense model and the all-experts MoE, KL(dense ‖ moe), perplexity."""
    d, f, m = (np.concatenate(x) for x in (dense, full, moe))
    nll = -np.concatenate([lp[np.arange(len(t)), t] for lp, t in zip(moe, truth, strict=True)])
    kl = (np.exp(d.astype(np.float64)) * (d.astype(np.float64) - m)).sum(axis=1)
    return {"agree_dense": float((m.argmax(1) == d.argmax(1)).mean()),
            "agree_full": float((m.argmax(1) == f.argmax(1)).mean()),
            "kl": float(kl.mean()), "ppl": float(np.exp(nll.mean())), "n": float(len(d))}


def same_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="the MoEfied GGUF (a pinned name or path)")
    ap.add_argument("--dense", default="qwen2.5-coder-0.5b", help="its dense source")
    ap.add_argument("--text", default=str(calibration_path("heldout.txt")),
                    help="held-out text (documents separated by a '=====' line)")
    ap.add_argument("--prompt", default="code_edit", help="a prompt of shared/prompts")
    ap.add_argument("--experts", default="", help="comma-separated counts (default: all)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ctx", type=int, default=4096)
    ap.add_argument("--tools", default=str(TOOLS))
    ap.add_argument("--skip-theirs", action="store_true", help="ours only")
    ap.add_argument("--skip-speed", action="store_true", help="quality only")
    ap.add_argument("--skip-quality", action="store_true", help="speed only")
    args = ap.parse_args()

    try:
        path, dense = str(resolve_model(args.model)), str(resolve_model(args.dense))
        info = inspect_model(path)
        docs = documents(Path(args.text))
    except (DecodeLabError, OSError) as exc:
        print(f"moefy_quality: {exc}", file=sys.stderr)
        return 1
    if not info.is_moe:
        print(f"moefy_quality: {args.model} is not a Mixture-of-Experts model", file=sys.stderr)
        return 2
    total, default = info.expert_count, info.expert_used_count
    experts = ([int(x) for x in args.experts.split(",")] if args.experts
               else list(range(1, total + 1)))
    if any(not 1 <= n <= total for n in experts):
        print(f"moefy_quality: expert counts must be in 1…{total}", file=sys.stderr)
        return 2
    print(f"# {machine_summary()}")
    print(f"# MoE {Path(path).name}: {total} routed experts, {default} active by default; "
          f"dense source {Path(dense).name}")

    scores: dict[int, dict[str, float]] = {}
    if not args.skip_quality:
        print(f"# quality: {len(docs)} held-out documents of {args.text}, teacher-forced")
        ref = log_probs(dense, docs, None, args.threads)
        full = log_probs(path, docs, total, args.threads)
        truth = targets(dense, docs)
        dense_ppl = quality(ref, ref, ref, truth)["ppl"]
        for n in sorted({*experts, total}, reverse=True):
            moe = full if n == total else log_probs(path, docs, n, args.threads)
            scores[n] = quality(ref, full, moe, truth)
            s = scores[n]
            print(f"  k={n}: agree dense {s['agree_dense']:.3f}, agree all-experts "
                  f"{s['agree_full']:.3f}, KL {s['kl']:.4f}, ppl {s['ppl']:.2f}", file=sys.stderr,
                  flush=True)
        print(f"# dense perplexity {dense_ppl:.2f} on {int(scores[total]['n'])} tokens")

    rows: Rows = defaultdict(list)
    same: dict[int, list[int]] = defaultdict(list)
    tools = Path(args.tools)
    theirs = not args.skip_theirs and (tools / "llama-completion").is_file()
    if not args.skip_speed:
        if not theirs and not args.skip_theirs:
            print(f"# llama.cpp's tools not found in {tools}: ours only "
                  "(bash benchmarks/build_llama_tools.sh)")
        print(f"# speed: prompt {args.prompt}, {args.max_tokens} tokens, {args.threads} threads,"
              f" {args.repeats} repeats (medians); the machine may be shared")
        prompt = templated(path, args.prompt)
        warm_page_cache(path, dense)
        t = str(args.threads)
        common = ["-n", str(args.max_tokens), "--temp", "0", "-t", t, "-tb", t, "-c",
                  str(args.ctx), "--seed", "0"]
        session = Session()
        try:
            for rep in range(args.repeats):
                base = session.run(dense, None, prompt, RunSettings(
                    max_tokens=args.max_tokens, threads=args.threads, ctx=args.ctx))
                rows[("dense baseline", 0)].append(base.tokens_per_second)
                for n in experts:
                    r = session.run(path, None, prompt, RunSettings(
                        track="moe", experts=n, max_tokens=args.max_tokens,
                        threads=args.threads, ctx=args.ctx))
                    rows[("ours moe", n)].append(r.tokens_per_second)
                    same[n].append(same_prefix(r.token_ids, base.token_ids))
                    line = f"  [{rep}] k={n} ours {r.tokens_per_second:.2f} tok/s"
                    if theirs:
                        res = run_tool([str(tools / "llama-completion"), "-m", path, "-p",
                                        prompt, "-no-cnv", *common, "--override-kv",
                                        f"{info.architecture}.expert_used_count=int:{n}"],
                                       args.max_tokens)
                        rows[("llama-completion", n)].append(res["tps"])
                        line += f", llama-completion {res['tps']:.2f}"
                    print(line, file=sys.stderr, flush=True)
        finally:
            session.close()
        print(f"# dense {Path(dense).name} baseline: "
              f"{median(rows[('dense baseline', 0)]):.2f} tok/s")
    print_table(experts, default, scores, rows, same)
    return 0


def print_table(experts: list[int], default: int, scores: dict[int, dict[str, float]],
                rows: Rows, same: dict[int, list[int]]) -> None:
    ref = default if ("ours moe", default) in rows else max(experts)
    head = f"{'k':>4}  {'agree dense':>11} {'agree all':>9} {'KL nats':>8} {'ppl':>7}"
    speed = [lb for lb in ("ours moe", "llama-completion") if any((lb, n) in rows for n in experts)]
    head += "".join(f"{lb:>18}{'paired':>7}" for lb in speed)
    print(head + (f"{'same':>6}" if same else ""))
    for n in experts:
        s = scores.get(n)
        cells = (f"{s['agree_dense']:11.3f} {s['agree_full']:9.3f} {s['kl']:8.4f} "
                 f"{s['ppl']:7.2f}" if s else f"{'':>38}")
        for lb in speed:
            ratios = [a / b for a, b in zip(rows.get((lb, n), []), rows.get((lb, ref), []),
                                            strict=False) if b > 0]
            cells += f"{median(rows.get((lb, n), [])):18.2f}{median(ratios):7.2f}"
        if same:
            cells += f"{median([float(x) for x in same.get(n, [])]):6.0f}"
        print(f"{n:>3}{'*' if n == default else ' '}  {cells}")
    print(f"(* the file's own expert count; paired = median of each repeat's ratio to k={ref};"
          " agree = teacher-forced top-1 agreement on the held-out text; same = first greedy"
          " tokens equal to the dense model's, median)")


if __name__ == "__main__":
    sys.exit(main())

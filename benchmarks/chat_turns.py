"""Multi-turn chat: what KV reuse saves per turn, and what each track buys on each turn.

``turns``: the scripted conversation (default: the multi-turn code edit in
resources/conversations) is answered by each track in turn, ``--repeats`` times,
interleaved (baseline, track A, track B, baseline, ...), all with the same answers (greedy).
Per turn it reports the prefill time with KV reuse (only the tokens new since the last turn
evaluated) and without (the whole conversation evaluated again, as a fresh session would),
paired per repeat, and each track's tokens/s and its speedup over the baseline run of the
same repeat (medians). The later "edit the code above" turns are where copying should pay.

    .venv/bin/python -m benchmarks.chat_turns turns --target qwen2.5-coder-1.5b-f16 \\
        --draft qwen2.5-coder-0.5b --tracks baseline,draft,lookup,suffix --repeats 3

``renderings``: how the default model answers under each system-message rendering (the
template's own default system message, an empty one, none at all, DEFAULT_SYSTEM), on the
sample prompts and a dozen short questions: the measurement behind
``app.core.chat.render.DEFAULT_SYSTEM``.

    .venv/bin/python -m benchmarks.chat_turns renderings --target smollm2-135m
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

from app.core.chat.conversation import Conversation, script_turns
from app.core.chat.render import DEFAULT_SYSTEM, template_default_system
from app.core.chat.runner import run_turn
from app.core.engine import Generation
from app.core.events import RunResult, RunSettings
from app.core.llama_backend import LoadedModel, LoadOptions
from app.core.models.library import resolve_model
from app.core.session import Session
from benchmarks.common import machine_summary, warm_page_cache

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "resources" / "conversations" / "code_edit.txt"
QUESTIONS = (
    "What is the capital of France?", "What is the capital of Germany?",
    "How many legs does a spider have?", "Who wrote Romeo and Juliet?", "What is 7 times 8?",
    "Name three primary colors.", "Translate 'good morning' into Spanish.",
    "Write a haiku about the sea.", "Write a Python function that reverses a string.",
    "What is the boiling point of water in Celsius?", "Hi! How are you?",
    "Explain what a CPU does in one sentence.",
)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def empty_caches(session: Session) -> None:
    """A new conversation starts from nothing cached (the last one's first turn would
    otherwise be found in the cache, the same prompt)."""
    for model in (session.target, session.draft):
        if model is not None:
            model.reset()


def turns(args: argparse.Namespace) -> int:
    target = str(resolve_model(args.target))
    draft = str(resolve_model(args.draft)) if args.draft else None
    tracks = args.tracks.split(",")
    if "baseline" not in tracks:
        tracks.insert(0, "baseline")
    script = script_turns(Path(args.script).read_text(encoding="utf-8"))
    base = RunSettings(max_tokens=args.max_tokens, threads=args.threads, ctx=args.ctx,
                       adaptive=not args.fixed, draft_max=args.draft_max)
    print(f"# {machine_summary()}")
    print(f"# target {args.target}, draft {args.draft}, {len(script)} turns of "
          f"{Path(args.script).name}, {args.repeats} repeats, {args.max_tokens} tokens a turn, "
          f"{'fixed' if args.fixed else 'adaptive'} K={args.draft_max}, {args.threads} threads")
    warm_page_cache(target, draft)
    session = Session()
    # (track, turn) -> runs; turn -> (prefill with reuse, prefill without), paired
    runs: dict[tuple[str, int], list[RunResult]] = defaultdict(list)
    prefill: dict[int, list[tuple[float, float, int, int]]] = defaultdict(list)
    try:
        for _ in range(args.repeats):
            # The baseline once more without KV reuse: every turn evaluates the whole
            # conversation, as a fresh session would (same answers: greedy).
            empty_caches(session)
            conv = Conversation()
            s = RunSettings(**{**base.__dict__, "track": "baseline"})
            scratch = []
            for text in script:
                conv.add_user(text)
                scratch.append(run_turn(session, conv, target, draft, s, reuse=False))
            for track in tracks:
                empty_caches(session)
                conv = Conversation()
                s = RunSettings(**{**base.__dict__, "track": track})
                for n, text in enumerate(script, 1):
                    conv.add_user(text)
                    r = run_turn(session, conv, target, draft, s)
                    runs[(track, n)].append(r)
                    if track == "baseline":
                        f = scratch[n - 1]
                        prefill[n].append((r.prefill_seconds, f.prefill_seconds,
                                           r.prefill_tokens, r.prompt_tokens))
    finally:
        session.close()
    print()
    print("| turn | prompt tokens | evaluated with reuse | prefill with reuse | "
          "prefill from scratch |")
    print("|---:|---:|---:|---:|---:|")
    for n in sorted(prefill):
        rows = prefill[n]
        print(f"| {n} | {rows[0][3]} | {rows[0][2]} | {median([r[0] for r in rows]):.3f} s | "
              f"{median([r[1] for r in rows]):.3f} s |")
    print()
    print("| turn | " + " | ".join(tracks) + " |")
    print("|---:|" + "---:|" * len(tracks))
    for n in range(1, len(script) + 1):
        base_runs = runs[("baseline", n)]
        cells = []
        for track in tracks:
            mine = runs[(track, n)]
            tps = median([r.tokens_per_second for r in mine])
            if track == "baseline":
                cells.append(f"{tps:.1f} tok/s")
                continue
            speed = median([r.tokens_per_second / b.tokens_per_second
                            for r, b in zip(mine, base_runs, strict=True)
                            if b.tokens_per_second > 0])
            acc = [r.acceptance_rate for r in mine if r.acceptance_rate is not None]
            acc_text = f", acc {median(acc):.0%}" if acc else ", drafted nothing"
            cells.append(f"{tps:.1f} ({speed:.2f}×{acc_text})")
        print(f"| {n} | " + " | ".join(cells) + " |")
    if args.json:
        out: dict[str, Any] = {f"{t}/{n}": [r.to_dict(with_events=False) for r in rs]
                               for (t, n), rs in runs.items()}
        Path(args.json).write_text(json.dumps(out, indent=1), encoding="utf-8")
    return 0


def renderings(args: argparse.Namespace) -> int:
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    path = str(resolve_model(args.target))
    model = LoadedModel(path, LoadOptions(n_ctx=2048, threads=args.threads))
    template = model.info.chat_template
    if not template:
        print("this model has no chat template")
        return 1
    own = template_default_system(template)
    fmt = Jinja2ChatFormatter(template, eos_token="", bos_token="")
    variants: dict[str, list[dict[str, str]]] = {
        "template's own": [],
        "empty system": [{"role": "system", "content": ""}],
        "DEFAULT_SYSTEM": [{"role": "system", "content": DEFAULT_SYSTEM}],
    }
    prompts = [*QUESTIONS, *(p.read_text(encoding="utf-8").strip()
                             for p in sorted((ROOT / "resources" / "prompts").glob("*.txt")))]
    s = RunSettings(max_tokens=args.max_tokens, threads=args.threads, ctx=2048)
    print(f"# {args.target}; the template's own system message: {own!r}")
    for prompt in prompts:
        print(f"### {prompt.splitlines()[0][:80]}")
        for name, head in variants.items():
            text = fmt(messages=[*head, {"role": "user", "content": prompt}]).prompt  # type: ignore[list-item]
            if name == "template's own" and own is None:
                continue
            ids = model.tokenize(text, add_bos=model.info.add_bos, special=True)
            r = Generation(model, [], ids, s).run()
            print(f"  [{name}] ({r.n_generated} tokens, {r.stop_reason}) {r.text[:300]!r}",
                  flush=True)
        if own is not None and "<|im_start|>" in template:
            # No system block at all, as llama.cpp's chat mode renders ChatML.
            text = f"<|im_start|>user\n{prompt}<|im_end|>\n<|im_start|>assistant\n"
            ids = model.tokenize(text, add_bos=model.info.add_bos, special=True)
            r = Generation(model, [], ids, s).run()
            print(f"  [no system block] ({r.n_generated} tokens, {r.stop_reason}) "
                  f"{r.text[:300]!r}", flush=True)
    model.close()
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="mode", required=True)
    t = sub.add_parser("turns", help="per-turn prefill and tokens/s of each track")
    t.add_argument("--target", required=True)
    t.add_argument("--draft")
    t.add_argument("--tracks", default="baseline,draft,lookup,suffix")
    t.add_argument("--script", default=str(SCRIPT))
    t.add_argument("--repeats", type=int, default=3)
    t.add_argument("--max-tokens", type=int, default=256)
    t.add_argument("--draft-max", type=int, default=8)
    t.add_argument("--fixed", action="store_true")
    t.add_argument("--threads", type=int, default=2)
    t.add_argument("--ctx", type=int, default=4096)
    t.add_argument("--json", help="write every run (without events) to this file")
    r = sub.add_parser("renderings", help="answers under each system-message rendering")
    r.add_argument("--target", default="smollm2-135m")
    r.add_argument("--max-tokens", type=int, default=70)
    r.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    return turns(args) if args.mode == "turns" else renderings(args)


if __name__ == "__main__":
    raise SystemExit(main())

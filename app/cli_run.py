"""`decodelab run` and `decodelab compare`."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from app.core.errors import RefusedError
from app.core.events import RunSettings


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="target: GGUF path or pinned model name")
    p.add_argument("--draft", help="draft model: GGUF path or pinned model name")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--prompt", help="prompt text")
    src.add_argument("--prompt-file", help="file holding the prompt")
    p.add_argument("--chat", action="store_true", help="wrap the prompt in the chat template")
    p.add_argument("--system", help="system message (with --chat)")
    p.add_argument("--max-tokens", type=int, default=256)
    p.add_argument("--temp", type=float, default=0.0, help="0 = greedy")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--top-k", type=int, default=40)
    p.add_argument("--top-p", type=float, default=0.95)
    p.add_argument("--min-p", type=float, default=0.05)
    p.add_argument("--draft-max", type=int, default=8, help="K: most drafts per round")
    p.add_argument("--draft-min", type=int, default=0)
    p.add_argument("--draft-p-min", type=float, default=0.75)
    p.add_argument("--ngram-min", type=int, default=1)
    p.add_argument("--ngram-max", type=int, default=4)
    p.add_argument(
        "--fixed",
        action="store_true",
        help="fixed draft length K (as llama.cpp) instead of adaptive drafting",
    )
    p.add_argument("--experts", type=int, help="active experts for MoE tracks")
    p.add_argument("--threads", type=int, help="default: physical cores")
    p.add_argument("--ctx", type=int, default=4096)
    p.add_argument("--gpu-layers", type=int, default=0)
    p.add_argument("--draft-gpu-layers", type=int, default=0)
    p.add_argument("--json", action="store_true")
    p.add_argument("--no-events", action="store_true", help="leave per-token events out of JSON")
    p.add_argument("--no-save", action="store_true", help="do not keep the run in the history")


def add_run_parsers(sub: Any) -> None:
    run = sub.add_parser("run", help="run one track")
    _add_common(run)
    run.add_argument("--track", required=True)
    run.add_argument("--stream", action="store_true", help="print tokens as they come")
    run.set_defaults(func=cmd_run)
    cmp = sub.add_parser("compare", help="run several tracks on one prompt")
    _add_common(cmp)
    cmp.add_argument("--tracks", required=True, help="comma-separated track ids")
    cmp.add_argument("--csv", help="also write one row per run to this CSV file")
    cmp.set_defaults(func=cmd_compare)


def settings_from(args: argparse.Namespace, track: str) -> RunSettings:
    return RunSettings(
        track=track,
        max_tokens=args.max_tokens,
        temperature=args.temp,
        seed=args.seed,
        top_k=args.top_k,
        top_p=args.top_p,
        min_p=args.min_p,
        draft_max=args.draft_max,
        draft_min=args.draft_min,
        draft_p_min=args.draft_p_min,
        ngram_min=args.ngram_min,
        ngram_max=args.ngram_max,
        adaptive=not args.fixed,
        experts=args.experts,
        threads=args.threads,
        ctx=args.ctx,
        chat=args.chat,
        system=args.system,
        gpu_layers=args.gpu_layers,
        draft_gpu_layers=args.draft_gpu_layers,
    )


def _prompt(args: argparse.Namespace) -> str:
    if args.prompt is not None:
        return str(args.prompt)
    try:
        return Path(args.prompt_file).read_text(encoding="utf-8")
    except OSError as exc:
        raise RefusedError(f"{args.prompt_file}: cannot read prompt: {exc.strerror}") from exc


def _models(args: argparse.Namespace) -> tuple[str, str | None]:
    from app.cli import resolve_model

    return resolve_model(args.model), resolve_model(args.draft) if args.draft else None


def _cancel_on_sigint() -> threading.Event:
    """Ctrl+C ends the run between steps and keeps the partial result."""
    cancel = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: cancel.set())
    return cancel


def cmd_run(args: argparse.Namespace) -> int:
    from app.cli_output import print_result, stream_sink
    from app.core.session import Session

    target, draft = _models(args)
    settings = settings_from(args, args.track)
    session = Session()
    try:
        sink = stream_sink() if args.stream and not args.json else None
        prompt = _prompt(args)
        result = session.run(target, draft, prompt, settings, sink, _cancel_on_sigint())
    finally:
        session.close()
    if args.json:
        print(json.dumps(result.to_dict(with_events=not args.no_events), indent=1))
    else:
        print_result(result, streamed=sink is not None)
    if not args.no_save:
        from app.core.history import RunInputs, record_run

        _save(lambda: record_run(result, RunInputs(target, draft, prompt, settings)))
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from app.cli_output import print_comparison, write_csv
    from app.core.compare import compare
    from app.core.session import Session

    target, draft = _models(args)
    tracks = [t.strip() for t in args.tracks.split(",") if t.strip()]
    if not tracks:
        raise RefusedError("--tracks names no track")
    session = Session()
    prompt, settings = _prompt(args), settings_from(args, "baseline")
    try:
        result = compare(
            session, target, draft, prompt, tracks, settings, cancel=_cancel_on_sigint()
        )
    finally:
        session.close()
    if args.csv:
        write_csv(result, args.csv)
    if args.json:
        print(json.dumps(result.to_dict(with_events=not args.no_events), indent=1))
    else:
        print_comparison(result)
    sys.stdout.flush()
    if not args.no_save:
        from app.core.history import RunInputs, record_comparison

        _save(lambda: record_comparison(result, RunInputs(target, draft, prompt, settings)))
    return 0


def _save(write: Callable[[], str]) -> None:
    """Keep the run in the history; a full disk costs the history entry, not the result."""
    try:
        write()
    except OSError as exc:
        print(f"decodelab: warning: run not saved to history: {exc}", file=sys.stderr)

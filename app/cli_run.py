"""`decodelab run` and `decodelab compare`."""

from __future__ import annotations

import argparse
import json
import secrets
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

import app.core.drafting.registry as registry
from app.core.errors import DecodeLabError, RefusedError
from app.core.events import RunSettings
from app.core.settings_check import (
    LIMITS,
    MAX_DRAFT,
    MAX_SEED,
    VERIFY_BATCH,
    check_prompt,
    parse_setting,
    read_prompt_file,
)


def setting_type(field: str) -> Callable[[str], int | float]:
    """An argparse ``type=`` for the ``RunSettings`` field ``field``, with the core's limits."""

    def parse(text: str) -> int | float:
        try:
            return parse_setting(field, text)
        except RefusedError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    parse.__name__ = LIMITS[field].name  # argparse names the type in some messages
    return parse


def _seed(text: str) -> int:
    if text.strip().lower() == "random":
        return secrets.randbelow(MAX_SEED + 1)
    return int(setting_type("seed")(text))


MAX_REPEATS = 100


def _repeats(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if not 1 <= n <= MAX_REPEATS:
        raise argparse.ArgumentTypeError(f"must be in 1..{MAX_REPEATS} (got {n})")
    return n


def _prompt_text(text: str) -> str:
    try:
        check_prompt(text)
    except RefusedError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="target: GGUF path or pinned model name")
    p.add_argument("--draft", help="draft model: GGUF path or pinned model name")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--prompt", type=_prompt_text, help="prompt text (not empty)")
    src.add_argument("--prompt-file", help="UTF-8 file holding the prompt (not empty)")
    p.add_argument("--chat", action="store_true", help="wrap the prompt in the chat template")
    p.add_argument("--system", help="system message (with --chat)")
    d, t = RunSettings(), setting_type
    p.add_argument("--max-tokens", type=t("max_tokens"), default=d.max_tokens, metavar="N",
                   help=f"at most N answer tokens (1…{LIMITS['max_tokens'].hi})")
    p.add_argument("--temp", type=t("temperature"), default=d.temperature, metavar="T",
                   help=f"temperature 0…{LIMITS['temperature'].hi:g}; 0 = greedy")
    p.add_argument("--seed", type=_seed, default=d.seed, metavar="S",
                   help=f"sampling seed 0…{MAX_SEED}, or 'random' (the seed drawn is "
                        "kept in the JSON output and the history)")
    p.add_argument("--top-k", type=t("top_k"), default=d.top_k, help="0 = whole vocabulary")
    p.add_argument("--top-p", type=t("top_p"), default=d.top_p, help="0…1")
    p.add_argument("--min-p", type=t("min_p"), default=d.min_p, help="0…1")
    p.add_argument("--draft-max", type=t("draft_max"), default=d.draft_max, metavar="K",
                   help=f"K: most drafts per round, 0…{MAX_DRAFT} (K + 1 tokens are "
                        f"verified in one batch of {VERIFY_BATCH})")
    p.add_argument("--draft-min", type=t("draft_min"), default=d.draft_min, metavar="K",
                   help=f"draft at least K tokens or none, 0…{MAX_DRAFT}")
    add_source_flags(p)
    p.add_argument(
        "--fixed",
        action="store_true",
        help="fixed draft length K (as llama.cpp) instead of adaptive drafting",
    )
    p.add_argument("--experts", type=t("experts"), metavar="N",
                   help="active experts for MoE tracks, 1…the model's expert count")
    p.add_argument("--threads", type=t("threads"), metavar="N",
                   help=f"1…{LIMITS['threads'].hi}; default: physical cores")
    p.add_argument("--ctx", type=t("ctx"), default=d.ctx, metavar="N",
                   help=f"context size in tokens, 1…{LIMITS['ctx'].hi}")
    p.add_argument("--gpu-layers", type=t("gpu_layers"), default=d.gpu_layers, metavar="N",
                   help="target layers on the GPU; -1 = all")
    p.add_argument("--draft-gpu-layers", type=t("draft_gpu_layers"),
                   default=d.draft_gpu_layers, metavar="N",
                   help="draft layers on the GPU; -1 = all")
    p.add_argument("--json", action="store_true")
    p.add_argument("--no-events", action="store_true", help="leave per-token events out of JSON")
    p.add_argument("--no-save", action="store_true", help="do not keep the run in the history")


def _source_type(spec: registry.Setting) -> Any:
    def parse(text: str) -> object:
        try:
            return spec.parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc).split(": ", 1)[-1]) from None

    parse.__name__ = spec.name
    return parse


def add_source_flags(p: argparse.ArgumentParser) -> None:
    """One option per setting of every registered draft source (``app.core.drafting``)."""
    for src in registry.sources():
        group = p.add_argument_group(f"{src.title} settings")
        for spec in src.settings:
            if spec.kind is bool:
                metavar, shown = "on|off", f"default {'on' if spec.default else 'off'}"
            else:
                metavar, shown = "N", f"{spec.range_text()}, default {spec.default}"
            group.add_argument(spec.flag, dest=spec.name, type=_source_type(spec),
                               metavar=metavar, help=f"{spec.help} ({shown})")


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
    cmp.add_argument("--repeats", type=_repeats, default=1, metavar="N",
                     help=f"run the tracks N times, interleaved (1…{MAX_REPEATS}); report each "
                          "track's median run and the spread of its speedups")
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
        adaptive=not args.fixed,
        experts=args.experts,
        threads=args.threads,
        ctx=args.ctx,
        chat=args.chat,
        system=args.system,
        gpu_layers=args.gpu_layers,
        draft_gpu_layers=args.draft_gpu_layers,
        options={spec.name: getattr(args, spec.name) for spec in registry.all_settings()
                 if getattr(args, spec.name, None) is not None},
    )


def _prompt(args: argparse.Namespace) -> str:
    if args.prompt is not None:
        return str(args.prompt)
    return read_prompt_file(args.prompt_file)


def _models(args: argparse.Namespace) -> tuple[str, str | None]:
    from app.cli_common import resolve_model

    return resolve_model(args.model), resolve_model(args.draft) if args.draft else None


def _cancel_on_sigint() -> threading.Event:
    """Ctrl+C ends the run between steps and keeps the partial result."""
    cancel = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: cancel.set())
    return cancel


def cmd_run(args: argparse.Namespace) -> int:
    from app.cli_output import print_result, stream_sink
    from app.core.session import Session

    prompt = _prompt(args)  # a bad prompt file is refused before anything is loaded
    target, draft = _models(args)
    settings = settings_from(args, args.track)
    session = Session()
    try:
        sink = stream_sink() if args.stream and not args.json else None
        result = session.run(target, draft, prompt, settings, sink, _cancel_on_sigint())
    finally:
        session.close()
    # Kept before anything that can fail after it (printing, a full disk): nothing is lost.
    code = 0
    if not args.no_save:
        from app.core.events import RunRequest
        from app.core.history import record_run

        code = _save(lambda: record_run(result, RunRequest(target, draft, prompt, settings)))
    if sink is not None and sink.error is not None:
        raise sink.error  # standard output failed while streaming; the run is kept
    if args.json:
        print(json.dumps(result.to_dict(with_events=not args.no_events), indent=1))
    else:
        print_result(result, streamed=sink is not None)
    return code


def cmd_compare(args: argparse.Namespace) -> int:
    from app.cli_output import print_comparison, write_csv
    from app.core.compare import compare
    from app.core.session import Session

    tracks = [t.strip() for t in args.tracks.split(",") if t.strip()]
    if not tracks:
        raise RefusedError("--tracks names no track")
    prompt = _prompt(args)
    target, draft = _models(args)
    settings = settings_from(args, "baseline")
    session = Session()
    try:
        result = compare(
            session, target, draft, prompt, tracks, settings, cancel=_cancel_on_sigint(),
            repeats=args.repeats,
        )
    finally:
        session.close()
    # Kept and shown before the CSV is written: a CSV that cannot be written costs only
    # the CSV (one line on stderr, exit 1), never the comparison.
    code = 0
    if not args.no_save:
        from app.core.events import RunRequest
        from app.core.history import record_comparison

        code = _save(lambda: record_comparison(result, RunRequest(target, draft, prompt, settings)))
    try:
        if args.json:
            print(json.dumps(result.to_dict(with_events=not args.no_events), indent=1))
        else:
            print_comparison(result)
        sys.stdout.flush()
    finally:  # a full standard output does not cost the CSV either
        if args.csv:
            try:
                write_csv(result, args.csv)
            except (OSError, DecodeLabError) as exc:
                why = _why(exc)
                where = "" if args.csv in why else f"{args.csv}: "
                print(f"decodelab: error: CSV not written: {where}{why}", file=sys.stderr)
                code = 1
    return code


def _save(write: Callable[[], str]) -> int:
    """Keep the run in the history; a full disk costs the history entry (exit 1), not the
    result, which is still printed."""
    try:
        write()
    except (OSError, DecodeLabError) as exc:
        print(f"decodelab: error: run not saved to history: {_why(exc)}", file=sys.stderr)
        return 1
    return 0


def _why(exc: Exception) -> str:
    return exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)

"""`decodelab run` and `decodelab compare`."""

from __future__ import annotations

import argparse
import json
import secrets
import shutil
import signal
import sys
import textwrap
import threading
from collections.abc import Callable
from typing import Any

import app.core.drafting.registry as registry
from app.cli_rpc import add_rpc_arguments, placement
from app.core.errors import DecodeLabError, RefusedError
from app.core.events import RunResult, RunSettings
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
    """``run`` and ``compare``: a prompt, the template switch, then every run option."""
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--prompt", type=_prompt_text, help="prompt text (not empty)")
    src.add_argument("--prompt-file", help="UTF-8 file holding the prompt (not empty)")
    chat = p.add_mutually_exclusive_group()
    chat.add_argument("--raw", dest="chat", action="store_false",
                      help="the prompt as it is, without the model's chat template (default: "
                           "the template wraps the prompt as a user message, where the model "
                           "has one, as in the window)")
    chat.add_argument("--chat", dest="chat", action="store_true",
                      help="the chat template (the default; kept for older scripts)")
    p.set_defaults(chat=True)
    add_run_options(p)
    out = p.add_argument_group("output")
    out.add_argument("--json", action="store_true", help="the result as JSON on standard output")
    out.add_argument("--no-events", action="store_true",
                     help="leave per-token events out of JSON")
    out.add_argument("--no-save", action="store_true", help="do not keep the run in the history")


def add_run_options(p: argparse.ArgumentParser) -> None:
    """What every run takes, here and in ``chat``: models, system message, sampling,
    drafting, each source's settings, the machine and remote workers."""
    from app.core.chat.render import DEFAULT_SYSTEM

    p.add_argument("--model", required=True, help="target: GGUF path or pinned model name")
    p.add_argument("--draft", help="draft model: GGUF path or pinned model name (Track 1 "
                                   "needs one; default: none)")
    p.add_argument("--system", help=f"system message in the chat template (not with --raw; "
                                    f"default: \"{DEFAULT_SYSTEM}\"; \"\" for none, and the "
                                    "model's template may insert its own)")
    d, t = RunSettings(), setting_type
    p.add_argument("--max-tokens", type=t("max_tokens"), default=d.max_tokens, metavar="N",
                   help=f"at most N answer tokens, 1…{LIMITS['max_tokens'].hi}")
    sampling = p.add_argument_group(
        "sampling", "llama.cpp's chain: repetition penalty, top-k, top-p, min-p, temperature. "
        "Every track applies it alike: at temperature 0 a speculative track gives the "
        "baseline's exact tokens; above 0 it samples exactly the target's distribution, "
        "not the baseline's exact tokens.")
    sampling.add_argument("--temp", type=t("temperature"), default=d.temperature, metavar="T",
                          help=f"temperature 0…{LIMITS['temperature'].hi:g}; 0 = greedy")
    sampling.add_argument("--seed", type=_seed, default=d.seed, metavar="S",
                          help=f"sampling seed 0…{MAX_SEED}, or 'random' (the seed drawn is "
                               "kept in the JSON output and the history)")
    sampling.add_argument("--top-k", type=t("top_k"), default=d.top_k, metavar="N",
                          help="keep the N likeliest tokens; 0 = the whole vocabulary")
    sampling.add_argument("--top-p", type=t("top_p"), default=d.top_p, metavar="P",
                          help="keep the likeliest tokens up to this probability mass, 0…1")
    sampling.add_argument("--min-p", type=t("min_p"), default=d.min_p, metavar="P",
                          help="drop tokens below P times the likeliest one's probability, "
                               "0…1")
    rp = LIMITS["repeat_penalty"]
    sampling.add_argument("--repeat-penalty", type=t("repeat_penalty"),
                          default=d.repeat_penalty, metavar="R",
                          help=f"penalise tokens seen in the last --repeat-last-n tokens, "
                               f"{rp.lo:g}…{rp.hi:g}; 1 = off, above 1 repeats less")
    sampling.add_argument("--repeat-last-n", type=t("repeat_last_n"), default=d.repeat_last_n,
                          metavar="N", help="how many recent tokens (prompt included) the "
                                            "repeat penalty looks at; -1 = all, 0 = off")
    drafting = p.add_argument_group("drafting")
    drafting.add_argument("--draft-max", type=t("draft_max"), default=d.draft_max, metavar="K",
                          help=f"K: most drafts per round, 0…{MAX_DRAFT} (K + 1 tokens are "
                               f"verified in one batch of {VERIFY_BATCH})")
    drafting.add_argument("--draft-min", type=t("draft_min"), default=d.draft_min, metavar="K",
                          help=f"draft at least K tokens or none, 0…{MAX_DRAFT}")
    drafting.add_argument("--fixed", action="store_true",
                          help="fixed draft length K (as llama.cpp) instead of adaptive "
                               "drafting (default: adaptive, K is then a cap)")
    drafting.add_argument("--experts", type=t("experts"), metavar="N",
                          help="active experts for MoE tracks, 1…the model's expert count "
                               "(default: the model's own)")
    add_source_flags(p)
    machine = p.add_argument_group("machine")
    machine.add_argument("--threads", type=t("threads"), metavar="N",
                         help=f"1…{LIMITS['threads'].hi} (default: physical cores)")
    machine.add_argument("--ctx", type=t("ctx"), default=d.ctx, metavar="N",
                         help=f"context size in tokens, 1…{LIMITS['ctx'].hi}")
    machine.add_argument("--gpu-layers", type=t("gpu_layers"), default=d.gpu_layers,
                         metavar="N", help="target layers offloaded: to the GPU, or with --rpc "
                                           "to the workers (there the default is all); -1 = all")
    machine.add_argument("--draft-gpu-layers", type=t("draft_gpu_layers"),
                         default=d.draft_gpu_layers, metavar="N",
                         help="draft layers on the GPU; -1 = all")
    add_rpc_arguments(p)


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


def tracks_help(width: int | None = None) -> str:
    """The tracks for ``--help``: id, number and what each does, the combinations and the
    deprecated ones (generated from ``app.core.tracks``, so a new source is listed)."""
    from app.core.tracks import DEPRECATED, working

    width = width or max(60, shutil.get_terminal_size().columns - 2)  # as argparse
    singles = [t for t in working() if len(t.sources) + t.moe <= 1]
    lines = textwrap.wrap("tracks (an id, a number or the name the window shows, in any "
                          "case; join with + to combine, e.g. 1+8 or draft+lookup):", width)
    for t in singles:
        number = "0" if t.id == "baseline" else str(t.number or "")
        lines += textwrap.wrap(f"{t.name}: {t.summary}", width,
                               initial_indent=f"  {t.id:<9} {number:>2}  ",
                               subsequent_indent=" " * 16)
    combos = ", ".join(t.id for t in working() if len(t.sources) + t.moe > 1)
    lines += textwrap.wrap(f"combinations: {combos}", width, initial_indent="  ",
                           subsequent_indent="    ", break_on_hyphens=False)
    gone = ", ".join(f"{t.number}\N{NO-BREAK SPACE}{t.id}" for t in DEPRECATED)
    lines += textwrap.wrap(f"deprecated (refused, with why and what to use instead): {gone}",
                           width, initial_indent="  ", subsequent_indent="    ",
                           break_on_hyphens=False)
    return "\n".join(lines)


def add_run_parsers(sub: Any) -> None:
    run = sub.add_parser("run", help="run one track", description="Run one track on a prompt "
                         "and print the answer, then its figures on standard error.",
                         epilog=tracks_help())
    run.add_argument("--track", default="baseline",
                     help="the track to run: an id, a number or a name (see below)")
    _add_common(run)
    run.add_argument("--stream", action="store_true", help="print tokens as they come")
    run.set_defaults(func=cmd_run)
    cmp = sub.add_parser("compare", help="run several tracks on one prompt",
                         description="Run several tracks on one prompt with the same settings "
                         "(the baseline first, added if missing) and judge them against it. "
                         "A progress line per run goes to standard error.",
                         epilog=tracks_help())
    cmp.add_argument("--tracks", required=True,
                     help="comma-separated tracks, e.g. 8,1 or lookup,draft+lookup (see below)")
    _add_common(cmp)
    cmp.add_argument("--csv", help="also write one row per run to this CSV file (default: "
                                   "none)")
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
        repeat_penalty=args.repeat_penalty,
        repeat_last_n=args.repeat_last_n,
        draft_max=args.draft_max,
        draft_min=args.draft_min,
        adaptive=not args.fixed,
        experts=args.experts,
        threads=args.threads,
        ctx=args.ctx,
        chat=args.chat,
        system=args.system,
        draft_gpu_layers=args.draft_gpu_layers,
        **placement(args),  # --rpc / --rpc-split / --gpu-layers
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


def _checked_tracks(args: argparse.Namespace, texts: list[str]) -> list[str]:
    """The ids of the tracks the user named (aliases allowed), refused before anything is
    loaded: unknown (with a suggestion), deprecated, or missing the flag a track needs."""
    from app.core.labels import track_label
    from app.core.tracks import resolve_track

    if args.system is not None and not args.chat:
        raise RefusedError("--system goes into the chat template: leave out --raw")
    tracks = [resolve_track(text) for text in texts]
    needs = next((t for t in tracks if t.needs_draft_model), None)
    if needs is not None and not args.draft:
        raise RefusedError(f"no draft model chosen for {track_label(needs.id)}: add --draft MODEL "
                           f"(e.g. --draft {_example_draft()})")
    return list(dict.fromkeys(t.id for t in tracks))


def _example_draft() -> str:
    from app.core.models.catalog import CATALOG

    return next((e.name for e in CATALOG.values() if e.role.startswith("Track 1 draft")),
                "MODEL")


def cmd_run(args: argparse.Namespace) -> int:
    from app.cli_output import print_result, stream_sink
    from app.core.cost_memory import default_memory
    from app.core.session import Session

    (track,) = _checked_tracks(args, [args.track])
    prompt = _prompt(args)  # a bad prompt file is refused before anything is loaded
    target, draft = _models(args)
    settings = settings_from(args, track)
    session = Session(default_memory())
    try:
        sink = stream_sink() if args.stream and not args.json else None
        result = session.run(target, draft, prompt, settings, sink, _cancel_on_sigint())
    finally:
        session.close()
    # Kept before anything that can fail after it (printing, a full disk): nothing is lost.
    code = 0
    if not args.no_save:
        from app.core.events import RunRequest
        from app.core.history import record_run, worth_keeping

        if worth_keeping(result):  # a run cancelled before its first token holds nothing
            code = _save(lambda: record_run(result, RunRequest(target, draft, prompt, settings)))
    if sink is not None and sink.error is not None:
        raise sink.error  # standard output failed while streaming; the run is kept
    if args.json:
        print(json.dumps(result.to_dict(with_events=not args.no_events), indent=1))
    else:
        print_result(result, streamed=sink is not None)
    if result.stop_reason == "error":  # e.g. a remote worker lost: the partial answer is kept
        print(f"decodelab: error: {result.error}", file=sys.stderr)
        return 1  # failed (cli_common.EXIT_FAILED)
    return code


def progress_line(done: int, total: int, result: RunResult) -> str:
    """"[2/6] Track 8 · Prompt lookup: 118 tokens, 41.2 tok/s" (and why it stopped, if
    it did not end as asked)."""
    from app.core.labels import stop_label, track_label

    line = (f"[{done}/{total}] {track_label(result.track)}: {result.n_generated} tokens, "
            f"{result.tokens_per_second:.1f} tok/s")
    if result.stop_reason not in ("eos", "max_tokens"):
        line += f" ({stop_label(result.stop_reason).lower()})"
    return line


def cmd_compare(args: argparse.Namespace) -> int:
    from app.cli_output import print_comparison, write_csv
    from app.core.compare import compare
    from app.core.cost_memory import default_memory
    from app.core.session import Session

    texts = [t.strip() for t in args.tracks.split(",") if t.strip()]
    if not texts:
        raise RefusedError("--tracks names no track: e.g. --tracks lookup,draft")
    tracks = _checked_tracks(args, texts)
    prompt = _prompt(args)
    target, draft = _models(args)
    settings = settings_from(args, "baseline")
    session = Session(default_memory())
    try:
        result = compare(
            session, target, draft, prompt, tracks, settings, cancel=_cancel_on_sigint(),
            repeats=args.repeats,
            on_run=lambda done, total, r: print(progress_line(done, total, r), file=sys.stderr,
                                                flush=True),
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

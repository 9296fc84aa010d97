"""``decodelab reproduce TRACK --model M ...``: a deprecated track, measured on the user's model.

TRACK is a deprecated track id (``cas-spec``, ``clasp-swift``, ``kangaroo``: layer-skip
self-drafting at several depths; ``ssm-spec``: speculation on a recurrent model, naive
rollback and snapshot-and-replay; ``eagle``, ``medusa``: the file searched for trained
heads). Also ``reproduce list``, ``show ID``, ``export ID FILE`` and ``delete ID`` for the
kept results (JSON in the data folder).

Exit codes: 0 done; 2 refused (a track that cannot be reproduced on this model, with the
reason: ``ssm-spec`` on an attention model, a layer-skip track on an SSM model, EAGLE and
Medusa always, after the search is printed; bad arguments); 1 failed.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from typing import Any

from app.cli_common import EXIT_OK, EXIT_REFUSED, resolve_model
from app.core.errors import RefusedError
from app.core.events import RunSettings
from app.core.tracks import DEPRECATED

DEPTHS_HELP = ("block counts to cut the target to, e.g. 2,7,14,21 (default: L/4, L/2, 3L/4 "
               "and 2 of its L blocks)")


def _depths(text: str) -> list[int]:
    try:
        values = [int(p) for p in text.replace(" ", "").split(",") if p]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected block counts like 2,7,14, got {text!r}") \
            from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError("block counts are whole numbers of at least 1")
    return values


def add_reproduce_parser(sub: Any) -> argparse.ArgumentParser:
    """Add ``reproduce`` (one sub-command per deprecated track, and list/show/export/delete)
    to ``sub``; each handler is set as ``func`` and returns the exit code."""
    from app.cli_run import setting_type

    parser = sub.add_parser(
        "reproduce", help="measure a deprecated track on your model, beside the study's number",
        description="Reproduce a deprecated track on your own model and prompt: layer-skip "
        "self-drafting (cas-spec, clasp-swift, kangaroo), SSM speculation (ssm-spec), or the "
        "search for trained heads (eagle, medusa).")
    actions = parser.add_subparsers(dest="reproduce_track", metavar="TRACK")
    d, t = RunSettings(), setting_type
    for track in DEPRECATED:
        p = actions.add_parser(track.id, help=f"{track.label}: {track.summary}")
        p.add_argument("--model", required=True, help="target: GGUF path or pinned model name")
        p.add_argument("--draft", help="ssm-spec: a draft model with the target's tokenizer "
                                       "(default: prompt lookup)")
        src = p.add_mutually_exclusive_group()
        src.add_argument("--prompt", help="prompt text")
        src.add_argument("--prompt-file", help="UTF-8 file holding the prompt")
        p.add_argument("--depths", type=_depths, help=DEPTHS_HELP)
        p.add_argument("--chat", action="store_true", help="wrap the prompt in the chat template")
        p.add_argument("--max-tokens", type=t("max_tokens"), default=64, metavar="N",
                       help="answer tokens per run (default 64)")
        p.add_argument("--draft-max", type=t("draft_max"), default=4, metavar="K",
                       help="drafts per round (default 4; fixed drafting, p-min 0)")
        p.add_argument("--adaptive", action="store_true",
                       help="let adaptive drafting decide instead (it mostly will not draft)")
        p.add_argument("--threads", type=t("threads"), metavar="N",
                       help="default: physical cores")
        p.add_argument("--ctx", type=t("ctx"), default=d.ctx, metavar="N", help="context size")
        p.add_argument("--json", action="store_true", help="print the result as JSON")
        p.add_argument("--no-events", action="store_true", help="leave token events out of JSON")
        p.add_argument("--no-save", action="store_true", help="do not keep the result")
        p.add_argument("--export", metavar="FILE", help="also write it to FILE (.json or .csv)")
        p.set_defaults(func=cmd_reproduce, track_id=track.id)
    listing = actions.add_parser("list", help="the kept reproductions")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=cmd_list)
    show = actions.add_parser("show", help="one kept reproduction")
    show.add_argument("id")
    show.add_argument("--json", action="store_true")
    show.set_defaults(func=cmd_show)
    export = actions.add_parser("export", help="write a kept reproduction to a .json or .csv")
    export.add_argument("id")
    export.add_argument("file")
    export.set_defaults(func=cmd_export)
    delete = actions.add_parser("delete", help="forget a kept reproduction")
    delete.add_argument("id")
    delete.set_defaults(func=cmd_delete)
    parser.set_defaults(func=lambda _a: (parser.print_help(), EXIT_REFUSED)[1])
    return parser


def settings_of(args: argparse.Namespace) -> RunSettings:
    from app.core.reproduce.layerskip import reproduce_settings

    s = RunSettings(max_tokens=args.max_tokens, draft_max=args.draft_max, threads=args.threads,
                    ctx=args.ctx, chat=args.chat)
    return s if args.adaptive else reproduce_settings(s)


def _prompt(args: argparse.Namespace, needed: bool) -> str:
    from app.core.settings_check import check_prompt, read_prompt_file

    if args.prompt_file:
        return read_prompt_file(args.prompt_file)
    if args.prompt is not None:
        check_prompt(args.prompt)
        return str(args.prompt)
    if needed:
        raise RefusedError("give the prompt to reproduce on: --prompt TEXT or --prompt-file F")
    return ""


def cmd_reproduce(args: argparse.Namespace) -> int:
    from app.core.gguf_info import inspect_model
    from app.core.reproduce.plan import kind_of, require_reproducible

    kind = kind_of(args.track_id)
    target = resolve_model(args.model)
    info = inspect_model(target)
    if kind == "heads":
        from app.core.reproduce.heads import check_heads

        rep = check_heads(args.track_id, target, _prompt(args, needed=False))
        _keep(rep, args)
        _show(rep, args)
        print(f"decodelab: refused: {rep.reason}", file=sys.stderr)
        return EXIT_REFUSED
    require_reproducible(args.track_id, info)  # before anything is loaded or derived
    if args.depths and kind != "layer-skip":
        raise RefusedError("--depths is for the layer-skip tracks (cas-spec, clasp-swift, "
                           "kangaroo)")
    if args.draft and kind != "ssm":
        raise RefusedError("--draft is for ssm-spec: the layer-skip tracks draft with the "
                           "target's own blocks")
    prompt = _prompt(args, needed=True)
    draft = resolve_model(args.draft) if args.draft else None
    from app.core.session import Session

    session, cancel = Session(), threading.Event()
    signal.signal(signal.SIGINT, lambda *_: cancel.set())
    progress = _progress_printer(args.json)
    try:
        if kind == "ssm":
            from app.core.reproduce.ssm import run_ssm

            rep = run_ssm(session, target, prompt, settings_of(args), draft, progress, cancel)
        else:
            from app.core.reproduce.layerskip import run_layer_skip

            rep = run_layer_skip(session, args.track_id, target, prompt, settings_of(args),
                                 args.depths, progress, cancel)
    finally:
        session.close()
    code = _keep(rep, args)
    _show(rep, args)
    return code


def _progress_printer(quiet: bool) -> Any:
    last = [""]

    def say(step: Any) -> None:
        if quiet or step.text == last[0]:
            return
        last[0] = step.text
        if step.text.startswith("deriving") and "%" in step.text and \
                not step.text.endswith((" 0 %", " 50 %", " 100 %")):
            return  # a line per tensor would drown the terminal
        print(f"[{step.done}/{step.total}] {step.text}", file=sys.stderr, flush=True)

    return say


def _keep(rep: Any, args: argparse.Namespace) -> int:
    """Save (unless --no-save) and export (with --export); a failure costs exit 1, not the
    result, which is still printed."""
    from app.core.reproduce.store import Reproductions, export

    code = EXIT_OK
    if not args.no_save:
        try:
            Reproductions().save(rep)
        except OSError as exc:
            print(f"decodelab: error: reproduction not kept: {exc}", file=sys.stderr)
            code = 1
    if args.export:
        try:
            export(rep, args.export)
        except OSError as exc:
            print(f"decodelab: error: not exported: {exc}", file=sys.stderr)
            code = 1
    return code


def _show(rep: Any, args: argparse.Namespace) -> None:
    if args.json:
        print(json.dumps(rep.to_dict(with_events=not getattr(args, "no_events", False)),
                         indent=1))
    else:
        print_reproduction(rep, saved=not getattr(args, "no_save", True))


def cmd_list(args: argparse.Namespace) -> int:
    from app.core.reproduce.store import Reproductions

    store = Reproductions()
    reps = store.list()
    for bad in store.problems():
        print(f"decodelab: skipped a damaged reproduction: {bad}", file=sys.stderr)
    if args.json:
        print(json.dumps([{"id": r.id, "track": r.track, "target": r.target,
                           "reproducible": r.reproducible, "created": r.created,
                           "verdict": r.verdict} for r in reps], indent=1))
        return EXIT_OK
    if not reps:
        print("no reproductions kept (decodelab reproduce TRACK --model M --prompt ...)")
    for r in reps:
        print(f"{r.id}  {r.track:<11}  {r.target_name}")
    return EXIT_OK


def cmd_show(args: argparse.Namespace) -> int:
    from app.core.reproduce.store import Reproductions

    rep = Reproductions().load(args.id)
    args.no_save = True
    _show(rep, args)
    return EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    from app.core.reproduce.store import Reproductions, export

    path = export(Reproductions().load(args.id), args.file)
    print(path)
    return EXIT_OK


def cmd_delete(args: argparse.Namespace) -> int:
    from app.core.reproduce.store import Reproductions

    Reproductions().delete(args.id)
    return EXIT_OK


# -- text output -----------------------------------------------------------------------------


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.3g} %"


def _x(x: float | None) -> str:
    return "—" if x is None else f"{x:.2f}×"


def print_reproduction(rep: Any, saved: bool = False) -> None:
    """The reproduction as a person reads it: what ran, per depth or mode the numbers, the
    reported figures (labelled as not ours), the verdict."""
    from app.core.reproduce.plan import deprecated_track
    from app.core.reproduce.result import by_position
    from app.core.reproduce.verdict import beyond_bound
    from app.core.sizes import human_size
    from app.core.verdict import NEAR_TIE

    track = deprecated_track(rep.track)
    state = "reproduced" if rep.reproducible else "NOT REPRODUCIBLE"
    print(f"{track.label}: {state} on {rep.target_name}")
    if rep.baseline is not None:
        b = rep.baseline
        print(f"baseline: {b.n_generated} tokens at {b.tokens_per_second:.2f} tok/s "
              f"(prompt {b.prompt_tokens} tokens)"
              + ("; each depth's speedup is against a baseline run right before it"
                 if rep.depths else ""))
    if rep.depths:
        print(f"{'blocks':>9}  {'drafted':>7}  {'accepted':>8}  {'acceptance':>10}  "
              f"{'tok/s':>7}  {'speedup':>7}  same  {'draft':>8}  by position")
        for d in rep.depths:
            r = d.result
            proposed, accepted = by_position(r)
            pos = " ".join(_pct(a / p if p else None) for p, a in zip(proposed, accepted,
                                                                        strict=True))
            same = "yes" if d.first_difference is None else f"@{d.first_difference}" + (
                "~" if d.margin_at_difference is not None and d.margin_at_difference < NEAR_TIE
                else "")
            made = "cached" if d.reused else f"{d.derive_seconds:.1f} s"
            print(f"{d.n_blocks:>3} of {d.of_blocks:<3}  {r.n_drafted:>7}  {r.n_accepted:>8}  "
                  f"{_pct(d.acceptance):>10}  {r.tokens_per_second:>7.2f}  "
                  f"{_x(d.speedup) + ('?' if beyond_bound(d) else ''):>7}  "
                  f"{same:<4}  {human_size(d.draft_size):>8}  {pos}  ({made})")
    for m in rep.ssm:
        r = m.result
        same = "same answer" if m.same_as_baseline else (
            f"differs from token {m.first_difference}" if m.first_difference is not None
            else "stopped")
        extra = (f"refused {m.refusals} rollbacks" if m.mode == "naive" else
                 f"{m.snapshots} snapshots of {human_size(m.snapshot_bytes)}, "
                 f"{m.restores} restores, {m.replayed_tokens} replayed tokens")
        print(f"{m.mode:>8}: {r.n_drafted} drafted, {r.n_accepted} accepted, "
              f"{r.tokens_per_second:.2f} tok/s ({_x(m.speedup)}), {same}; {extra}"
              + (f"; {m.failure}" if m.failure else ""))
    if rep.heads is not None:
        h = rep.heads
        found = ", ".join(h.found + h.keys) or "none"
        print(f"searched {h.n_tensors} tensors and the metadata for draft heads: {found}")
    if any(d.first_difference is not None for d in rep.depths):
        print("same: yes, or @N: the answer left the baseline's at token N (~: at a near-tie "
              "of the baseline, where batched verification may choose otherwise)")
    for r in rep.reported:
        print(f"reported, not measured here: {r.text()}")
    for note in rep.notes:
        print(f"note: {note}")
    print()
    print(rep.verdict)
    if saved:
        print(f"\nkept as {rep.id} (decodelab reproduce show {rep.id})")

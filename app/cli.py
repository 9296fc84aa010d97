"""The command line: the headless face of the core (contract in ARCHITECTURE.md).

Exit codes: 0 done; 2 refused (bad arguments or settings, deprecated track, speculation on
an SSM model, incompatible draft); 1 failed (missing or broken model, out of memory, a file
or standard output that cannot be written). Errors are one line on stderr, never a
traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
from collections.abc import Callable
from typing import Any

from app import __version__
from app.cli_common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_REFUSED,
    CheckedOutput,
    HelpFormatter,
    OutputError,
    check_model_name,
    did_you_mean,
    resolve_model,
)
from app.core.errors import DecodeLabError, RefusedError


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Every command's help shows its defaults (subcommands are made with this class).
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        # argparse exits 2 for bad arguments, which is our "refused" code too.
        print(f"decodelab: {message}{self._suggestion(message)}", file=sys.stderr)
        raise SystemExit(EXIT_REFUSED)

    def _suggestion(self, message: str) -> str:
        """A typo's likely meaning: a command ("invalid choice: 'rnu'") or an option
        ("unrecognized arguments: --tmp 0.7")."""
        choice = re.match(r"argument .*: invalid choice: '([^']*)' \(choose from (.*)\)$",
                          message)
        if choice:
            return did_you_mean(choice[1], re.findall(r"'([^']*)'", choice[2]))
        unknown = re.match(r"unrecognized arguments: (.*)$", message)
        if unknown:
            first = next((w for w in unknown[1].split() if w.startswith("--")), None)
            if first is not None:
                return did_you_mean(first.split("=", 1)[0], _flags(self))
        return ""


def _flags(parser: argparse.ArgumentParser) -> list[str]:
    """Every option of ``parser`` and its subcommands (argparse reports an unknown option
    of a subcommand from the top-level parser)."""
    flags: list[str] = []
    for action in parser._actions:
        flags += action.option_strings
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):
                flags += _flags(sub)
    return list(dict.fromkeys(flags))


def _cmd_inspect(args: argparse.Namespace) -> int:
    from app.core.compat import check_draft
    from app.core.gguf_info import inspect_model

    info = inspect_model(resolve_model(args.model))
    data: dict[str, Any] = info.to_dict()
    compat = None
    if args.draft:
        draft = inspect_model(resolve_model(args.draft))
        compat = check_draft(info, draft)
        data["compatibility"] = compat.to_dict()
    if args.json:
        print(json.dumps(data, indent=2))
        return EXIT_OK
    from app.cli_output import print_inspect

    print_inspect(info, compat)
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    from app.cli_chat import add_chat_parser
    from app.cli_history import add_history_parser
    from app.cli_models import add_models_parser
    from app.cli_reproduce import add_reproduce_parser
    from app.cli_run import add_run_parsers
    from app.cli_worker import add_worker_parser

    parser = _Parser(prog="decodelab", description="DecodeLab: which decoding track pays?",
                     epilog="For example: decodelab run --model smollm2-135m --prompt 'What is "
                            "the capital of France?' --track 8 ('decodelab run --help' lists "
                            "the tracks and every setting).")
    parser.add_argument("--version", action="version", version=f"decodelab {__version__}")
    sub: Any = parser.add_subparsers(dest="command", parser_class=_Parser)

    gui = sub.add_parser("gui", help="open the workbench window (the default)")
    add_gui_arguments(gui)

    ins = sub.add_parser("inspect", help="metadata, SSM/MoE status, draft compatibility")
    ins.add_argument("model", help="GGUF path or pinned model name")
    ins.add_argument("--draft", help="check this draft model against MODEL")
    ins.add_argument("--json", action="store_true")
    ins.set_defaults(func=_cmd_inspect)

    add_run_parsers(sub)
    add_chat_parser(sub)
    add_models_parser(sub)
    add_history_parser(sub)
    add_worker_parser(sub)
    add_reproduce_parser(sub)
    return parser


def add_gui_arguments(p: argparse.ArgumentParser) -> None:
    from app.cli_run import setting_type

    p.add_argument("--model", help="target model: GGUF path or pinned name")
    p.add_argument("--draft", help="draft model: GGUF path or pinned name")
    p.add_argument("--track", default=None,
                   help="track to select: an id, a number or a name, e.g. 8 or lookup")
    p.add_argument("--prompt-file", help="load this prompt (a UTF-8 text file)")
    p.add_argument("--run", action="store_true", help="start a run right away")
    p.add_argument("--screenshot", help="save a PNG of the window when the run ends")
    p.add_argument("--size", metavar="WxH",
                   help="window size of the scripted session, e.g. 1280x720 (default "
                        "1480x940)")
    p.add_argument("--exit", action="store_true", help="quit after the run (and screenshot)")
    p.add_argument("--view", choices=("run", "compare", "sweep", "pay", "history", "chat"),
                   help="show this tab; with --run do its work (compare --tracks, sweep "
                        "--sweep, measure for 'pay'; 'pay' with --tracks compares first)")
    p.add_argument("--tracks", help="with --view compare or pay: tracks to compare, "
                                    "e.g. lookup,draft")
    p.add_argument("--sweep", metavar="SETTING=VALUES",
                   help="with --view sweep: e.g. draft_max=1-8, draft_p_min=0.2,0.6, "
                        "ngram_min=1-3, experts=4-1")
    p.add_argument("--max-tokens", type=setting_type("max_tokens"), metavar="N",
                   help="max tokens of the scripted runs")
    p.add_argument("--threads", type=setting_type("threads"), metavar="N",
                   help="threads of the scripted runs")
    p.add_argument("--experts", type=setting_type("experts"), metavar="N",
                   help="active experts of the scripted runs (Track 2, an MoE target)")
    from app.cli_rpc import add_rpc_arguments

    add_rpc_arguments(p)
    p.add_argument(
        "--fetch-default",
        action="store_true",
        help="fetch the default model first if it is missing",
    )
    p.set_defaults(func=_cmd_gui)


def _cmd_gui(args: argparse.Namespace) -> int:
    from app.core.tracks import resolve_track_alias, unknown_track

    # The window takes track ids; a user may type any alias (a deprecated track is
    # selected, to show why it does not run).
    def track_id(text: str) -> str:
        track = resolve_track_alias(text)
        if track is None:
            raise RefusedError(unknown_track(text))
        return track.id

    for spec in (args.model, args.draft):
        if spec:
            check_model_name(spec)  # a typo is refused here; a missing file in the window
    if args.track:
        args.track = track_id(args.track)
    if args.tracks:
        args.tracks = ",".join(track_id(t) for t in args.tracks.split(",") if t.strip())
    from app.ui.app import run_gui  # after the checks: Qt takes a while to load

    return run_gui(args)


def _guarded(func: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    try:
        code = func(args)
        sys.stdout.flush()  # here, not at exit: a full disk must be reported
        return code
    except RefusedError as exc:
        print(f"decodelab: refused: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    except OutputError as exc:
        return _output_failed(exc)
    except DecodeLabError as exc:
        print(f"decodelab: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except MemoryError:
        print("decodelab: error: out of memory", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("decodelab: interrupted", file=sys.stderr)
        return 130


def _output_failed(exc: OutputError) -> int:
    """A closed pipe (``| head``) is the reader's choice: quiet, exit 0. Anything else (a
    full disk) is one line and exit 1. Either way what is still buffered goes to the null
    device, so that Python's own flush at exit cannot fail again with a traceback."""
    out = sys.stdout.stream if isinstance(sys.stdout, CheckedOutput) else sys.stdout
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, out.fileno())
        os.close(null)
    except (OSError, ValueError, AttributeError):
        pass  # not a file descriptor (captured in a test): nothing flushes it at exit
    if exc.broken_pipe:
        return EXIT_OK
    print(f"decodelab: error: {exc}", file=sys.stderr)
    return EXIT_FAILED


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    # llama.cpp's chatter is for the log panel and log file, not the terminal.
    logging.getLogger("llama.cpp").setLevel(logging.CRITICAL)
    argv = sys.argv[1:] if argv is None else argv
    out = sys.stdout
    sys.stdout = CheckedOutput(out)
    try:
        return _main(argv)
    finally:
        sys.stdout = out


def _main(argv: list[str]) -> int:
    parser = build_parser()
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help", "--version")):
        argv = ["gui", *argv]
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a bad argument (one line, exit 2)
        code = exc.code if isinstance(exc.code, int) else EXIT_OK if exc.code is None else 1
        return _guarded(lambda _args: code, argparse.Namespace())
    except OutputError as exc:  # a --help longer than the buffer
        return _output_failed(exc)
    if not getattr(args, "func", None):
        parser.print_help()
        return _guarded(lambda _args: EXIT_REFUSED, args)
    return _guarded(args.func, args)


if __name__ == "__main__":
    sys.exit(main())

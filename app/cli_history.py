"""``decodelab history list | show ID | export ID --json F --csv F | delete ID``.

ID is a run id or a comparison id (``cmp-…``), or any unique beginning of one. Exit codes
as everywhere: 0 done; 2 refused (unknown or ambiguous id, nothing to export); 1 failed
(unreadable record, a file that cannot be written).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from app.core.errors import DecodeLabError, RefusedError


def add_history_parser(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    """Add the ``history`` command to ``subparsers``; its ``func`` returns the exit code."""
    parser = subparsers.add_parser(
        "history",
        help="list, show, export or delete saved runs",
        description="Saved runs and comparisons (newest first).",
    )
    actions = parser.add_subparsers(dest="history_command", metavar="{list,show,export,delete}")
    ls = actions.add_parser("list", help="saved runs, newest first")
    ls.add_argument("--model", help="only runs whose target or draft path contains this")
    ls.add_argument("--track", help="only runs of this track")
    ls.add_argument("--prompt", help="only runs whose prompt contains this")
    ls.add_argument("--limit", type=_limit, metavar="N", help="at most N runs; 0 = all")
    ls.add_argument("--json", action="store_true", help="print a JSON list")
    show = actions.add_parser("show", help="one run or comparison in full")
    show.add_argument("id")
    show.add_argument("--json", action="store_true")
    show.add_argument("--no-events", action="store_true", help="leave events out of JSON")
    exp = actions.add_parser("export", help="write a run or comparison to JSON and/or CSV")
    exp.add_argument("id")
    exp.add_argument("--json", dest="json_file", metavar="FILE", help="JSON (re-importable)")
    exp.add_argument("--csv", dest="csv_file", metavar="FILE", help="CSV, one row per run")
    exp.add_argument("--tokens-csv", metavar="FILE", help="CSV, one row per token")
    delete = actions.add_parser("delete", help="delete a run, or every run of a comparison")
    delete.add_argument("id")
    parser.set_defaults(func=run_history)
    return parser


def _limit(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if n < 0:
        raise argparse.ArgumentTypeError(f"{n} is out of range: must be >= 0 (0 = all)")
    return n


def run_history(args: argparse.Namespace) -> int:
    from app.core.history import History

    history = History()
    command = getattr(args, "history_command", None) or "list"
    if command == "list":
        return _list(history, args)
    run_id = history.resolve(args.id)
    if command == "show":
        return _show(history, run_id, args)
    if command == "export":
        return _export(history, run_id, args)
    n = history.delete(run_id)
    print(f"deleted {run_id} ({n} run{'s' if n != 1 else ''})")
    return 0


def _fmt(v: float | None, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def _list(history: Any, args: argparse.Namespace) -> int:
    rows = history.list(
        model=getattr(args, "model", None),
        track=getattr(args, "track", None),
        prompt=getattr(args, "prompt", None),
    )
    for problem in history.problems():  # one line per damaged record set aside
        if problem.file == history.root:  # the folder itself cannot be read: failed
            print(f"decodelab: error: {problem}", file=sys.stderr)
            return 1
        print(f"decodelab: skipped {problem}", file=sys.stderr)
    limit = getattr(args, "limit", None)
    rows = rows[:limit] if limit else rows  # None or 0: all
    if getattr(args, "json", False):
        print(json.dumps([{**r.to_dict(), "prompt_preview": r.prompt_preview} for r in rows]))
        return 0
    if not rows:
        print("no saved runs", file=sys.stderr)
        return 0
    head = f"{'id':<22} {'created (UTC)':<19} {'track':<16} {'tok/s':>7} {'speedup':>7} "
    print(f"{head}{'accept':>6}  target / prompt")
    for r in rows:
        print(
            f"{r.id:<22} {r.created[:19].replace('T', ' '):<19} {r.track:<16} "
            f"{r.tokens_per_second:>7.2f} {_fmt(r.speedup, '.2f'):>7} "
            f"{_fmt(r.acceptance_rate, '.0%'):>6}  {r.target} / {r.prompt_preview}"
            + (f"  [{r.comparison_id}]" if r.comparison_id else "")
            + ("  (drafted nothing)" if r.drafted_nothing else "")
        )
    return 0


def _records(history: Any, run_id: str) -> list[Any]:
    if run_id.startswith("cmp-"):
        group = history.load_comparison(run_id)
        if not group.complete:
            print(f"decodelab: note: comparison {run_id} is incomplete", file=sys.stderr)
        return list(group.records)
    return [history.load(run_id)]


def _show(history: Any, run_id: str, args: argparse.Namespace) -> int:
    from app.cli_output import print_comparison, print_result
    from app.core.export import to_json
    from app.core.history import ComparisonRecord

    records = _records(history, run_id)
    if args.json:
        if run_id.startswith("cmp-"):
            print(json.dumps(to_json(records, not args.no_events), indent=1))
        else:
            d = records[0].to_dict()
            if args.no_events:
                d["result"].pop("events", None)
            print(json.dumps(d, indent=1))
        return 0
    first = records[0]
    print(f"{run_id}  {first.created}")
    print(f"target   {first.target.path} ({first.target.size:,} bytes)")
    if first.draft is not None:
        print(f"draft    {first.draft.path}")
    hw = first.hardware
    print(
        f"machine  {hw.get('cpu')}, {hw.get('threads')} threads, llama-cpp-python "
        f"{hw.get('llama_cpp_python')} ({hw.get('llama_cpp_commit')})"
    )
    print(f"prompt   {' '.join(first.prompt.split())[:70]}")
    print()
    if len(records) > 1 or first.comparison is not None:
        # Its repeats' figures too: the verdict and ranges as the comparison showed them.
        print_comparison(ComparisonRecord(run_id, records, True).comparison)
    else:
        shown = first.shown
        print_result(first.result, streamed=False, verdict=shown.verdict if shown else None)
    return 0


def _export(history: Any, run_id: str, args: argparse.Namespace) -> int:
    from app.core import export

    if not (args.json_file or args.csv_file or args.tokens_csv):
        raise RefusedError("say where to export: --json FILE, --csv FILE or --tokens-csv FILE")
    records = _records(history, run_id)
    for path, write in (
        (args.json_file, export.write_json),
        (args.csv_file, export.write_runs_csv),
        (args.tokens_csv, export.write_tokens_csv),
    ):
        if path:
            try:
                write(records, path)
            except OSError as exc:
                raise DecodeLabError(f"{path}: cannot write: {exc.strerror or exc}") from exc
            print(f"wrote {path}", file=sys.stderr)
    return 0

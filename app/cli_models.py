"""``decodelab models list [--json]``, ``models fetch [--verify|--repair] NAME...``,
``models verify [NAME...]``, and for the self-drafts DecodeLab derived from a user's model
(``decodelab reproduce``): ``models derived [--json]`` and ``models remove NAME...``.

Exit codes (the CLI contract): 0 done; 2 refused (unknown model name) with one line on
stderr; 1 failed (download, checksum, disk; for ``verify``: an altered or missing model,
reported on its line) with one line on stderr and no traceback; 130 interrupted with
Ctrl+C (no partial file is left behind).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from typing import TextIO

from app.core.errors import RefusedError
from app.core.models import catalog
from app.core.models.catalog import CatalogEntry
from app.core.models.fetcher import FetchProgress, fetch
from app.core.models.files import DerivedDraft, derived_drafts, model_path, remove_derived
from app.core.models.integrity import ModelState, check_model, verify_model
from app.core.models.library import pinned_status

_MB = 1e6
_STEP = 5  # print a progress line every 5 %
_BIG = 200_000_000  # `models verify` shows progress (on a terminal) for files this big


def add_models_parser(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    """Add the ``models`` command (with ``list``, ``fetch`` and ``verify``) to
    ``subparsers``; its handler is set as ``func`` and returns the exit code."""
    parser = subparsers.add_parser(
        "models",
        help="list or fetch the pinned real models",
        description="The pinned real GGUF models: list them, or download, assemble and "
        "verify them into the models folder.",
    )
    actions = parser.add_subparsers(dest="models_command",
                                    metavar="{list,fetch,verify,derived,remove}")
    names = "one or more of: " + ", ".join(catalog.CATALOG)
    listing = actions.add_parser(
        "list", help="show the pinned models, where they are and whether they are intact"
    )
    listing.add_argument("--json", action="store_true", help="print a JSON list")
    fetching = actions.add_parser("fetch", help="download and verify pinned models")
    fetching.add_argument("names", nargs="+", metavar="NAME", help=names)
    how = fetching.add_mutually_exclusive_group()
    how.add_argument("--verify", action="store_true",
                     help="hash an installed model in full even if it looks intact")
    how.add_argument("--repair", action="store_true",
                     help="replace the installed file with a freshly verified one")
    verifying = actions.add_parser(
        "verify", help="hash installed pinned models in full and record the result"
    )
    verifying.add_argument("names", nargs="*", metavar="NAME",
                           help=names + " (default: every installed one)")
    derived = actions.add_parser(
        "derived", help="the self-drafts derived from your models (decodelab reproduce)")
    derived.add_argument("--json", action="store_true", help="print a JSON list")
    removing = actions.add_parser("remove", help="delete derived self-drafts (never a model "
                                                 "of yours or a pinned one)")
    removing.add_argument("names", nargs="+", metavar="NAME",
                          help="file names as `models derived` lists them")
    parser.set_defaults(func=run_models)
    return parser


def run_models(args: argparse.Namespace) -> int:
    """Run ``models list`` (also the default), ``fetch`` or ``verify``; returns the exit
    code."""
    command = getattr(args, "models_command", None)
    if command == "fetch":
        return fetch_models(args.names, verify=args.verify, repair=args.repair)
    if command == "verify":
        return verify_models(args.names)
    if command == "derived":
        return list_derived(as_json=bool(args.json))
    if command == "remove":
        return remove_models(args.names)
    return list_models(as_json=bool(getattr(args, "json", False)))


def list_models(as_json: bool = False, out: TextIO | None = None,
                table: Mapping[str, CatalogEntry] | None = None) -> int:
    """Print the pinned models (``table``: another catalog, for tests) as a table or as a
    JSON list, each with its state (verified, unverified, altered, missing); returns 0.
    Never hashes a model."""
    out = out if out is not None else sys.stdout
    rows = pinned_status(table)
    if as_json:
        data = [
            {
                "name": row.entry.name,
                "installed": row.installed,
                "state": row.state,
                "path": str(row.path) if row.path is not None else None,
                "size": row.size,
                "sha256": row.sha256,
                "derived_from": row.entry.derived_from,
            }
            for row in rows
        ]
        out.write(json.dumps(data, indent=2) + "\n")
        return 0
    width = max(len(row.entry.name) for row in rows)
    out.write(f"{'NAME':<{width}}  INSTALLED  {'STATE':<10}  {'SIZE':>9}  PATH\n")
    for row in rows:
        marker = " (default)" if row.entry.name == catalog.DEFAULT_MODEL else ""
        if row.entry.derived_from:  # made here from another entry, checksummed like a download
            marker += f"  [derived from {row.entry.derived_from}]"
        where = str(row.path or model_path(row.entry))
        if row.state == ModelState.MISSING:
            where = "-  (decodelab models fetch NAME)"
        elif row.state == ModelState.ALTERED:
            where += f"  (decodelab models fetch --repair {row.entry.name})"
        elif row.state == ModelState.UNVERIFIED:
            where += f"  (decodelab models verify {row.entry.name})"
        installed = "yes" if row.installed else "no"
        out.write(
            f"{row.entry.name:<{width}}  {installed:<9}  {row.state:<10}  "
            f"{row.size / _MB:>6.1f} MB  {where}{marker}\n"
        )
    derived = derived_drafts() if table is None else []
    if derived:
        out.write(f"\nDerived self-drafts ({len(derived)}, {sum(d.size for d in derived) / _MB:.1f}"
                  " MB in the cache; decodelab models derived / remove NAME)\n")
        for d in derived:
            out.write(f"  {_derived_line(d)}\n")
    return 0


def _derived_line(d: DerivedDraft) -> str:
    return (f"{d.name}  {d.n_blocks} of {d.of_blocks} blocks of {d.source}  "
            f"{d.size / _MB:.1f} MB")


def list_derived(as_json: bool = False, out: TextIO | None = None) -> int:
    """Print the derived self-drafts (table or JSON list); returns 0."""
    out = out if out is not None else sys.stdout
    drafts = derived_drafts()
    if as_json:
        out.write(json.dumps([d.to_dict() for d in drafts], indent=2) + "\n")
    elif not drafts:
        out.write("no derived self-drafts (decodelab reproduce cas-spec --model M makes them)\n")
    for d in drafts if not as_json else []:
        out.write(_derived_line(d) + "\n")
    return 0


def remove_models(names: Sequence[str], out: TextIO | None = None,
                  err: TextIO | None = None) -> int:
    """Delete each named derived self-draft; 2 (refused, nothing removed) if a name is not
    one: DecodeLab never deletes a user's or a pinned model."""
    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    known = {d.name for d in derived_drafts()}
    for name in names:
        if name not in known:
            try:
                remove_derived(name)  # raises the refusal with its reason
            except RefusedError as exc:
                err.write(f"decodelab models remove: {exc}\n")
                return 2
    for name in dict.fromkeys(names):
        gone = remove_derived(name)
        out.write(f"removed {gone.path} ({gone.size / _MB:.1f} MB)\n")
    return 0


class _ProgressPrinter:
    """Prints one line per stage start (a stage may come back: hashing the installed
    file, then the new one), then every ``_STEP`` percent, and every message without an
    amount (total 0)."""

    def __init__(self, err: TextIO) -> None:
        self.err = err
        self.last: dict[tuple[str, str], int] = {}
        self.stage: dict[str, str] = {}

    def __call__(self, p: FetchProgress) -> None:
        if p.stage == "done" or (p.total <= 0 and p.message):
            lead = "" if p.stage == "done" else f"{p.stage:<8} "
            self.err.write(f"{p.model}: {lead}{p.message or 'done'}\n")
            self.err.flush()
            return
        fraction = p.fraction
        percent = int((fraction or 0.0) * 100) // _STEP * _STEP
        key = (p.model, p.stage)
        if self.stage.get(p.model) != p.stage:
            self.stage[p.model] = p.stage
            self.last.pop(key, None)
        if key in self.last and percent <= self.last[key]:
            return
        self.last[key] = percent
        amount = ""
        if p.stage in ("download", "assemble", "verify") and p.total > 1:
            amount = f"  {p.current / _MB:7.1f} / {p.total / _MB:.1f} MB"
        note = f"  {p.message}" if p.message else ""
        self.err.write(f"{p.model}: {p.stage:<8} {percent:3d}%{amount}{note}\n")
        self.err.flush()


def _unknown(command: str, names: Sequence[str], table: Mapping[str, CatalogEntry],
             err: TextIO) -> bool:
    """Whether a name is not in ``table``; if so, says so in one line on ``err``."""
    unknown = [name for name in names if name not in table]
    if unknown:
        known = ", ".join(table)
        err.write(f"decodelab models {command}: unknown model {unknown[0]!r} (known: {known})\n")
    return bool(unknown)


def fetch_models(names: list[str], out: TextIO | None = None, err: TextIO | None = None, *,
                 verify: bool = False, repair: bool = False,
                 table: Mapping[str, CatalogEntry] | None = None,
                 pip_args: Sequence[str] = ()) -> int:
    """Fetch each named model in order (``verify``/``repair``: see core ``fetch``),
    printing progress to ``err`` and each installed path to ``out``; returns 0, 1
    (failed), 2 (unknown name) or 130 (Ctrl+C). ``table``/``pip_args``: for tests."""
    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    table = table if table is not None else catalog.CATALOG
    if _unknown("fetch", names, table, err):
        return 2
    printer = _ProgressPrinter(err)
    for name in dict.fromkeys(names):  # each once, in the order given
        try:
            path = fetch(name, progress=printer, catalog=table, pip_args=pip_args,
                         verify=verify, repair=repair)
        except KeyboardInterrupt:
            err.write(f"decodelab models fetch: {name}: cancelled\n")
            return 130
        except Exception as exc:  # the contract: one line and exit code 1, never a traceback
            message = str(exc) or type(exc).__name__
            err.write(f"decodelab models fetch: {name}: {message}\n")
            return 1
        out.write(f"{path}\n")
        out.flush()
    return 0


def verify_models(names: Sequence[str] = (), out: TextIO | None = None,
                  err: TextIO | None = None,
                  table: Mapping[str, CatalogEntry] | None = None) -> int:
    """Hash each named model (default: every one present) in full, record the result and
    print one line per model to ``out``; progress goes to ``err`` for big files when it is
    a terminal. Returns 0 (all verified), 1 (one altered, missing or unreadable), 2
    (unknown name) or 130 (Ctrl+C)."""
    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    table = table if table is not None else catalog.CATALOG
    if _unknown("verify", names, table, err):
        return 2
    chosen = list(dict.fromkeys(names)) or [
        name for name, entry in table.items()
        if check_model(entry, table).state is not ModelState.MISSING
    ]
    if not chosen:
        out.write("no pinned model is installed (decodelab models fetch NAME)\n")
        return 0
    printer = _ProgressPrinter(err) if _isatty(err) else None
    code = 0
    for name in chosen:
        entry = table[name]

        def progress(done: int, total: int, name: str = name) -> None:
            if printer is not None and total >= _BIG:
                printer(FetchProgress("verify", name, done, total, "hashing"))

        try:
            result = verify_model(entry, table, progress)
        except KeyboardInterrupt:
            err.write(f"decodelab models verify: {name}: cancelled\n")
            return 130
        except OSError as exc:
            out.write(f"{name}: unreadable  {exc.strerror or exc}  {model_path(entry)}\n")
            code = 1
            continue
        if result.state is ModelState.MISSING:
            out.write(f"{name}: missing  (decodelab models fetch {name})\n")
        elif result.state is ModelState.VERIFIED:
            out.write(f"{name}: verified  {result.path}\n")
        else:
            out.write(f"{name}: altered  SHA-256 {result.actual}, pinned {result.expected}  "
                      f"{result.path}  (decodelab models fetch --repair {name})\n")
        code = code or (0 if result.state is ModelState.VERIFIED else 1)
    return code


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False

"""``decodelab models list [--json]`` and ``decodelab models fetch NAME...``.

Exit codes (the CLI contract): 0 done; 2 refused (unknown model name) with one line on
stderr; 1 failed (download, checksum, disk) with one line on stderr and no traceback;
130 interrupted with Ctrl+C (no partial file is left behind).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TextIO

from app.core.models import catalog
from app.core.models.fetcher import FetchProgress, fetch
from app.core.models.library import pinned_status

_MB = 1e6
_STEP = 5  # print a progress line every 5 %


def add_models_parser(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    """Add the ``models`` command (with ``list`` and ``fetch``) to ``subparsers``; its
    handler is set as ``func`` and returns the exit code."""
    parser = subparsers.add_parser(
        "models",
        help="list or fetch the pinned real models",
        description="The pinned real GGUF models: list them, or download, assemble and "
        "verify them into the models folder.",
    )
    actions = parser.add_subparsers(dest="models_command", metavar="{list,fetch}")
    listing = actions.add_parser("list", help="show the pinned models and where they are")
    listing.add_argument("--json", action="store_true", help="print a JSON list")
    fetching = actions.add_parser("fetch", help="download and verify pinned models")
    fetching.add_argument(
        "names", nargs="+", metavar="NAME", help="one or more of: " + ", ".join(catalog.CATALOG)
    )
    parser.set_defaults(func=run_models)
    return parser


def run_models(args: argparse.Namespace) -> int:
    """Run ``models list`` (also the default) or ``models fetch``; returns the exit code."""
    if getattr(args, "models_command", None) == "fetch":
        return fetch_models(args.names)
    return list_models(as_json=bool(getattr(args, "json", False)))


def list_models(as_json: bool = False, out: TextIO | None = None) -> int:
    """Print the pinned models as a table or as a JSON list; returns 0."""
    out = out if out is not None else sys.stdout
    rows = pinned_status()
    if as_json:
        data = [
            {
                "name": row.entry.name,
                "installed": row.installed,
                "path": str(row.path) if row.path is not None else None,
                "size": row.size,
                "sha256": row.sha256,
            }
            for row in rows
        ]
        out.write(json.dumps(data, indent=2) + "\n")
        return 0
    width = max(len(row.entry.name) for row in rows)
    out.write(f"{'NAME':<{width}}  INSTALLED  {'SIZE':>9}  PATH\n")
    for row in rows:
        marker = " (default)" if row.entry.name == catalog.DEFAULT_MODEL else ""
        where = str(row.path) if row.path is not None else "-  (decodelab models fetch NAME)"
        installed = "yes" if row.installed else "no"
        out.write(
            f"{row.entry.name:<{width}}  {installed:<9}  {row.size / _MB:>6.1f} MB  {where}"
            f"{marker}\n"
        )
    return 0


class _ProgressPrinter:
    """Prints one line per stage start and then every ``_STEP`` percent."""

    def __init__(self, err: TextIO) -> None:
        self.err = err
        self.last: dict[tuple[str, str], int] = {}

    def __call__(self, p: FetchProgress) -> None:
        if p.stage == "done":
            self.err.write(f"{p.model}: {p.message or 'done'}\n")
            self.err.flush()
            return
        fraction = p.fraction
        percent = int((fraction or 0.0) * 100) // _STEP * _STEP
        key = (p.model, p.stage)
        if key in self.last and percent <= self.last[key]:
            return
        self.last[key] = percent
        amount = ""
        if p.stage in ("download", "assemble", "verify") and p.total > 1:
            amount = f"  {p.current / _MB:7.1f} / {p.total / _MB:.1f} MB"
        note = f"  {p.message}" if p.message else ""
        self.err.write(f"{p.model}: {p.stage:<8} {percent:3d}%{amount}{note}\n")
        self.err.flush()


def fetch_models(names: list[str], out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Fetch each named model in order, printing progress to ``err`` and each installed
    path to ``out``; returns 0, 1 (failed), 2 (unknown name) or 130 (Ctrl+C)."""
    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    unknown = [name for name in names if name not in catalog.CATALOG]
    if unknown:
        known = ", ".join(catalog.CATALOG)
        err.write(f"decodelab models fetch: unknown model {unknown[0]!r} (known: {known})\n")
        return 2
    printer = _ProgressPrinter(err)
    for name in dict.fromkeys(names):  # each once, in the order given
        try:
            path = fetch(name, progress=printer)
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

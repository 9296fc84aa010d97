"""What every command-line module shares: exit codes, checked standard output, model
names. Its own module so that ``app.cli`` (the parser) and the command modules it loads do
not import each other.
"""

from __future__ import annotations

import argparse
import difflib
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TextIO

from app.core.errors import DecodeLabError, RefusedError

EXIT_OK, EXIT_FAILED, EXIT_REFUSED = 0, 1, 2


class OutputError(DecodeLabError):
    """Standard output does not take what a command prints (a full disk, a closed pipe)."""

    def __init__(self, exc: OSError) -> None:
        super().__init__(f"cannot write to standard output: {exc.strerror or exc}")
        self.broken_pipe = isinstance(exc, BrokenPipeError)


class CheckedOutput:
    """Standard output whose write errors are ``OutputError``: told apart from the other
    I/O errors of a command, they are reported at the top level as one line."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        try:
            return self.stream.write(text)
        except OSError as exc:
            raise OutputError(exc) from exc

    def flush(self) -> None:
        try:
            self.stream.flush()
        except OSError as exc:
            raise OutputError(exc) from exc

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


def resolve_model(spec: str) -> str:
    """A path, or the name of a pinned model that is installed (see ``check_model_name``)."""
    from app.core.models.library import resolve_model as resolve

    check_model_name(spec)
    return str(resolve(spec))


def check_model_name(spec: str) -> None:
    """Refuse a bare name (no folder, no ``.gguf``) that is neither a file nor a pinned
    model, as a typo: with the pinned name it is closest to. Paths are left to the library
    (a missing file is a failure, exit 1, not bad input)."""
    from app.core.models.catalog import CATALOG

    path = Path(spec).expanduser()
    bare = "/" not in spec and os.sep not in spec and path.suffix.lower() != ".gguf"
    if bare and spec not in CATALOG and not path.exists():
        close = difflib.get_close_matches(spec.lower(), list(CATALOG), 1, 0.6)
        did = f"did you mean {close[0]!r}? " if close else ""
        raise RefusedError(f"no model file or pinned model {spec!r}: {did}"
                           f"(pinned: {', '.join(CATALOG)}; or give a GGUF path)")


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """" did you mean 'run'?" when ``word`` is close to one of ``choices``, else ""."""
    close = difflib.get_close_matches(word, list(choices), 1, 0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


class HelpFormatter(argparse.HelpFormatter):
    """Every option's default in its help, unless the help already says it (or there is
    none to say: a flag, or a value that is the model's or the machine's own). A
    description or epilog of several lines (the track list) keeps its lines; one of a
    single line is wrapped as usual."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n" in text:
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if (not action.option_strings or action.nargs == 0 or default is None
                or default is argparse.SUPPRESS or "default" in text.lower()):
            return action.help
        return f"{text} (default: %(default)s)"



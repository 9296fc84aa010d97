"""What every command-line module shares: exit codes, checked standard output, model
names. Its own module so that ``app.cli`` (the parser) and the command modules it loads do
not import each other.
"""

from __future__ import annotations

from typing import Any, TextIO

from app.core.errors import DecodeLabError

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
    """A path, or the name of a pinned model that is installed."""
    from app.core.models.library import resolve_model as resolve

    return str(resolve(spec))



"""Errors the core raises; the CLI maps them to exit codes and the GUI to messages."""

from __future__ import annotations

from app.core.sizes import size_of_size


class DecodeLabError(Exception):
    """Something failed (missing or broken file, out of memory): exit code 1."""


class ModelFileError(DecodeLabError):
    """A model file is missing, unreadable or not a valid GGUF file."""

    def __init__(self, path: object, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = str(path)
        self.problem = problem


class RefusedError(Exception):
    """A request the core will not carry out (bad setting, deprecated track,
    speculation on a recurrent model, incompatible draft): exit code 2."""


class IncompleteFileError(ModelFileError):
    """A model file cut short (an interrupted download or copy): ``size`` of the ``needed``
    bytes (announced by its header, or pinned in the catalog) are there; ``next_step`` says
    what to do about it."""

    def __init__(self, path: object, size: int, needed: int, next_step: str = "") -> None:
        super().__init__(path, f"incomplete file ({size_of_size(size, needed)})"
                         + (f": {next_step}" if next_step else ""))
        self.size, self.needed, self.next_step = size, needed, next_step

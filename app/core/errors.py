"""Errors the core raises; the CLI maps them to exit codes and the GUI to messages."""

from __future__ import annotations


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

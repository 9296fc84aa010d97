"""The draft sources, each described once.

A draft source is where proposed tokens come from (a draft model, prompt lookup, suffix
drafting, ...). Everything above the engine that differs between sources reads it from the
``DraftSource`` entry here: the CLI flags and the window's setting widgets (``settings``),
settings validation (each ``Setting``'s range), the tracks (``app.core.tracks`` builds one
per set of sources), the token colours and the legend, the sweep's parameters and the
"will it pay?" formula (``cost``). Adding a source is one module plus one ``register`` line
in ``app/core/drafting/sources.py`` (which the package imports, so the built-in sources
are registered before anything reads the registry).

This module imports nothing from the engine: building a drafter gets what it needs through
``BuildContext``, whose fields are typed loosely here so that reading the registry (for a
``--help`` text, a legend) never loads llama.cpp.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

CostKind = Literal["model", "free"]
Value = int | float | bool


@dataclass(frozen=True)
class Setting:
    """One setting a source owns: its key in ``RunSettings.options`` and in the JSON
    ``settings`` (contract), its range, default and one-line help."""

    name: str
    label: str
    help: str
    default: Value
    lo: float | None = None
    hi: float | None = None
    step: float = 1.0  # the window's spin step for floats
    sweep: tuple[float, ...] = ()  # the values a sweep tries by default; () = not swept

    @property
    def kind(self) -> type:
        return type(self.default)

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def problem(self, value: object) -> str | None:
        """Why ``value`` is not acceptable, or None."""
        kind = self.kind
        if kind is bool:
            return None if isinstance(value, bool) else f"{self.name} must be true or false"
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"{self.name} must be a number"
        if kind is int and not isinstance(value, int):
            return f"{self.name} must be a whole number"
        if not math.isfinite(value):
            return f"{self.name} must be finite"
        if (self.lo is not None and value < self.lo) or (self.hi is not None and value > self.hi):
            return f"{self.name} must be in {self.range_text()} (got {value})"
        return None

    def range_text(self) -> str:
        fmt = (lambda v: str(int(v))) if self.kind is int else (lambda v: f"{v:g}")
        lo = "-inf" if self.lo is None else fmt(self.lo)
        hi = "inf" if self.hi is None else fmt(self.hi)
        return f"{lo}..{hi}"

    def parse(self, text: str) -> Value:
        """The value of a command-line word; ValueError (one line) if it is not valid."""
        kind = self.kind
        if kind is bool:
            low = text.strip().lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError(f"{self.flag}: expected on or off, got {text!r}")
        try:
            value: Value = int(text) if kind is int else float(text)
        except ValueError:
            what = "a whole number" if kind is int else "a number"
            raise ValueError(f"{self.flag}: expected {what}, got {text!r}") from None
        why = self.problem(value)
        if why is not None:
            raise ValueError(f"{self.flag}: {why.split(': ', 1)[-1]}")
        return value


@dataclass
class BuildContext:
    """What a source's ``build`` gets. ``target`` and ``draft`` are the loaded models
    (``LoadedModel``), ``costs`` the run's ``CostModel``; ``memory`` is this source's own
    store kept by the session across runs (what it learned about a model pair, earlier
    answers ...)."""

    settings: Any
    target: Any
    draft: Any
    costs: Any
    memory: dict[Any, Any]

    def option(self, name: str) -> Any:
        return self.settings.option(name)


@dataclass(frozen=True)
class DraftSource:
    """One draft source, described once (see the module docstring)."""

    id: str  # the token-event ``source`` and the track-id part (contract)
    label: str  # what the window calls it: "prompt lookup"
    name: str  # its track name: "Prompt lookup"
    summary: str  # one line: what it does
    number: int | None  # the study's track number, if it has one
    colour: str  # background of its accepted tokens, light palette
    dark_colour: str  # the same on a dark palette
    plot_colour: str  # its line in plots
    cost: CostKind  # "model": a draft step per drafted token; "free": variable-length drafts
    needs_draft_model: bool
    priority: int  # lower proposes first when sources are combined
    build: Callable[[BuildContext], Any]
    settings: tuple[Setting, ...] = field(default_factory=tuple)
    # A rule across its settings: given a getter of setting values, why they do not fit.
    check: Callable[[Callable[[str], Any]], str | None] | None = None

    @property
    def title(self) -> str:
        return f"{self.name} (Track {self.number})" if self.number else self.name


_SOURCES: dict[str, DraftSource] = {}


def register(source: DraftSource) -> DraftSource:
    """Add ``source`` (or replace one with the same id); its setting names must be new.
    The built-in sources come first: the package registers them on import."""
    taken = {s.name: other.id for other in _SOURCES.values() if other.id != source.id
             for s in other.settings}
    for s in source.settings:
        if s.name in taken:
            raise ValueError(f"setting {s.name!r} of {source.id!r} is {taken[s.name]!r}'s")
    if not source.id.isidentifier() or source.id in ("baseline", "moe"):
        raise ValueError(f"bad draft source id {source.id!r}")
    _SOURCES[source.id] = source
    return source


def unregister(source_id: str) -> None:
    _SOURCES.pop(source_id, None)


def sources() -> tuple[DraftSource, ...]:
    """Every registered source, in registration order (the order of track ids)."""
    return tuple(_SOURCES.values())


def get_source(source_id: str) -> DraftSource | None:
    return _SOURCES.get(source_id)


def all_settings() -> tuple[Setting, ...]:
    return tuple(s for src in sources() for s in src.settings)


def setting(name: str) -> Setting | None:
    return next((s for s in all_settings() if s.name == name), None)

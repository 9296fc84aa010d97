"""Rebuilding the core's data classes from their ``to_dict()`` JSON form.

Guarantees: for every ``RunResult`` r, ``result_from_dict(r.to_dict()) == r`` (events
included, in order, with their exact types), also after a trip through ``json``; the same
for ``RunSettings``, ``ComparedRun`` and ``Comparison``. Keys a reader does not know (newer
files, derived values such as ``tokens_per_second``) are ignored; a missing required key or
a value of the wrong kind raises ``FormatError``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, cast

from app.core.compare import ComparedRun, Comparison
from app.core.events import Event, RejectionEvent, RoundEvent, RunResult, RunSettings, TokenEvent


class FormatError(ValueError):
    """A stored or exported document is not what DecodeLab wrote."""


def _mapping(d: object, what: str) -> Mapping[str, Any]:
    if not isinstance(d, Mapping):
        raise FormatError(f"{what}: expected an object, got {type(d).__name__}")
    return cast(Mapping[str, Any], d)


def _fields(cls: type, d: Mapping[str, Any], what: str) -> dict[str, Any]:
    """The entries of ``d`` that are fields of dataclass ``cls``; required ones must exist."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name in d:
            out[f.name] = d[f.name]
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise FormatError(f"{what}: missing {f.name!r}")
    return out


def _as_float(d: dict[str, Any], *names: str) -> None:
    # JSON writes 1.0 as 1.0, but hand-made or foreign files may hold ints: normalise.
    for n in names:
        if n in d and isinstance(d[n], int) and not isinstance(d[n], bool):
            d[n] = float(d[n])


def event_from_dict(d: object) -> Event:
    """The event ``d`` describes, chosen by its ``kind`` (token, rejected, round)."""
    m = _mapping(d, "event")
    kind = m.get("kind", "token")
    try:
        if kind == "token":
            f = _fields(TokenEvent, m, "token event")
            _as_float(f, "t")
            return TokenEvent(**f)
        if kind == "rejected":
            return RejectionEvent(**_fields(RejectionEvent, m, "rejection event"))
        if kind == "round":
            f = _fields(RoundEvent, m, "round event")
            _as_float(f, "draft_seconds", "verify_seconds", "t")
            return RoundEvent(**f)
    except TypeError as exc:
        raise FormatError(f"event: {exc}") from exc
    raise FormatError(f"event: unknown kind {kind!r}")


def settings_from_dict(d: object) -> RunSettings:
    """``RunSettings`` from its dict; absent keys take today's defaults (older files)."""
    m = _mapping(d, "settings")
    known = {f.name for f in dataclasses.fields(RunSettings)}
    f = {k: v for k, v in m.items() if k in known}
    _as_float(f, "temperature", "top_p", "min_p", "draft_p_min")
    return RunSettings(**f)


def result_from_dict(d: object) -> RunResult:
    """The ``RunResult`` of ``RunResult.to_dict()`` output (with or without events)."""
    m = _mapping(d, "run")
    f = _fields(RunResult, m, "run")
    _as_float(f, "generation_seconds", "prefill_seconds", "draft_seconds", "verify_seconds")
    events = m.get("events") or []
    if not isinstance(events, list):
        raise FormatError("run: 'events' is not a list")
    f["events"] = [event_from_dict(e) for e in events]
    f["token_ids"] = list(m.get("token_ids") or [])
    for key in ("settings", "effective"):
        f[key] = dict(_mapping(f.get(key) or {}, f"run {key}"))
    try:
        return RunResult(**f)
    except TypeError as exc:
        raise FormatError(f"run: {exc}") from exc


def compared_run_from_dict(d: object) -> ComparedRun:
    """A ``ComparedRun`` from ``ComparedRun.to_dict()`` output."""
    m = _mapping(d, "compared run")
    return ComparedRun(
        result_from_dict(m),
        m.get("speedup"),
        m.get("same_text_as_baseline"),
        m.get("first_difference"),
        m.get("baseline_margin_at_difference"),
    )


def comparison_from_dict(d: object) -> Comparison:
    """A ``Comparison`` from ``Comparison.to_dict()`` output (``{"runs": [...]}``)."""
    runs = _mapping(d, "comparison").get("runs")
    if not isinstance(runs, list):
        raise FormatError("comparison: 'runs' is not a list")
    return Comparison([compared_run_from_dict(r) for r in runs])

"""Rebuilding the core's data classes from their ``to_dict()`` JSON form.

Guarantees: for every ``RunResult`` r, ``result_from_dict(r.to_dict()) == r`` (events
included, in order, with their exact types), also after a trip through ``json``; the same
for ``RunSettings``, ``ComparedRun`` and ``Comparison``. Keys a reader does not know (newer
files, derived values such as ``tokens_per_second``) are ignored; a missing required key or
a value of the wrong kind raises ``FormatError``.

``RunRecord`` is what the history keeps of a run (and what an export carries next to each
run): settings, model identities, hardware, prompt, result and its place in a comparison.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
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


# -- history records ----------------------------------------------------------------------

RECORD_FORMAT = "decodelab-run"
RECORD_VERSION = 1


@dataclass(frozen=True)
class ModelIdentity:
    """Which model file a run used. ``fingerprint`` is the verified sha256 from the
    fetcher's sidecar (kind ``sha256``) or sha256 of size + first and last MiB (``fast``)."""

    path: str
    file_name: str
    size: int
    fingerprint: str
    fingerprint_kind: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: object) -> ModelIdentity:
        f = _fields(cls, _mapping(d, "model"), "model")
        return cls(**f)


@dataclass(frozen=True)
class ComparisonLink:
    """A run's place in a saved comparison and how it fared against the baseline."""

    id: str
    index: int
    size: int
    speedup: float | None
    same_text_as_baseline: bool | None
    first_difference: int | None = None
    baseline_margin: float | None = None

    @classmethod
    def of(cls, comparison_id: str, index: int, size: int, run: ComparedRun) -> ComparisonLink:
        return cls(
            comparison_id,
            index,
            size,
            run.speedup,
            run.same_text_as_baseline,
            run.first_difference,
            run.baseline_margin,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: object) -> ComparisonLink:
        return cls(**_fields(cls, _mapping(d, "comparison"), "comparison"))


@dataclass
class RunRecord:
    """A saved run: what ran (settings, models, prompt), where (hardware), and its result."""

    id: str
    created_unix: float
    prompt: str
    settings: RunSettings
    target: ModelIdentity
    draft: ModelIdentity | None
    hardware: dict[str, Any]
    result: RunResult
    comparison: ComparisonLink | None = None

    @property
    def created(self) -> str:
        """ISO 8601 time in UTC, to the second."""
        stamp = datetime.fromtimestamp(self.created_unix, tz=UTC)
        return stamp.isoformat(timespec="seconds")

    def compared_run(self) -> ComparedRun:
        c = self.comparison
        if c is None:
            return ComparedRun(self.result, None, None)
        return ComparedRun(
            self.result,
            c.speedup,
            c.same_text_as_baseline,
            c.first_difference,
            c.baseline_margin,
        )

    def meta_dict(self) -> dict[str, Any]:
        """Everything but the result."""
        return {
            "format": RECORD_FORMAT,
            "version": RECORD_VERSION,
            "id": self.id,
            "created": self.created,
            "created_unix": self.created_unix,
            "prompt": self.prompt,
            "settings": self.settings.to_dict(),
            "target": self.target.to_dict(),
            "draft": self.draft.to_dict() if self.draft else None,
            "hardware": self.hardware,
            "comparison": self.comparison.to_dict() if self.comparison else None,
        }

    def to_dict(self) -> dict[str, Any]:
        return {**self.meta_dict(), "result": self.result.to_dict()}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_dict(cls, d: object, result: RunResult | None = None) -> RunRecord:
        """From ``to_dict()`` output; or from ``meta_dict()`` output plus ``result``."""
        m = _mapping(d, "record")
        if m.get("format") != RECORD_FORMAT:
            raise FormatError(f"not a DecodeLab run record (format {m.get('format')!r})")
        if not isinstance(m.get("version"), int) or m["version"] > RECORD_VERSION:
            raise FormatError(f"record version {m.get('version')!r} is newer than this program")
        try:
            return cls(
                id=str(m["id"]),
                created_unix=float(m["created_unix"]),
                prompt=str(m["prompt"]),
                settings=settings_from_dict(m["settings"]),
                target=ModelIdentity.from_dict(m["target"]),
                draft=ModelIdentity.from_dict(m["draft"]) if m.get("draft") else None,
                hardware=dict(_mapping(m.get("hardware") or {}, "hardware")),
                result=result if result is not None else result_from_dict(m["result"]),
                comparison=(
                    ComparisonLink.from_dict(m["comparison"]) if m.get("comparison") else None
                ),
            )
        except (KeyError, TypeError) as exc:
            raise FormatError(f"record: bad or missing {exc}") from exc


@dataclass(frozen=True)
class RunSummary:
    """One line of the history list."""

    id: str
    created: str
    created_unix: float
    track: str
    target: str
    target_path: str
    draft: str | None
    draft_path: str | None
    prompt: str
    n_generated: int
    tokens_per_second: float
    acceptance_rate: float | None
    stop_reason: str
    comparison_id: str | None
    speedup: float | None
    same_text_as_baseline: bool | None

    @property
    def prompt_preview(self) -> str:
        line = " ".join(self.prompt.split())
        return line if len(line) <= 60 else line[:59] + "…"

    def matches(
        self, model: str | None, track: str | None, prompt: str | None, comparison: str | None
    ) -> bool:
        names = [self.target_path, self.draft_path or ""]
        return (
            (not model or any(model.lower() in n.lower() for n in names))
            and (not track or track == self.track)
            and (not prompt or prompt.lower() in self.prompt.lower())
            and (not comparison or comparison == self.comparison_id)
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarize(r: RunRecord) -> RunSummary:
    res, c = r.result, r.comparison
    return RunSummary(
        r.id,
        r.created,
        r.created_unix,
        res.track,
        r.target.file_name,
        r.target.path,
        r.draft.file_name if r.draft else None,
        r.draft.path if r.draft else None,
        r.prompt,
        res.n_generated,
        res.tokens_per_second,
        res.acceptance_rate,
        res.stop_reason,
        c.id if c else None,
        c.speedup if c else None,
        c.same_text_as_baseline if c else None,
    )


def read_record(path: Path) -> RunRecord:
    """The record in ``path``; OSError or ValueError (incl. FormatError) if unreadable."""
    return RunRecord.from_dict(json.loads(path.read_text(encoding="utf-8")))

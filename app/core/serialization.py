"""Rebuilding the core's data classes from their ``to_dict()`` JSON form.

Guarantees: for every ``RunResult`` r, ``result_from_dict(r.to_dict()) == r`` (events
included, in order, with their exact types), also after a trip through ``json``; the same
for ``RunSettings``, ``ComparedRun`` and ``Comparison`` (their repeats included). Keys a
reader does not know (newer files, derived values such as ``tokens_per_second``) are
ignored; a missing required key, a value of the wrong type or out of range (numbers must be
finite; counts, sizes and times not negative; settings within what a spin box and a C int
hold; record times up to the year 3000) or an unknown track id raises ``FormatError``,
saying which field.

``RunRecord`` is what the history keeps of a run (and what an export carries next to each
run): settings, model identities, hardware, prompt, result, its place in a comparison (with
the repeats' figures) and the speedup and verdict it was shown with (``Shown``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import app.core.drafting.registry as registry
from app.core.events import Event, RejectionEvent, RoundEvent, RunResult, RunSettings, TokenEvent
from app.core.store import read_json
from app.core.tracks import TRACK_ID, find_track
from app.core.validate import FormatError, as_mapping, check_float, check_int, checker, fields_of
from app.core.verdict import ComparedRun, Comparison, Repeats, idle_reason

# Settings go into spin boxes and C ints; -1 means "all" or "random" where llama.cpp says so.
SETTINGS_RANGE = (-1, 2**31 - 1)
# Creation times up to the year 3000: what every platform converts to a local date.
UNIX_RANGE = (0.0, 32_503_680_000.0)
_SIGNED = (-(2.0**53), 2.0**53)
# The free-form ``effective`` dict of a result: the entries the program reads back.
_EFFECTIVE = {
    k: checker(int | None)
    for k in ("draft_max", "expert_used_count", "expert_count", "threads", "threads_batch")
}
_OPTIONAL_FLOAT = checker(float | None, _SIGNED)
_OPTIONAL_BOOL = checker(bool | None)
_OPTIONAL_INT = checker(int | None)
_FREE = checker(dict[str, Any])


class NewerRecordError(FormatError):
    """A record written by a newer DecodeLab: not damaged, just not readable here."""


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _checked(check: Any, value: object, what: str) -> Any:
    try:
        return check(value)
    except FormatError as exc:
        raise FormatError(f"{what}: {exc}") from None


def event_from_dict(d: object) -> Event:
    """The event ``d`` describes, chosen by its ``kind`` (token, rejected, round)."""
    m = as_mapping(d, "event")
    kind = m.get("kind", "token")
    if kind == "token":
        return TokenEvent(**fields_of(TokenEvent, m, "token event"))
    if kind == "rejected":
        return RejectionEvent(**fields_of(RejectionEvent, m, "rejection event"))
    if kind == "round":
        return RoundEvent(**fields_of(RoundEvent, m, "round event"))
    raise FormatError(f"event: unknown kind {kind!r}")


def settings_from_dict(d: object) -> RunSettings:
    """``RunSettings`` from its flat dict (``RunSettings.to_dict``); absent keys take
    today's defaults (older files); settings of sources not registered here are left out."""
    f = fields_of(RunSettings, d, "settings", int_range=SETTINGS_RANGE, skip=("options",))
    m = as_mapping(d, "settings")
    options = {}
    for spec in registry.all_settings():
        if spec.name in m:
            why = spec.problem(m[spec.name])
            if why is not None:
                raise FormatError(f"settings.{spec.name}: {why}")
            options[spec.name] = m[spec.name]
    return RunSettings(**f, options=options)


def result_from_dict(d: object) -> RunResult:
    """The ``RunResult`` of ``RunResult.to_dict()`` output (with or without events)."""
    m = as_mapping(d, "run")
    f = fields_of(RunResult, m, "run", skip=("settings", "effective", "token_ids"))
    events = m.get("events") or []
    if not isinstance(events, list):
        raise FormatError("run: 'events' is not a list")
    f["events"] = []
    for i, e in enumerate(events):
        try:
            f["events"].append(event_from_dict(e))
        except FormatError as exc:
            raise FormatError(f"run.events[{i}]: {exc}") from None
    f["token_ids"] = _checked(checker(list[int]), m.get("token_ids") or [], "run.token_ids")
    f["settings"] = _checked(_FREE, m.get("settings") or {}, "run.settings")
    settings_from_dict(f["settings"])  # the entries a reader uses must have their types
    f["effective"] = _checked(_FREE, m.get("effective") or {}, "run.effective")
    for key, check in _EFFECTIVE.items():
        _checked(check, f["effective"].get(key), f"run.effective.{key}")
    try:
        return RunResult(**f)
    except TypeError as exc:
        raise FormatError(f"run: {exc}") from exc


_FIGURES = checker(list[float], float_range=_SIGNED)


def repeats_from_dict(d: object) -> Repeats | None:
    """``Repeats`` from ``Repeats.to_dict()`` output (each list is under ``values``)."""
    if d is None:
        return None
    m = as_mapping(d, "repeats")
    lists = []
    for key in ("tokens_per_second", "speedup"):
        part = as_mapping(m.get(key) or {}, f"repeats.{key}")
        lists.append(_checked(_FIGURES, part.get("values") or [], f"repeats.{key}.values"))
    return Repeats(*lists)


def compared_run_from_dict(d: object) -> ComparedRun:
    """A ``ComparedRun`` from ``ComparedRun.to_dict()`` output."""
    m = as_mapping(d, "compared run")
    return ComparedRun(
        result_from_dict(m),
        _checked(_OPTIONAL_FLOAT, m.get("speedup"), "speedup"),
        _checked(_OPTIONAL_BOOL, m.get("same_text_as_baseline"), "same_text_as_baseline"),
        _checked(_OPTIONAL_INT, m.get("first_difference"), "first_difference"),
        _checked(_OPTIONAL_FLOAT, m.get("baseline_margin_at_difference"), "baseline_margin"),
        repeats_from_dict(m.get("repeats")),
    )


def comparison_from_dict(d: object) -> Comparison:
    """A ``Comparison`` from ``Comparison.to_dict()`` output (``{"runs": [...]}``)."""
    m = as_mapping(d, "comparison")
    runs = m.get("runs")
    if not isinstance(runs, list):
        raise FormatError("comparison: 'runs' is not a list")
    repeats = _checked(lambda v: check_int(v, 1, 2**31), m.get("repeats", 1),
                       "comparison.repeats")
    return Comparison([compared_run_from_dict(r) for r in runs], repeats)


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
        return cls(**fields_of(cls, d, "model"))


@dataclass(frozen=True)
class ComparisonLink:
    """A run's place in a saved comparison and how it fared against the baseline: with
    repeats, how many, and each repeat's tokens/s and paired speedup; ``verdict``: the
    comparison's verdict as it was shown when it ended."""

    id: str
    index: int
    size: int
    speedup: float | None
    same_text_as_baseline: bool | None
    first_difference: int | None = None
    baseline_margin: float | None = None
    repeats: int = 1
    repeat_tokens_per_second: list[float] | None = None
    repeat_speedups: list[float] | None = None
    verdict: str | None = None

    @classmethod
    def of(cls, comparison_id: str, index: int, size: int, run: ComparedRun,
           comparison: Comparison | None = None) -> ComparisonLink:
        reps = run.repeats
        return cls(
            comparison_id,
            index,
            size,
            run.speedup,
            run.same_text_as_baseline,
            run.first_difference,
            run.baseline_margin,
            comparison.repeats if comparison is not None else 1,
            list(reps.tokens_per_second) if reps is not None else None,
            list(reps.speedups) if reps is not None else None,
            comparison.verdict.text if comparison is not None else None,
        )

    @property
    def repeats_figures(self) -> Repeats | None:
        if self.repeat_tokens_per_second is None and self.repeat_speedups is None:
            return None
        return Repeats(list(self.repeat_tokens_per_second or []),
                       list(self.repeat_speedups or []))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: object) -> ComparisonLink:
        f = fields_of(cls, d, "comparison", ranges={"baseline_margin": _SIGNED})
        _checked(lambda v: check_int(v, 1, 2**31), f["size"], "comparison.size")
        _checked(lambda v: check_int(v, 1, 2**31), f.get("repeats", 1), "comparison.repeats")
        if f["index"] >= f["size"]:
            raise FormatError(f"comparison: index {f['index']} of {f['size']} runs")
        return cls(**f)


@dataclass(frozen=True)
class Shown:
    """The speedup and verdict a single run was shown with when it ended (the Run tab
    judges it against a remembered baseline that is not in the record), so that History
    shows the same, not a dash."""

    speedup: float | None
    verdict: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: object) -> Shown:
        return cls(**fields_of(cls, d, "shown", ranges={"speedup": _SIGNED}))


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
    shown: Shown | None = None

    @property
    def created(self) -> str:
        """ISO 8601 time in UTC, to the second."""
        stamp = datetime.fromtimestamp(self.created_unix, tz=UTC)
        return stamp.isoformat(timespec="seconds")

    def compared_run(self) -> ComparedRun:
        c = self.comparison
        if c is None:
            return ComparedRun(self.result, self.shown.speedup if self.shown else None, None)
        return ComparedRun(
            self.result,
            c.speedup,
            c.same_text_as_baseline,
            c.first_difference,
            c.baseline_margin,
            c.repeats_figures,
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
            "shown": self.shown.to_dict() if self.shown else None,
        }

    def to_dict(self) -> dict[str, Any]:
        return {**self.meta_dict(), "result": self.result.to_dict()}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_dict(cls, d: object, result: RunResult | None = None) -> RunRecord:
        """From ``to_dict()`` output; or from ``meta_dict()`` output plus ``result``.
        Every field is checked (types, finite numbers in range, known track ids)."""
        m = as_mapping(d, "record")
        if m.get("format") != RECORD_FORMAT:
            raise FormatError(f"not a DecodeLab run record (format {_short(m.get('format'))})")
        version = m.get("version")
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise FormatError(f"record: bad version {_short(version)}")
        if version > RECORD_VERSION:
            raise NewerRecordError(f"record version {version} is newer than this program")
        for key in ("id", "created_unix", "prompt", "settings", "target"):
            if key not in m:
                raise FormatError(f"record: missing {key!r}")
        record = cls(
            id=_checked(checker(str), m["id"], "record.id"),
            created_unix=_checked(lambda v: check_float(v, *UNIX_RANGE), m["created_unix"],
                                  "record.created_unix"),
            prompt=_checked(checker(str), m["prompt"], "record.prompt"),
            settings=settings_from_dict(m["settings"]),
            target=ModelIdentity.from_dict(m["target"]),
            draft=ModelIdentity.from_dict(m["draft"]) if m.get("draft") else None,
            hardware=_checked(_FREE, m.get("hardware") or {}, "record.hardware"),
            result=result if result is not None else result_from_dict(m.get("result")),
            comparison=(
                ComparisonLink.from_dict(m["comparison"]) if m.get("comparison") else None
            ),
            shown=Shown.from_dict(m["shown"]) if m.get("shown") else None,
        )
        for track in (record.settings.track, record.result.track):
            # A track of a source not registered here (a removed plug-in) is still a record.
            if find_track(track) is None and not TRACK_ID.fullmatch(track):
                raise FormatError(f"record: not a track id: {_short(track)}")
        return record


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
    # Each repeat's paired speedup (a comparison with repeats), else none.
    speedups: list[float] | None = None
    # The verdict the run (or its comparison) was shown with, where it was kept.
    verdict: str | None = None
    # Why a speculating track drafted nothing (``verdict.idle_reason``), if it did not.
    drafted_nothing: str | None = None

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
    shown = r.shown
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
        c.speedup if c else shown.speedup if shown else None,
        c.same_text_as_baseline if c else None,
        list(c.repeat_speedups) if c and c.repeat_speedups else None,
        c.verdict if c else shown.verdict if shown else None,
        idle_reason(res),
    )


def read_record(path: Path) -> RunRecord:
    """The record in ``path``, every field checked; OSError if unreadable, ValueError
    (FormatError: damaged or foreign; NewerRecordError: from a newer program) if not valid.
    Nesting is bounded: a deep document is a ValueError, never a RecursionError."""
    return RunRecord.from_dict(read_json(path))

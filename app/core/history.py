"""Run history: every finished or cancelled run kept as one JSON file in data_dir()/history.

Guarantees:

- A record is written atomically (``store.atomic_write_text``): after a crash at any moment
  the folder holds the old records and either all of the new one or none of it; a failed
  write raises ``StorageError`` (one line naming the file) and leaves no temp file.
- ``History.list`` never raises on what it finds in the folder: a damaged record (corrupt,
  half-written, foreign, or any field of the wrong type or out of range) is skipped (logged
  once), moved into ``bad/`` under the history root and listed by ``History.problems()``
  with its reason; a record from a newer DecodeLab is skipped and listed but left in place.
  Temp files of dead writers are removed at start.
- A history folder that cannot be created is a ``StorageError`` naming it; one that cannot
  be read lists as empty with the folder in ``problems()``, and ``resolve`` (the command
  line's way in) raises ``HistoryFileError`` naming it.
- ``History.load(id).result`` equals the saved ``RunResult``, events included.
- A comparison is a group of run records sharing a comparison id (``cmp-…``); each member
  also carries its speedup and equality against the baseline, its repeats' figures and the
  comparison's verdict as shown. A single run carries the speedup and verdict it was shown
  with (``Shown``), when it was judged.
- A run cancelled before its first token holds nothing to look at: ``worth_keeping`` says
  so, and the window does not save it.
"""

from __future__ import annotations

import builtins
import contextlib
import logging
import os
import re
import secrets
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from app.core import paths
from app.core.errors import DecodeLabError, RefusedError
from app.core.events import RunRequest, RunResult
from app.core.provenance import changed_models, hardware_summary, model_identity
from app.core.serialization import (
    ComparisonLink,
    FormatError,
    NewerRecordError,
    RunRecord,
    RunSummary,
    Shown,
    read_record,
    summarize,
)
from app.core.store import SetAside, ensure_folder, reason, set_aside, sweep_temp
from app.core.store import atomic_write_text as atomic_write_text  # export.py uses it here
from app.core.verdict import Comparison

log = logging.getLogger(__name__)

HISTORY_DIR = "history"
BAD_DIR = "bad"  # damaged records are moved here, under the history folder
_ID = re.compile(r"^(cmp-)?[0-9]{8}-[0-9]{6}-[0-9a-f]{6}$")


class RunNotFound(RefusedError):
    """No run or comparison with that id (a bad argument: exit code 2)."""


class HistoryFileError(DecodeLabError):
    """A record exists but cannot be read."""


def new_id(prefix: str = "") -> str:
    """A sortable unique id: UTC time to the second plus 24 random bits."""
    return f"{prefix}{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{secrets.token_hex(3)}"


@dataclass
class Rerun:
    """A record's request to run again, its tracks (one, or a comparison's), and
    ``warnings`` saying what changed since."""

    request: RunRequest
    tracks: list[str]
    warnings: list[str] = field(default_factory=list)


@dataclass
class ComparisonRecord:
    """A saved comparison: its member records in run order. ``complete`` is False when a
    member is missing (deleted, or the save was interrupted)."""

    id: str
    records: list[RunRecord]
    complete: bool

    @property
    def comparison(self) -> Comparison:
        link = self.records[0].comparison if self.records else None
        return Comparison([r.compared_run() for r in self.records],
                          link.repeats if link is not None else 1)


class History:
    """The history folder. Safe to create any number of times (e.g. after a restart)."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = ensure_folder(root if root is not None else paths.data_dir() / HISTORY_DIR)
        # file name -> ((mtime_ns, size), summary or None for a bad file): list() re-reads
        # only files that changed, and warns about a bad file once.
        self._cache: dict[str, tuple[tuple[int, int], RunSummary | None]] = {}
        self._problems: builtins.list[SetAside] = []
        self._unreadable: SetAside | None = None  # the folder itself, when it cannot be read
        sweep_temp(self.root)

    def problems(self) -> builtins.list[SetAside]:
        """The records skipped since this History was made, each with its reason and where
        it was moved (``bad/``), in the order they were found."""
        return list(self._problems)

    def _path(self, run_id: str) -> Path:
        if not _ID.match(run_id):
            raise RunNotFound(f"{run_id!r} is not a run id")
        return self.root / f"{run_id}.json"

    # -- writing --------------------------------------------------------------------------
    def save(self, record: RunRecord) -> str:
        """Write ``record`` (atomically) and return its id; StorageError if the disk fails."""
        atomic_write_text(self._path(record.id), record.to_json())
        return record.id

    def delete(self, run_id: str) -> int:
        """Remove a run, or every member of a comparison; returns how many were removed."""
        ids = (
            [s.id for s in self.list(comparison=run_id)] if run_id.startswith("cmp-") else [run_id]
        )
        removed = 0
        for i in ids:
            with contextlib.suppress(FileNotFoundError):
                self._path(i).unlink()
                removed += 1
        if not removed:
            raise RunNotFound(f"no run or comparison {run_id}")
        return removed

    # -- reading --------------------------------------------------------------------------
    def list(
        self,
        model: str | None = None,
        track: str | None = None,
        prompt: str | None = None,
        comparison: str | None = None,
    ) -> list[RunSummary]:
        """Summaries, newest first; ``model`` and ``prompt`` match case-insensitive
        substrings (of the target's or draft's path, of the prompt), ``track`` the id."""
        found: list[RunSummary] = []
        seen: set[str] = set()
        for p in self._files():
            seen.add(p.name)
            s = self._summary(p)
            if s is not None and s.matches(model, track, prompt, comparison):
                found.append(s)
        for name in set(self._cache) - seen:
            del self._cache[name]
        return sorted(found, key=lambda s: (s.created_unix, s.id), reverse=True)

    def _files(self) -> builtins.list[Path]:
        try:
            with os.scandir(self.root) as entries:
                found = [self.root / e.name for e in entries if e.name.endswith(".json")]
        except OSError as exc:
            # Not fatal for the window (an empty list, said once); resolve() refuses.
            if self._unreadable is None:
                self._unreadable = SetAside(self.root, f"cannot read this folder "
                                            f"({reason(exc)})", None)
                log.info("%s", self._unreadable)
                self._problems.append(self._unreadable)
            return []
        self._unreadable = None
        return found

    def _summary(self, p: Path) -> RunSummary | None:
        try:
            st = p.stat()
        except OSError:
            return None
        stamp = (st.st_mtime_ns, st.st_size)
        cached = self._cache.get(p.name)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        summary: RunSummary | None = None
        with contextlib.suppress(HistoryFileError, FileNotFoundError):
            summary = summarize(self._read(p))
        self._cache[p.name] = (stamp, summary)
        return summary

    def _read(self, p: Path) -> RunRecord:
        """The checked record in ``p``; a damaged one is set aside (moved into ``bad/``),
        reported, and a HistoryFileError saying so raised."""
        try:
            record = read_record(p)
            if record.id != p.stem or not _ID.match(record.id):
                raise FormatError(f"its id {record.id!r} does not match the file name")
            return record
        except FileNotFoundError:
            raise
        except (OSError, NewerRecordError) as exc:  # not damaged: leave it where it is
            problem = SetAside(p, reason(exc) if isinstance(exc, OSError) else str(exc), None)
        except ValueError as exc:
            problem = set_aside(p, str(exc) or type(exc).__name__, self.root / BAD_DIR)
            if problem.moved_to is None and not p.exists():
                raise FileNotFoundError(p) from exc  # another History moved it first
        # INFO: the callers say it to the user (problems(): `history list`, the window).
        log.info("skipping history record %s", problem)
        self._problems.append(problem)
        raise HistoryFileError(str(problem))

    def resolve(self, prefix: str) -> str:
        """The one run or comparison id starting with ``prefix``."""
        listed = self.list()
        if self._unreadable is not None:
            raise HistoryFileError(str(self._unreadable))
        ids = {s.id for s in listed} | {s.comparison_id for s in listed if s.comparison_id}
        if prefix in ids:
            return prefix
        hits = sorted(i for i in ids if i.startswith(prefix))
        if not hits:
            raise RunNotFound(f"no run or comparison {prefix!r}")
        if len(hits) > 1:
            raise RunNotFound(f"{prefix!r} is ambiguous: {len(hits)} ids start with it")
        return hits[0]

    def load(self, run_id: str) -> RunRecord:
        """The full record, its ``result`` rebuilt with its events."""
        try:
            return self._read(self._path(run_id))
        except FileNotFoundError as exc:
            raise RunNotFound(f"no run {run_id}") from exc

    def _members(self, comparison_id: str) -> builtins.list[RunRecord]:
        summaries = self.list(comparison=comparison_id)
        records = [self.load(s.id) for s in summaries]
        return sorted(records, key=lambda r: r.comparison.index if r.comparison else 0)

    def load_comparison(self, comparison_id: str) -> ComparisonRecord:
        records = self._members(comparison_id)
        if not records:
            raise RunNotFound(f"no comparison {comparison_id}")
        size = records[0].comparison.size if records[0].comparison else len(records)
        return ComparisonRecord(comparison_id, records, len(records) == size)

    def rerun(self, run_id: str) -> Rerun:
        """Settings, model paths, prompt and tracks to run a run or comparison again."""
        records = (
            self.load_comparison(run_id).records
            if run_id.startswith("cmp-")
            else [self.load(run_id)]
        )
        first = records[0]
        draft = next((r.draft for r in records if r.draft is not None), None)
        warnings = [w for r in records for w in changed_models(r)]
        request = RunRequest(first.target.path, draft.path if draft else None, first.prompt,
                             replace(first.settings))
        return Rerun(request, [r.settings.track for r in records], list(dict.fromkeys(warnings)))


# -- saving from the GUI worker and the CLI ----------------------------------------------


def worth_keeping(result: RunResult) -> bool:
    """False for a run cancelled before its first token: nothing to reopen or compare."""
    return not (result.stop_reason == "cancelled" and result.n_generated == 0)


def make_record(
    result: RunResult, request: RunRequest, comparison: ComparisonLink | None = None,
    shown: Shown | None = None,
) -> RunRecord:
    """A record of ``result`` with model identities and this machine's hardware summary."""
    from app.core.tracks import get_track

    uses_draft = request.draft is not None and get_track(result.track).needs_draft_model
    eff = result.effective
    return RunRecord(
        id=new_id(),
        created_unix=time.time(),
        prompt=request.prompt,
        settings=replace(request.settings, track=result.track),
        target=model_identity(request.target),
        draft=model_identity(request.draft) if uses_draft and request.draft is not None else None,
        hardware=hardware_summary(
            eff.get("threads") or request.settings.threads, eff.get("threads_batch")
        ),
        result=result,
        comparison=comparison,
        shown=shown,
    )


def record_run(result: RunResult, request: RunRequest, history: History | None = None,
               shown: Shown | None = None) -> str:
    """Save a finished or cancelled run, with the speedup and verdict it was ``shown``
    with if it was judged; returns its id. Raises StorageError (an OSError) if the disk
    does."""
    return (history or History()).save(make_record(result, request, shown=shown))


def record_comparison(
    comparison: Comparison, request: RunRequest, history: History | None = None
) -> str:
    """Save every run of ``comparison`` as one group; returns the comparison id."""
    history = history or History()
    cid = new_id("cmp-")
    for i, run in enumerate(comparison.runs):
        link = ComparisonLink.of(cid, i, len(comparison.runs), run, comparison)
        history.save(make_record(run.result, request, link))
    return cid

"""Exporting runs and comparisons: JSON (re-importable) and CSV (one row per run or token).

Guarantees:

- ``read_json(write_json(x))`` gives back the same runs: every ``RunResult`` equal to the
  original, events included, plus the records' metadata and the comparison figures where
  they were exported. Each run object is a superset of ``decodelab run --json`` output,
  and a comparison export a superset of ``decodelab compare --json`` output; ``read_json``
  also reads those two CLI outputs.
- The run CSV (``RUN_CSV_FIELDS``) is the single definition of ``compare --csv``.
- Every file is written atomically: an interrupted export leaves no half-written file.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.core.events import RejectionEvent, RunResult, TokenEvent
from app.core.serialization import (
    FormatError,
    RunRecord,
    compared_run_from_dict,
)
from app.core.store import atomic_write_text, loads
from app.core.verdict import ComparedRun, Comparison, speedups_of

EXPORT_FORMAT = "decodelab-export"
EXPORT_VERSION = 1

RunLike = RunResult | ComparedRun | RunRecord
Exportable = RunLike | Comparison | Sequence[RunLike]

RUN_CSV_FIELDS = [
    "track",
    "tokens_per_second",
    "speedup",
    "same_text_as_baseline",
    "first_difference",
    "near_tie_at_difference",
    "acceptance_rate",
    "mean_accepted_length",
    "n_generated",
    "n_drafted",
    "n_accepted",
    "n_rounds",
    "prompt_tokens",
    "generation_seconds",
    "prefill_seconds",
    "draft_seconds",
    "verify_seconds",
    "stop_reason",
    # Appended after the original `compare --csv` columns, so positions stay stable.
    "run",
    "expert_used_count",
    "draft_max",
    "threads",
    "target",
    "draft",
    "created",
    "comparison_id",
    "repeats",
    "speedup_min",
    "speedup_max",
    "drafted_nothing",
]
TOKEN_CSV_FIELDS = ["run", "position", "id", "text", "origin", "source", "round", "t"]


@dataclass
class _Item:
    """A run in a uniform shape: its result, comparison figures and record, if any."""

    key: str
    compared: ComparedRun
    record: RunRecord | None


def _items(x: Exportable) -> list[_Item]:
    if isinstance(x, Comparison):
        runs: Sequence[RunLike] = x.runs
    elif isinstance(x, RunResult | ComparedRun | RunRecord):
        runs = [x]
    else:
        runs = x
    out = []
    for i, r in enumerate(runs):
        if isinstance(r, RunRecord):
            out.append(_Item(r.id, r.compared_run(), r))
        elif isinstance(r, ComparedRun):
            out.append(_Item(f"{i}-{r.result.track}", r, None))
        else:
            out.append(_Item(f"{i}-{r.track}", ComparedRun(r, None, None), None))
    return out


# -- JSON ---------------------------------------------------------------------------------


def to_json(x: Exportable, with_events: bool = True) -> dict[str, Any]:
    """The export document of a run, a comparison, or a list of runs or records."""
    items = _items(x)
    kind = "run" if len(items) == 1 and not isinstance(x, Comparison) else "comparison"
    runs = []
    for it in items:
        d = it.compared.to_dict(with_events)
        if it.record is not None:
            d["record"] = it.record.meta_dict()
        runs.append(d)
    doc: dict[str, Any] = {"format": EXPORT_FORMAT, "version": EXPORT_VERSION, "kind": kind}
    reps = x.repeats if isinstance(x, Comparison) else max(
        (it.record.comparison.repeats for it in items if it.record and it.record.comparison),
        default=None)
    if kind == "comparison" and reps is not None:
        doc["repeats"] = reps
    links = {it.record.comparison.id for it in items if it.record and it.record.comparison}
    if kind == "comparison" and len(links) == 1:
        doc["comparison_id"] = links.pop()
    doc["runs"] = runs
    return doc


def write_json(x: Exportable, path: str | Path, with_events: bool = True) -> None:
    text = json.dumps(to_json(x, with_events), ensure_ascii=False, indent=1)
    atomic_write_text(Path(path), text + "\n")


@dataclass
class Imported:
    """What an export file held. ``records[i]`` is None where run i had no metadata."""

    kind: str
    comparison: Comparison
    records: list[RunRecord | None] = field(default_factory=list)
    comparison_id: str | None = None

    @property
    def results(self) -> list[RunResult]:
        return [r.result for r in self.comparison.runs]


def from_json(doc: object) -> Imported:
    """Rebuild an export document (or ``run --json`` / ``compare --json`` output)."""
    if not isinstance(doc, dict):
        raise FormatError("an export holds a JSON object")
    d: dict[str, Any] = doc
    if "runs" not in d and "track" in d:
        d = {"kind": "run", "runs": [d]}  # `decodelab run --json`
    runs = d.get("runs")
    if not isinstance(runs, list) or not runs:
        raise FormatError("no runs in this file")
    if d.get("format", EXPORT_FORMAT) != EXPORT_FORMAT:
        raise FormatError(f"not a DecodeLab export (format {d.get('format')!r})")
    compared = [compared_run_from_dict(r) for r in runs]
    records: list[RunRecord | None] = []
    for r, c in zip(runs, compared, strict=True):
        meta = r.get("record") if isinstance(r, dict) else None
        records.append(RunRecord.from_dict(meta, c.result) if meta else None)
    repeats = d.get("repeats")
    if not isinstance(repeats, int) or isinstance(repeats, bool) or repeats < 1:
        repeats = max((r.comparison.repeats for r in records if r and r.comparison), default=1)
    return Imported(
        str(d.get("kind") or ("run" if len(runs) == 1 else "comparison")),
        Comparison(compared, repeats),
        records,
        d.get("comparison_id"),
    )


def read_json(path: str | Path) -> Imported:
    """Read an export file; raises OSError, or ValueError (incl. FormatError)."""
    return from_json(loads(Path(path).read_text(encoding="utf-8")))


# -- CSV ----------------------------------------------------------------------------------


def run_rows(x: Exportable) -> list[dict[str, Any]]:
    """One row per run, keyed by ``RUN_CSV_FIELDS``."""
    rows = []
    for it in _items(x):
        r, rec = it.compared.result, it.record
        eff = r.effective
        row = it.compared.to_dict(with_events=False)
        speedups = speedups_of(it.compared)
        row.update(
            repeats=len(speedups) if it.compared.repeats is not None else 1,
            speedup_min=min(speedups) if speedups else None,
            speedup_max=max(speedups) if speedups else None,
            run=it.key,
            expert_used_count=eff.get("expert_used_count"),
            draft_max=eff.get("draft_max", r.settings.get("draft_max")),
            threads=eff.get("threads"),
            target=rec.target.path if rec else eff.get("target"),
            draft=(rec.draft.path if rec.draft else None) if rec else eff.get("draft"),
            created=rec.created if rec else None,
            comparison_id=rec.comparison.id if rec and rec.comparison else None,
        )
        rows.append({k: row.get(k) for k in RUN_CSV_FIELDS})
    return rows


def token_rows(x: Exportable) -> list[dict[str, Any]]:
    """One row per answer token and per rejected draft, in event order; rejected drafts
    have origin ``rejected``, the position where they were proposed and no time."""
    rows: list[dict[str, Any]] = []
    for it in _items(x):
        for e in it.compared.result.events:
            if isinstance(e, TokenEvent):
                rows.append(
                    dict(
                        run=it.key,
                        position=e.position,
                        id=e.id,
                        text=e.text,
                        origin=e.origin,
                        source=e.source,
                        round=e.round,
                        t=e.t,
                    )
                )
            elif isinstance(e, RejectionEvent):
                rows.append(
                    dict(
                        run=it.key,
                        position=e.position,
                        id=e.id,
                        text=e.text,
                        origin="rejected",
                        source=e.source,
                        round=e.round,
                        t=None,
                    )
                )
    return rows


def _write_csv(path: str | Path, fields: list[str], rows: list[dict[str, Any]]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(Path(path), buf.getvalue())


def write_runs_csv(x: Exportable, path: str | Path) -> None:
    """One row per run (None is written as an empty cell)."""
    _write_csv(path, RUN_CSV_FIELDS, run_rows(x))


def write_tokens_csv(x: Exportable, path: str | Path) -> None:
    """One row per token and rejected draft (columns ``TOKEN_CSV_FIELDS``)."""
    _write_csv(path, TOKEN_CSV_FIELDS, token_rows(x))

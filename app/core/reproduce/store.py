"""Reproductions kept: one JSON file each in ``data_dir()/reproductions``, and their export.

Guarantees, as for the run history: a file is written atomically (``store.atomic_write_text``);
``list`` never raises on what it finds, a damaged file is moved to ``bad/`` and listed in
``problems()`` with its reason; ``load(id)`` equals what was saved. ``export`` writes the
JSON (``.json``) or one row per depth or mode (``.csv``).
"""

from __future__ import annotations

import csv
import io
import json
import re
import secrets
import time
from pathlib import Path

from app.core import paths
from app.core.errors import DecodeLabError, RefusedError
from app.core.reproduce.result import Reproduction
from app.core.store import SetAside, atomic_write_text, ensure_folder, read_json, set_aside
from app.core.validate import FormatError

FOLDER = "reproductions"
_ID = re.compile(r"^rep-[0-9]{8}-[0-9]{6}-[0-9a-f]{6}$")


def new_id() -> str:
    return f"rep-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{secrets.token_hex(3)}"


class ReproductionNotFound(RefusedError):
    """No reproduction with that id (a bad argument: exit code 2)."""


class Reproductions:
    """The folder of kept reproductions."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = ensure_folder(root if root is not None else paths.data_dir() / FOLDER)
        self._problems: list[SetAside] = []

    def problems(self) -> list[SetAside]:
        return list(self._problems)

    def _path(self, rep_id: str) -> Path:
        if not _ID.match(rep_id):
            raise ReproductionNotFound(f"{rep_id!r} is not a reproduction id")
        return self.root / f"{rep_id}.json"

    def save(self, rep: Reproduction) -> Path:
        path = self._path(rep.id)
        atomic_write_text(path, json.dumps(rep.to_dict(), indent=1) + "\n")
        return path

    def load(self, rep_id: str) -> Reproduction:
        path = self._path(rep_id)
        if not path.is_file():
            raise ReproductionNotFound(f"no reproduction {rep_id!r} in {self.root}")
        try:
            return Reproduction.from_dict(read_json(path))
        except (OSError, ValueError) as exc:
            raise DecodeLabError(f"{path}: cannot be read ({exc})") from exc

    def list(self) -> list[Reproduction]:
        """Every readable reproduction, newest first; damaged files set aside."""
        out = []
        try:
            files = sorted(self.root.glob("rep-*.json"), reverse=True)
        except OSError:
            return []
        for path in files:
            try:
                out.append(Reproduction.from_dict(read_json(path)))
            except FormatError as exc:
                self._problems.append(set_aside(path, str(exc), self.root / "bad"))
            except (OSError, ValueError) as exc:
                self._problems.append(set_aside(path, str(exc) or type(exc).__name__,
                                                self.root / "bad"))
        return out

    def delete(self, rep_id: str) -> None:
        path = self._path(rep_id)
        if not path.is_file():
            raise ReproductionNotFound(f"no reproduction {rep_id!r}")
        path.unlink()


CSV_FIELDS = ("id", "track", "target", "row", "n_blocks", "of_blocks", "mode", "n_generated",
              "n_drafted", "n_accepted", "acceptance", "tokens_per_second",
              "baseline_tokens_per_second", "speedup",
              "same_as_baseline", "first_difference", "derive_seconds", "draft_size",
              "refusals", "snapshot_bytes", "snapshot_seconds", "restore_seconds",
              "replay_seconds")


def csv_rows(rep: Reproduction) -> list[dict[str, object]]:
    """One row for the baseline, then one per depth or SSM mode."""
    base = {"id": rep.id, "track": rep.track, "target": rep.target}
    rows: list[dict[str, object]] = []
    if rep.baseline is not None:
        b = rep.baseline
        rows.append({**base, "row": "baseline", "n_generated": b.n_generated,
                     "tokens_per_second": b.tokens_per_second, "speedup": 1.0})
    for d in rep.depths:
        r = d.result
        rows.append({**base, "row": "depth", "n_blocks": d.n_blocks, "of_blocks": d.of_blocks,
                     "n_generated": r.n_generated, "n_drafted": r.n_drafted,
                     "n_accepted": r.n_accepted, "acceptance": d.acceptance,
                     "tokens_per_second": r.tokens_per_second, "speedup": d.speedup,
                     "baseline_tokens_per_second": d.baseline_tokens_per_second,
                     "same_as_baseline": d.first_difference is None,
                     "first_difference": d.first_difference,
                     "derive_seconds": d.derive_seconds, "draft_size": d.draft_size})
    for s in rep.ssm:
        r = s.result
        rows.append({**base, "row": "ssm", "mode": s.mode, "n_generated": r.n_generated,
                     "n_drafted": r.n_drafted, "n_accepted": r.n_accepted,
                     "acceptance": r.acceptance_rate, "tokens_per_second": r.tokens_per_second,
                     "speedup": s.speedup, "same_as_baseline": s.same_as_baseline,
                     "first_difference": s.first_difference, "refusals": s.refusals,
                     "snapshot_bytes": s.snapshot_bytes, "snapshot_seconds": s.snapshot_seconds,
                     "restore_seconds": s.restore_seconds, "replay_seconds": s.replay_seconds})
    return rows


def export(rep: Reproduction, path: str | Path) -> Path:
    """Write ``rep`` to ``path``: CSV rows for ``.csv``, else the JSON document."""
    path = Path(path)
    if path.suffix.lower() == ".csv":
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(csv_rows(rep))
        atomic_write_text(path, buf.getvalue())
    else:
        atomic_write_text(path, json.dumps(rep.to_dict(), indent=1) + "\n")
    return path

"""Whether an installed pinned model is still the file that was verified.

Next to each model the fetcher keeps ``<file>.sha256`` (the install marker, ``sha256sum``
format) and ``<file>.verified.json``: the size, ``mtime_ns`` and SHA-256 the file had when
it was last hashed in full (by the fetcher while installing it, by ``decodelab models
verify``, or by a fetch that had to check it). Guarantees:

- :func:`check_model` never hashes: it compares the file's size and mtime with the record.
  ``verified``: they match the record, whose checksum is the pinned one (or, for a derived
  model, the one its ``.derived.json`` vouches for) and the install marker agrees;
  ``altered``: the size is not the pinned size, or size or mtime differ from the record, or
  the record's checksum is not the pinned one; ``unverified``: no record (installed before
  records existed, or by hand) or no install marker; ``missing``: no file.
- :func:`verified_checksum` is the only source of a "verified" fingerprint: the recorded
  SHA-256, and only while the file has exactly the recorded size and mtime.
- :func:`verify_model` hashes the whole file and records what it found, also a wrong
  checksum (so the next cheap check says ``altered`` without hashing again); a file that
  hashes right gets its install marker back.
"""

from __future__ import annotations

import datetime
import enum
import hashlib
import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from app.core.models.catalog import CATALOG, CatalogEntry
from app.core.models.files import derived_info_path, model_path, read_sidecar, write_sidecar
from app.core.store import atomic_write_text, read_json

CHUNK = 1 << 20
HashProgress = Callable[[int, int], None]
"""Called with (bytes hashed, file size) after every MiB; it may raise to stop hashing."""


class ModelState(enum.StrEnum):
    """What the cheap check can say about an installed pinned model."""

    VERIFIED = "verified"
    UNVERIFIED = "unverified"
    ALTERED = "altered"
    MISSING = "missing"


@dataclass(frozen=True)
class VerificationRecord:
    """The file's size, mtime and SHA-256 at its last full hashing."""

    size: int
    mtime_ns: int
    sha256: str
    verified_at: str = ""


@dataclass(frozen=True)
class ModelCheck:
    """The state of one pinned model. ``conclusive``: hashing would tell nothing new (the
    size is wrong, or the record is current so the checksum is known)."""

    state: ModelState
    path: Path
    detail: str
    conclusive: bool = False


def record_path(path: Path) -> Path:
    return path.with_name(path.name + ".verified.json")


def read_record(path: Path) -> VerificationRecord | None:
    """The verification record of ``path``, or None when absent or unreadable."""
    try:
        data = read_json(record_path(path))
        record = VerificationRecord(int(data["size"]), int(data["mtime_ns"]),
                                    str(data["sha256"]).lower(), str(data.get("verified_at", "")))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return record if re.fullmatch(r"[0-9a-f]{64}", record.sha256) else None


def write_record(path: Path, sha256: str, st: os.stat_result | None = None) -> VerificationRecord:
    """Record that ``path`` (with the size and mtime of ``st``, default: its own) hashed to
    ``sha256`` just now. Written atomically; StorageError (an OSError) if it cannot be."""
    st = st if st is not None else path.stat()
    now = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    record = VerificationRecord(st.st_size, st.st_mtime_ns, sha256, now)
    atomic_write_text(record_path(path), json.dumps(asdict(record), indent=2) + "\n")
    return record


def accepted_checksums(
    entry: CatalogEntry, catalog: Mapping[str, CatalogEntry] | None = None
) -> dict[str, int]:
    """SHA-256 -> size of the bytes ``entry`` may have: the pinned ones and, for a derived
    entry whose ``.derived.json`` is vouched for by its pinned source, the vouched ones."""
    accepted = {entry.sha256: entry.size}
    source = (CATALOG if catalog is None else catalog).get(entry.derived_from or "")
    if source is None:
        return accepted
    try:
        info = read_json(derived_info_path(model_path(entry)))
        sha, size = str(info["sha256"]).lower(), int(info["size"])
        vouched = info.get("source_sha256") == source.sha256
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return accepted
    if vouched:
        accepted[sha] = size
    return accepted


def verified_checksum(path: str | Path, st: os.stat_result | None = None) -> str | None:
    """The SHA-256 recorded for ``path`` if the file still has the recorded size and mtime
    (``st``: its stat, if already taken), else None. Never hashes."""
    p = Path(path)
    record = read_record(p)
    if record is None:
        return None
    try:
        st = st if st is not None else p.stat()
    except OSError:
        return None
    return record.sha256 if (st.st_size, st.st_mtime_ns) == (record.size, record.mtime_ns) else None


def check_model(
    entry: CatalogEntry, catalog: Mapping[str, CatalogEntry] | None = None
) -> ModelCheck:
    """The state of ``entry``'s installed file from its size, mtime and records only."""
    final = model_path(entry)
    try:
        st = final.stat()
    except OSError:
        return ModelCheck(ModelState.MISSING, final, "not installed")
    accepted = accepted_checksums(entry, catalog)
    if st.st_size not in accepted.values():
        return ModelCheck(ModelState.ALTERED, final,
                          f"size {st.st_size} is not the pinned size {entry.size}", True)
    record = read_record(final)
    if record is None:
        return ModelCheck(ModelState.UNVERIFIED, final, "not hashed since it was installed")
    if (record.size, record.mtime_ns) != (st.st_size, st.st_mtime_ns):
        return ModelCheck(ModelState.ALTERED, final, "changed since it was last verified")
    if accepted.get(record.sha256) != st.st_size:
        return ModelCheck(ModelState.ALTERED, final,
                          f"SHA-256 {record.sha256} is not the pinned {entry.sha256}", True)
    if read_sidecar(final) not in accepted:
        return ModelCheck(ModelState.UNVERIFIED, final, "no install checksum file", True)
    return ModelCheck(ModelState.VERIFIED, final, f"verified {record.verified_at}".strip(), True)


def model_state(
    entry: CatalogEntry, catalog: Mapping[str, CatalogEntry] | None = None
) -> ModelState:
    """:func:`check_model`'s state alone."""
    return check_model(entry, catalog).state


def file_sha256(path: Path, progress: HashProgress | None = None) -> str:
    """The SHA-256 of the whole file; ``progress`` is called after every MiB."""
    digest, done = hashlib.sha256(), 0
    total = path.stat().st_size
    with open(path, "rb") as src:
        while chunk := src.read(CHUNK):
            digest.update(chunk)
            done += len(chunk)
            if progress is not None:
                progress(done, total)
    return digest.hexdigest()


@dataclass(frozen=True)
class Verification:
    """The outcome of a full hash: ``actual`` is None when the file is missing."""

    state: ModelState
    path: Path
    expected: str
    actual: str | None


def verify_model(
    entry: CatalogEntry,
    catalog: Mapping[str, CatalogEntry] | None = None,
    progress: HashProgress | None = None,
) -> Verification:
    """Hash ``entry``'s file in full and record the result (see the module guarantees).

    Raises OSError if the file cannot be read, or whatever ``progress`` raises."""
    final = model_path(entry)
    try:
        before = final.stat()
    except OSError:
        return Verification(ModelState.MISSING, final, entry.sha256, None)
    actual = file_sha256(final, progress)
    after = final.stat()
    accepted = accepted_checksums(entry, catalog)
    if (before.st_size, before.st_mtime_ns) != (after.st_size, after.st_mtime_ns):
        # Written to while being hashed: what was hashed is no file that exists now.
        return Verification(ModelState.ALTERED, final, entry.sha256, actual)
    good = accepted.get(actual) == before.st_size
    if good and read_sidecar(final) != actual:
        write_sidecar(final, actual)
    write_record(final, actual, before)
    if good:
        return Verification(ModelState.VERIFIED, final, actual, actual)
    return Verification(ModelState.ALTERED, final, entry.sha256, actual)

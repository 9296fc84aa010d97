"""Where a pinned model's file and its sidecars are, and whether it is installed (the file
has the pinned size and a ``.sha256`` sidecar with the pinned checksum, or the checksum a
``.derived.json`` vouches for). Checking never hashes the file."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path

from app.core import paths
from app.core.models.catalog import CATALOG, CatalogEntry
from app.core.store import atomic_write_text


def model_path(entry: CatalogEntry) -> Path:
    """Where ``entry`` is (or will be) installed (the folder is not created: read-only
    listing works on a folder that cannot be written)."""
    return paths.models_dir(create=False) / entry.filename


def sidecar_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def derived_info_path(path: Path) -> Path:
    return path.with_name(path.name + ".derived.json")


def read_sidecar(path: Path) -> str | None:
    """The checksum recorded next to ``path`` after verification, or None."""
    try:
        token = sidecar_path(path).read_text(encoding="utf-8").split(maxsplit=1)[0].lower()
    except (OSError, IndexError, UnicodeDecodeError):
        return None
    return token if re.fullmatch(r"[0-9a-f]{64}", token) else None


def write_sidecar(final: Path, checksum: str) -> None:
    """Record ``checksum`` for ``final`` in ``sha256sum`` format, atomically."""
    atomic_write_text(sidecar_path(final), f"{checksum}  {final.name}\n")


def installed_file(
    entry: CatalogEntry, catalog: Mapping[str, CatalogEntry] | None = None
) -> Path | None:
    """The verified installed file of ``entry``, or None."""
    final = model_path(entry)
    recorded = read_sidecar(final)
    try:
        size = final.stat().st_size
    except OSError:
        return None
    if recorded is None:
        return None
    if size == entry.size and recorded == entry.sha256:
        return final
    source = (CATALOG if catalog is None else catalog).get(entry.derived_from or "")
    if source is None:
        return None
    try:
        info = json.loads(derived_info_path(final).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(info, dict):
        return None
    vouched = (info.get("source_sha256"), info.get("sha256"), info.get("size"))
    return final if vouched == (source.sha256, recorded, size) else None



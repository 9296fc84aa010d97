"""Where a pinned model's file and its sidecars are, and whether it is installed (the file
has the pinned size and a ``.sha256`` sidecar with the pinned checksum, or the checksum a
``.derived.json`` vouches for). Checking never hashes the file.

Also the self-drafts DecodeLab derives from a user's model (cache folder, ``.derived.json``
of kind ``self-draft``): listed and removed as derived, never as user models."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.core import paths
from app.core.errors import RefusedError
from app.core.models.catalog import CATALOG, CatalogEntry
from app.core.store import atomic_write_text, ensure_folder, read_json


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


# ---------------------------------------------------------------- derived self-drafts
# A self-draft is a model DecodeLab derived from a user's model (its first N blocks, for the
# deprecated layer-skip tracks: app.core.reproduce.layercut). It lives in the cache folder,
# never in a models folder, so no library scan or picker shows it as a user model; its
# ``.derived.json`` says what it was made from, and only such files are listed or removed.

SELF_DRAFTS_DIR = "self-drafts"
SELF_DRAFT_KIND = "self-draft"


@dataclass(frozen=True)
class DerivedDraft:
    """A self-draft in the cache: the file, and what its ``.derived.json`` records."""

    path: Path
    size: int
    source: str  # the target's path when it was derived
    source_sha256: str
    blocks: tuple[int, ...]  # the target's block indices kept, in order
    of_blocks: int  # the target's block count
    tied_embeddings: bool
    seconds: float  # what deriving it took
    created: str

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def n_blocks(self) -> int:
        return len(self.blocks)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "path": str(self.path), "size": self.size,
                "source": self.source, "source_sha256": self.source_sha256,
                "blocks": list(self.blocks), "of_blocks": self.of_blocks,
                "tied_embeddings": self.tied_embeddings, "seconds": self.seconds,
                "created": self.created, "kind": SELF_DRAFT_KIND}


def self_drafts_dir(create: bool = True) -> Path:
    folder = paths.cache_dir(create) / SELF_DRAFTS_DIR
    return ensure_folder(folder) if create else folder


def read_derived(path: Path) -> DerivedDraft | None:
    """The self-draft at ``path`` if it has a readable record of our kind and the size it
    records, else None."""
    try:
        info = read_json(derived_info_path(path))
        if not isinstance(info, dict) or info.get("kind") != SELF_DRAFT_KIND:
            return None
        size = path.stat().st_size
        blocks = tuple(int(b) for b in info["blocks"])
        draft = DerivedDraft(path, size, str(info["source"]), str(info["source_sha256"]),
                             blocks, int(info["of_blocks"]), bool(info["tied_embeddings"]),
                             float(info["seconds"]), str(info.get("created", "")))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return draft if size == int(info.get("size", -1)) else None


def write_derived(draft: DerivedDraft) -> None:
    atomic_write_text(derived_info_path(draft.path), json.dumps(draft.to_dict(), indent=2) + "\n")


def derived_drafts() -> list[DerivedDraft]:
    """Every self-draft in the cache, by name; files without a valid record are left out."""
    folder = self_drafts_dir(create=False)
    try:
        files = sorted(p for p in folder.iterdir() if p.suffix == ".gguf" and p.is_file())
    except OSError:
        return []
    return [d for p in files if (d := read_derived(p)) is not None]


def remove_derived(name: str) -> DerivedDraft:
    """Delete the self-draft called ``name`` (its file name) and its record. RefusedError
    for anything else: DecodeLab removes only what it derived."""
    found = next((d for d in derived_drafts() if d.name == name), None)
    if found is None:
        known = ", ".join(d.name for d in derived_drafts()) or "none"
        raise RefusedError(f"{name!r} is not a derived self-draft (derived: {known}); "
                           "DecodeLab removes only the drafts it derived")
    found.path.unlink(missing_ok=True)
    derived_info_path(found.path).unlink(missing_ok=True)
    return found

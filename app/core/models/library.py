"""What models the user has: installed pinned models, model folders and recent files.

Guarantees:

- A pinned model counts as installed only if its file has the pinned size and a
  ``<file>.sha256`` sidecar (written by the fetcher after verification) holds the pinned
  checksum, or, for a derived model made by another llama.cpp, the checksum vouched for
  by ``<file>.derived.json`` (see the fetcher). Checking never hashes the file. Whether
  the file is still what was verified is integrity.py's job (``PinnedStatus.state``).
- ``library.json`` in the config folder is written atomically (``store.atomic_write_text``).
  A damaged one (not JSON, nested too deep, or a field of the wrong type) is renamed
  ``library.json.bad-<YYYYmmdd-HHMMSS>``, the library starts empty and ``set_aside`` says
  why: loading never raises. Temp files of dead writers are removed on load.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

from app.core import paths
from app.core.errors import ModelFileError
from app.core.models.catalog import CATALOG, CatalogEntry
from app.core.models.files import (
    installed_file,
    read_sidecar,
)
from app.core.store import SetAside, atomic_write_text, read_json, set_aside, sweep_temp

log = logging.getLogger(__name__)

MAX_RECENT = 20
LIBRARY_FILE = "library.json"
LIBRARY_VERSION = 1


# ---------------------------------------------------------------- installed pinned models
# (the file helpers live in files.py, which integrity.py builds on too)


class PinnedStatus(NamedTuple):
    """A pinned model and its state. Not installed: path and sha256 are None and size is
    the catalog size; installed: the file's path, size and install checksum. ``state`` is
    the cheap integrity check (verified, unverified, altered, missing; see integrity.py):
    an installed file may be ``altered``, and a file of the wrong size is not installed
    but ``altered``."""

    entry: CatalogEntry
    installed: bool
    path: Path | None
    size: int
    sha256: str | None
    state: str = "missing"


def pinned_status(catalog: Mapping[str, CatalogEntry] | None = None) -> list[PinnedStatus]:
    """Every catalog entry, in catalog order, with its installed and integrity state.
    Never hashes a model."""
    from app.core.models.integrity import model_state

    table = CATALOG if catalog is None else catalog
    result = []
    for entry in table.values():
        path = installed_file(entry, table)
        state = model_state(entry, table).value
        if path is None:
            result.append(PinnedStatus(entry, False, None, entry.size, None, state))
        else:
            result.append(PinnedStatus(entry, True, path, path.stat().st_size,
                                       read_sidecar(path), state))
    return result


def installed_path(name: str) -> Path | None:
    """The installed file of the pinned model ``name``, or None (also for unknown names)."""
    entry = CATALOG.get(name)
    return installed_file(entry) if entry is not None else None


def resolve_model(spec: str | os.PathLike[str]) -> Path:
    """The model file meant by ``spec``: an existing file path, else a pinned model name.

    Raises ModelFileError for a folder, a missing file, an unknown name or a pinned model
    that is not installed."""
    path = Path(spec).expanduser()
    if path.is_file():
        return path.resolve()
    if path.is_dir():
        raise ModelFileError(path, "is a folder, not a model file")
    name = str(spec)
    if name in CATALOG:
        found = installed_path(name)
        if found is None:
            raise ModelFileError(name, f"not installed: run `decodelab models fetch {name}`")
        return found
    if path.suffix.lower() == ".gguf" or os.sep in name or "/" in name:
        raise ModelFileError(path, "no such file")
    raise ModelFileError(name, f"no such file or pinned model (pinned: {', '.join(CATALOG)})")


def pinned_entry_of(path: str | os.PathLike[str]) -> CatalogEntry | None:
    """The pinned model whose file name ``path`` has (wherever it lies), or None."""
    name = Path(path).name
    return next((e for e in CATALOG.values() if e.filename == name), None)


def fetch_again_hint(path: str | os.PathLike[str]) -> str:
    """What to do about a broken or cut-short model file: fetch a pinned model again, or
    download it again from where it came."""
    entry = pinned_entry_of(path)
    if entry is not None:
        return (f"download it again with `decodelab models fetch {entry.name}` "
                "or choose another file")
    return "download it again or choose another file"


# ---------------------------------------------------------------- folders and recent files


def _is_gguf(path: Path) -> bool:
    return path.suffix.lower() == ".gguf" and path.is_file()


class Library:
    """The user's model folders and recent files, saved after every change."""

    def __init__(self, file: Path, folders: list[Path], recent: list[Path]) -> None:
        self.file = file
        self._folders = folders
        self._recent = recent
        # Set by load() when a damaged file was set aside, so a UI can say so.
        self.set_aside: SetAside | None = None

    @classmethod
    def load(cls, file: Path | None = None) -> Library:
        """The library in ``file`` (default: config_dir()/library.json); never raises on a
        missing, unreadable or damaged file, nor on a config folder that cannot be made."""
        if file is None:
            try:
                file = paths.config_dir() / LIBRARY_FILE
            except OSError as exc:  # StorageError: start empty; a save says it again
                log.warning("%s; the model library starts empty", exc)
                return cls(paths.config_dir(create=False) / LIBRARY_FILE, [], [])
        sweep_temp(file.parent, file.name)
        try:
            folders, recent = _parse(read_json(file))
        except FileNotFoundError:
            return cls(file, [], [])
        except (OSError, ValueError) as exc:
            library = cls(file, [], [])
            library.set_aside = set_aside(file, str(exc) or type(exc).__name__)
            log.warning("the model library was damaged: %s", library.set_aside)
            return library
        return cls(file, folders, recent[:MAX_RECENT])

    def save(self) -> None:
        """Write the library atomically (a crash leaves the old or the new file); raises
        StorageError (an OSError) if the disk fails."""
        data = {
            "version": LIBRARY_VERSION,
            "folders": [str(p) for p in self._folders],
            "recent": [str(p) for p in self._recent],
        }
        atomic_write_text(self.file, json.dumps(data, indent=2) + "\n")

    @property
    def folders(self) -> list[Path]:
        return list(self._folders)

    def add_folder(self, path: str | os.PathLike[str]) -> Path:
        """Add a folder (absolute, deduplicated); returns it. Raises ModelFileError if it
        is not a folder."""
        folder = Path(path).expanduser().resolve()
        if not folder.is_dir():
            raise ModelFileError(folder, "is not a folder")
        if folder not in self._folders:
            self._folders.append(folder)
            self.save()
        return folder

    def remove_folder(self, path: str | os.PathLike[str]) -> None:
        """Forget a folder (no error if it was not there)."""
        folder = Path(path).expanduser().resolve()
        kept = [f for f in self._folders if f != folder and f != Path(path)]
        if kept != self._folders:
            self._folders = kept
            self.save()

    def add_recent(self, path: str | os.PathLike[str]) -> None:
        """Put ``path`` first in the recent files (deduplicated, at most MAX_RECENT)."""
        file = Path(path).expanduser().resolve()
        self._recent = [file, *(p for p in self._recent if p != file)][:MAX_RECENT]
        self.save()

    def remove_recent(self, path: str | os.PathLike[str]) -> bool:
        """Forget ``path`` from the recent files (a broken file the user gave up on);
        False if it was not there. The file itself stays."""
        file = Path(path).expanduser().resolve()
        kept = [p for p in self._recent if p != file and p != Path(path)]
        if kept == self._recent:
            return False
        self._recent = kept
        self.save()
        return True

    @property
    def recent(self) -> list[Path]:
        """Recent files, most recent first, leaving out those that no longer exist."""
        return [p for p in self._recent if p.is_file()]

    def scan(self) -> list[Path]:
        """The ``.gguf`` files in the folders and in their direct subfolders, sorted,
        without duplicates; unreadable folders are skipped."""
        found: set[Path] = set()
        for folder in self._folders:
            for directory in [folder, *_subfolders(folder)]:
                try:
                    found.update(p for p in directory.iterdir() if _is_gguf(p))
                except OSError:
                    continue
        return sorted(found)

    # The pinned models are the same for every library; kept here so callers need one object.
    def pinned_status(self) -> list[PinnedStatus]:
        return pinned_status()

    def installed_path(self, name: str) -> Path | None:
        return installed_path(name)

    def resolve_model(self, spec: str | os.PathLike[str]) -> Path:
        return resolve_model(spec)


def _parse(data: object) -> tuple[list[Path], list[Path]]:
    """Folders and recent files of a library document; ValueError saying what is wrong."""
    if not isinstance(data, dict):
        raise ValueError(f"expected an object, got {type(data).__name__}")
    version = data.get("version", LIBRARY_VERSION)
    if not isinstance(version, int) or isinstance(version, bool) or version != LIBRARY_VERSION:
        raise ValueError(f"unknown version {str(version)[:20]!r}")
    return _paths(data.get("folders", []), "folders"), _paths(data.get("recent", []), "recent")


def _paths(value: object, key: str) -> list[Path]:
    if not isinstance(value, list):
        raise ValueError(f"{key}: expected a list of paths, got {type(value).__name__}")
    for p in value:
        if not isinstance(p, str) or not p or "\x00" in p:
            raise ValueError(f"{key}: expected a path, got {str(p)[:40]!r}")
    return [Path(p) for p in value]


def _subfolders(folder: Path) -> list[Path]:
    try:
        return [p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")]
    except OSError:
        return []

"""The model library: folders, recent files, installed pinned models, resolving --model."""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path

import pytest

from app.cli_models import list_models
from app.core import paths
from app.core.errors import ModelFileError
from app.core.models import catalog
from app.core.models.files import derived_info_path, model_path, write_sidecar
from app.core.models.library import (
    MAX_RECENT,
    Library,
    installed_path,
    pinned_status,
    resolve_model,
)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DECODELAB_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DECODELAB_MODELS_DIR", str(tmp_path / "models"))
    return tmp_path


def touch(path: Path, data: bytes = b"GGUF") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def fake_install(name: str, size: int | None = None, checksum: str | None = None) -> Path:
    """A sparse file of the pinned size with a sidecar: installed as far as the library
    can tell without hashing (which it never does)."""
    entry = catalog.get_entry(name)
    path = model_path(entry)
    path.parent.mkdir(parents=True, exist_ok=True)  # listing never creates it
    with open(path, "wb") as out:
        out.truncate(entry.size if size is None else size)
    write_sidecar(path, checksum or entry.sha256)
    return path


def test_new_library_is_empty_and_persists_folders(home: Path) -> None:
    library = Library.load()
    assert library.folders == [] and library.recent == []
    folder = home / "models-a"
    folder.mkdir()
    assert library.add_folder(folder) == folder.resolve()
    library.add_folder(folder)  # no duplicate
    assert Library.load().folders == [folder.resolve()]
    assert (paths.config_dir() / "library.json").is_file()
    # Only the library file is there: the temp file was renamed over it.
    assert [p.name for p in paths.config_dir().iterdir()] == ["library.json"]
    library.remove_folder(folder)
    assert Library.load().folders == []


def test_adding_a_missing_folder_is_refused(home: Path) -> None:
    with pytest.raises(ModelFileError, match="not a folder"):
        Library.load().add_folder(home / "nowhere")


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", '{"folders": "abc"}', "\x00\xff"])
def test_corrupt_file_is_set_aside_and_reset(home: Path, content: str) -> None:
    file = paths.config_dir() / "library.json"
    file.write_text(content, encoding="latin-1")
    library = Library.load()
    assert library.folders == [] and library.recent == []
    assert library.set_aside is not None and library.set_aside.moved_to is not None
    assert library.set_aside.moved_to.name.startswith("library.json.bad-")
    assert library.set_aside.moved_to.read_text(encoding="latin-1") == content
    library.add_recent(touch(home / "m.gguf"))
    assert json.loads(file.read_text())["recent"] == [str((home / "m.gguf").resolve())]


def test_recent_files_most_recent_first_deduplicated_bounded(home: Path) -> None:
    library = Library.load()
    files = [touch(home / f"m{i}.gguf") for i in range(MAX_RECENT + 5)]
    for file in files:
        library.add_recent(file)
    library.add_recent(files[3])
    recent = Library.load().recent
    assert len(recent) == MAX_RECENT
    assert recent[0] == files[3].resolve()
    assert recent[1] == files[-1].resolve()
    assert len(set(recent)) == MAX_RECENT
    files[-1].unlink()
    assert files[-1].resolve() not in Library.load().recent  # missing files are skipped


def test_scan_finds_gguf_files_one_level_deep(home: Path) -> None:
    root = home / "lib"
    expected = [
        touch(root / "a.gguf"),
        touch(root / "B.GGUF"),
        touch(root / "sub" / "c.gguf"),
    ]
    touch(root / "notes.txt")
    touch(root / "a.gguf.partial")
    touch(root / "sub" / "deeper" / "deepest" / "too-deep.gguf")
    library = Library.load()
    library.add_folder(root)
    library.add_folder(root / "sub")  # overlapping folders give no duplicates
    assert library.scan() == sorted(p.resolve() for p in expected)
    (root / "sub").rename(home / "gone")
    assert library.scan() == sorted(p.resolve() for p in expected[:2])  # missing folder: skipped


def test_nothing_pinned_is_installed_in_an_empty_models_folder(home: Path) -> None:
    status = pinned_status()
    assert [s.entry.name for s in status] == list(catalog.CATALOG)
    assert not any(s.installed for s in status)
    assert all(s.path is None and s.sha256 is None for s in status)
    assert installed_path("smollm2-135m") is None


def test_installed_needs_pinned_size_and_verified_sidecar(home: Path) -> None:
    path = fake_install("smollm2-135m")
    assert installed_path("smollm2-135m") == path
    row = next(s for s in pinned_status() if s.entry.name == "smollm2-135m")
    assert row.installed and row.path == path and row.sha256 == row.entry.sha256
    assert row.size == row.entry.size
    write_sidecar(path, "f" * 64)
    assert installed_path("smollm2-135m") is None
    fake_install("smollm2-135m", size=1000)
    assert installed_path("smollm2-135m") is None


def test_derived_model_vouched_by_its_verified_source(home: Path) -> None:
    source = catalog.get_entry("qwen2.5-coder-1.5b")
    new_checksum = hashlib.sha256(b"other llama.cpp").hexdigest()
    path = fake_install("qwen2.5-coder-1.5b-f16", size=5000, checksum=new_checksum)
    assert installed_path("qwen2.5-coder-1.5b-f16") is None  # not the pinned bytes
    info = {
        "source": source.name,
        "source_sha256": source.sha256,
        "sha256": new_checksum,
        "size": 5000,
    }
    derived_info_path(path).write_text(json.dumps(info))
    assert installed_path("qwen2.5-coder-1.5b-f16") == path
    derived_info_path(path).write_text(json.dumps({**info, "source_sha256": "0" * 64}))
    assert installed_path("qwen2.5-coder-1.5b-f16") is None


def test_resolve_model_accepts_paths_and_pinned_names(home: Path) -> None:
    file = touch(home / "mine.gguf")
    assert resolve_model(str(file)) == file.resolve()
    assert resolve_model(file) == file.resolve()
    with pytest.raises(ModelFileError, match="not installed"):
        resolve_model("smollm2-135m")
    installed = fake_install("smollm2-135m")
    assert resolve_model("smollm2-135m") == installed
    assert Library.load().resolve_model("smollm2-135m") == installed


@pytest.mark.parametrize("spec", ["no-such-model", "missing.gguf", "dir/missing"])
def test_resolve_model_names_what_is_missing(home: Path, spec: str) -> None:
    with pytest.raises(ModelFileError) as info:
        resolve_model(spec)
    assert "missing" in str(info.value) or "no-such-model" in str(info.value)


def test_resolve_model_refuses_a_folder(home: Path) -> None:
    with pytest.raises(ModelFileError, match="folder"):
        resolve_model(home)


def test_cli_list_json_and_table(home: Path) -> None:
    fake_install("gemma3-270m")
    out = io.StringIO()
    assert list_models(as_json=True, out=out) == 0
    rows = json.loads(out.getvalue())
    assert [r["name"] for r in rows] == list(catalog.CATALOG)
    assert all(set(r) >= {"name", "installed", "path", "size", "sha256"} for r in rows)
    gemma = next(r for r in rows if r["name"] == "gemma3-270m")
    assert gemma["installed"] and gemma["path"].endswith("gemma3-270m.Q4_K_M.gguf")
    table = io.StringIO()
    assert list_models(out=table) == 0
    lines = table.getvalue().splitlines()
    assert lines[0].split()[:2] == ["NAME", "INSTALLED"] and len(lines) == 1 + len(rows)


@pytest.mark.integration
def test_real_default_model_is_installed_and_verified(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DECODELAB_MODELS_DIR", str(paths.default_models_dir()))
    path = installed_path(catalog.DEFAULT_MODEL)
    if path is None:
        pytest.skip("run `decodelab models fetch smollm2-135m` first")
    digest = hashlib.sha256()
    with open(path, "rb") as src:
        while chunk := src.read(1 << 20):
            digest.update(chunk)
    assert digest.hexdigest() == catalog.get_entry(catalog.DEFAULT_MODEL).sha256
    assert resolve_model(catalog.DEFAULT_MODEL) == path
    assert os.path.getsize(path) == catalog.get_entry(catalog.DEFAULT_MODEL).size

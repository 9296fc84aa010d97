"""What the reproductions make of a model file: self-drafts cut from the target
(app.core.reproduce.layercut), on tiny generated models that real llama.cpp loads (N blocks,
the target's vocabulary, per-block arrays cut, a tied head, the cache keyed by the target's
checksum, the disk checked, listing and removal), and the search for EAGLE/Medusa heads."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path
from typing import Any

import gguf
import llama_cpp
import numpy as np
import pytest
import tiny_models

from app.core.compat import check_draft
from app.core.errors import DecodeLabError, RefusedError
from app.core.gguf_info import inspect_model
from app.core.gguf_reader import read_header
from app.core.llama_backend import LoadedModel, LoadOptions
from app.core.models.files import derived_drafts, remove_derived, self_drafts_dir
from app.core.reproduce import layercut
from app.core.reproduce.heads import check_heads
from app.core.reproduce.layercut import (
    Cancelled,
    check_depths,
    default_depths,
    derive,
    first_blocks,
    spread_blocks,
)

PER_LAYER = "llama.decodelab_test.per_layer"  # llama.cpp ignores it; the cut must not


@pytest.fixture(autouse=True)
def own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DECODELAB_HOME", str(tmp_path / "home"))


@pytest.fixture(scope="module")
def four_blocks(tiny_dir: Path) -> Path:
    # The synthetic 512-token vocabulary: the gguf package reads it in milliseconds.
    return tiny_models.dense_llama(tiny_dir, None, n_layer=4)


def rewrite(src: Path, dst: Path, drop: set[str] = frozenset(),  # type: ignore[assignment]
            extra: dict[str, list[int]] | None = None,
            tensors: dict[str, np.ndarray[Any, Any]] | None = None) -> Path:
    """A copy of ``src`` without the tensors ``drop``, with int arrays ``extra`` and the
    F32 ``tensors`` added."""
    reader = gguf.GGUFReader(src)
    arch = str(reader.fields["general.architecture"].contents())
    writer = gguf.GGUFWriter(dst, arch)
    for name, field in reader.fields.items():
        if name.startswith("GGUF.") or name == "general.architecture":
            continue
        vtype = field.types[0]
        sub = field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(name, field.contents(), vtype, sub_type=sub)
    for key, values in (extra or {}).items():
        writer.add_key_value(key, values, gguf.GGUFValueType.ARRAY,
                             sub_type=gguf.GGUFValueType.UINT32)
    kept = [t for t in reader.tensors if t.name not in drop]
    for t in kept:
        writer.add_tensor_info(t.name, t.data.shape, t.data.dtype, t.data.nbytes, t.tensor_type)
    for name, array in (tensors or {}).items():
        writer.add_tensor_info(name, array.shape, array.dtype, array.nbytes)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for t in kept:
        writer.write_tensor_data(t.data)
    for array in (tensors or {}).values():
        writer.write_tensor_data(array)
    writer.close()
    return dst


def tensor(path: Path, name: str) -> np.ndarray[Any, Any]:
    return next(t.data for t in gguf.GGUFReader(path).tensors if t.name == name).copy()


def n_layers(path: Path) -> int:
    model = LoadedModel(path, LoadOptions(n_ctx=256, threads=1))
    try:
        return int(llama_cpp.llama_model_n_layer(model.model))
    finally:
        model.close()


def test_depths_are_quarters_and_two() -> None:
    assert default_depths(28) == [2, 7, 14, 21]
    assert default_depths(30) == [2, 7, 15, 22]
    assert default_depths(4) == [1, 2, 3]
    assert check_depths([21, 2, 2], 28) == [2, 21]
    with pytest.raises(RefusedError, match="not a cut"):
        check_depths([28], 28)
    assert first_blocks(3, 28) == (0, 1, 2)
    assert spread_blocks(3, 28) == (0, 14, 27)


def test_self_draft_loads_with_n_blocks_and_the_targets_vocabulary(four_blocks: Path) -> None:
    (draft, reused), = derive(four_blocks, [first_blocks(2, 4)])
    assert not reused and draft.blocks == (0, 1) and draft.of_blocks == 4
    assert draft.path.parent == self_drafts_dir() and not draft.tied_embeddings
    names = {t.name for t in read_header(draft.path).tensors}
    assert {"token_embd.weight", "output_norm.weight", "output.weight"} <= names
    assert not any(n.startswith(("blk.2.", "blk.3.")) for n in names)
    assert n_layers(draft.path) == 2
    target, made = inspect_model(four_blocks), inspect_model(draft.path)
    assert made.n_vocab == target.n_vocab and made.vocab_fingerprint == target.vocab_fingerprint
    assert check_draft(target, made).compatible
    # Copied raw: the head and the kept blocks hold the target's bytes.
    for name in ("output.weight", "blk.1.attn_q.weight"):
        assert np.array_equal(tensor(draft.path, name), tensor(four_blocks, name))
    assert [d.name for d in derived_drafts()] == [draft.name]


def test_per_block_arrays_follow_the_kept_blocks(four_blocks: Path, tmp_path: Path) -> None:
    # head_count_kv as a per-layer array: llama.cpp refuses an array of the wrong length,
    # so loading the cut model proves it was cut.
    src = rewrite(four_blocks, tmp_path / "arrays.gguf",
                  extra={PER_LAYER: [10, 11, 12, 13], "llama.attention.head_count_kv": [2] * 4})
    first, spread = derive(src, [first_blocks(2, 4), spread_blocks(2, 4)])
    assert n_layers(first[0].path) == 2 and n_layers(spread[0].path) == 2
    read = lambda p: list(gguf.GGUFReader(p).fields[PER_LAYER].contents())  # noqa: E731
    assert read(first[0].path) == [10, 11]
    assert read(spread[0].path) == [10, 13]
    # The spread draft's second block is the target's last one, renumbered.
    assert np.array_equal(tensor(spread[0].path, "blk.1.ffn_up.weight"),
                          tensor(src, "blk.3.ffn_up.weight"))


def test_a_tied_head_is_kept_through_the_embedding(four_blocks: Path, tmp_path: Path) -> None:
    tied = rewrite(four_blocks, tmp_path / "tied.gguf", drop={"output.weight"})
    (draft, _), = derive(tied, [first_blocks(1, 4)])
    assert draft.tied_embeddings
    assert "output.weight" not in {t.name for t in read_header(draft.path).tensors}
    assert n_layers(draft.path) == 1


def test_cached_while_the_checksum_holds(four_blocks: Path, tmp_path: Path,
                                         tiny_dir: Path) -> None:
    target = tmp_path / "target.gguf"
    shutil.copy(four_blocks, target)
    (one, reused), = derive(target, [first_blocks(2, 4)])
    assert not reused
    (again, reused), = derive(target, [first_blocks(2, 4)])
    assert reused and again.path == one.path
    assert again.path.stat().st_mtime_ns == one.path.stat().st_mtime_ns
    # Other bytes at the same path: a new draft, the stale one gone.
    other = tiny_models.dense_llama(tiny_dir, None, n_layer=4, seed=7)
    shutil.copy(other, target)
    (new, reused), = derive(target, [first_blocks(2, 4)])
    assert not reused and new.path != one.path and new.source_sha256 != one.source_sha256
    assert not one.path.exists() and [d.name for d in derived_drafts()] == [new.name]


def test_disk_space_is_checked_before_writing(four_blocks: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    real = shutil.disk_usage

    def full(path: Any) -> Any:
        usage = real(path)
        return type(usage)(usage.total, usage.total - 1000, 1000)

    monkeypatch.setattr(layercut.shutil, "disk_usage", full)
    with pytest.raises(DecodeLabError, match=r"needs .* of disk"):
        derive(four_blocks, [first_blocks(2, 4)])
    assert list(self_drafts_dir().glob("*.gguf*")) == []


def test_cancel_leaves_nothing(four_blocks: Path) -> None:
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        derive(four_blocks, [first_blocks(2, 4)], cancel=cancel)
    assert list(self_drafts_dir().glob("*.gguf*")) == []


def test_only_derived_drafts_are_removed(four_blocks: Path) -> None:
    (draft, _), = derive(four_blocks, [first_blocks(3, 4)])
    with pytest.raises(RefusedError, match="not a derived self-draft"):
        remove_derived(four_blocks.name)
    assert four_blocks.is_file()
    assert remove_derived(draft.name).path == draft.path
    assert not draft.path.exists() and derived_drafts() == []


def test_a_one_block_model_cannot_be_cut(tiny_draft: Path) -> None:
    with pytest.raises(RefusedError, match="nothing to cut"):
        derive(tiny_draft, [(0,)])


@pytest.mark.parametrize("track", ["eagle", "medusa"])
def test_heads_tracks_are_not_reproducible_and_say_why(four_blocks: Path, track: str) -> None:
    rep = check_heads(track, four_blocks)
    assert not rep.reproducible and rep.heads is not None
    assert rep.heads.found == [] and rep.heads.keys == []
    assert rep.heads.n_tensors == len(read_header(four_blocks).tensors)
    assert rep.reason.startswith("not reproducible: ") and rep.depths == [] and rep.ssm == []
    assert rep.baseline is None  # nothing ran, nothing was faked


def test_heads_in_a_file_are_found(four_blocks: Path, tmp_path: Path) -> None:
    head = np.zeros((4, 64), dtype=np.float32)
    odd = rewrite(four_blocks, tmp_path / "heads.gguf",
                  tensors={"medusa_head.0.weight": head, "blk.3.nextn.eh_proj.weight": head})
    rep = check_heads("medusa", odd)
    assert rep.heads is not None and not rep.reproducible
    assert rep.heads.found == ["medusa_head.0.weight", "blk.3.nextn.eh_proj.weight"]

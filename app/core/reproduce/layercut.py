"""A self-draft cut from the target itself: some of its transformer blocks, then its own final
norm and output head. No trained exit classifier, adapter or layer-set search: exactly what
the layer-skip tracks (7 CAS-Spec, 9 CLaSp/SWIFT, 10 Kangaroo) have without their trained or
searched part.

Guarantees of :func:`derive`:

- The file is a copy of the target made with the ``gguf`` package (``GGUFReader`` ->
  ``GGUFWriter``): every metadata key and every tensor outside ``blk.*`` copied raw (the
  token embedding, ``output_norm``, ``output`` when the head is not tied to the embedding,
  rope tables ...), the kept blocks' tensors renumbered ``blk.0 …``, ``<arch>.block_count``
  set to the number kept, and every per-block metadata array (``<arch>.*`` arrays with one
  entry per block, e.g. per-layer head counts) cut to the kept blocks. The vocabulary and
  tokenizer are the target's: the draft passes the draft-compatibility checks.
- A tied head (no ``output.weight``) needs nothing: llama.cpp then reads the embedding as
  the head, and the embedding is always kept. The record says which it was.
- The disk is checked before writing (the kept tensors' bytes plus a margin); the file is
  written to ``.partial`` and renamed, so a failed or cancelled write leaves nothing.
- Files live in the cache folder (``models.files.self_drafts_dir``), named by the target's
  SHA-256, with a ``.derived.json`` record; a file is reused while the target's checksum is
  unchanged, and drafts of an earlier version of the same target file are removed.
- The target's checksum is the one its verification record vouches for (pinned models),
  else it is hashed once and remembered by path, size and mtime.
"""

from __future__ import annotations

import datetime
import hashlib
import re
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from app.core.errors import DecodeLabError, RefusedError
from app.core.models.files import (
    DerivedDraft,
    derived_drafts,
    derived_info_path,
    read_derived,
    self_drafts_dir,
    write_derived,
)
from app.core.sizes import human_size
from app.core.store import atomic_write_text, read_json

Progress = Callable[[str, int, int], None]  # (what, done, total)
DISK_MARGIN = 64 << 20  # the header and the vocabulary besides the tensors, and some room
CHECKSUMS = "checksums.json"
_BLOCK = re.compile(r"^blk\.(\d+)\.(.+)$")


class Cancelled(DecodeLabError):
    """Deriving was cancelled (nothing was left behind)."""


def first_blocks(n: int, of: int) -> tuple[int, ...]:
    """Blocks 0 … n-1: an early exit after n blocks (CAS-Spec's and Kangaroo's drafts)."""
    return tuple(range(n))


def spread_blocks(n: int, of: int) -> tuple[int, ...]:
    """n blocks spread evenly over all ``of``, the first and the last kept: a fixed skipped
    set, standing in for the set CLaSp/SWIFT search for per model and prompt."""
    if n <= 1:
        return (0,)
    return tuple(sorted({round(i * (of - 1) / (n - 1)) for i in range(n)}))


def default_depths(of: int) -> list[int]:
    """L/4, L/2, 3L/4 and 2 (Kangaroo's shallow exit), each a real cut (1 … L-1), sorted."""
    return sorted({d for d in (2, of // 4, of // 2, 3 * of // 4) if 1 <= d < of})


def check_depths(depths: Sequence[int], of: int) -> list[int]:
    """The depths, sorted and once each; RefusedError for one that is no cut of ``of``."""
    bad = [d for d in depths if not 1 <= d < of]
    if bad:
        raise RefusedError(f"depth {bad[0]} is not a cut of a {of}-block model "
                           f"(depths are 1…{of - 1})")
    if not depths:
        raise RefusedError("no depth to try")
    return sorted(set(depths))


# -- the target's identity --------------------------------------------------------------------


def target_checksum(path: Path, cancel: threading.Event | None = None) -> str:
    """The target's SHA-256 (see the module guarantees)."""
    from app.core.models.integrity import verified_checksum

    path = path.resolve()
    st = path.stat()
    vouched = verified_checksum(path, st)
    if vouched is not None:
        return vouched
    index = self_drafts_dir() / CHECKSUMS
    try:
        known = read_json(index)
        known = known if isinstance(known, dict) else {}
    except (OSError, ValueError):
        known = {}
    entry = known.get(str(path))
    if isinstance(entry, dict) and (entry.get("size"), entry.get("mtime_ns")) == (
            st.st_size, st.st_mtime_ns) and isinstance(entry.get("sha256"), str):
        return str(entry["sha256"])
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 22):
            digest.update(chunk)
            if cancel is not None and cancel.is_set():
                raise Cancelled("cancelled while hashing the target")
    sha = digest.hexdigest()
    known[str(path)] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": sha}
    import json

    atomic_write_text(index, json.dumps(known, indent=1) + "\n")
    return sha


def draft_path(target: Path, sha256: str, blocks: Sequence[int], of: int) -> Path:
    """Where the self-draft of ``target`` with these blocks lives in the cache."""
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", target.stem)[:60]
    if tuple(blocks) == first_blocks(len(blocks), of):
        how = f"first-{len(blocks)}-of-{of}"
    else:
        how = f"{len(blocks)}-of-{of}-" + hashlib.sha256(
            ",".join(map(str, blocks)).encode()).hexdigest()[:8]
    return self_drafts_dir() / f"{stem}.{how}.{sha256[:12]}.gguf"


# -- deriving ------------------------------------------------------------------------------------


def derive(
    target: str | Path,
    block_sets: Sequence[Sequence[int]],
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
) -> list[tuple[DerivedDraft, bool]]:
    """The self-draft of ``target`` for each block set (indices into its blocks), with
    whether it was reused from the cache; derives the missing ones from one read of the
    target. DecodeLabError (one line) when the disk is too full or gguf cannot read it."""
    target = Path(target).resolve()
    report = progress or (lambda _what, _done, _total: None)
    report("hashing the target", 0, 1)
    sha = target_checksum(target, cancel)
    of = block_count(target)
    out: list[tuple[DerivedDraft, bool] | None] = []
    todo: list[tuple[int, tuple[int, ...], Path]] = []
    for i, blocks in enumerate(block_sets):
        kept = tuple(blocks)
        if not kept or any(not 0 <= b < of for b in kept) or list(kept) != sorted(set(kept)):
            raise RefusedError(f"blocks {list(kept)} are not a cut of a {of}-block model")
        path = draft_path(target, sha, kept, of)
        have = read_derived(path)
        if have is not None and have.source_sha256 == sha and have.blocks == kept:
            out.append((have, True))
        else:
            out.append(None)
            todo.append((i, kept, path))
    _forget_older(target, sha)
    if todo:
        made = _write_all(target, sha, of, todo, report, cancel or threading.Event())
        for i, draft in made.items():
            out[i] = (draft, False)
    return [x for x in out if x is not None]


def block_count(target: Path) -> int:
    from app.core.gguf_reader import read_header

    md = read_header(target).metadata
    arch = md.get_str("general.architecture", "")
    n = md.get_int(f"{arch}.block_count", 0)
    if n < 2:
        raise RefusedError(f"{target.name} has {n} block(s): nothing to cut")
    return n


def _forget_older(target: Path, sha: str) -> None:
    """Drafts of this target file made from bytes it no longer has."""
    for d in derived_drafts():
        if Path(d.source) == target and d.source_sha256 != sha:
            d.path.unlink(missing_ok=True)
            derived_info_path(d.path).unlink(missing_ok=True)


def _write_all(target: Path, sha: str, of: int, todo: list[tuple[int, tuple[int, ...], Path]],
               report: Progress, cancel: threading.Event) -> dict[int, DerivedDraft]:
    try:
        import gguf
    except ImportError as exc:
        raise DecodeLabError("deriving a self-draft needs the gguf package") from exc
    t0 = time.perf_counter()
    report(f"reading {target.name}", 0, 1)
    try:
        reader = gguf.GGUFReader(target)
    except (OSError, ValueError) as exc:
        raise DecodeLabError(f"{target.name}: the gguf package cannot read it ({exc})") from exc
    read_s = time.perf_counter() - t0
    made: dict[int, DerivedDraft] = {}
    for step, (i, kept, path) in enumerate(todo):
        if cancel.is_set():
            raise Cancelled("cancelled while deriving the self-drafts")
        t1 = time.perf_counter()
        label = f"writing {len(kept)} of {of} blocks ({step + 1}/{len(todo)})"

        def wrote(done: int, total: int, label: str = label) -> None:
            report(label, done, total)

        tied = _write(gguf, reader, path, kept, of, wrote, cancel)
        seconds = read_s / len(todo) + time.perf_counter() - t1
        now = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
        draft = DerivedDraft(path, path.stat().st_size, str(target), sha, kept, of, tied,
                             round(seconds, 3), now)
        write_derived(draft)
        made[i] = draft
    return made


def _write(gguf: Any, reader: Any, path: Path, kept: tuple[int, ...], of: int,
           report: Callable[[int, int], None], cancel: threading.Event) -> bool:
    """Write the self-draft of ``kept`` blocks to ``path``; returns whether the head is tied."""
    arch = str(reader.get_field("general.architecture").contents())
    renumber = {old: new for new, old in enumerate(kept)}
    tensors = []
    for t in reader.tensors:
        m = _BLOCK.match(t.name)
        if m is None:
            tensors.append((t.name, t))
        elif int(m[1]) in renumber:
            tensors.append((f"blk.{renumber[int(m[1])]}.{m[2]}", t))
    names = {name for name, _ in tensors}
    tied = "output.weight" not in names
    total = sum(int(t.n_bytes) for _, t in tensors)
    folder = path.parent
    free = shutil.disk_usage(folder).free
    if free < total + DISK_MARGIN:
        raise DecodeLabError(f"{path.name}: needs {human_size(total + DISK_MARGIN)} of disk in "
                             f"{folder}, {human_size(free)} free")
    partial = path.with_name(path.name + ".partial")
    writer = gguf.GGUFWriter(partial, arch)
    try:
        _copy_metadata(gguf, reader, writer, arch, kept, of)
        for name, t in tensors:
            writer.add_tensor_info(name, t.data.shape, t.data.dtype, t.data.nbytes, t.tensor_type)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        done = 0
        for _name, t in tensors:
            if cancel.is_set():
                raise Cancelled("cancelled while writing the self-draft")
            writer.write_tensor_data(t.data, tensor_endianess=reader.endianess)
            done += int(t.n_bytes)
            report(done, total)
        writer.close()
        partial.replace(path)
    except OSError as exc:
        raise DecodeLabError(f"{path}: cannot write the self-draft ({exc.strerror or exc})") \
            from exc
    finally:
        writer.close()
        partial.unlink(missing_ok=True)
    return tied


def _copy_metadata(gguf: Any, reader: Any, writer: Any, arch: str, kept: tuple[int, ...],
                   of: int) -> None:
    """Every key of the target, with the block count and per-block arrays cut to ``kept``."""
    array = gguf.GGUFValueType.ARRAY
    n = len(kept)
    for name, field in reader.fields.items():
        if name.startswith("GGUF.") or name == "general.architecture":
            continue  # the writer writes these itself
        vtype = field.types[0]
        sub = field.types[-1] if vtype == array else None
        value = field.contents()
        if name == f"{arch}.block_count":
            value = n
        elif name == "general.alignment":
            writer.data_alignment = int(value)
        elif name == f"{arch}.leading_dense_block_count":
            value = sum(1 for b in kept if b < int(value))  # the first dense blocks kept
        elif name == f"{arch}.nextn_predict_layers":
            value = 0  # the multi-token-prediction blocks sit at the end: never kept
        elif name == "general.name":
            value = f"{value} (DecodeLab self-draft: {n} of {of} blocks)"
        elif vtype == array and name.startswith(f"{arch}.") and len(value) == of:
            value = [value[b] for b in kept]  # one entry per block
        writer.add_key_value(name, value, vtype, sub_type=sub)
    writer.add_string("decodelab.self_draft.blocks", ",".join(map(str, kept)))
    writer.add_uint32("decodelab.self_draft.of_blocks", of)

"""A defensive reader of GGUF headers: metadata and tensor table, never the weights.

Every count and length in the header is checked against the bytes that are really
there before anything is allocated, so a truncated file, random bytes or a header that
announces 2**60 keys fails in milliseconds with a message instead of exhausting memory
or handing llama.cpp something that makes it abort the process.
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.core.errors import ModelFileError

GGUF_MAGIC = b"GGUF"
DEFAULT_ALIGNMENT = 32

# GGUF value types: (struct format, byte size) for the fixed-size ones.
_SCALARS: dict[int, tuple[str, int]] = {
    0: ("<B", 1),
    1: ("<b", 1),
    2: ("<H", 2),
    3: ("<h", 2),
    4: ("<I", 4),
    5: ("<i", 4),
    6: ("<f", 4),
    7: ("<?", 1),
    10: ("<Q", 8),
    11: ("<q", 8),
    12: ("<d", 8),
}
_STRING, _ARRAY = 8, 9

# Bytes per block and elements per block for ggml tensor types (enough to size tensors).
_GGML_BLOCK: dict[int, tuple[int, int]] = {
    0: (4, 1),
    1: (2, 1),
    2: (18, 32),
    3: (20, 32),
    6: (22, 32),
    7: (24, 32),
    8: (34, 32),
    9: (36, 32),
    10: (84, 256),
    11: (110, 256),
    12: (144, 256),
    13: (176, 256),
    14: (210, 256),
    15: (292, 256),
    16: (66, 256),
    17: (74, 256),
    18: (98, 256),
    19: (50, 256),
    20: (18, 32),
    21: (110, 256),
    22: (82, 256),
    23: (136, 256),
    24: (1, 1),
    25: (2, 1),
    26: (4, 1),
    27: (8, 1),
    28: (8, 1),
    29: (56, 256),
    30: (2, 1),
    34: (54, 256),
    35: (66, 256),
    39: (17, 32),
}

# Arrays whose contents inspection never needs: walked over, not kept.
_SKIPPED_ARRAYS = {"tokenizer.ggml.merges", "tokenizer.ggml.scores", "tokenizer.ggml.token_type"}


@dataclass
class TensorInfo:
    name: str
    shape: tuple[int, ...]
    ggml_type: int
    offset: int

    @property
    def n_elements(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n


@dataclass
class GGUFHeader:
    path: Path
    version: int
    file_size: int
    metadata: dict[str, Any] = field(default_factory=dict)
    array_lengths: dict[str, int] = field(default_factory=dict)
    tensors: list[TensorInfo] = field(default_factory=list)
    data_offset: int = 0


class _Cursor:
    def __init__(self, buf: mmap.mmap | bytes, path: Path) -> None:
        self.buf = buf
        self.pos = 0
        self.size = len(buf)
        self.path = path

    def need(self, n: int, what: str) -> None:
        if n < 0 or self.pos + n > self.size:
            raise ModelFileError(
                self.path,
                f"truncated or corrupt GGUF header ({what} at byte {self.pos} needs {n} bytes, "
                f"file has {self.size})",
            )

    def scalar(self, vtype: int, what: str) -> Any:
        fmt, size = _SCALARS[vtype]
        self.need(size, what)
        (value,) = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += size
        return value

    def u32(self, what: str) -> int:
        return int(self.scalar(4, what))

    def u64(self, what: str) -> int:
        return int(self.scalar(10, what))

    def string(self, what: str) -> str:
        n = self.u64(what)
        self.need(n, what)
        raw = bytes(self.buf[self.pos : self.pos + n])
        self.pos += n
        return raw.decode("utf-8", errors="replace")

    def skip_string(self, what: str) -> None:
        n = self.u64(what)
        self.need(n, what)
        self.pos += n


def _read_value(cur: _Cursor, vtype: int, key: str, header: GGUFHeader) -> Any:
    if vtype in _SCALARS:
        return cur.scalar(vtype, key)
    if vtype == _STRING:
        return cur.string(key)
    if vtype != _ARRAY:
        raise ModelFileError(cur.path, f"unknown GGUF value type {vtype} for key {key!r}")
    etype = cur.u32(key)
    count = cur.u64(key)
    header.array_lengths[key] = count
    if etype in _SCALARS:
        size = _SCALARS[etype][1]
        cur.need(count * size, f"array {key!r} of {count} items")
        if key in _SKIPPED_ARRAYS or count > 4096:
            cur.pos += count * size
            return None
        fmt = "<" + _SCALARS[etype][0][1] * count
        values = list(struct.unpack_from(fmt, cur.buf, cur.pos))
        cur.pos += count * size
        return values
    if etype == _STRING:
        # Each string takes at least its 8-byte length: reject absurd counts before looping.
        cur.need(count * 8, f"array {key!r} of {count} strings")
        if key in _SKIPPED_ARRAYS:
            for _ in range(count):
                cur.skip_string(key)
            return None
        return [cur.string(key) for _ in range(count)]
    raise ModelFileError(cur.path, f"unsupported nested array in key {key!r}")


def read_header(path: str | Path) -> GGUFHeader:
    """Parse the metadata and tensor table of ``path``; raise ModelFileError if invalid."""
    p = Path(path)
    if not p.exists():
        raise ModelFileError(p, "file not found")
    if p.is_dir():
        raise ModelFileError(p, "is a folder, not a GGUF file")
    try:
        size = p.stat().st_size
        if size == 0:
            raise ModelFileError(p, "file is empty")
        with p.open("rb") as fh:
            if size < 24:
                raise ModelFileError(p, f"too small to be a GGUF file ({size} bytes)")
            if fh.read(4) != GGUF_MAGIC:
                raise ModelFileError(p, "not a GGUF file (no GGUF magic at the start)")
            with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
                return _parse(buf, p, size)
    except OSError as exc:
        raise ModelFileError(p, f"cannot read file: {exc.strerror or exc}") from exc


def _parse(buf: mmap.mmap, path: Path, size: int) -> GGUFHeader:
    cur = _Cursor(buf, path)
    cur.pos = 4
    version = cur.u32("version")
    if version not in (2, 3):
        raise ModelFileError(path, f"unsupported GGUF version {version}")
    n_tensors = cur.u64("tensor count")
    n_kv = cur.u64("metadata count")
    # A key costs at least 8 (length) + 1 + 4 (type) + 1 bytes; a tensor entry at least 29.
    if n_kv * 14 > size or n_tensors * 29 > size:
        raise ModelFileError(
            path,
            f"corrupt GGUF header: announces {n_kv} keys and {n_tensors} tensors "
            f"in a file of {size} bytes",
        )
    header = GGUFHeader(path=path, version=version, file_size=size)
    for _ in range(n_kv):
        key = cur.string("metadata key")
        vtype = cur.u32(f"type of {key!r}")
        header.metadata[key] = _read_value(cur, vtype, key, header)
    for _ in range(n_tensors):
        name = cur.string("tensor name")
        n_dims = cur.u32(f"dimensions of {name!r}")
        if n_dims > 8:
            raise ModelFileError(path, f"corrupt tensor {name!r}: {n_dims} dimensions")
        shape = tuple(cur.u64(name) for _ in range(n_dims))
        ggml_type = cur.u32(name)
        offset = cur.u64(name)
        header.tensors.append(TensorInfo(name, shape, ggml_type, offset))
    alignment = int(header.metadata.get("general.alignment", DEFAULT_ALIGNMENT) or 1)
    header.data_offset = (cur.pos + alignment - 1) // alignment * alignment
    _check_tensor_data(header)
    return header


def tensor_nbytes(t: TensorInfo) -> int | None:
    block = _GGML_BLOCK.get(t.ggml_type)
    if block is None:
        return None
    nbytes, per_block = block
    return t.n_elements // per_block * nbytes


def _check_tensor_data(header: GGUFHeader) -> None:
    end = header.data_offset
    for t in header.tensors:
        nbytes = tensor_nbytes(t)
        stop = header.data_offset + t.offset + (nbytes or 0)
        end = max(end, stop)
    if end > header.file_size:
        raise ModelFileError(
            header.path,
            f"truncated file: tensor data needs {end} bytes, the file has {header.file_size}",
        )

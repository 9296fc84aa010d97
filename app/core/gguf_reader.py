"""A defensive reader of GGUF headers: metadata and tensor table, never the weights.

Every count and length in the header is checked against the bytes that are really
there, and against sane limits, before anything is allocated: a truncated file, random
bytes or a header that announces 2**60 keys fails in milliseconds with a one-line
``ModelFileError`` instead of exhausting memory or handing llama.cpp something that
makes it abort the process. Metadata is read through ``Metadata``'s typed getters, which
refuse a value of the wrong GGUF type with a message naming the key and both types.
"""

from __future__ import annotations

import math
import mmap
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, overload

from app.core.errors import ModelFileError

GGUF_MAGIC = b"GGUF"
DEFAULT_ALIGNMENT = 32

# Limits on what a header may declare. Each is far above any real model's need.
MAX_KEY_BYTES = 65_535  # the GGUF specification's limit for a key
MAX_STRING_BYTES = 16 * 2**20  # one string value: 100x the longest real chat template
MAX_TENSOR_NAME_BYTES = 256  # llama.cpp's GGML_MAX_NAME is 64; headroom for forks
MAX_DIMS = 4  # GGML_MAX_DIMS
MAX_GGML_TYPE = 255  # ggml has about 40 tensor types: beyond this it is garbage
MAX_COUNT = 2**31 - 1  # counts and sizes llama.cpp keeps in 32-bit integers
MAX_KEPT_ARRAY = 4096  # longer numeric arrays are walked over, not kept
MAX_SHOWN = 80  # characters of a name quoted in a message

# GGUF value types: (struct format, byte size) for the fixed-size ones.
_SCALARS: dict[int, tuple[str, int]] = {
    0: ("<B", 1), 1: ("<b", 1), 2: ("<H", 2), 3: ("<h", 2), 4: ("<I", 4), 5: ("<i", 4),
    6: ("<f", 4), 7: ("<?", 1), 10: ("<Q", 8), 11: ("<q", 8), 12: ("<d", 8),
}
_STRING, _ARRAY = 8, 9
_U64 = struct.Struct("<Q")
_INTEGERS = frozenset({0, 1, 2, 3, 4, 5, 10, 11})
_BOOL = 7
_TYPE_NAMES = {
    0: "u8", 1: "i8", 2: "u16", 3: "i16", 4: "u32", 5: "i32", 6: "f32", 7: "bool",
    8: "string", 9: "array", 10: "u64", 11: "i64", 12: "f64",
}

# Bytes per block and elements per block for ggml tensor types (enough to size tensors).
_GGML_BLOCK: dict[int, tuple[int, int]] = {
    0: (4, 1), 1: (2, 1), 2: (18, 32), 3: (20, 32), 6: (22, 32), 7: (24, 32), 8: (34, 32),
    9: (36, 32), 10: (84, 256), 11: (110, 256), 12: (144, 256), 13: (176, 256), 14: (210, 256),
    15: (292, 256), 16: (66, 256), 17: (74, 256), 18: (98, 256), 19: (50, 256), 20: (18, 32),
    21: (110, 256), 22: (82, 256), 23: (136, 256), 24: (1, 1), 25: (2, 1), 26: (4, 1),
    27: (8, 1), 28: (8, 1), 29: (56, 256), 30: (2, 1), 34: (54, 256), 35: (66, 256),
    39: (17, 32),
}

# Arrays whose contents inspection never needs: walked over, not kept.
_SKIPPED_ARRAYS = {"tokenizer.ggml.merges", "tokenizer.ggml.scores", "tokenizer.ggml.token_type"}


def shown(text: str) -> str:
    """``text`` quoted for a message: cut to MAX_SHOWN characters, non-printables escaped."""
    cut = text[:MAX_SHOWN]
    return repr(cut) + ("…" if len(text) > MAX_SHOWN else "")


def _type_name(vtype: int, etype: int | None = None) -> str:
    name = _TYPE_NAMES.get(vtype, f"type {vtype}")
    return name if etype is None else f"array of {_type_name(etype)}"


class Metadata:
    """The header's key/value pairs behind typed getters.

    A getter returns the default when the key is absent and raises ModelFileError naming
    the key, the expected and the found GGUF type when the file gave it another type (an
    integer getter also refuses values outside its range).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._values: dict[str, Any] = {}
        self._types: dict[str, tuple[int, int | None]] = {}
        self._lengths: dict[str, int] = {}

    def _add(self, key: str, vtype: int, etype: int | None, value: Any, length: int) -> None:
        if key in self._types:
            raise ModelFileError(self.path, f"duplicate metadata key {shown(key)}")
        self._values[key] = value
        self._types[key] = (vtype, etype)
        if etype is not None:
            self._lengths[key] = length

    def __contains__(self, key: object) -> bool:
        return key in self._types

    def __iter__(self) -> Iterator[str]:
        return iter(self._types)

    def is_array(self, key: str) -> bool:
        return key in self._lengths

    def error(self, key: str, problem: str) -> ModelFileError:
        return ModelFileError(self.path, f"metadata key {shown(key)} {problem}")

    def _expect(self, key: str, expected: str, ok: Callable[[int, int | None], bool]) -> Any:
        vtype, etype = self._types[key]
        if not ok(vtype, etype):
            raise self.error(key, f"should be {expected}, found {_type_name(vtype, etype)}")
        return self._values[key]

    @overload
    def get_int(self, key: str, default: int, *, lo: int = 0, hi: int = MAX_COUNT) -> int: ...
    @overload
    def get_int(
        self, key: str, default: None = None, *, lo: int = 0, hi: int = MAX_COUNT
    ) -> int | None: ...
    def get_int(
        self, key: str, default: int | None = None, *, lo: int = 0, hi: int = MAX_COUNT
    ) -> int | None:
        """An integer of any width within ``lo`` … ``hi``."""
        if key not in self._types:
            return default
        value = int(self._expect(key, "an integer", lambda v, e: v in _INTEGERS))
        if not lo <= value <= hi:
            raise self.error(key, f"should be an integer in {lo}…{hi}, found {value}")
        return value

    @overload
    def get_str(self, key: str, default: str, *, max_chars: int | None = None) -> str: ...
    @overload
    def get_str(
        self, key: str, default: None = None, *, max_chars: int | None = None
    ) -> str | None: ...
    def get_str(
        self, key: str, default: str | None = None, *, max_chars: int | None = None
    ) -> str | None:
        """A string; with ``max_chars``, one of at most that many characters (for names
        that end up in messages)."""
        if key not in self._types:
            return default
        value = str(self._expect(key, "a string", lambda v, e: v == _STRING))
        if max_chars is not None and len(value) > max_chars:
            raise self.error(key, f"should be a name of at most {max_chars} characters, "
                                  f"found {len(value)}: {shown(value)}")
        return value

    def get_bool(self, key: str, default: bool) -> bool:
        """A bool (not an integer 0 or 1: llama.cpp refuses those too)."""
        if key not in self._types:
            return default
        return bool(self._expect(key, "a bool", lambda v, e: v == _BOOL))

    def get_str_list(self, key: str) -> list[str]:
        """An array of strings ([] when absent)."""
        if key not in self._types:
            return []
        return self._kept(key, self._expect(key, "an array of string", lambda v, e: e == _STRING))

    def get_int_list(self, key: str) -> list[int]:
        """An array of integers of any width ([] when absent)."""
        if key not in self._types:
            return []
        values = self._expect(key, "an array of integers", lambda v, e: e in _INTEGERS)
        return self._kept(key, values)

    def _kept(self, key: str, values: list[Any] | None) -> list[Any]:
        if values is None:  # walked over by the reader, see _SKIPPED_ARRAYS, MAX_KEPT_ARRAY
            raise self.error(key, f"is an array of {self._lengths[key]} items the reader skips")
        return list(values)


@dataclass
class TensorInfo:
    name: str
    shape: tuple[int, ...]
    ggml_type: int
    offset: int

    @property
    def n_elements(self) -> int:
        return math.prod(self.shape)


@dataclass
class GGUFHeader:
    path: Path
    version: int
    file_size: int
    metadata: Metadata
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

    def _length(self, what: str, limit: int) -> int:
        n = self.u64(what)
        if n > limit:
            raise ModelFileError(
                self.path,
                f"corrupt GGUF header: {what} at byte {self.pos - 8} announces {n} bytes "
                f"(at most {limit})",
            )
        self.need(n, what)
        return n

    def string(self, what: str, limit: int = MAX_STRING_BYTES) -> str:
        n = self._length(what, limit)
        raw = self.buf[self.pos : self.pos + n]
        self.pos += n
        return raw.decode("utf-8", errors="replace")

    def strings(self, count: int, what: str, keep: bool) -> list[str] | None:
        """``count`` strings (None when not ``keep``): the checks of ``string`` in a loop
        kept tight, since a vocabulary holds 10**5 of them."""
        buf, size, pos = self.buf, self.size, self.pos
        unpack = _U64.unpack_from
        out: list[str] = []
        for _ in range(count):
            if pos + 8 > size:
                break
            (n,) = unpack(buf, pos)
            if n > MAX_STRING_BYTES or pos + 8 + n > size:
                break
            pos += 8
            if keep:
                out.append(buf[pos : pos + n].decode("utf-8", errors="replace"))
            pos += n
        else:
            self.pos = pos
            return out if keep else None
        self.pos = pos
        self.string(what)  # the bad length: raises the message of a single string
        raise AssertionError("unreachable")


def _read_value(cur: _Cursor, vtype: int, key: str, meta: Metadata) -> None:
    what = shown(key)
    if vtype in _SCALARS:
        meta._add(key, vtype, None, cur.scalar(vtype, what), 0)
        return
    if vtype == _STRING:
        meta._add(key, vtype, None, cur.string(what), 0)
        return
    if vtype != _ARRAY:
        raise ModelFileError(cur.path, f"unknown GGUF value type {vtype} for key {what}")
    etype = cur.u32(what)
    count = cur.u64(what)
    meta._add(key, vtype, etype, _read_array(cur, etype, count, key, what), count)


def _read_array(cur: _Cursor, etype: int, count: int, key: str, what: str) -> Any:
    if etype in _SCALARS:
        size = _SCALARS[etype][1]
        cur.need(count * size, f"array {what} of {count} items")
        if key in _SKIPPED_ARRAYS or count > MAX_KEPT_ARRAY:
            cur.pos += count * size
            return None
        fmt = "<" + _SCALARS[etype][0][1] * count
        values = list(struct.unpack_from(fmt, cur.buf, cur.pos))
        cur.pos += count * size
        return values
    if etype == _STRING:
        # Each string takes at least its 8-byte length: reject absurd counts before looping.
        cur.need(count * 8, f"array {what} of {count} strings")
        return cur.strings(count, what, keep=key not in _SKIPPED_ARRAYS)
    kind = "nested array" if etype == _ARRAY else f"unknown array item type {etype}"
    raise ModelFileError(cur.path, f"unsupported {kind} in key {what}")


def read_header(path: str | Path) -> GGUFHeader:
    """Parse the metadata and tensor table of ``path``; raise ModelFileError if invalid.

    Only the header is read (the weights' pages are never touched), and the time and memory
    it takes are bounded by the header's real size whatever the header declares."""
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
    # A key costs at least 8 (length) + 4 (type) + 1 (value) bytes; a tensor entry at
    # least 8 (name length) + 4 (dimensions) + 4 (type) + 8 (offset).
    if n_kv * 13 + n_tensors * 24 > size - cur.pos:
        raise ModelFileError(
            path,
            f"corrupt GGUF header: announces {n_kv} keys and {n_tensors} tensors "
            f"in a file of {size} bytes",
        )
    header = GGUFHeader(path=path, version=version, file_size=size, metadata=Metadata(path))
    for _ in range(n_kv):
        key = cur.string("metadata key", MAX_KEY_BYTES)
        vtype = cur.u32(f"type of {shown(key)}")
        _read_value(cur, vtype, key, header.metadata)
    names: set[str] = set()
    for _ in range(n_tensors):
        tensor = _read_tensor(cur)
        if tensor.name in names:
            raise ModelFileError(path, f"duplicate tensor {shown(tensor.name)}")
        names.add(tensor.name)
        header.tensors.append(tensor)
    alignment = header.metadata.get_int("general.alignment", DEFAULT_ALIGNMENT, lo=1)
    if alignment & (alignment - 1):
        problem = f"should be a power of two, found {alignment}"
        raise header.metadata.error("general.alignment", problem)
    header.data_offset = (cur.pos + alignment - 1) // alignment * alignment
    _check_tensor_data(header)
    return header


def _read_tensor(cur: _Cursor) -> TensorInfo:
    at = cur.pos
    name = cur.string("tensor name", MAX_TENSOR_NAME_BYTES)
    what = f"tensor {shown(name)} (at byte {at})"
    n_dims = cur.u32(what)
    if n_dims > MAX_DIMS:
        raise ModelFileError(cur.path, f"corrupt {what}: {n_dims} dimensions (at most {MAX_DIMS})")
    shape = tuple(cur.u64(what) for _ in range(n_dims))
    # ggml keeps each dimension and the element count in signed 64-bit integers.
    if math.prod(shape) >= 2**63 or any(d >= 2**63 for d in shape):
        raise ModelFileError(cur.path, f"corrupt {what}: dimensions {list(shape)} overflow")
    ggml_type = cur.u32(what)
    if ggml_type > MAX_GGML_TYPE:
        raise ModelFileError(cur.path, f"corrupt {what}: unknown tensor type {ggml_type}")
    offset = cur.u64(what)
    return TensorInfo(name, shape, ggml_type, offset)


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

"""The GGUF mutation engine shared by the long fuzz run (fuzz_gguf.py) and the derandomized
Hypothesis test (tests/test_gguf_fuzz.py): valid seeds are walked into their structural
fields (``Seed``), one ``Mutation`` changes a byte, a field, a type or the length, and
``check_case`` runs the reader on the result (ModelFileError is the only acceptable
failure, with a short one-line message).
"""


from __future__ import annotations

import mmap
import os
import random
import struct
import sys
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from app.core.errors import ModelFileError
from app.core.gguf_info import ModelInfo, inspect_model

MAX_MESSAGE = 500  # characters of a ModelFileError's problem text
SAMPLED_ITEMS = 12  # string lengths of a long array taken as mutation targets

# ------------------------------------------------------------------ encoding

_FIXED = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<B",
          10: "<Q", 11: "<q", 12: "<d"}
STRING, ARRAY = 8, 9


def enc_str(text: str | bytes) -> bytes:
    raw = text.encode("utf-8") if isinstance(text, str) else text
    return struct.pack("<Q", len(raw)) + raw


def enc_value(vtype: int, value: object) -> bytes:
    """A GGUF value with its type: scalars, strings, and ``(etype, [items])`` arrays."""
    head = struct.pack("<I", vtype)
    if vtype == STRING:
        assert isinstance(value, str | bytes)
        return head + enc_str(value)
    if vtype == ARRAY:
        assert isinstance(value, tuple)
        etype, items = value
        body = b"".join(enc_value(etype, v)[4:] for v in items)
        return head + struct.pack("<IQ", etype, len(items)) + body
    return head + struct.pack(_FIXED[vtype], value)


# (label, type + value bytes) a key is re-typed to: every type, the extremes, the odd ones.
RETYPES: list[tuple[str, bytes]] = [
    ("string", enc_value(STRING, "x")),
    ("empty string", enc_value(STRING, "")),
    ("numeric string", enc_value(STRING, "4096")),
    ("long string", enc_value(STRING, "\x00\n\u2028é" * 200)),
    ("invalid utf-8", enc_value(STRING, b"\xff\xfe\x80")),
    ("u8 255", enc_value(0, 255)),
    ("i8 -1", enc_value(1, -1)),
    ("u16 65535", enc_value(2, 65535)),
    ("i16 -32768", enc_value(3, -32768)),
    ("u32 0", enc_value(4, 0)),
    ("u32 1", enc_value(4, 1)),
    ("u32 3", enc_value(4, 3)),
    ("u32 max", enc_value(4, 2**32 - 1)),
    ("i32 -1", enc_value(5, -1)),
    ("i32 min", enc_value(5, -(2**31))),
    ("u64 max", enc_value(10, 2**64 - 1)),
    ("i64 min", enc_value(11, -(2**63))),
    ("f32 inf", enc_value(6, float("inf"))),
    ("f32 -inf", enc_value(6, float("-inf"))),
    ("f32 nan", enc_value(6, float("nan"))),
    ("f32 0.5", enc_value(6, 0.5)),
    ("f32 0", enc_value(6, 0.0)),
    ("f64 1e308", enc_value(12, 1e308)),
    ("bool true", enc_value(7, 1)),
    ("bool byte 2", enc_value(7, 2)),
    ("array u32", enc_value(ARRAY, (4, [1, 2, 3]))),
    ("array u32 empty", enc_value(ARRAY, (4, []))),
    ("array i32 -1", enc_value(ARRAY, (5, [-1, 0]))),
    ("array f32 inf", enc_value(ARRAY, (6, [float("inf")]))),
    ("array bool", enc_value(ARRAY, (7, [1, 0]))),
    ("array u8 5000", enc_value(ARRAY, (0, [1] * 5000))),
    ("array string", enc_value(ARRAY, (STRING, ["a", "b"]))),
    ("array string empty", enc_value(ARRAY, (STRING, []))),
    ("nested array", struct.pack("<IIQ", ARRAY, ARRAY, 1) + struct.pack("<IQ", 4, 0)),
    ("array of type 13", struct.pack("<IIQ", ARRAY, 13, 0)),
    ("type 13", struct.pack("<I", 13) + bytes(8)),
    ("type max", struct.pack("<I", 2**32 - 1) + bytes(8)),
]

# Keys the app reads; "{arch}" is the seed's architecture. Re-typed or added first.
READ_KEYS = (
    "general.architecture", "general.alignment", "general.file_type", "general.name",
    "general.size_label", "{arch}.context_length", "{arch}.expert_count",
    "{arch}.expert_used_count", "{arch}.attention.head_count_kv", "{arch}.ssm.state_size",
    "tokenizer.ggml.tokens", "tokenizer.ggml.model", "tokenizer.ggml.pre",
    "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
    "tokenizer.ggml.add_bos_token", "tokenizer.ggml.add_eos_token", "tokenizer.chat_template",
    "tokenizer.ggml.merges", "tokenizer.ggml.scores",
)

# ------------------------------------------------------------------ layout of a valid seed


@dataclass(frozen=True)
class Field:
    """A number in the header: where, how many bytes, what it is."""

    offset: int
    size: int
    kind: str


@dataclass(frozen=True)
class KV:
    key: str
    start: int  # its key length
    type_at: int
    end: int


@dataclass
class Seed:
    """A valid GGUF header to mutate: its bytes (up to the tensor data) and layout."""

    name: str
    data: bytes
    file_size: int
    arch: str
    fields: list[Field] = field(default_factory=list)
    kvs: list[KV] = field(default_factory=list)
    kv_end: int = 0

    def retype_keys(self) -> list[str]:
        """Keys the app reads (present or not), then the seed's other keys."""
        read = [k.format(arch=self.arch) for k in READ_KEYS]
        return read + [kv.key for kv in self.kvs if kv.key not in read]


def _walk(buf: bytes | mmap.mmap, name: str, file_size: int) -> Seed:
    """Lay out a *valid* header (a plain walker, independent of the reader under test)."""
    pos = 24
    seed = Seed(name, b"", file_size, "")
    fields = seed.fields
    fields += [Field(4, 4, "version"), Field(8, 8, "tensor count"), Field(16, 8, "key count")]
    n_tensors, n_kv = struct.unpack_from("<QQ", buf, 8)

    def string(kind: str, record: bool = True) -> bytes:
        nonlocal pos
        (n,) = struct.unpack_from("<Q", buf, pos)
        if record:
            fields.append(Field(pos, 8, kind))
        pos += 8 + n
        return bytes(buf[pos - n : pos])

    def number(fmt: str, kind: str, record: bool = True) -> int:
        nonlocal pos
        size = struct.calcsize(fmt)
        if record:
            fields.append(Field(pos, size, kind))
        (value,) = struct.unpack_from(fmt, buf, pos)
        pos += size
        return int(value)

    for _ in range(n_kv):
        start = pos
        key = string("key length").decode("utf-8", "replace")
        type_at = pos
        vtype = number("<I", "value type")
        if vtype == STRING:
            value = string("string length")
            if key == "general.architecture":
                seed.arch = value.decode("utf-8", "replace")
        elif vtype == ARRAY:
            etype = number("<I", "array item type")
            count = number("<Q", "array count")
            step = max(1, count // SAMPLED_ITEMS)
            for i in range(count):
                record = i % step == 0 or i == count - 1
                if etype == STRING:
                    string("array string length", record)
                else:
                    pos += struct.calcsize(_FIXED[etype])
        else:
            number(_FIXED[vtype], "scalar value")
        seed.kvs.append(KV(key, start, type_at, pos))
    seed.kv_end = pos
    for _ in range(n_tensors):
        string("tensor name length")
        n_dims = number("<I", "dimension count")
        for _ in range(n_dims):
            number("<Q", "dimension")
        number("<I", "tensor type")
        number("<Q", "tensor offset")
    alignment = 32
    for kv in seed.kvs:
        if kv.key == "general.alignment":
            alignment = struct.unpack_from("<I", buf, kv.type_at + 4)[0]
    data_offset = -(-pos // alignment) * alignment
    seed.data = bytes(buf[:data_offset])
    return seed


def load_seed(path: str | Path, name: str | None = None) -> Seed:
    """The seed of a valid GGUF file; reads its header region only."""
    p = Path(path)
    with p.open("rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        return _walk(buf, name or p.name, p.stat().st_size)


# ------------------------------------------------------------------ mutations


def _extremes(f: Field, seed: Seed) -> list[int]:
    orig = int.from_bytes(seed.data[f.offset : f.offset + f.size], "little")
    return [0, 1, orig + 1, max(orig - 1, 0), orig * 2, orig + 8, orig ^ 0x80,
            len(seed.data) - f.offset, seed.file_size - f.offset, seed.file_size,
            2**31 - 1, 2**31, 2**32 - 1, 2**63 - 1, 2**63, 2**64 - 1, 4097, 257, 5, 9]


KINDS = ("flip", "field flip", "field", "retype", "truncate")


@dataclass(frozen=True)
class Mutation:
    """One change to a seed, as plain integers (so Hypothesis can shrink it): ``where``
    picks the byte, field or key, ``value`` the mask, extreme value or new type."""

    kind: str
    where: int
    value: int

    def apply(self, seed: Seed) -> tuple[bytes, int]:
        """The mutated header and the size of the file to make of it."""
        data = bytearray(seed.data)
        grown = seed.file_size
        if self.kind == "flip":
            data[self.where % len(data)] ^= self.value % 255 + 1
        elif self.kind == "field flip":
            f = seed.fields[self.where % len(seed.fields)]
            data[f.offset + self.value % f.size] ^= (self.value >> 8) % 255 + 1
        elif self.kind == "field":
            f = seed.fields[self.where % len(seed.fields)]
            options = _extremes(f, seed)
            number = options[self.value % len(options)] % 2 ** (8 * f.size)
            data[f.offset : f.offset + f.size] = number.to_bytes(f.size, "little")
        elif self.kind == "retype":
            keys = seed.retype_keys()
            key = keys[self.where % len(keys)]
            encoded = RETYPES[self.value % len(RETYPES)][1]
            kv = next((kv for kv in seed.kvs if kv.key == key), None)
            if kv is not None:
                data[kv.type_at : kv.end] = encoded
            else:
                data[seed.kv_end : seed.kv_end] = enc_str(key) + encoded
                struct.pack_into("<Q", data, 16, len(seed.kvs) + 1)
            grown += len(data) - len(seed.data)
        elif self.kind == "truncate":
            cut = self.where % (len(data) + 1)
            return bytes(data[:cut]), cut
        else:
            raise ValueError(f"unknown mutation kind {self.kind!r}")
        return bytes(data), grown

    def describe(self, seed: Seed) -> str:
        text = f"{self.kind} where={self.where} value={self.value}"
        if self.kind in ("field", "field flip"):
            f = seed.fields[self.where % len(seed.fields)]
            text += f" ({f.kind} at byte {f.offset})"
        elif self.kind == "retype":
            keys = seed.retype_keys()
            label = RETYPES[self.value % len(RETYPES)][0]
            text += f" ({keys[self.where % len(keys)]} -> {label})"
        return text


def random_mutation(seed: Seed, rng: random.Random) -> Mutation:
    """A mutation drawn with ``rng``, biased to the fields and keys the reader trusts."""
    kind = rng.choices(KINDS, weights=(20, 20, 30, 25, 5))[0]
    if kind == "retype" and rng.random() < 0.7:
        return Mutation(kind, rng.randrange(len(READ_KEYS)), rng.randrange(2**32))
    return Mutation(kind, rng.randrange(2**32), rng.randrange(2**32))


def write_case(path: Path, data: bytes, file_size: int) -> None:
    """``data`` as the file ``path`` of ``file_size`` bytes (a sparse zero tail)."""
    path.unlink(missing_ok=True)  # truncating the last case's file in place costs ms
    with path.open("wb") as fh:
        fh.write(data)
        if file_size > len(data):
            fh.truncate(file_size)


_CLEAR_REFS, _STATUS = Path("/proc/self/clear_refs"), Path("/proc/self/status")


def _status_kb(text: str, name: str) -> int:
    line = next(ln for ln in text.splitlines() if ln.startswith(name + ":"))
    return int(line.split()[1])


@contextmanager
def peak_growth() -> Iterator[list[int]]:
    """How far the peak memory rose inside the block, in bytes (the list's item on exit).

    On Linux the resident-set high-water mark is reset through /proc/self/clear_refs (cheap,
    and it counts every allocation, mapped pages too); elsewhere tracemalloc's peak, which
    slows allocation-heavy code tenfold."""
    out: list[int] = []
    try:
        _CLEAR_REFS.write_text("5")
        before = _status_kb(_STATUS.read_text(), "VmRSS")
    except OSError:
        tracemalloc.start()
        try:
            yield out
            out.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
        return
    yield out
    out.append(max(0, _status_kb(_STATUS.read_text(), "VmHWM") - before) * 1024)


class Crash(AssertionError):
    """The reader failed otherwise than with a short, one-line ModelFileError."""


def check_case(path: Path) -> ModelInfo | ModelFileError:
    """Inspect ``path``: the ModelInfo, or the ModelFileError; anything else is a Crash."""
    try:
        return inspect_model(path)
    except ModelFileError as err:
        if len(err.problem) > MAX_MESSAGE or "\n" in str(err) or "\r" in str(err):
            raise Crash(f"message of {len(err.problem)} chars: {str(err)[:300]!r}") from err
        return err
    except Exception as exc:  # the very thing this hunts for
        raise Crash(f"{type(exc).__name__}: {str(exc)[:300]}") from exc


# ------------------------------------------------------------------ seeds


def every_type_gguf(path: Path) -> Path:
    """A small GGUF with a key of every value type, arrays of each, an architecture the app
    does not know with state-space keys and per-layer KV heads (the hybrid test)."""
    import numpy as np
    from gguf import GGUFValueType as T
    from gguf import GGUFWriter

    if path.is_file():
        return path
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    w = GGUFWriter(tmp, "fuzzarch")
    w.add_custom_alignment(64)
    for vtype, value in ((T.UINT8, 7), (T.INT8, -7), (T.UINT16, 7), (T.INT16, -7),
                         (T.UINT32, 7), (T.INT32, -7), (T.FLOAT32, 0.5), (T.BOOL, True),
                         (T.STRING, "seven"), (T.UINT64, 7), (T.INT64, -7), (T.FLOAT64, 0.25)):
        w.add_key_value(f"fuzz.{vtype.name.lower()}", value, vtype)
        items = [value, value] if vtype != T.STRING else ["a", "b"]
        w.add_key_value(f"fuzz.array.{vtype.name.lower()}", items, T.ARRAY, sub_type=vtype)
    w.add_key_value("fuzzarch.context_length", 4096, T.UINT32)
    w.add_key_value("fuzzarch.expert_count", 4, T.UINT32)
    w.add_key_value("fuzzarch.expert_used_count", 2, T.UINT32)
    w.add_key_value("fuzzarch.ssm.state_size", 16, T.UINT32)
    w.add_key_value("fuzzarch.attention.head_count_kv", [0, 4], T.ARRAY, sub_type=T.UINT32)
    w.add_key_value("general.file_type", 1, T.UINT32)
    w.add_key_value("tokenizer.ggml.model", "gpt2", T.STRING)
    w.add_key_value("tokenizer.ggml.tokens", ["<s>", "</s>", "a", "b"], T.ARRAY,
                    sub_type=T.STRING)
    w.add_key_value("tokenizer.ggml.merges", ["a b"], T.ARRAY, sub_type=T.STRING)
    w.add_key_value("tokenizer.ggml.bos_token_id", 0, T.UINT32)
    w.add_key_value("tokenizer.ggml.add_bos_token", True, T.BOOL)
    w.add_key_value("tokenizer.chat_template", "{{ messages }}", T.STRING)
    w.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    w.add_tensor("blk.0.ssm_a", np.zeros((3, 2, 2), dtype=np.float16))
    w.add_tensor("output_norm.weight", np.ones(8, dtype=np.float32))
    try:
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
    finally:
        w.close()
    os.replace(tmp, path)
    return path


def tiny_paths(cache_dir: Path) -> list[Path]:
    """The tiny generated models with their small synthetic tokenizer, and every_type."""
    tests = Path(__file__).resolve().parents[1] / "tests"
    if str(tests) not in sys.path:
        sys.path.insert(0, str(tests))
    import tiny_models

    cache_dir.mkdir(parents=True, exist_ok=True)
    return [tiny_models.dense_llama(cache_dir), tiny_models.moe_llama(cache_dir),
            tiny_models.mamba(cache_dir), every_type_gguf(cache_dir / "fuzz-every-type.gguf")]


def installed_paths() -> list[Path]:
    from app.core.models.catalog import names
    from app.core.models.library import installed_path

    return [p for p in (installed_path(n) for n in names()) if p is not None]

"""Malformed GGUF headers a fuzzing user reported: each is a ModelFileError naming the key
(or a short message, in bounded memory), and one line on stderr from the command line."""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from gguf import GGUFValueType as T
from gguf import GGUFWriter

from app.core.errors import ModelFileError
from app.core.gguf_info import inspect_model
from benchmarks.gguf_mutations import load_seed, peak_growth, write_case

ROOT = Path(__file__).resolve().parents[1]
INF = float("inf")

# key -> (value, type, array item type) of a small valid llama file.
BASE: dict[str, tuple[Any, T, T | None]] = {
    "llama.context_length": (2048, T.UINT32, None),
    "llama.expert_count": (8, T.UINT32, None),
    "llama.expert_used_count": (2, T.UINT32, None),
    "general.file_type": (0, T.UINT32, None),
    "tokenizer.ggml.model": ("gpt2", T.STRING, None),
    "tokenizer.ggml.tokens": (["a", "b", "c"], T.ARRAY, T.STRING),
}

# The fuzzing user's 14 wrong-typed values: id -> (key, value, type, array item type).
WRONG_TYPES: dict[str, tuple[str, Any, T, T | None]] = {
    "context_length-string": ("llama.context_length", "big", T.STRING, None),
    "tokens-u32-array": ("tokenizer.ggml.tokens", [1, 2, 3], T.ARRAY, T.UINT32),
    "alignment-string": ("general.alignment", "x", T.STRING, None),
    "alignment-inf": ("general.alignment", INF, T.FLOAT32, None),
    "alignment-list": ("general.alignment", [32], T.ARRAY, T.UINT32),
    "alignment-0.5": ("general.alignment", 0.5, T.FLOAT32, None),
    "alignment-0": ("general.alignment", 0, T.UINT32, None),
    "file_type-array": ("general.file_type", [1, 2], T.ARRAY, T.UINT32),
    "expert_count-string": ("llama.expert_count", "8", T.STRING, None),
    "expert_count-inf": ("llama.expert_count", INF, T.FLOAT32, None),
    "expert_count-list": ("llama.expert_count", [8], T.ARRAY, T.UINT32),
    "expert_used_count-string": ("llama.expert_used_count", "2", T.STRING, None),
    "expert_used_count-inf": ("llama.expert_used_count", INF, T.FLOAT32, None),
    "expert_used_count-list": ("llama.expert_used_count", [2], T.ARRAY, T.UINT32),
}


def write_gguf(path: Path, override: tuple[str, Any, T, T | None] | None = None,
               first_tensor_floats: int = 12) -> Path:
    """A small valid llama GGUF, with one key replaced or added by ``override``."""
    kvs = dict(BASE)
    if override is not None:
        key, value, vtype, sub = override
        kvs[key] = (value, vtype, sub)
    w = GGUFWriter(path, "llama")
    for key, (value, vtype, sub) in kvs.items():
        w.add_key_value(key, value, vtype, sub_type=sub)
    w.add_tensor("token_embd.weight", np.ones(first_tensor_floats, dtype=np.float32))
    w.add_tensor("output.weight", np.zeros((4, 8), dtype=np.float32))
    w.add_tensor("output_norm.weight", np.ones(8, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def set_n_dims(data: bytearray, tensor: str, n_dims: int) -> None:
    """Overwrite the dimension count of ``tensor``'s entry in the tensor table."""
    name = tensor.encode()
    at = data.index(struct.pack("<Q", len(name)) + name) + 8 + len(name)
    struct.pack_into("<I", data, at, n_dims)


def inspect_bounded(path: Path) -> tuple[ModelFileError, int]:
    """The ModelFileError of inspecting ``path`` and how far the peak memory rose."""
    with peak_growth() as peak, pytest.raises(ModelFileError) as err:
        inspect_model(path)
    return err.value, peak[0]


def test_the_base_file_is_valid(tmp_path: Path) -> None:
    info = inspect_model(write_gguf(tmp_path / "good.gguf"))
    assert (info.context_length, info.expert_count, info.n_vocab) == (2048, 8, 3)


@pytest.mark.parametrize("case", list(WRONG_TYPES))
def test_a_wrong_typed_key_is_a_model_file_error_naming_it(tmp_path: Path, case: str) -> None:
    key = WRONG_TYPES[case][0]
    path = write_gguf(tmp_path / f"{case}.gguf", WRONG_TYPES[case])
    with pytest.raises(ModelFileError) as err:
        inspect_model(path)
    assert key in err.value.problem and str(path) in str(err.value)


def test_a_changed_dimension_count_is_a_short_error_in_bounded_memory(tmp_path: Path) -> None:
    # output.weight's second dimension is then read as its type, and its data offset
    # (16 MiB on) as the next tensor's name length: inside the file, so it was read in full.
    good = write_gguf(tmp_path / "good.gguf", first_tensor_floats=2**22)
    data = bytearray(good.read_bytes())
    set_n_dims(data, "output.weight", 1)
    bad = tmp_path / "n_dims.gguf"
    bad.write_bytes(data)
    err, peak = inspect_bounded(bad)
    assert len(err.problem) < 500 and "\n" not in str(err)
    assert peak < 8 * 2**20 < len(data) // 2  # the garbage name was not read


def test_smollm2_with_one_changed_dimension_count(tmp_path: Path, smollm2_path: Path) -> None:
    """The reported case: blk.9.attn_v.weight 2 -> 1 dimensions in the 98 MB model (its
    header only, on a sparse file of the model's size)."""
    seed = load_seed(smollm2_path)
    data = bytearray(seed.data)
    set_n_dims(data, "blk.9.attn_v.weight", 1)
    bad = tmp_path / "smollm2-n_dims.gguf"
    write_case(bad, bytes(data), seed.file_size)
    err, peak = inspect_bounded(bad)
    assert len(err.problem) < 500 and "\n" not in str(err)
    assert peak < 64 * 2**20


@pytest.mark.parametrize(
    "command, case",
    [
        (["inspect", "{bad}"], "context_length-string"),
        (["inspect", "{bad}", "--json"], "tokens-u32-array"),
        (["inspect", "{good}", "--draft", "{bad}"], "expert_used_count-list"),
        (["run", "--model", "{bad}", "--track", "baseline", "--prompt", "hi"], "alignment-inf"),
        (["compare", "--model", "{bad}", "--tracks", "baseline,lookup", "--prompt", "hi"],
         "file_type-array"),
    ],
)
def test_the_cli_prints_one_line_and_exits_1(tmp_path: Path, command: list[str],
                                             case: str) -> None:
    bad = write_gguf(tmp_path / f"{case}.gguf", WRONG_TYPES[case])
    good = write_gguf(tmp_path / "good.gguf")
    args = [a.format(bad=bad, good=good) for a in command]
    proc = subprocess.run([sys.executable, "-m", "app", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and WRONG_TYPES[case][0] in lines[0] and str(bad) in lines[0]


def test_the_cli_on_a_changed_dimension_count(tmp_path: Path) -> None:
    good = write_gguf(tmp_path / "good.gguf", first_tensor_floats=2**19)
    data = bytearray(good.read_bytes())
    set_n_dims(data, "output.weight", 1)
    bad = tmp_path / "n_dims.gguf"
    bad.write_bytes(data)
    proc = subprocess.run([sys.executable, "-m", "app", "inspect", str(bad)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and len(proc.stderr) < 1000

"""Synthetic Mixture-of-Experts models: llama-architecture GGUF files with random weights.

No real small MoE model can be installed here, so DecodeLab writes one to measure what
Track 2 (fewer active experts) buys. Random weights: the text is meaningless, the speed is
real (the same shapes, hence the same bytes read per token, as a trained model of that
shape). Guarantees of :func:`write_synthetic_moe`:

- The bytes depend only on the recipe (``SyntheticMoE``: shape and seed), the
  ``tokenizer.*`` keys of the source (not its name) and the ``gguf`` package's writer: the
  same inputs write the same file, so its SHA-256 can be pinned. The weights come from
  PCG64's raw 64-bit stream (stable across numpy versions, unlike its distributions), made
  uniform by this module's own arithmetic, tensor after tensor in a fixed order.
- Every control token (end of sequence included) gets an output row of zeros: its logit is 0
  while the best of the others is well above it, so greedy decoding never stops early and
  every run reaches its token budget.
- Norms and the router (``ffn_gate_inp``) are F32, every other matrix F16; one tensor at a
  time is in memory. The file says what it is: ``general.name`` and ``general.description``
  name the random weights.
- ``progress(bytes written, total)`` is called after every tensor; whatever it raises stops
  the write (the caller removes the partial file).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from app.core.errors import DecodeLabError
from app.core.gguf_info import RANDOM_WEIGHTS_KEY
from app.core.models.catalog import SyntheticMoE

GENERATOR = "decodelab-synthetic-moe-1"
WriteProgress = Callable[[int, int], None]

_CHUNK = 1 << 22  # random values made at a time
_CONTROL = 3  # llama.cpp's LLAMA_TOKEN_TYPE_CONTROL
# (name, numpy shape, F16?, init): init is a standard deviation, "ones" or "output".
_Tensor = tuple[str, tuple[int, ...], bool, float | str]


def tensors(recipe: SyntheticMoE, n_vocab: int) -> list[_Tensor]:
    """The tensors of ``recipe`` in file order, as llama.cpp's llama loader names them."""
    r = recipe
    hd = r.n_embd // r.n_head
    w, wf = r.n_embd**-0.5, r.n_ff**-0.5
    # Untied output: with a tied one each token's own embedding wins the argmax and the
    # model repeats its input.
    out: list[_Tensor] = [("token_embd.weight", (n_vocab, r.n_embd), True, 1.0),
                          ("output_norm.weight", (r.n_embd,), False, "ones"),
                          ("output.weight", (n_vocab, r.n_embd), True, "output")]
    exps = (r.n_expert, r.n_ff, r.n_embd)
    for i in range(r.n_layer):
        b = f"blk.{i}."
        out += [(b + "attn_norm.weight", (r.n_embd,), False, "ones"),
                (b + "attn_q.weight", (r.n_head * hd, r.n_embd), True, w),
                (b + "attn_k.weight", (r.n_head_kv * hd, r.n_embd), True, w),
                (b + "attn_v.weight", (r.n_head_kv * hd, r.n_embd), True, w),
                (b + "attn_output.weight", (r.n_embd, r.n_head * hd), True, w),
                (b + "ffn_norm.weight", (r.n_embd,), False, "ones"),
                (b + "ffn_gate_inp.weight", (r.n_expert, r.n_embd), False, w),
                (b + "ffn_gate_exps.weight", exps, True, w),
                (b + "ffn_up_exps.weight", exps, True, w),
                (b + "ffn_down_exps.weight", (r.n_expert, r.n_embd, r.n_ff), True, wf)]
    return out


def _hparams(recipe: SyntheticMoE, n_vocab: int) -> list[tuple[str, Any, str]]:
    r = recipe
    return [("vocab_size", n_vocab, "u32"), ("context_length", r.n_ctx_train, "u32"),
            ("embedding_length", r.n_embd, "u32"), ("block_count", r.n_layer, "u32"),
            ("feed_forward_length", r.n_ff, "u32"), ("attention.head_count", r.n_head, "u32"),
            ("attention.head_count_kv", r.n_head_kv, "u32"),
            ("attention.layer_norm_rms_epsilon", 1e-5, "f32"),
            ("rope.dimension_count", r.n_embd // r.n_head, "u32"),
            ("rope.freq_base", 10000.0, "f32"), ("expert_count", r.n_expert, "u32"),
            ("expert_used_count", r.n_expert_used, "u32")]


def _uniform(bits: np.random.PCG64, shape: tuple[int, ...], std: float,
             dtype: type[np.floating[Any]]) -> np.ndarray[Any, Any]:
    """Values uniform in [-std·√3, std·√3) (standard deviation ``std``) from the top 24 bits
    of each raw PCG64 output."""
    out = np.empty(shape, dtype=dtype)
    flat = out.reshape(-1)
    half = np.float32(std * math.sqrt(3.0))
    step = np.float32(2.0 * float(half) / 2**24)
    for start in range(0, flat.size, _CHUNK):
        n = min(_CHUNK, flat.size - start)
        raw: np.ndarray[Any, Any] = np.asarray(bits.random_raw(n), dtype=np.uint64)
        values = (raw >> np.uint64(40)).astype(np.float32)
        values *= step
        values -= half
        flat[start : start + n] = values
    return out


def _tokenizer(gguf: Any, source: Path) -> list[tuple[str, Any, Any, Any]]:
    """Every ``tokenizer.*`` key of ``source`` with its value and GGUF types, in file order."""
    try:
        reader = gguf.GGUFReader(source)
    except (OSError, ValueError) as exc:
        raise DecodeLabError(f"{source}: cannot read its tokenizer ({exc})") from exc
    keys = []
    for key, field in reader.fields.items():
        if key.startswith("tokenizer."):
            sub = field.types[1] if len(field.types) > 1 else None
            keys.append((key, field.contents(), field.types[0], sub))
    if not any(key == "tokenizer.ggml.tokens" for key, *_ in keys):
        raise DecodeLabError(f"{source}: has no tokenizer to borrow")
    return keys


def write_synthetic_moe(path: Path, tokenizer_source: Path, recipe: SyntheticMoE,
                        progress: WriteProgress | None = None) -> dict[str, str]:
    """Write the model of ``recipe`` to ``path`` with the tokenizer of ``tokenizer_source``
    (see the module guarantees); returns what wrote it: {"generator", "gguf" version}.
    Raises DecodeLabError (one line) when gguf is missing or the source has no tokenizer."""
    try:
        import gguf
    except ImportError as exc:
        raise DecodeLabError(f"{path.name}: writing it needs the gguf package "
                             "(pip install gguf)") from exc
    if recipe.n_embd % recipe.n_head or not 0 < recipe.n_expert_used <= recipe.n_expert:
        raise DecodeLabError(f"{path.name}: inconsistent recipe {recipe}")
    tok = _tokenizer(gguf, tokenizer_source)
    values = dict((key, value) for key, value, *_ in tok)
    n_vocab = len(values["tokenizer.ggml.tokens"])
    types = values.get("tokenizer.ggml.token_type") or []
    silent = {i for i, t in enumerate(types) if t == _CONTROL}
    if isinstance(values.get("tokenizer.ggml.eos_token_id"), int):
        silent.add(values["tokenizer.ggml.eos_token_id"])
    plan = tensors(recipe, n_vocab)
    kinds = {"u32": gguf.GGUFValueType.UINT32, "f32": gguf.GGUFValueType.FLOAT32}
    writer = gguf.GGUFWriter(path, "llama")
    try:
        writer.add_name(f"DecodeLab synthetic MoE {recipe.n_expert}x (random weights)")
        writer.add_description("RANDOM WEIGHTS: for speed measurements only, its text is "
                               "meaningless (the tokenizer is borrowed from a real model)")
        writer.add_file_type(1)  # LLAMA_FTYPE_MOSTLY_F16
        writer.add_string(RANDOM_WEIGHTS_KEY, GENERATOR)
        writer.add_uint32("decodelab.synthetic.seed", recipe.seed)
        for key, value, kind in _hparams(recipe, n_vocab):
            writer.add_key_value(f"llama.{key}", value, kinds[kind])
        for key, value, vtype, sub in tok:
            writer.add_key_value(key, value, vtype, sub_type=sub)
        total = 0
        for name, shape, half, _ in plan:
            nbytes = math.prod(shape) * (2 if half else 4)
            writer.add_tensor_info(name, shape, np.dtype(np.float16 if half else np.float32),
                                   nbytes)
            total += nbytes
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        bits, done = np.random.PCG64(recipe.seed), 0
        for _name, shape, half, init in plan:
            dtype = np.float16 if half else np.float32
            if init == "ones":
                array = np.ones(shape, dtype=dtype)
            else:
                std = 0.5 if init == "output" else float(init)
                array = _uniform(bits, shape, std, dtype)
                if init == "output":
                    array[sorted(silent)] = 0
            writer.write_tensor_data(array)
            done += array.nbytes
            if progress is not None:
                progress(done, total)
    finally:
        writer.close()
    return {"generator": GENERATOR, "gguf": _version("gguf")}


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "?"

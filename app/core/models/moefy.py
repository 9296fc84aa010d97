"""MoEfication: a real dense model's feed-forward layers split into experts (Zhang et al.,
2022), so that Track 2 (fewer active experts) can be measured on a model that writes text.

Each FFN layer's hidden neurons are split into ``n_shared`` always-active units (one shared
expert) and ``n_expert`` routed experts of equal size, grouped by co-activation on
calibration text; each layer's router is a least-squares fit of every expert's output norm
on the layer's input. The file is written for llama.cpp's ``deepseek`` architecture because
of how its graph gates (``build_moe_ffn`` in llama-graph.cpp, checked in llama.cpp as
vendored by llama-cpp-python 0.3.36):

- weights = softmax over *all* experts' router logits, not renormalised over the selected
  ones (``norm_w`` false), then multiplied by ``<arch>.expert_weights_scale`` and by each
  selected expert's output. The ``llama`` architecture renormalises the top-k weights to
  sum to 1 (``norm_w`` true: k experts' outputs would be averaged, each scaled by 1/k,
  whatever k the user picks); ``qwen2moe`` multiplies
  its shared expert by sigmoid(ffn_gate_inp_shexp · x), which can be neither 1 nor
  switched off (and silu(g)/g is NaN at g = 0); ``deepseek`` adds its shared expert
  ungated and reads the scale from the file.
- The router rows are scaled so that logits differ by at most ``router_spread`` (1e-3):
  every weight is then 1/E·(1 ± 1e-3), times the scale E ≈ 1, so an expert's output is
  added as the dense layer adds it, while the ranking of the logits, which picks the top k,
  is the fitted router's. With all experts active the layer is the dense one up to 1e-3 of
  each expert's output (and the down projection's requantization); with fewer, the
  unselected experts' neurons are dropped, which is what Track 2 trades for speed.
- ``deepseek`` uses the "normal" RoPE (pairs of consecutive head values); a ``qwen2``
  source uses NeoX's (pairs i, i + d/2): its query and key rows (and biases) are permuted
  within each head so that both rotate the same pairs with the same frequencies, which
  leaves every attention score unchanged.

Guarantees of :func:`write_moefied`: the bytes depend only on the source file, the recipe,
the calibration text and the numpy/gguf versions (deterministic clustering: stable sorts,
no random numbers); every tensor that is not an FFN weight is the source's, byte for byte;
the gate and up rows keep their quantized bytes (rows are split, never requantized); the
down projections are requantized to Q8_0 by gguf's own quantizer (recipe ``down``: or F16;
F32 if the source's are F32, so a float model splits exactly), since their quantization
blocks run across neurons. The hidden states come from a numpy forward pass of the dense
model over the calibration text (about two minutes on 2 cores for the 0.5B).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
from collections.abc import Callable
from dataclasses import asdict
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from app.core.errors import DecodeLabError
from app.core.models.catalog import Moefied
from app.core.models.moefy_plan import (
    Array,
    DenseSource,
    LayerPlan,
    plan_model,
    tokenize_calibration,
)

GENERATOR = "decodelab-moefy-1"
ARCH = "deepseek"
WriteProgress = Callable[[int, int], None]

_F32 = 0  # GGMLQuantizationType.F32
_Q8_BLOCK = 32


def calibration_path(name: str) -> Path:
    """A calibration text of resources/calibration (``DECODELAB_RESOURCES`` overrides, a
    frozen app keeps them in its bundle): the same place app/ui/resources.py looks."""
    override = os.environ.get("DECODELAB_RESOURCES")
    bundle = getattr(sys, "_MEIPASS", None)
    root = (Path(override) if override else Path(bundle) / "resources" if bundle
            else Path(__file__).resolve().parents[3] / "resources")
    return root / "calibration" / name


# ---------------------------------------------------------------- the file


def _rope_rows(src: DenseSource, n_heads: int) -> Array | None:
    """Row order turning a NeoX-RoPE projection into a normal-RoPE one (None: keep)."""
    if not src.neox:
        return None
    half = src.head_dim // 2
    within = np.stack([np.arange(half), np.arange(half) + half], axis=1).reshape(-1)
    return (np.arange(n_heads)[:, None] * src.head_dim + within[None]).reshape(-1)


# A tensor to write: (name, numpy byte/value shape, numpy dtype, ggml type or None, make)
_Plan = tuple[str, tuple[int, ...], Any, Any, Callable[[], Array]]


def _tensors(src: DenseSource, plans: list[LayerPlan | None], recipe: Moefied) -> list[_Plan]:
    out: list[_Plan] = []
    used: set[str] = set()

    def raw(name: str, new: str | None = None, rows: Array | None = None) -> None:
        used.add(name)
        t = src.tensors[name]
        data = t.data
        shape = tuple(data.shape) if rows is None else (len(rows), *data.shape[1:])
        kind = None if t.tensor_type == _F32 else t.tensor_type
        out.append((new or name, shape, data.dtype, kind,
                    lambda: np.ascontiguousarray(data if rows is None else data[rows])))

    def take(name: str, new: str, rows: Array) -> None:  # quantized rows, maybe stacked (3-D)
        used.add(name)
        t = src.tensors[name]
        data = t.data
        kind = None if t.tensor_type == _F32 else t.tensor_type
        out.append((new, (*rows.shape, *data.shape[1:]), data.dtype, kind,
                    lambda: np.ascontiguousarray(data[rows])))

    def down(name: str, new: str, cols: Array) -> None:
        used.add(name)
        exact = src.tensors[name].tensor_type == _F32
        q8 = not exact and recipe.down == "Q8_0" and cols.shape[-1] % _Q8_BLOCK == 0
        shape: tuple[int, ...] = (*cols.shape[:-1], src.n_embd, cols.shape[-1])
        dtype = np.dtype(np.uint8 if q8 else np.float32 if exact else np.float16)
        if q8:  # 32 values in 34 bytes (an F16 scale, 32 int8)
            shape = (*shape[:-1], shape[-1] // _Q8_BLOCK * (_Q8_BLOCK + 2))

        def make() -> Array:
            values = np.moveaxis(src.weight(name)[:, cols], 0, -2)
            if q8:
                return np.ascontiguousarray(src.gguf.quants.quantize(
                    np.ascontiguousarray(values), src.gguf.GGMLQuantizationType.Q8_0))
            return np.ascontiguousarray(values.astype(dtype))
        out.append((new, shape, dtype, src.gguf.GGMLQuantizationType.Q8_0 if q8 else None,
                    make))

    for name in ("token_embd.weight", "output_norm.weight", "output.weight"):
        if name in src.tensors:
            raw(name)
    q_rows, k_rows = _rope_rows(src, src.n_head), _rope_rows(src, src.n_head_kv)
    for layer, plan in enumerate(plans):
        b = f"blk.{layer}."
        raw(b + "attn_norm.weight")
        for part, rows in (("q", q_rows), ("k", k_rows), ("v", None)):
            for kind in ("weight", "bias"):
                if f"{b}attn_{part}.{kind}" in src.tensors:
                    raw(f"{b}attn_{part}.{kind}", rows=rows)
        raw(b + "attn_output.weight")
        raw(b + "ffn_norm.weight")
        if plan is None:
            for part in ("gate", "up", "down"):
                raw(f"{b}ffn_{part}.weight")
            continue
        router: Array = plan.router
        out.append((b + "ffn_gate_inp.weight", router.shape, np.dtype(np.float32), None,
                    lambda r=router: r))  # type: ignore[misc]
        take(b + "ffn_gate.weight", b + "ffn_gate_exps.weight", plan.experts)
        take(b + "ffn_up.weight", b + "ffn_up_exps.weight", plan.experts)
        down(b + "ffn_down.weight", b + "ffn_down_exps.weight", plan.experts)
        take(b + "ffn_gate.weight", b + "ffn_gate_shexp.weight", plan.shared)
        take(b + "ffn_up.weight", b + "ffn_up_shexp.weight", plan.shared)
        down(b + "ffn_down.weight", b + "ffn_down_shexp.weight", plan.shared)
    # A tensor the deepseek graph would not read (rope_freqs, another norm…) would be lost.
    if unknown := sorted(set(src.tensors) - used):
        raise DecodeLabError(f"{src.path.name}: cannot carry {unknown[0]} into an MoE")
    return out


def n_steps(src: DenseSource, recipe: Moefied) -> int:
    """What ``progress`` counts to: layers planned, then tensors written (each MoE layer
    turns 3 FFN tensors into 7: router, 3 expert stacks, 3 shared)."""
    return src.n_layer + len(src.tensors) + 4 * (src.n_layer - recipe.dense_lead)


def _hparams(src: DenseSource, recipe: Moefied, gguf: Any) -> list[tuple[str, Any, Any]]:
    u32, f32 = gguf.GGUFValueType.UINT32, gguf.GGUFValueType.FLOAT32
    size = src.n_ff // (recipe.n_expert + recipe.n_shared)
    n_vocab = len(src.value("tokenizer.ggml.tokens") or [])
    return [("vocab_size", n_vocab, u32),
            ("context_length", int(src.hp("context_length")), u32),
            ("embedding_length", src.n_embd, u32), ("block_count", src.n_layer, u32),
            ("feed_forward_length", src.n_ff, u32), ("attention.head_count", src.n_head, u32),
            ("attention.head_count_kv", src.n_head_kv, u32),
            ("attention.layer_norm_rms_epsilon", src.eps, f32),
            ("rope.dimension_count", src.head_dim, u32), ("rope.freq_base", src.freq_base, f32),
            ("expert_count", recipe.n_expert, u32),
            ("expert_used_count", recipe.n_expert_used, u32),
            ("expert_shared_count", recipe.n_shared, u32),
            ("expert_feed_forward_length", size, u32),
            # softmax weights of near-equal logits are 1/E each: the scale makes them 1
            ("expert_weights_scale", float(recipe.n_expert), f32),
            ("leading_dense_block_count", recipe.dense_lead, u32)]


def check_recipe(recipe: Moefied, n_ff: int, n_layer: int, name: str) -> None:
    """Raise DecodeLabError (one line) unless ``recipe`` can split ``n_ff`` neurons."""
    units = recipe.n_expert + recipe.n_shared
    problem = ("expert counts must be positive" if min(recipe.n_expert, recipe.n_shared) < 1
               else f"n_expert_used must be in 1…{recipe.n_expert}"
               if not 1 <= recipe.n_expert_used <= recipe.n_expert
               else f"{n_ff} neurons do not split into {units} equal parts" if n_ff % units
               else f"dense_lead must be in 0…{n_layer - 1}"
               if not 0 <= recipe.dense_lead < n_layer
               else "router_spread must be in (0, 0.1]"
               if not 0 < recipe.router_spread <= 0.1
               else "down must be Q8_0 or F16" if recipe.down not in ("Q8_0", "F16") else "")
    if problem:
        raise DecodeLabError(f"{name}: cannot MoEfy with {recipe}: {problem}")


def write_moefied(path: Path, source: Path, recipe: Moefied,
                  progress: WriteProgress | None = None) -> dict[str, str]:
    """Write the MoE made from the dense GGUF ``source`` by ``recipe`` to ``path`` (see the
    module guarantees); returns what made it: {"generator", "gguf", "numpy"}. Raises
    DecodeLabError (one line) for a source or recipe it cannot use. ``progress(done,
    total)`` counts the layers planned, then the tensors written; whatever it raises stops
    the write (the caller removes the partial file)."""
    try:
        import gguf
    except ImportError as exc:
        raise DecodeLabError(f"{path.name}: writing it needs the gguf package "
                             "(pip install gguf)") from exc
    src = DenseSource(gguf, Path(source))
    check_recipe(recipe, src.n_ff, src.n_layer, path.name)
    try:
        text = calibration_path(recipe.calibration).read_text(encoding="utf-8")
    except OSError as exc:
        raise DecodeLabError(f"calibration text {recipe.calibration}: {exc.strerror}") from exc
    docs = tokenize_calibration(src.path, text, recipe.max_tokens)
    steps, done = n_steps(src, recipe), 0

    def step() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, steps)

    plans = plan_model(src, docs, recipe, step)
    plan = _tensors(src, plans, recipe)
    writer = gguf.GGUFWriter(path, ARCH)
    try:
        name = str(src.value("general.name", src.path.stem))
        writer.add_name(f"{name} MoEfied {recipe.n_expert}x (derived by DecodeLab)")
        writer.add_description(
            f"{src.path.name}'s FFN neurons split into {recipe.n_expert} routed experts and a "
            f"shared expert ({recipe.n_shared} units) by co-activation on calibration text "
            "(MoEfication); routers fitted by least squares. Not a trained MoE.")
        writer.add_string("decodelab.moefy.generator", GENERATOR)
        writer.add_string("decodelab.moefy.recipe", json.dumps(asdict(recipe), sort_keys=True))
        writer.add_string("decodelab.moefy.calibration_sha256",
                          hashlib.sha256(text.encode("utf-8")).hexdigest())
        writer.add_string("decodelab.moefy.source", src.path.name)
        for key, value, kind in _hparams(src, recipe, gguf):
            writer.add_key_value(f"{ARCH}.{key}", value, kind)
        for key, field in src.fields.items():
            # the source's file type names its mix: our down projections are Q8_0, the rest
            # is the source's own bytes
            if key.startswith("tokenizer.") or key in ("general.quantization_version",
                                                       "general.file_type"):
                sub = field.types[1] if len(field.types) > 1 else None
                writer.add_key_value(key, field.contents(), field.types[0], sub_type=sub)
        for tname, shape, dtype, kind, _ in plan:
            nbytes = math.prod(shape) * np.dtype(dtype).itemsize
            writer.add_tensor_info(tname, shape, np.dtype(dtype), nbytes, raw_dtype=kind)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        for _, _, _, _, make in plan:
            writer.write_tensor_data(make())
            step()
    finally:
        writer.close()
    return {"generator": GENERATOR, "gguf": _version("gguf"), "numpy": np.__version__}


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "?"

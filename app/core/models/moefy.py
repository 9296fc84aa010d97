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
import itertools
import json
import math
import os
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from app.core.errors import DecodeLabError
from app.core.models.catalog import Moefied

GENERATOR = "decodelab-moefy-1"
ARCH = "deepseek"
DOC_SEPARATOR = "\n=====\n"  # between the documents of a calibration text
WriteProgress = Callable[[int, int], None]
Array = np.ndarray[Any, Any]

_SOURCES = ("llama", "qwen2")  # dense architectures whose graph matches deepseek's layers
_NEOX = ("qwen2",)
_F32 = 0  # GGMLQuantizationType.F32
_Q8_BLOCK = 32
_RIDGE = 1e-2  # the router fit's ridge, relative to the mean input energy
_KMEANS_ROUNDS = 20
# The source's <arch>.* keys the MoE file carries (see _hparams); any other is refused.
_CARRIED = frozenset({
    "vocab_size", "context_length", "embedding_length", "block_count", "feed_forward_length",
    "attention.head_count", "attention.head_count_kv", "attention.layer_norm_rms_epsilon",
    "rope.dimension_count", "rope.freq_base"})
_POWER_STEPS = 30


def calibration_path(name: str) -> Path:
    """A calibration text of resources/calibration (``DECODELAB_RESOURCES`` overrides, a
    frozen app keeps them in its bundle): the same place app/ui/resources.py looks."""
    override = os.environ.get("DECODELAB_RESOURCES")
    bundle = getattr(sys, "_MEIPASS", None)
    root = (Path(override) if override else Path(bundle) / "resources" if bundle
            else Path(__file__).resolve().parents[3] / "resources")
    return root / "calibration" / name


# ---------------------------------------------------------------- the source model


class _Source:
    """The dense GGUF: memory-mapped tensors, hyper-parameters, dequantized on demand."""

    def __init__(self, gguf: Any, path: Path) -> None:
        try:
            self.reader = gguf.GGUFReader(path)
        except (OSError, ValueError) as exc:
            raise DecodeLabError(f"{path}: cannot read it ({exc})") from exc
        self.gguf, self.path = gguf, path
        self.fields = self.reader.fields
        self.tensors = {t.name: t for t in self.reader.tensors}
        self.arch = str(self.value("general.architecture", ""))
        if self.arch not in _SOURCES:
            raise DecodeLabError(f"{path.name}: a {self.arch or 'unknown'} model cannot be "
                                 f"MoEfied (supported: {', '.join(_SOURCES)})")
        if self.value(f"{self.arch}.expert_count", 0):
            raise DecodeLabError(f"{path.name}: is already a Mixture-of-Experts model")
        self.n_layer = int(self.hp("block_count"))
        self.n_embd = int(self.hp("embedding_length"))
        self.n_ff = int(self.hp("feed_forward_length"))
        self.n_head = int(self.hp("attention.head_count"))
        self.n_head_kv = int(self.hp("attention.head_count_kv", self.n_head))
        self.eps = float(self.hp("attention.layer_norm_rms_epsilon"))
        self.freq_base = float(self.hp("rope.freq_base", 10000.0))
        self.head_dim = self.n_embd // self.n_head
        if int(self.hp("rope.dimension_count", self.head_dim)) != self.head_dim:
            raise DecodeLabError(f"{path.name}: partial RoPE is not supported")
        for needed in ("token_embd.weight", "blk.0.ffn_gate.weight"):
            if needed not in self.tensors:
                raise DecodeLabError(f"{path.name}: has no {needed}")
        # A setting the MoE would not carry over (RoPE scaling, another head size…) would
        # silently change the model.
        prefix = f"{self.arch}."
        for key in self.fields:
            if key.startswith(prefix) and key[len(prefix):] not in _CARRIED:
                raise DecodeLabError(f"{path.name}: cannot carry {key} into an MoE")

    def value(self, key: str, default: Any = None) -> Any:
        field = self.fields.get(key)
        return default if field is None else field.contents()

    def hp(self, key: str, default: Any = None) -> Any:
        found = self.value(f"{self.arch}.{key}", default)
        if found is None:
            raise DecodeLabError(f"{self.path.name}: has no {self.arch}.{key}")
        return found

    def weight(self, name: str, rows: Array | None = None) -> Array:
        """Tensor ``name`` (or some of its rows) as float32, numpy shape (rows, columns)."""
        t = self.tensors[name]
        data = t.data if rows is None else t.data[rows]
        return np.asarray(self.gguf.quants.dequantize(data, t.tensor_type), dtype=np.float32)

    def bias(self, name: str) -> Array | None:
        return self.weight(name) if name in self.tensors else None


# ---------------------------------------------------------------- numpy forward pass


def _rms_norm(x: Array, weight: Array, eps: float) -> Array:
    scale = 1.0 / np.sqrt(np.mean(np.square(x, dtype=np.float64), axis=-1, keepdims=True) + eps)
    return (x * scale.astype(np.float32)) * weight


def _rope(x: Array, base: float, neox: bool) -> Array:
    """RoPE on (tokens, heads, head_dim), positions 0…tokens-1."""
    half = x.shape[-1] // 2
    inv = base ** (-np.arange(half, dtype=np.float64) * 2 / x.shape[-1])
    angle = np.arange(x.shape[0], dtype=np.float64)[:, None] * inv[None]
    cos, sin = (f(angle).astype(np.float32)[:, None, :] for f in (np.cos, np.sin))
    if neox:
        a, b = x[..., :half], x[..., half:]
        return np.concatenate([a * cos - b * sin, a * sin + b * cos], axis=-1)
    out = np.empty_like(x)
    a, b = x[..., 0::2], x[..., 1::2]
    out[..., 0::2], out[..., 1::2] = a * cos - b * sin, a * sin + b * cos
    return out


def _silu(x: Array) -> Array:
    return x / (1.0 + np.exp(-x))


def _attention(src: _Source, layer: int, xs: list[Array]) -> list[Array]:
    """One layer's causal self-attention output for each document of ``xs``."""
    b, hd = f"blk.{layer}.", src.head_dim
    norm = src.weight(b + "attn_norm.weight")
    proj = [(src.weight(f"{b}attn_{p}.weight"), src.bias(f"{b}attn_{p}.bias")) for p in "qkv"]
    wo = src.weight(b + "attn_output.weight")
    group, neox = src.n_head // src.n_head_kv, src.arch in _NEOX
    outs = []
    for x in xs:
        n = x.shape[0]
        h = _rms_norm(x, norm, src.eps)
        q, k, v = (h @ w.T if bias is None else h @ w.T + bias for w, bias in proj)
        q = _rope(q.reshape(n, src.n_head, hd), src.freq_base, neox)
        k = _rope(k.reshape(n, src.n_head_kv, hd), src.freq_base, neox)
        v = v.reshape(n, src.n_head_kv, hd)
        scores = np.einsum("tkgd,skd->kgts", q.reshape(n, src.n_head_kv, group, hd), k)
        scores = scores / np.float32(math.sqrt(hd))
        scores += np.triu(np.full((n, n), -np.inf, dtype=np.float32), 1)
        scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
        scores /= scores.sum(axis=-1, keepdims=True)
        outs.append(np.einsum("kgts,skd->tkgd", scores, v).reshape(n, src.n_head * hd) @ wo.T)
    return outs


# ---------------------------------------------------------------- the split of one layer


@dataclass
class LayerPlan:
    """One layer's split: the shared neurons, each expert's neurons (rows: experts), the
    router (experts × n_embd, already scaled to ``router_spread``)."""

    shared: Array
    experts: Array
    router: Array


def _balanced_assign(similarity: Array, capacity: int) -> Array:
    """Each row to a column, at most ``capacity`` rows per column. In rounds: every row not
    yet placed bids for its most similar column that still has room; each column takes
    its most similar bidders (stable sorts: ties go to the lower index)."""
    n, k = similarity.shape
    out = np.full(n, -1, dtype=np.int64)
    fill = np.zeros(k, dtype=np.int64)
    while (left := np.flatnonzero(out < 0)).size:
        sim = similarity[left].copy()
        sim[:, fill >= capacity] = -np.inf
        best = np.argmax(sim, axis=1)
        score = sim[np.arange(left.size), best]
        for col in np.unique(best).tolist():
            bidders = np.flatnonzero(best == col)
            bidders = bidders[np.argsort(-score[bidders], kind="stable")]
            taken = left[bidders[: capacity - fill[col]]]
            out[taken] = col
            fill[col] += taken.size
    return out


def _unit_rows(a: Array) -> Array:
    norms = np.linalg.norm(a, axis=1, keepdims=True)
    return a / np.where(norms > 0, norms, 1.0)


def balanced_clusters(features: Array, n_cluster: int) -> Array:
    """Equal-size spherical k-means of the rows of ``features``; returns each row's cluster.
    Starts from slices along the first principal direction (power iteration from the
    longest row, sign fixed), so the result depends on the data only."""
    n = features.shape[0]
    capacity = n // n_cluster
    unit = _unit_rows(features)
    centred = unit - unit.mean(axis=0)
    direction = centred[np.argmax(np.linalg.norm(centred, axis=1))]
    for _ in range(_POWER_STEPS):  # power iteration: a full SVD takes half a minute here
        direction = centred.T @ (centred @ direction)
        direction /= np.linalg.norm(direction) or 1.0
    direction *= np.sign(direction[np.argmax(np.abs(direction))]) or 1.0
    assign = np.empty(n, dtype=np.int64)
    assign[np.argsort(centred @ direction, kind="stable")] = np.arange(n) // capacity
    for _ in range(_KMEANS_ROUNDS):
        centres = _unit_rows(np.stack([unit[assign == c].mean(axis=0)
                                       for c in range(n_cluster)]))
        new = _balanced_assign(unit @ centres.T, capacity)
        if np.array_equal(new, assign):
            break
        assign = new
    return assign


def plan_layer(x: Array, act: Array, down: Array, recipe: Moefied) -> LayerPlan:
    """Split one FFN given its inputs ``x`` (tokens, n_embd) on calibration text, its hidden
    activations ``act`` (tokens, n_ff) there and its down projection (n_embd, n_ff)."""
    n_ff = act.shape[1]
    size = n_ff // (recipe.n_expert + recipe.n_shared)
    # A neuron's contribution to the output: |activation| × the norm of its down column.
    contribution = np.abs(act) * np.linalg.norm(down, axis=0)
    busiest = np.argsort(-contribution.mean(axis=0), kind="stable")
    shared = np.sort(busiest[: recipe.n_shared * size])
    rest = np.setdiff1d(np.arange(n_ff), shared)
    # Co-activation: neurons whose contributions rise and fall together on the same tokens.
    cluster = balanced_clusters(contribution[:, rest].T, recipe.n_expert)
    experts = np.stack([np.sort(rest[cluster == e]) for e in range(recipe.n_expert)])
    # Router: ridge least squares of each expert's output norm on the layer input.
    mass = np.stack([np.linalg.norm(act[:, g] @ down[:, g].T, axis=1) for g in experts], axis=1)
    x64 = x.astype(np.float64)
    gram = x64.T @ x64
    gram += np.eye(gram.shape[0]) * (_RIDGE * np.trace(gram) / gram.shape[0])
    router = np.linalg.solve(gram, x64.T @ mass.astype(np.float64)).T  # (experts, n_embd)
    logits = x64 @ router.T
    spread = float((logits.max(axis=1) - logits.min(axis=1)).max())
    scale = recipe.router_spread / spread if spread > 0 else 0.0
    return LayerPlan(shared, experts, (router * scale).astype(np.float32))


def tokenize_calibration(source: Path, text: str, max_tokens: int) -> list[list[int]]:
    """The documents of ``text`` as the source model's tokens (its own BOS rule), at most
    ``max_tokens`` in all."""
    try:
        import llama_cpp
        import llama_cpp._internals as llama_internals

        from app.core import llama_log
    except ImportError as exc:
        raise DecodeLabError("MoEfying needs llama-cpp-python (its tokenizer)") from exc
    llama_log.install()
    params = llama_cpp.llama_model_default_params()
    params.vocab_only = True  # the tokenizer only: no weights, no context
    try:
        vocab = llama_internals.LlamaModel(path_model=str(source), params=params, verbose=False)
    except (ValueError, RuntimeError) as exc:
        why = llama_log.last_error() or str(exc)
        raise DecodeLabError(f"{source.name}: cannot read its tokenizer ({why})") from exc
    docs, total = [], 0
    try:
        for doc in text.split(DOC_SEPARATOR):
            if doc.strip() and total < max_tokens:
                ids = list(vocab.tokenize(doc.strip("\n").encode("utf-8"), add_bos=True,
                                          special=False))[: max_tokens - total]
                docs.append(ids)
                total += len(ids)
    finally:
        vocab.close()
    if not docs:
        raise DecodeLabError(f"{source.name}: the calibration text is empty")
    return docs


def plan_model(src: _Source, docs: list[list[int]], recipe: Moefied,
               step: Callable[[], None]) -> list[LayerPlan | None]:
    """Every layer's plan (None for the dense leading layers), from a numpy forward pass of
    the dense model over ``docs``; ``step()`` after each layer."""
    unique, inverse = np.unique(np.concatenate([np.asarray(d) for d in docs]), return_inverse=True)
    rows = src.weight("token_embd.weight", unique)[inverse]
    bounds = np.cumsum([0] + [len(d) for d in docs])
    xs = [rows[a:b] for a, b in itertools.pairwise(bounds)]
    plans: list[LayerPlan | None] = []
    for layer in range(src.n_layer):
        b = f"blk.{layer}."
        xs = [x + a for x, a in zip(xs, _attention(src, layer, xs), strict=True)]
        norm = src.weight(b + "ffn_norm.weight")
        inputs = np.concatenate([_rms_norm(x, norm, src.eps) for x in xs])
        act = _silu(inputs @ src.weight(b + "ffn_gate.weight").T)
        act *= inputs @ src.weight(b + "ffn_up.weight").T
        down = src.weight(b + "ffn_down.weight")
        plans.append(plan_layer(inputs, act, down, recipe) if layer >= recipe.dense_lead
                     else None)
        out = act @ down.T
        xs = [x + out[a:b] for x, (a, b) in zip(xs, itertools.pairwise(bounds), strict=True)]
        step()
    return plans


# ---------------------------------------------------------------- the file


def _rope_rows(src: _Source, n_heads: int) -> Array | None:
    """Row order turning a NeoX-RoPE projection into a normal-RoPE one (None: keep)."""
    if src.arch not in _NEOX:
        return None
    half = src.head_dim // 2
    within = np.stack([np.arange(half), np.arange(half) + half], axis=1).reshape(-1)
    return (np.arange(n_heads)[:, None] * src.head_dim + within[None]).reshape(-1)


# A tensor to write: (name, numpy byte/value shape, numpy dtype, ggml type or None, make)
_Plan = tuple[str, tuple[int, ...], Any, Any, Callable[[], Array]]


def _tensors(src: _Source, plans: list[LayerPlan | None], recipe: Moefied) -> list[_Plan]:
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


def n_steps(src: _Source, recipe: Moefied) -> int:
    """What ``progress`` counts to: layers planned, then tensors written (each MoE layer
    turns 3 FFN tensors into 7: router, 3 expert stacks, 3 shared)."""
    return src.n_layer + len(src.tensors) + 4 * (src.n_layer - recipe.dense_lead)


def _hparams(src: _Source, recipe: Moefied, gguf: Any) -> list[tuple[str, Any, Any]]:
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
    src = _Source(gguf, Path(source))
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

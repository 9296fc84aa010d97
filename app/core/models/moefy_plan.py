"""The planning half of MoEfication (moefy.py writes the file): the dense source model read
with gguf, a numpy forward pass of it over calibration text, and each FFN layer's split into
a shared expert and equal-size routed experts with a fitted router.

Deterministic: stable sorts and no random numbers, so the plan depends only on the source,
the recipe and the calibration text.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from app.core.errors import DecodeLabError
from app.core.models.catalog import Moefied

DOC_SEPARATOR = "\n=====\n"  # between the documents of a calibration text
Array = np.ndarray[Any, Any]

_SOURCES = ("llama", "qwen2")  # dense architectures whose graph matches deepseek's layers
_NEOX = ("qwen2",)  # sources with NeoX RoPE, whose q/k rows the writer reorders
_RIDGE = 1e-2  # the router fit's ridge, relative to the mean input energy
_KMEANS_ROUNDS = 20
# The source's <arch>.* keys the MoE file carries (see moefy._hparams); any other is refused.
_CARRIED = frozenset({
    "vocab_size", "context_length", "embedding_length", "block_count", "feed_forward_length",
    "attention.head_count", "attention.head_count_kv", "attention.layer_norm_rms_epsilon",
    "rope.dimension_count", "rope.freq_base"})
_POWER_STEPS = 30


# ---------------------------------------------------------------- the source model


class DenseSource:
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

    @property
    def neox(self) -> bool:
        """Whether the source rotates pairs (i, i + d/2) (NeoX RoPE) rather than (2i, 2i+1)."""
        return self.arch in _NEOX

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


def _attention(src: DenseSource, layer: int, xs: list[Array]) -> list[Array]:
    """One layer's causal self-attention output for each document of ``xs``."""
    b, hd = f"blk.{layer}.", src.head_dim
    norm = src.weight(b + "attn_norm.weight")
    proj = [(src.weight(f"{b}attn_{p}.weight"), src.bias(f"{b}attn_{p}.bias")) for p in "qkv"]
    wo = src.weight(b + "attn_output.weight")
    group, neox = src.n_head // src.n_head_kv, src.neox
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


def plan_model(src: DenseSource, docs: list[list[int]], recipe: Moefied,
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

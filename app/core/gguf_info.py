"""What a GGUF model is, read from its header without loading weights.

``inspect_model`` is safe to call on anything a user points at: it raises
``ModelFileError`` naming the file for every kind of broken input, quickly; a file cut short
is an ``IncompleteFileError`` that gives its size in MB and what to do about it.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from app.core.errors import IncompleteFileError, ModelFileError
from app.core.gguf_reader import GGUFHeader, Metadata, read_header, tensor_nbytes
from app.core.sizes import human_size

# From llama.cpp's llm_arch_is_recurrent / llm_arch_is_hybrid (see LLAMA_NOTES.md).
RECURRENT_ARCHS = frozenset({"mamba", "mamba2", "rwkv6", "rwkv6qwen2", "rwkv7", "arwkv7"})
HYBRID_ARCHS = frozenset(
    {
        "jamba",
        "falcon-h1",
        "plamo2",
        "granitehybrid",
        "lfm2",
        "lfm2moe",
        "nemotron_h",
        "nemotron_h_moe",
        "qwen3next",
        "kimi-linear",
        "bailingmoe3",
        "kimi-k3",
        "glm5-next",
        "qwen35",
        "qwen35moe",
        "qwen4exp",
        "deepseek4",
        "minimax-01",
    }
)

FILE_TYPES = {
    0: "F32",
    1: "F16",
    2: "Q4_0",
    3: "Q4_1",
    7: "Q8_0",
    8: "Q5_0",
    9: "Q5_1",
    10: "Q2_K",
    11: "Q3_K_S",
    12: "Q3_K_M",
    13: "Q3_K_L",
    14: "Q4_K_S",
    15: "Q4_K_M",
    16: "Q5_K_S",
    17: "Q5_K_M",
    18: "Q6_K",
    19: "IQ2_XXS",
    20: "IQ2_XS",
    21: "Q2_K_S",
    22: "IQ3_XS",
    23: "IQ3_XXS",
    24: "IQ1_S",
    25: "IQ4_NL",
    26: "IQ3_S",
    27: "IQ3_M",
    28: "IQ2_S",
    29: "IQ2_M",
    30: "IQ4_XS",
    31: "IQ1_M",
    32: "BF16",
    36: "TQ1_0",
    37: "TQ2_0",
    38: "MXFP4_MOE",
}

# llama.cpp's defaults when the file has no add_bos/add_eos key (llama_vocab::load).
_ADDS_BOS_BY_DEFAULT = frozenset({"llama", "bert"})
_ADDS_EOS_BY_DEFAULT = frozenset({"t5"})
# llama.cpp's architecture and tokenizer names are short identifiers; these go into messages.
_MAX_NAME = 128
# The key DecodeLab's synthetic (random-weight) models carry: models/synthetic.py writes it.
RANDOM_WEIGHTS_KEY = "decodelab.synthetic.generator"
# Token ids are shown as the file gives them, negative ones too: llama.cpp judges them.
_MIN_ID = -(2**31)

GGML_TYPES = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 6: "Q5_0", 7: "Q5_1", 8: "Q8_0", 9: "Q8_1",
    10: "Q2_K", 11: "Q3_K", 12: "Q4_K", 13: "Q5_K", 14: "Q6_K", 15: "Q8_K", 16: "IQ2_XXS",
    17: "IQ2_XS", 18: "IQ3_XXS", 19: "IQ1_S", 20: "IQ4_NL", 21: "IQ3_S", 22: "IQ2_S",
    23: "IQ4_XS", 24: "I8", 25: "I16", 26: "I32", 27: "I64", 28: "F64", 29: "IQ1_M",
    30: "BF16", 34: "TQ1_0", 35: "TQ2_0", 39: "MXFP4",
}

# A file type's name and the tensor type most of its bytes are in name the same kind when
# one is the other without its mix suffix: Q4_K_M files are mostly Q4_K, IQ3_M mostly IQ3_S,
# MXFP4_MOE mostly MXFP4.
_MIX_SUFFIX = re.compile(r"_(XXS|XS|S|M|L|MOE)$")
# The reader's words for a file cut short (see gguf_reader): turned into sizes a person reads.
_CUT_DATA = re.compile(r"^truncated file: tensor data needs (\d+) bytes, the file has (\d+)")
_CUT_HEADER = "truncated or corrupt GGUF header"

SSM_REASON = (
    "{arch} is a {kind} model: its state cannot be rolled back after a rejected draft the "
    "way a KV cache can, so every speculating track is off. Baseline and MoE expert "
    "reduction remain."
)


@dataclass
class ModelInfo:
    """Everything DecodeLab shows or checks about a model file."""

    path: str
    file_name: str
    name: str
    architecture: str
    size_label: str
    n_params: int
    file_size: int
    quantization: str
    dominant_tensor_type: str
    context_length: int
    n_vocab: int
    tokenizer_model: str
    tokenizer_pre: str
    bos_id: int | None
    eos_id: int | None
    add_bos: bool
    add_eos: bool
    has_chat_template: bool
    chat_template: str | None
    expert_count: int
    expert_used_count: int
    is_recurrent: bool
    is_hybrid: bool
    vocab_fingerprint: str
    tokens: list[str] = field(default_factory=list, repr=False)
    # Written by DecodeLab's synthetic MoE (models/synthetic.py): its text means nothing, so
    # views that judge quality (divergence, agreement) say so.
    random_weights: bool = False

    @property
    def is_moe(self) -> bool:
        return self.expert_count > 0

    @property
    def quantization_label(self) -> str:
        """The file type the file declares, and the tensor type most of its bytes really
        are when that is another kind: ``Q4_K_M (file: mostly Q5_0)``."""
        if same_kind(self.quantization, self.dominant_tensor_type):
            return self.quantization
        return f"{self.quantization} (file: mostly {self.dominant_tensor_type})"

    @property
    def speculation_allowed(self) -> bool:
        return not (self.is_recurrent or self.is_hybrid)

    @property
    def speculation_reason(self) -> str:
        if self.speculation_allowed:
            return "attention-only model: its KV cache can be rolled back, speculation works"
        kind = "recurrent (state-space)" if self.is_recurrent else "hybrid recurrent/attention"
        return SSM_REASON.format(arch=self.architecture, kind=kind)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("tokens")
        d.pop("chat_template")
        d.update(
            is_moe=self.is_moe,
            speculation_allowed=self.speculation_allowed,
            speculation_reason=self.speculation_reason,
        )
        return d


def same_kind(file_type: str, tensor_type: str) -> bool:
    """Whether a file type (``Q4_K_M``) and a tensor type (``Q4_K``) name the same kind of
    weights; an unknown tensor type ("?", "none") never contradicts the file type."""
    if tensor_type in ("?", "none") or file_type == tensor_type:
        return True
    base = _MIX_SUFFIX.sub("", file_type)
    return tensor_type == base or (base != file_type and tensor_type.startswith(base + "_"))


def inspect_model(path: str | Path) -> ModelInfo:
    """Read ``path``'s header; raise ModelFileError (naming the file) if it is not a model."""
    try:
        header = read_header(path)
    except IncompleteFileError:
        raise
    except ModelFileError as exc:
        raise _explained(exc, Path(path)) from None
    return model_info_from_header(header)


def _explained(exc: ModelFileError, path: Path) -> ModelFileError:
    """The reader's error, with sizes in MB and the next step for a file cut short or
    empty (the catalog is read only here, on an error)."""
    from app.core.models.library import fetch_again_hint, pinned_entry_of

    cut = _CUT_DATA.match(exc.problem)
    if cut:
        return IncompleteFileError(exc.path, int(cut[2]), int(cut[1]), fetch_again_hint(path))
    if exc.problem.startswith(_CUT_HEADER):
        try:
            size = path.stat().st_size
        except OSError:
            return exc
        entry = pinned_entry_of(path)
        if entry is not None and entry.size > size:
            return IncompleteFileError(exc.path, size, entry.size, fetch_again_hint(path))
        return ModelFileError(exc.path, "damaged or incomplete file (its header runs past "
                              f"the end of the file, {human_size(size)}): "
                              + fetch_again_hint(path))
    if exc.problem == "file is empty":
        return ModelFileError(exc.path, f"file is empty: {fetch_again_hint(path)}")
    return exc


_CACHE: dict[tuple[str, int, int], ModelInfo] = {}


def inspect_cached(path: str | Path) -> ModelInfo:
    """``inspect_model``, remembered while the file's size and mtime stay the same
    (a 151k-token vocabulary takes a few hundred ms to read)."""
    p = Path(path)
    try:
        st = p.stat()
    except OSError:
        return inspect_model(p)
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    info = _CACHE.get(key)
    if info is None:
        info = inspect_model(p)
        if len(_CACHE) > 32:
            _CACHE.clear()
        _CACHE[key] = info
    return info


def _is_recurrent_or_hybrid(arch: str, md: Metadata) -> tuple[bool, bool]:
    if arch in RECURRENT_ARCHS:
        return True, False
    if arch in HYBRID_ARCHS:
        return False, True
    # Unknown architectures: recognise state-space layers from their metadata.
    has_ssm = any(k.startswith((f"{arch}.ssm.", f"{arch}.wkv.")) for k in md)
    if not has_ssm:
        return False, False
    # Per-layer KV head counts: a layer with heads is an attention layer.
    kv_key = f"{arch}.attention.head_count_kv"
    has_attention = md.is_array(kv_key) and any(md.get_int_list(kv_key))
    return (not has_attention), has_attention


def _size_label(n_params: int) -> str:
    for unit, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n_params >= scale:
            value = n_params / scale
            return f"{value:.1f}{unit}" if value < 10 else f"{value:.0f}{unit}"
    return str(n_params)


def model_info_from_header(header: GGUFHeader) -> ModelInfo:
    """The ModelInfo of a parsed header; a value of the wrong type: ModelFileError."""
    md = header.metadata
    arch = md.get_str("general.architecture", "unknown", max_chars=_MAX_NAME)
    tokens = md.get_str_list("tokenizer.ggml.tokens")
    n_params = sum(t.n_elements for t in header.tensors)
    recurrent, hybrid = _is_recurrent_or_hybrid(arch, md)
    template = md.get_str("tokenizer.chat_template")
    ftype = md.get_int("general.file_type")
    tok_model = md.get_str("tokenizer.ggml.model", "", max_chars=_MAX_NAME)
    by_type: dict[int, int] = {}
    for t in header.tensors:
        by_type[t.ggml_type] = by_type.get(t.ggml_type, 0) + (tensor_nbytes(t) or 0)
    dominant = max(by_type, key=lambda k: by_type[k]) if by_type else None
    digest = hashlib.sha256("\x00".join(tokens).encode("utf-8", "replace")).hexdigest()

    return ModelInfo(
        path=str(header.path),
        file_name=header.path.name,
        name=md.get_str("general.name") or header.path.stem,
        architecture=arch,
        size_label=md.get_str("general.size_label") or _size_label(n_params),
        n_params=n_params,
        file_size=header.file_size,
        quantization=FILE_TYPES.get(ftype, f"type {ftype}") if ftype is not None else "unknown",
        dominant_tensor_type=GGML_TYPES.get(dominant, "?") if dominant is not None else "none",
        context_length=md.get_int(f"{arch}.context_length", 0),
        n_vocab=len(tokens),
        tokenizer_model=tok_model,
        tokenizer_pre=md.get_str("tokenizer.ggml.pre", "default", max_chars=_MAX_NAME),
        bos_id=md.get_int("tokenizer.ggml.bos_token_id", lo=_MIN_ID),
        eos_id=md.get_int("tokenizer.ggml.eos_token_id", lo=_MIN_ID),
        add_bos=md.get_bool("tokenizer.ggml.add_bos_token", tok_model in _ADDS_BOS_BY_DEFAULT),
        add_eos=md.get_bool("tokenizer.ggml.add_eos_token", tok_model in _ADDS_EOS_BY_DEFAULT),
        has_chat_template=bool(template),
        chat_template=template or None,
        expert_count=md.get_int(f"{arch}.expert_count", 0),
        expert_used_count=md.get_int(f"{arch}.expert_used_count", 0),
        is_recurrent=recurrent,
        is_hybrid=hybrid,
        vocab_fingerprint=digest[:16],
        tokens=tokens,
        random_weights=RANDOM_WEIGHTS_KEY in md,
    )

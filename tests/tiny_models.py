"""Tiny random-weight GGUF models that real llama.cpp loads and runs, for fast tests.

Each generator returns the path of a cached file in ``out_dir`` whose name carries a digest
of the generator version, shapes, seed and tokenizer (written to a temporary name, then
renamed). Tokenizers are dicts of GGUF keys to Python values: ``tokenizer_source=None`` gives
a synthetic GPT-2-style BPE vocabulary of 512 tokens; a path borrows every ``tokenizer.*``
key of a real GGUF (read once, cached as JSON in ``out_dir``), so the tiny model is
draft-compatible with the real one.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

GENERATOR_VERSION = "tiny1"
Tokenizer = dict[str, Any]
TokenizerEdit = Callable[[Tokenizer], "Tokenizer | None"]
_TOK = "tokenizer.ggml."
_TOKENIZER_MEMO: dict[tuple[str, int, int], Tokenizer] = {}


def default_smollm2_path() -> Path:
    """The real SmolLM2 GGUF: ``$DECODELAB_SMOLLM2_GGUF``, else in ``$DECODELAB_MODELS_DIR``,
    else in ``~/.local/share/decodelab/models``."""
    if os.environ.get("DECODELAB_SMOLLM2_GGUF"):
        return Path(os.environ["DECODELAB_SMOLLM2_GGUF"])
    models = os.environ.get("DECODELAB_MODELS_DIR") or Path.home() / ".local/share/decodelab/models"
    return Path(models) / "smollm2-135m.Q4_1.gguf"


def find_smollm2() -> Path | None:
    """The real SmolLM2 GGUF if it is installed, else None (tests skip)."""
    path = default_smollm2_path()
    return path if path.is_file() else None


# ---------------------------------------------------------------- tokenizers


def _bytes_to_unicode() -> list[str]:
    """GPT-2's byte-to-printable-character table, in byte-token order."""
    bs = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), 256)]
    cs = list(bs)
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


_WORDS = re.findall(r"\w+", """
    the of and to in is it that for you was with on as have be at not this are or by from
    but what all were when we there can an your which their said if do will each about how
    up out them then she many some so these would other into has more her two like him see
    time could no make than first been its who now people my made over did down only way
    find use may water long little very after words called just where most know token model
    draft def return import class self print hello world""")


def synthetic_tokenizer(n_vocab: int = 512) -> Tokenizer:
    """A self-contained GPT-2-style BPE vocabulary: 3 specials, 256 bytes, merges, padding."""
    byte_chars = _bytes_to_unicode()
    tokens = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", *byte_chars]
    types = [3, 3, 3] + [1] * 256
    merges: list[str] = []
    known = set(tokens)
    space = byte_chars[ord(" ")]
    for word in _WORDS:
        for text in (word, space + word):
            prefix = text[0]
            for ch in text[1:]:
                if len(tokens) >= n_vocab:
                    break
                if prefix + ch not in known:
                    merges.append(f"{prefix} {ch}")
                    tokens.append(prefix + ch)
                    types.append(1)
                    known.add(prefix + ch)
                prefix += ch
    for i in range(len(tokens), n_vocab):
        tokens.append(f"<|reserved_{i}|>")
        types.append(3)
    template = (
        "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n'"
        " + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
    )
    ggml = {"model": "gpt2", "pre": "gpt-2", "tokens": tokens, "token_type": types,
            "merges": merges, "bos_token_id": 1, "eos_token_id": 2, "unknown_token_id": 0,
            "padding_token_id": 2, "add_bos_token": False, "add_space_prefix": False}
    return {_TOK + k: v for k, v in ggml.items()} | {"tokenizer.chat_template": template}


def _plain(value: Any) -> Any:
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value.item() if isinstance(value, np.generic) else value


def load_tokenizer(source: str | Path, cache_dir: str | Path | None = None) -> Tokenizer:
    """Every ``tokenizer.*`` key of a real GGUF; read once, then from a JSON cache."""
    source = Path(source).expanduser()
    st = source.stat()
    memo_key = (str(source.resolve()), st.st_size, st.st_mtime_ns)
    if memo_key in _TOKENIZER_MEMO:
        return _copy_tokenizer(_TOKENIZER_MEMO[memo_key])
    cache = None
    if cache_dir is not None:
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", source.stem)
        cache = Path(cache_dir) / f"tokenizer-{stem}-{st.st_size}-{GENERATOR_VERSION}.json"
    if cache is not None and cache.is_file():
        tok: Tokenizer = json.loads(cache.read_text(encoding="utf-8"))
    else:
        from gguf import GGUFReader

        reader = GGUFReader(source)
        fields = reader.fields.items()
        tok = {k: _plain(f.contents()) for k, f in fields if k.startswith("tokenizer.")}
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_name(f"{cache.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(tok, ensure_ascii=False), encoding="utf-8")
            os.replace(tmp, cache)
    _TOKENIZER_MEMO[memo_key] = tok
    return _copy_tokenizer(tok)


def _copy_tokenizer(tok: Tokenizer) -> Tokenizer:
    return {k: list(v) if isinstance(v, list) else v for k, v in tok.items()}


def _tokenizer_label(source: str | Path | None) -> str:
    if source is None:
        return "synth"
    return re.sub(r"[^a-z0-9]+", "-", Path(source).stem.lower()).strip("-")


# ------------------------------------------------- variants for draft-compatibility tests


def _other_id(tok: Tokenizer, key: str) -> None:
    tok[key] = 0 if tok.get(key, 1) != 0 else 1


def _change_token_text(tok: Tokenizer, token_id: int = 17) -> None:
    tokens = tok[_TOK + "tokens"]
    new = tokens[token_id] + "\u2063changed"
    assert new not in tokens  # llama.cpp aborts on duplicate token texts
    tokens[token_id] = new


def truncate_vocab(tok: Tokenizer, n_drop: int = 200) -> None:
    """Drop the last ``n_drop`` tokens and every merge that produced or used one."""
    keep = len(tok[_TOK + "tokens"]) - n_drop
    for key in ("tokens", "token_type", "scores"):
        if _TOK + key in tok:
            tok[_TOK + key] = tok[_TOK + key][:keep]
    if _TOK + "merges" in tok:
        known = set(tok[_TOK + "tokens"])
        pairs = (m.partition(" ") for m in tok[_TOK + "merges"])
        tok[_TOK + "merges"] = [f"{a} {b}" for a, _, b in pairs if {a, b, a + b} <= known]
    for key in [k for k in tok if k.endswith("_token_id") and tok[k] >= keep]:
        del tok[key]


def _flip_add_bos(tok: Tokenizer) -> None:
    tok[_TOK + "add_bos_token"] = not tok.get(_TOK + "add_bos_token", False)


def _other_pre(tok: Tokenizer) -> None:
    tok[_TOK + "pre"] = "default" if tok.get(_TOK + "pre") == "gpt-2" else "gpt-2"


def _other_model(tok: Tokenizer) -> None:
    # "bert" (WordPiece) loads and tokenizes any text safely with a GPT-2 vocabulary
    # (unknown words map to the unk id); "llama" (SPM) would need <0xNN> byte tokens.
    tok[_TOK + "model"] = "bert" if tok[_TOK + "model"] != "bert" else "gpt2"


TOKENIZER_VARIANTS: dict[str, TokenizerEdit] = {
    "token_text": _change_token_text,  # token id 17's text altered
    "vocab_truncated": truncate_vocab,  # 200 fewer tokens (llama.cpp allows 128)
    "bos_id": lambda tok: _other_id(tok, _TOK + "bos_token_id"),
    "add_bos": _flip_add_bos,
    "eos_id": lambda tok: _other_id(tok, _TOK + "eos_token_id"),
    "pre": _other_pre,
    "model": _other_model,
}


# ---------------------------------------------------------------- writer


def _add_kv(writer: Any, key: str, value: Any) -> None:
    from gguf import GGUFValueType as T

    # scalar ints are ids/counts (UINT32), int arrays are token types (INT32)
    scalar = {bool: T.BOOL, int: T.UINT32, float: T.FLOAT32, str: T.STRING}
    if type(value) in scalar:
        writer.add_key_value(key, value, scalar[type(value)])
    elif isinstance(value, list):
        first = value[0] if value else ""
        sub = {str: T.STRING, float: T.FLOAT32, bool: T.BOOL}.get(type(first), T.INT32)
        if key.endswith("precompiled_charsmap"):
            sub = T.UINT8
        writer.add_key_value(key, value, T.ARRAY, sub_type=sub)
    else:
        raise TypeError(f"unsupported GGUF value for {key}: {type(value).__name__}")


Spec = list[tuple[str, tuple[int, ...], float | np.ndarray]]  # name, numpy shape, std or values


def _build(
    out_dir: str | Path, kind: str, arch: str, hparams: dict[str, Any],
    spec: Callable[[int], Spec], *, tokenizer_source: str | Path | None, seed: int,
    dtype: str, tokenizer_edit: TokenizerEdit | None, variant: str | None,
) -> Path:
    if dtype not in ("f32", "f16"):
        raise ValueError(f"dtype must be 'f32' or 'f16', not {dtype!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    src = tokenizer_source
    tok = synthetic_tokenizer() if src is None else load_tokenizer(src, out)
    if tokenizer_edit is not None:
        tok = tokenizer_edit(tok) or tok
    payload = json.dumps([GENERATOR_VERSION, kind, hparams, seed, dtype, tok], sort_keys=True)
    digest = hashlib.sha256(payload.encode("utf-8")).hexdigest()[:12]
    parts = (_tokenizer_label(src), variant, "" if dtype == "f32" else dtype)
    label = "-".join(p for p in parts if p)
    path = out / f"tiny-{kind}-{label}-{GENERATOR_VERSION}-{digest}.gguf"
    if path.is_file():
        return path

    import gguf

    n_vocab = len(tok[_TOK + "tokens"])
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    writer = gguf.GGUFWriter(tmp, arch)
    writer.add_name(f"tiny {kind} {label}")
    writer.add_file_type(1 if dtype == "f16" else 0)
    writer.add_string("decodelab.tiny.generator", GENERATOR_VERSION)
    writer.add_string("decodelab.tiny.digest", digest)
    writer.add_vocab_size(n_vocab)
    for key, value in hparams.items():
        _add_kv(writer, f"{arch}.{key}", value)
    for key, value in tok.items():
        _add_kv(writer, key, value)
    rng = np.random.default_rng(seed)
    for name, shape, init in spec(n_vocab):
        if isinstance(init, np.ndarray):
            array = init.reshape(shape)
        else:
            array = rng.standard_normal(shape, dtype=np.float32) * np.float32(init)
        # llama.cpp's ssm_conv and ssm_scan want f32; everything else may be f16
        if dtype == "f16" and array.ndim >= 2 and not name.endswith(("conv1d.weight", "ssm_a")):
            array = array.astype(np.float16)
        writer.add_tensor(name, array)
    try:
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    finally:
        writer.close()
    os.replace(tmp, path)
    return path


def _ones(n: int) -> np.ndarray:
    return np.ones(n, dtype=np.float32)


def _head(n_vocab: int, n_embd: int) -> Spec:
    # Untied output: with a tied one, each token's own embedding wins the argmax and the
    # model repeats its input. Logits then spread over a few units (few near-ties).
    return [("token_embd.weight", (n_vocab, n_embd), 1.0),
            ("output_norm.weight", (n_embd,), _ones(n_embd)),
            ("output.weight", (n_vocab, n_embd), 0.5)]


def _llama_file(out_dir: str | Path, kind: str, shape: dict[str, int], **opts: Any) -> Path:
    n_layer, n_embd, n_head, n_kv, n_ff, n_exp = (
        shape[k] for k in ("n_layer", "n_embd", "n_head", "n_head_kv", "n_ff", "n_expert"))
    hd = n_embd // n_head
    hparams: dict[str, Any] = {
        "context_length": shape["n_ctx_train"], "embedding_length": n_embd,
        "block_count": n_layer, "feed_forward_length": n_ff, "attention.head_count": n_head,
        "attention.head_count_kv": n_kv, "attention.layer_norm_rms_epsilon": 1e-5,
        "rope.dimension_count": hd, "rope.freq_base": 10000.0,
    }
    if n_exp:
        hparams |= {"expert_count": n_exp, "expert_used_count": shape["n_expert_used"]}

    def spec(n_vocab: int) -> Spec:
        out = _head(n_vocab, n_embd)
        w, wf = n_embd**-0.5, n_ff**-0.5
        e = (n_exp,) if n_exp else ()
        x = "_exps" if n_exp else ""
        for i in range(n_layer):
            b = f"blk.{i}."
            out += [(b + "attn_norm.weight", (n_embd,), _ones(n_embd)),
                    (b + "attn_q.weight", (n_head * hd, n_embd), w),
                    (b + "attn_k.weight", (n_kv * hd, n_embd), w),
                    (b + "attn_v.weight", (n_kv * hd, n_embd), w),
                    (b + "attn_output.weight", (n_embd, n_head * hd), w),
                    (b + "ffn_norm.weight", (n_embd,), _ones(n_embd))]
            if n_exp:
                out.append((b + "ffn_gate_inp.weight", (n_exp, n_embd), w))
            out += [(b + f"ffn_gate{x}.weight", (*e, n_ff, n_embd), w),
                    (b + f"ffn_up{x}.weight", (*e, n_ff, n_embd), w),
                    (b + f"ffn_down{x}.weight", (*e, n_embd, n_ff), wf)]
        return out

    return _build(out_dir, kind, "llama", hparams, spec, **opts)


# ---------------------------------------------------------------- public generators


def dense_llama(
    out_dir: str | Path, tokenizer_source: str | Path | None = None, seed: int = 0,
    n_layer: int = 2, n_embd: int = 64, n_head: int = 4, n_head_kv: int = 2,
    n_ff: int = 128, n_ctx_train: int = 2048, dtype: str = "f32",
    tokenizer_edit: TokenizerEdit | None = None, variant: str | None = None,
) -> Path:
    """A dense ``llama`` model. ``variant`` names the file when ``tokenizer_edit`` is given."""
    shape = {"n_layer": n_layer, "n_embd": n_embd, "n_head": n_head, "n_head_kv": n_head_kv,
             "n_ff": n_ff, "n_ctx_train": n_ctx_train, "n_expert": 0}
    return _llama_file(out_dir, "llama", shape, tokenizer_source=tokenizer_source, seed=seed,
                       dtype=dtype, tokenizer_edit=tokenizer_edit, variant=variant)


def moe_llama(
    out_dir: str | Path, tokenizer_source: str | Path | None = None, seed: int = 0,
    n_layer: int = 2, n_embd: int = 64, n_head: int = 4, n_head_kv: int = 2,
    n_ff: int = 64, n_ctx_train: int = 2048, n_expert: int = 8, n_expert_used: int = 2,
    dtype: str = "f32", tokenizer_edit: TokenizerEdit | None = None, variant: str | None = None,
) -> Path:
    """A ``llama`` with ``n_expert`` experts (3-D ``ffn_*_exps``), ``n_expert_used`` active."""
    shape = {"n_layer": n_layer, "n_embd": n_embd, "n_head": n_head, "n_head_kv": n_head_kv,
             "n_ff": n_ff, "n_ctx_train": n_ctx_train, "n_expert": n_expert,
             "n_expert_used": n_expert_used}
    return _llama_file(out_dir, "moe", shape, tokenizer_source=tokenizer_source, seed=seed,
                       dtype=dtype, tokenizer_edit=tokenizer_edit, variant=variant)


def mamba(
    out_dir: str | Path, tokenizer_source: str | Path | None = None, seed: int = 0,
    n_layer: int = 2, n_embd: int = 64, d_state: int = 16, d_conv: int = 4,
    dt_rank: int | None = None, n_ctx_train: int = 2048, dtype: str = "f32",
    tokenizer_edit: TokenizerEdit | None = None, variant: str | None = None,
) -> Path:
    """A recurrent ``mamba`` model (llama.cpp supports only d_inner = 2 * n_embd)."""
    d_in = 2 * n_embd
    rank = dt_rank or -(-n_embd // 16)
    hparams: dict[str, Any] = {
        "context_length": n_ctx_train, "embedding_length": n_embd, "block_count": n_layer,
        "feed_forward_length": 0, "attention.head_count": 0,
        "attention.layer_norm_rms_epsilon": 1e-5, "ssm.conv_kernel": d_conv,
        "ssm.inner_size": d_in, "ssm.state_size": d_state, "ssm.time_step_rank": rank,
    }

    def spec(n_vocab: int) -> Spec:
        out = _head(n_vocab, n_embd)
        # A = -[1..d_state] per channel (S4D-real init), D = 1, dt bias = softplus^-1(0.01)
        a = -np.tile(np.arange(1, d_state + 1, dtype=np.float32), (d_in, 1))
        for i in range(n_layer):
            b = f"blk.{i}."
            out += [(b + "attn_norm.weight", (n_embd,), _ones(n_embd)),
                    (b + "ssm_in.weight", (2 * d_in, n_embd), n_embd**-0.5),
                    (b + "ssm_conv1d.weight", (d_in, d_conv), d_conv**-0.5),
                    (b + "ssm_conv1d.bias", (d_in,), np.zeros(d_in, dtype=np.float32)),
                    (b + "ssm_x.weight", (rank + 2 * d_state, d_in), d_in**-0.5),
                    (b + "ssm_dt.weight", (d_in, rank), rank**-0.5),
                    (b + "ssm_dt.bias", (d_in,), np.full(d_in, -4.6, dtype=np.float32)),
                    (b + "ssm_a", (d_in, d_state), a),
                    (b + "ssm_d", (d_in,), _ones(d_in)),
                    (b + "ssm_out.weight", (n_embd, d_in), d_in**-0.5)]
        return out

    return _build(out_dir, "mamba", "mamba", hparams, spec, tokenizer_source=tokenizer_source,
                  seed=seed, dtype=dtype, tokenizer_edit=tokenizer_edit, variant=variant)


def tokenizer_variant(
    out_dir: str | Path, variant: str, tokenizer_source: str | Path | None = None,
    **kwargs: Any,
) -> Path:
    """A dense llama whose tokenizer differs in one way (a key of ``TOKENIZER_VARIANTS``)."""
    return dense_llama(out_dir, tokenizer_source, tokenizer_edit=TOKENIZER_VARIANTS[variant],
                       variant=variant, **kwargs)


def tokenizer_variants(out_dir: str | Path, tokenizer_source: str | Path | None = None,
                       **kwargs: Any) -> dict[str, Path]:
    """Every tokenizer variant, by name."""
    return {name: tokenizer_variant(out_dir, name, tokenizer_source, **kwargs)
            for name in TOKENIZER_VARIANTS}


def broken_files(out_dir: str | Path) -> dict[str, Path]:
    """Files llama.cpp must refuse: name -> path (``missing`` does not exist)."""
    from gguf import GGUFReader

    out = Path(out_dir) / f"broken-{GENERATOR_VERSION}"
    out.mkdir(parents=True, exist_ok=True)
    good = dense_llama(out_dir)
    data = good.read_bytes()
    reader = GGUFReader(good)
    kv_cut = reader.fields[_TOK + "tokens"].offset + 1000
    data_cut = reader.data_offset + (len(data) - reader.data_offset) // 2
    header = b"GGUF" + struct.pack("<I", 3)
    contents = {
        "empty": b"",
        "text": b"This is not a model, just a text file.\n" * 20,
        "random": b"JUNK" + np.random.default_rng(1234).bytes(4092),
        "truncated_data": data[:data_cut],
        "truncated_kv": data[:kv_cut],
        "absurd_tensor_count": header + struct.pack("<QQ", 2**60, 0) + bytes(64),
        "absurd_kv_count": header + struct.pack("<QQ", 0, 2**60) + bytes(64),
        "bad_version": b"GGUF" + struct.pack("<IQQ", 999, 0, 0),
    }
    paths = {"missing": out / "does-not-exist.gguf"}
    for name, blob in contents.items():
        path = out / f"{name}.gguf"
        if not path.is_file() or path.stat().st_size != len(blob):
            path.write_bytes(blob)
        paths[name] = path
    return paths

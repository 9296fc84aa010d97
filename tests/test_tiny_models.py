"""The tiny generated GGUF models load and run in real llama.cpp (tests/tiny_models.py)."""

from __future__ import annotations

import ctypes
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

llama_cpp = pytest.importorskip("llama_cpp")
pytest.importorskip("gguf")

import tiny_models as tm  # noqa: E402

PROMPT = "Hello world, the model drafts tokens!\n  def f(x): return 42"
Loader = Callable[..., "llama_cpp.Llama"]


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tiny_models")


@pytest.fixture(scope="session")
def smollm2() -> Path:
    path = tm.find_smollm2()
    if path is None:
        pytest.skip(f"real SmolLM2 GGUF not installed at {tm.default_smollm2_path()}")
    return path


@pytest.fixture
def load() -> Iterator[Loader]:
    """Open models with small contexts and one thread; close them all afterwards."""
    opened: list[llama_cpp.Llama] = []

    def _load(path: Path, **kwargs: object) -> llama_cpp.Llama:
        kwargs.setdefault("n_ctx", 256)
        kwargs.setdefault("n_threads", 1)
        kwargs.setdefault("n_threads_batch", 1)
        llm = llama_cpp.Llama(str(path), verbose=False, **kwargs)
        opened.append(llm)
        return llm

    yield _load
    for llm in opened:
        llm.close()


def last_logits(llm: llama_cpp.Llama) -> np.ndarray:
    """The last evaluated row (Llama.scores stays empty unless logits_all=True)."""
    ptr = llama_cpp.llama_get_logits_ith(llm.ctx, -1)
    return np.ctypeslib.as_array(ptr, shape=(llm.n_vocab(),)).copy()


def greedy(llm: llama_cpp.Llama, prompt: list[int], n: int = 8) -> list[int]:
    """n greedy tokens through Llama.eval and the last row of logits."""
    llm.reset()
    llm.eval(prompt)
    out: list[int] = []
    for _ in range(n):
        token = int(np.argmax(last_logits(llm)))
        out.append(token)
        llm.eval([token])
    return out


def vocab_texts(llm: llama_cpp.Llama) -> list[bytes]:
    vocab = llama_cpp.llama_model_get_vocab(llm.model)
    n = llama_cpp.llama_vocab_n_tokens(vocab)
    return [ctypes.string_at(llama_cpp.llama_vocab_get_text(vocab, i)) for i in range(n)]


def vocab_facts(llm: llama_cpp.Llama) -> dict[str, object]:
    vocab = llama_cpp.llama_model_get_vocab(llm.model)
    return {
        "type": llama_cpp.llama_vocab_type(vocab),
        "n_tokens": llama_cpp.llama_vocab_n_tokens(vocab),
        "bos": llama_cpp.llama_vocab_bos(vocab),
        "eos": llama_cpp.llama_vocab_eos(vocab),
        "add_bos": bool(llama_cpp.llama_vocab_get_add_bos(vocab)),
        "add_eos": bool(llama_cpp.llama_vocab_get_add_eos(vocab)),
        "model": llm.metadata.get("tokenizer.ggml.model"),
        "pre": llm.metadata.get("tokenizer.ggml.pre"),
    }


def llama_cpp_compatible(a: llama_cpp.Llama, b: llama_cpp.Llama) -> bool:
    """llama.cpp's common_speculative_are_compatible, transcribed."""
    fa, fb = vocab_facts(a), vocab_facts(b)
    if fa["type"] != fb["type"] or fa["add_bos"] != fb["add_bos"]:
        return False
    if fa["add_bos"] and fa["bos"] != fb["bos"]:
        return False
    if fa["add_eos"] != fb["add_eos"] or (fa["add_eos"] and fa["eos"] != fb["eos"]):
        return False
    ta, tb = vocab_texts(a), vocab_texts(b)
    if abs(len(ta) - len(tb)) > 128:
        return False
    n = min(len(ta), len(tb))
    return ta[5:n] == tb[5:n]


GENERATORS = {"dense": tm.dense_llama, "moe": tm.moe_llama, "mamba": tm.mamba}


@pytest.mark.parametrize("dtype", ["f32", "f16"])
@pytest.mark.parametrize("kind", list(GENERATORS))
def test_tiny_model_generates(kind: str, dtype: str, tiny_dir: Path, load: Loader) -> None:
    path = GENERATORS[kind](tiny_dir, dtype=dtype)
    llm = load(path)
    arch = "mamba" if kind == "mamba" else "llama"
    assert llm.metadata["general.architecture"] == arch
    assert llm.metadata["decodelab.tiny.generator"] == tm.GENERATOR_VERSION
    prompt = llm.tokenize(PROMPT.encode())
    tokens = greedy(llm, prompt)
    assert len(tokens) == 8
    assert all(0 <= t < llm.n_vocab() for t in tokens)
    assert len(set(tokens)) > 1, "random weights should not repeat one token"
    assert greedy(llm, prompt) == tokens  # deterministic
    via_generate = []
    for token in llm.generate(prompt, temp=0.0, top_k=1):
        via_generate.append(token)
        if len(via_generate) == 8:
            break
    assert via_generate == tokens
    recurrent = llama_cpp.llama_model_is_recurrent(llm.model)
    assert recurrent == (kind == "mamba")


def test_moe_expert_override(tiny_dir: Path, load: Loader) -> None:
    path = tm.moe_llama(tiny_dir)
    default = load(path)
    assert default.metadata["llama.expert_count"] == "8"
    assert default.metadata["llama.expert_used_count"] == "2"
    prompt = default.tokenize(PROMPT.encode())
    default.eval(prompt)
    logits_k2 = last_logits(default)
    one = load(path, kv_overrides={"llama.expert_used_count": 1})
    assert len(greedy(one, prompt)) == 8
    one.reset()
    one.eval(prompt)
    logits_k1 = last_logits(one)
    assert not np.allclose(logits_k1, logits_k2), "the override changed nothing"


def test_files_are_cached_and_reproducible(tmp_path: Path, tiny_dir: Path) -> None:
    first = tm.dense_llama(tiny_dir)
    mtime = first.stat().st_mtime_ns
    assert tm.dense_llama(tiny_dir) == first
    assert first.stat().st_mtime_ns == mtime
    again = tm.dense_llama(tmp_path)
    assert again.name == first.name and again.read_bytes() == first.read_bytes()
    other = tm.dense_llama(tmp_path, seed=1)
    assert other != again and other.read_bytes() != again.read_bytes()
    assert not list(tmp_path.glob("*.tmp"))


def test_synthetic_tokenizer_round_trips(tiny_dir: Path, load: Loader) -> None:
    llm = load(tm.dense_llama(tiny_dir), vocab_only=True)
    data = PROMPT.encode()
    tokens = llm.tokenize(data, add_bos=False)
    assert len(tokens) < len(data)  # merges apply
    assert llm.detokenize(tokens) == data
    assert llm.tokenize(b"<|im_start|>", add_bos=False, special=True) == [1]
    facts = vocab_facts(llm)
    assert facts["n_tokens"] == 512 and facts["bos"] == 1 and facts["eos"] == 2


EXPECTED_CHANGE: dict[str, Callable[[dict[str, object], dict[str, object]], bool]] = {
    "token_text": lambda base, var: var == base,  # only the text of id 17 differs
    "vocab_truncated": lambda base, var: var["n_tokens"] == base["n_tokens"] - 200,
    "bos_id": lambda base, var: var["bos"] != base["bos"],
    "add_bos": lambda base, var: var["add_bos"] != base["add_bos"],
    "eos_id": lambda base, var: var["eos"] != base["eos"],
    "pre": lambda base, var: var["pre"] != base["pre"],
    "model": lambda base, var: var["type"] != base["type"] and var["model"] != base["model"],
}
# llama.cpp's own rule ignores the BOS/EOS ids when they are not added, and `pre`.
LLAMA_CPP_COMPATIBLE = {"bos_id", "eos_id", "pre"}


def _check_variants(base_path: Path, variants: dict[str, Path], load: Loader) -> None:
    base = load(base_path, vocab_only=True)
    base_facts, base_texts = vocab_facts(base), vocab_texts(base)
    data = PROMPT.encode()
    for name, path in variants.items():
        var = load(path, vocab_only=True)
        facts = vocab_facts(var)
        assert EXPECTED_CHANGE[name](base_facts, facts), (name, facts)
        texts = vocab_texts(var)
        assert (texts[17] != base_texts[17]) == (name == "token_text"), name
        assert llama_cpp_compatible(base, var) == (name in LLAMA_CPP_COMPATIBLE), name
        assert var.tokenize(data, add_bos=False)  # tokenizing never crashes
        var.close()
    assert set(variants) == set(EXPECTED_CHANGE)


def test_synthetic_tokenizer_variants(tiny_dir: Path, load: Loader) -> None:
    _check_variants(tm.dense_llama(tiny_dir), tm.tokenizer_variants(tiny_dir), load)


def test_variant_runs(tiny_dir: Path, load: Loader) -> None:
    llm = load(tm.tokenizer_variant(tiny_dir, "vocab_truncated"))
    assert len(greedy(llm, llm.tokenize(PROMPT.encode()))) == 8


BROKEN = [
    "missing",
    "empty",
    "text",
    "random",
    "truncated_data",
    "truncated_kv",
    "absurd_tensor_count",
    "absurd_kv_count",
    "bad_version",
]


@pytest.mark.parametrize("name", BROKEN)
def test_broken_file_is_refused_in_process(name: str, tiny_dir: Path) -> None:
    broken = tm.broken_files(tiny_dir)
    assert sorted(broken) == sorted(BROKEN)
    assert broken["missing"].exists() is False and broken["empty"].stat().st_size == 0
    for vocab_only in (False, True):  # a ValueError, never a process abort
        with pytest.raises(ValueError):
            llama_cpp.Llama(str(broken[name]), n_ctx=256, vocab_only=vocab_only, verbose=False)


# ------------------------------------------------ with the real SmolLM2 tokenizer


def test_borrowed_tokenizer_matches_smollm2(smollm2: Path, tiny_dir: Path, load: Loader) -> None:
    real = load(smollm2, vocab_only=True)
    real_facts, real_texts = vocab_facts(real), vocab_texts(real)
    samples = [PROMPT, "<|im_start|>user\nWhat is 2+2?<|im_end|>\n", " ünïcödé 日本語 🙂\t\n"]
    for make in GENERATORS.values():
        path = make(tiny_dir, smollm2)
        tiny = load(path)
        assert vocab_facts(tiny) == real_facts
        assert vocab_texts(tiny) == real_texts
        assert llama_cpp_compatible(real, tiny)
        for text in samples:
            for special in (False, True):
                assert tiny.tokenize(text.encode(), special=special) == real.tokenize(
                    text.encode(), special=special
                )
        assert tiny.metadata["tokenizer.chat_template"] == real.metadata["tokenizer.chat_template"]
        assert len(greedy(tiny, tiny.tokenize(samples[1].encode(), special=True))) == 8
        tiny.close()


def test_smollm2_tokenizer_variants(smollm2: Path, tiny_dir: Path, load: Loader) -> None:
    _check_variants(smollm2, tm.tokenizer_variants(tiny_dir, smollm2), load)

"""MoEfication (app/core/models/moefy.py): a tiny dense model split into experts loads in
llama.cpp as a ``deepseek`` MoE, Track 2 runs with every expert count, the derivation is
deterministic, and with all experts active the MoE computes what the dense model computes.

The sources are tiny float32 models with the synthetic 512-token vocabulary: a ``llama``
(normal RoPE) from tests/tiny_models.py and a ``qwen2`` (NeoX RoPE, attention biases) made
here, whose query and key rows the derivation must permute.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tiny_models

from app.core.errors import DecodeLabError
from app.core.events import RunSettings
from app.core.gguf_info import inspect_model
from app.core.gguf_reader import read_header
from app.core.llama_backend import LoadedModel, LoadOptions
from app.core.models.moefy import GENERATOR, Moefied, write_moefied
from app.core.models.moefy_plan import balanced_clusters
from app.core.session import Session

# n_ff 128 = (6 routed + 2 shared) × 16 neurons; few calibration tokens keep it fast.
TINY = Moefied(n_expert=6, n_expert_used=2, n_shared=2, max_tokens=384)
TEXT = "def hello(world):\n    return world * 2\n\nThe model writes a token at a time."


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tiny_qwen2(out_dir: Path, extra: dict[str, Any] | None = None) -> Path:
    """A dense ``qwen2``: NeoX RoPE and q/k/v biases, which the llama generator lacks
    (written by tiny_models' generic builder); ``extra``: more ``qwen2.*`` keys."""
    n_embd, n_ff, n_head, n_kv, hd = 64, 128, 4, 2, 16
    hparams: dict[str, Any] = {
        "context_length": 2048, "embedding_length": n_embd, "block_count": 2,
        "feed_forward_length": n_ff, "attention.head_count": n_head,
        "attention.head_count_kv": n_kv, "attention.layer_norm_rms_epsilon": 1e-6,
        "rope.freq_base": 10000.0, **(extra or {})}

    def spec(n_vocab: int) -> tiny_models.Spec:
        w, wf = n_embd**-0.5, n_ff**-0.5
        ones = np.ones(n_embd, dtype=np.float32)
        out: tiny_models.Spec = [("token_embd.weight", (n_vocab, n_embd), 1.0),
                                 ("output_norm.weight", (n_embd,), ones),
                                 ("output.weight", (n_vocab, n_embd), 0.5)]
        for i in range(2):
            b = f"blk.{i}."
            out += [(b + "attn_norm.weight", (n_embd,), ones),
                    (b + "attn_q.weight", (n_head * hd, n_embd), w),
                    (b + "attn_q.bias", (n_head * hd,), 0.5),
                    (b + "attn_k.weight", (n_kv * hd, n_embd), w),
                    (b + "attn_k.bias", (n_kv * hd,), 0.5),
                    (b + "attn_v.weight", (n_kv * hd, n_embd), w),
                    (b + "attn_v.bias", (n_kv * hd,), 0.5),
                    (b + "attn_output.weight", (n_embd, n_head * hd), w),
                    (b + "ffn_norm.weight", (n_embd,), ones),
                    (b + "ffn_gate.weight", (n_ff, n_embd), w),
                    (b + "ffn_up.weight", (n_ff, n_embd), w),
                    (b + "ffn_down.weight", (n_embd, n_ff), wf)]
        return out

    return tiny_models._build(out_dir, "qwen2", "qwen2", hparams, spec, tokenizer_source=None,
                              seed=3, dtype="f32", tokenizer_edit=None, variant=None)


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_models.dense_llama(tmp_path_factory.mktemp("dense"))


@pytest.fixture(scope="module")
def moefied(source: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("moefied") / "moe.gguf"
    made = write_moefied(path, source, TINY)
    assert made["generator"] == GENERATOR and made["gguf"] and made["numpy"]
    return path


def logits(path: Path, text: str, experts: int | None = None) -> np.ndarray:
    """Teacher-forced logits of every token of ``text``."""
    model = LoadedModel(path, LoadOptions(n_ctx=512, threads=1, expert_used_count=experts))
    try:
        tokens = model.tokenize(text, add_bos=True)
        return np.array(model.eval(tokens, len(tokens)))
    finally:
        model.close()


def assert_same_model(dense: np.ndarray, moe: np.ndarray) -> None:
    # Each weight is E·softmax of logits within 1e-3 of each other: 1 ± 1e-3, not 1.
    assert (moe.argmax(axis=1) == dense.argmax(axis=1)).all()
    assert np.abs(moe - dense).max() < 1e-2 * np.abs(dense).max()


# ---------------------------------------------------------------- the derivation


def test_the_same_recipe_writes_the_same_bytes(moefied: Path, source: Path,
                                               tmp_path: Path) -> None:
    again = tmp_path / "again.gguf"
    write_moefied(again, source, TINY)
    assert sha256(again) == sha256(moefied)
    other = tmp_path / "other.gguf"
    write_moefied(other, source, Moefied(**{**TINY.__dict__, "max_tokens": 256}))
    assert sha256(other) != sha256(moefied)  # other calibration, other clusters and routers


def test_it_is_a_labelled_moe_with_the_source_tokenizer(moefied: Path, source: Path) -> None:
    info = inspect_model(moefied)
    assert info.architecture == "deepseek" and info.is_moe
    assert (info.expert_count, info.expert_used_count) == (6, 2)
    meta = read_header(moefied).metadata
    assert meta.get_str("decodelab.moefy.generator") == GENERATOR
    assert "moefied" in meta.get_str("general.name", "").lower()
    assert meta.get_int("deepseek.expert_shared_count") == 2
    assert meta.get_int("deepseek.expert_feed_forward_length") == 16
    source_tokens = read_header(source).metadata.get_str_list("tokenizer.ggml.tokens")
    assert meta.get_str_list("tokenizer.ggml.tokens") == source_tokens


def test_every_neuron_lands_in_exactly_one_expert(moefied: Path, source: Path) -> None:
    from gguf import GGUFReader

    dense = {t.name: np.asarray(t.data) for t in GGUFReader(source).tensors}
    moe = {t.name: np.asarray(t.data) for t in GGUFReader(moefied).tensors}
    for layer in range(2):
        b = f"blk.{layer}."
        rows = np.concatenate([moe[b + "ffn_gate_shexp.weight"],
                               *moe[b + "ffn_gate_exps.weight"]])
        # the split moves whole rows: sorted, they are the dense gate's rows
        order = np.lexsort(rows.T[::-1])
        assert np.array_equal(rows[order], dense[b + "ffn_gate.weight"][
            np.lexsort(dense[b + "ffn_gate.weight"].T[::-1])])
        assert moe[b + "ffn_gate_inp.weight"].shape == (6, 64)
        assert moe[b + "ffn_down_exps.weight"].shape == (6, 64, 16)


@pytest.mark.parametrize("experts", range(1, 7))
def test_track2_runs_with_every_expert_count(moefied: Path, experts: int) -> None:
    session = Session()
    try:
        settings = RunSettings(track="moe", experts=experts, max_tokens=8, threads=1)
        result = session.run(moefied, None, "def hello world", settings)
    finally:
        session.close()
    assert result.error is None and result.n_generated >= 1
    assert result.effective["expert_used_count"] == experts


def test_all_experts_compute_the_dense_model(moefied: Path, source: Path) -> None:
    dense = logits(source, TEXT)
    assert_same_model(dense, logits(moefied, TEXT, experts=6))
    # one expert of six drops most neurons: the router's choice changes the answer
    assert np.abs(logits(moefied, TEXT, experts=1) - dense).max() > 0.05 * np.abs(dense).max()


def test_all_experts_greedy_output_is_the_dense_one(moefied: Path, source: Path) -> None:
    session = Session()
    try:
        dense = session.run(source, None, TEXT, RunSettings(max_tokens=24, threads=1))
        moe = session.run(moefied, None, TEXT, RunSettings(track="moe", experts=6,
                                                          max_tokens=24, threads=1))
    finally:
        session.close()
    assert moe.token_ids == dense.token_ids and len(dense.token_ids) > 0


def test_a_neox_source_with_biases_keeps_its_attention(tmp_path: Path) -> None:
    source = tiny_qwen2(tmp_path)
    path = tmp_path / "qwen-moe.gguf"
    write_moefied(path, source, TINY)
    # without the query/key permutation every attention score would change
    assert_same_model(logits(source, TEXT), logits(path, TEXT, experts=6))


# ---------------------------------------------------------------- refusals, clustering


def test_a_recipe_that_does_not_split_the_layer_is_refused(source: Path,
                                                           tmp_path: Path) -> None:
    with pytest.raises(DecodeLabError, match="128 neurons"):
        write_moefied(tmp_path / "x.gguf", source, Moefied(n_expert=5, n_expert_used=2))
    with pytest.raises(DecodeLabError, match="n_expert_used"):
        write_moefied(tmp_path / "x.gguf", source, Moefied(n_expert=6, n_expert_used=7,
                                                            n_shared=2))


def test_an_moe_or_recurrent_source_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DecodeLabError, match="already a Mixture-of-Experts"):
        write_moefied(tmp_path / "x.gguf", tiny_models.moe_llama(tmp_path), TINY)
    with pytest.raises(DecodeLabError, match="mamba model cannot be MoEfied"):
        write_moefied(tmp_path / "x.gguf", tiny_models.mamba(tmp_path), TINY)


def test_a_setting_the_moe_would_drop_is_refused(tmp_path: Path) -> None:
    source = tiny_qwen2(tmp_path, {"rope.scaling.factor": 4.0})
    with pytest.raises(DecodeLabError, match=r"cannot carry qwen2\.rope\.scaling\.factor"):
        write_moefied(tmp_path / "x.gguf", source, TINY)


def test_progress_can_stop_the_write(source: Path, tmp_path: Path) -> None:
    seen: list[tuple[int, int]] = []

    def progress(done: int, total: int) -> None:
        seen.append((done, total))
        if done == 3:  # while writing tensors (2 layers are planned first)
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_moefied(tmp_path / "x.gguf", source, TINY, progress)
    assert [d for d, _ in seen] == [1, 2, 3] and len({t for _, t in seen}) == 1


def test_balanced_clusters_find_neurons_that_fire_together() -> None:
    rng = np.random.default_rng(0)
    planted = np.repeat(np.arange(4), 8)  # 32 neurons, 4 groups of 8
    patterns = rng.random((4, 200)) < 0.2  # which of 200 tokens each group fires on
    features = patterns[planted] * (1.0 + rng.random((32, 200))) + 0.05 * rng.random((32, 200))
    order = rng.permutation(32)
    found = balanced_clusters(features[order], 4)
    assert np.bincount(found).tolist() == [8, 8, 8, 8]
    # the same partition up to the clusters' names
    pairs = {(int(p), int(f)) for p, f in zip(planted[order], found, strict=True)}
    assert len(pairs) == 4
    assert np.array_equal(balanced_clusters(features[order], 4), found)  # deterministic


# ---------------------------------------------------------------- derived by the fetcher


def test_fetch_derives_a_pinned_moefied_model_twice_the_same(models_dir: Path, source: Path,
                                                              moefied: Path) -> None:
    from app.core.models import catalog
    from app.core.models.fetcher import fetch
    from app.core.models.files import derived_info_path
    from app.core.models.integrity import write_record, write_sidecar

    models_dir.mkdir()
    data = source.read_bytes()
    # installed under its own file name, which the MoE records (decodelab.moefy.source)
    src = catalog.CatalogEntry("src", "dense", "test", source.name, len(data),
                               hashlib.sha256(data).hexdigest())
    (models_dir / src.filename).write_bytes(data)
    write_sidecar(models_dir / src.filename, src.sha256)
    write_record(models_dir / src.filename, src.sha256)
    entry = catalog.CatalogEntry("moe", "moefied", "test", "moe.moefied.gguf",
                                 moefied.stat().st_size, sha256(moefied), derived_from="src",
                                 derived_with="gguf test", moefied=TINY)
    table = {"src": src, "moe": entry}
    path = fetch("moe", catalog=table)
    # the pinned checksum was written by the fixture's own write_moefied: same bytes again
    assert sha256(path) == entry.sha256 and not derived_info_path(path).exists()
    assert inspect_model(path).expert_count == 6


def test_the_catalog_recipe_splits_the_real_dense_model() -> None:
    from app.core.models import catalog
    from app.core.models.moefy import check_recipe

    entry = catalog.get_entry("qwen2.5-coder-0.5b-moefied")
    assert entry.moefied is not None and entry.derived_from == "qwen2.5-coder-0.5b"
    assert entry.moefied.n_expert_used == entry.moefied.n_expert  # by default: the dense model
    # Qwen2.5-0.5B: 24 layers of 4864 neurons (the checksum pins what this recipe wrote)
    check_recipe(entry.moefied, 4864, 24, entry.name)
    assert "not a trained MoE" in entry.description


@pytest.fixture(scope="module")
def real_moefied(pinned_model: Callable[[str], Path]) -> Path:
    return pinned_model("qwen2.5-coder-0.5b-moefied")


@pytest.mark.parametrize("experts", [1, 4, 8, 12, 16])
def test_the_real_moefied_model_runs_track2(real_moefied: Path, experts: int) -> None:
    info = inspect_model(real_moefied)
    assert (info.expert_count, info.expert_used_count) == (16, 16)
    session = Session()
    try:
        settings = RunSettings(track="moe", experts=experts, max_tokens=6, threads=2)
        result = session.run(real_moefied, None, "def add(a, b):", settings)
    finally:
        session.close()
    assert result.error is None and result.n_generated >= 1
    assert result.effective["expert_used_count"] == experts


def test_the_real_moefied_model_with_all_experts_writes_the_dense_text(
        real_moefied: Path, pinned_model: Callable[[str], Path]) -> None:
    dense_path = pinned_model("qwen2.5-coder-0.5b")
    session = Session()
    prompt = "def fibonacci(n):\n    "
    try:
        dense = session.run(dense_path, None, prompt, RunSettings(max_tokens=16, threads=2))
        moe = session.run(real_moefied, None, prompt, RunSettings(max_tokens=16, threads=2))
    finally:
        session.close()
    # 97.6 % top-1 agreement on held-out text (RESULTS): the first tokens of a plain
    # continuation agree; near-ties may differ later, so only a prefix is required
    assert moe.token_ids[:4] == dense.token_ids[:4]

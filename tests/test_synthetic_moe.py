"""The synthetic MoE of the catalog (random weights, for Track 2's speed): its writer, its
derivation by the fetcher and its catalog entry.

The writer runs here at toy size (the same function as the 780 MB catalog model, whose own
derivation is left to `decodelab models fetch synthetic-moe-8x`). Its tokenizer source is a
tiny dense model with the synthetic 512-token vocabulary: reading it takes milliseconds.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
from pathlib import Path

import pytest
import tiny_models

from app.core.events import RunSettings
from app.core.gguf_info import inspect_model
from app.core.gguf_reader import read_header
from app.core.models import catalog
from app.core.models.catalog import CatalogEntry, SyntheticMoE
from app.core.models.fetcher import FetchCancelled, FetchProgress, fetch
from app.core.models.files import derived_info_path, write_sidecar
from app.core.models.integrity import ModelState, model_state, write_record
from app.core.models.library import pinned_status
from app.core.models.synthetic import GENERATOR, tensors, write_synthetic_moe
from app.core.session import Session

TINY = SyntheticMoE(n_layer=2, n_embd=64, n_head=4, n_head_kv=2, n_ff=64, n_expert=8,
                    n_expert_used=2, n_ctx_train=2048, seed=7)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A dense GGUF whose tokenizer the synthetic model borrows."""
    return tiny_models.dense_llama(tmp_path_factory.mktemp("source"))


@pytest.fixture(scope="module")
def tiny_synthetic(source: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("synthetic") / "moe.gguf"
    made = write_synthetic_moe(path, source, TINY)
    assert made["generator"] == GENERATOR and made["gguf"]
    return path


def test_the_same_recipe_writes_the_same_bytes(tiny_synthetic: Path, source: Path,
                                               tmp_path: Path) -> None:
    again = tmp_path / "again.gguf"
    write_synthetic_moe(again, source, TINY)
    assert sha256(again) == sha256(tiny_synthetic)
    other = tmp_path / "other.gguf"
    write_synthetic_moe(other, source, SyntheticMoE(**{**TINY.__dict__, "seed": 8}))
    assert sha256(other) != sha256(tiny_synthetic)


def test_it_is_a_labelled_moe_with_the_source_tokenizer(tiny_synthetic: Path,
                                                        source: Path) -> None:
    info = inspect_model(tiny_synthetic)
    assert info.architecture == "llama" and info.is_moe
    assert (info.expert_count, info.expert_used_count) == (8, 2)
    assert info.n_vocab == inspect_model(source).n_vocab
    meta = read_header(tiny_synthetic).metadata
    assert "random" in meta.get_str("general.name", "").lower()
    assert "random" in meta.get_str("general.description", "").lower()
    assert meta.get_str("decodelab.synthetic.generator") == GENERATOR
    source_tokens = read_header(source).metadata.get_str_list("tokenizer.ggml.tokens")
    assert meta.get_str_list("tokenizer.ggml.tokens") == source_tokens


def test_control_tokens_can_never_win_greedy_decoding(tiny_synthetic: Path) -> None:
    from gguf import GGUFReader

    reader = GGUFReader(tiny_synthetic)
    types = reader.fields["tokenizer.ggml.token_type"].contents()
    control = [i for i, t in enumerate(types) if t == 3]
    output = next(t for t in reader.tensors if t.name == "output.weight").data
    assert control and not output[control].any()
    normal = [i for i, t in enumerate(types) if t != 3]
    assert (abs(output[normal]).sum(axis=1) > 0).all()


@pytest.mark.parametrize("experts", [1, 2, 8])
def test_llama_cpp_runs_it_with_every_expert_count(tiny_synthetic: Path, experts: int) -> None:
    session = Session()
    try:
        settings = RunSettings(track="moe", experts=experts, max_tokens=12, threads=1)
        result = session.run(tiny_synthetic, None, "def hello world", settings)
    finally:
        session.close()
    assert result.effective["expert_used_count"] == experts
    assert result.stop_reason == "max_tokens" and result.n_generated == 12


def test_cli_inspect_shows_the_experts(tiny_synthetic: Path) -> None:
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "app", "inspect", str(tiny_synthetic), "--json"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout)
    assert info["is_moe"] is True
    assert (info["expert_count"], info["expert_used_count"]) == (8, 2)


# ---------------------------------------------------------------- derived by the fetcher


@pytest.fixture
def models_dir(models_dir: Path) -> Path:
    """conftest's throw-away models folder, made beforehand: these tests write into it."""
    models_dir.mkdir()
    return models_dir


def installed_source(models_dir: Path, source: Path) -> CatalogEntry:
    """``source`` installed as a verified pinned model "src" (no download needed)."""
    data = source.read_bytes()
    entry = CatalogEntry("src", "source", "test", "src.gguf", len(data),
                         hashlib.sha256(data).hexdigest())
    path = models_dir / entry.filename
    path.write_bytes(data)
    write_sidecar(path, entry.sha256)
    write_record(path, entry.sha256)
    return entry


def synthetic_table(models_dir: Path, source: Path, size: int,
                    sha: str) -> dict[str, CatalogEntry]:
    entry = CatalogEntry("moe", "random weights", "test", "moe.random-weights.gguf", size, sha,
                         derived_from="src", derived_with="gguf test", synthetic=TINY)
    return {"src": installed_source(models_dir, source), "moe": entry}


def test_fetch_derives_the_pinned_synthetic_model(models_dir: Path, source: Path,
                                                  tiny_synthetic: Path) -> None:
    table = synthetic_table(models_dir, source, tiny_synthetic.stat().st_size,
                            sha256(tiny_synthetic))
    events: list[FetchProgress] = []
    path = fetch("moe", events.append, catalog=table)
    assert sha256(path) == table["moe"].sha256 and not derived_info_path(path).exists()
    assert model_state(table["moe"], table) is ModelState.VERIFIED
    assert {e.stage for e in events if e.model == "moe"} >= {"derive", "verify", "done"}
    assert {row.entry.name: row.state for row in pinned_status(table)}["moe"] == "verified"


def test_other_bytes_are_vouched_for_by_the_source(models_dir: Path, source: Path,
                                                   tiny_synthetic: Path) -> None:
    table = synthetic_table(models_dir, source, 123, "0" * 64)  # another gguf's bytes
    path = fetch("moe", catalog=table)
    info = json.loads(derived_info_path(path).read_text())
    assert info["source_sha256"] == table["src"].sha256 and info["generator"] == GENERATOR
    assert info["sha256"] == sha256(tiny_synthetic) and "gguf" in info
    assert model_state(table["moe"], table) is ModelState.VERIFIED


def test_cancel_leaves_no_partial_file(models_dir: Path, source: Path) -> None:
    table = synthetic_table(models_dir, source, 1, "0" * 64)
    cancel = threading.Event()

    def progress(p: FetchProgress) -> None:
        if p.model == "moe" and p.stage == "derive" and p.current > 0:
            cancel.set()

    with pytest.raises(FetchCancelled):
        fetch("moe", progress, cancel, catalog=table)
    assert sorted(p.name for p in models_dir.iterdir()) == [
        "src.gguf", "src.gguf.sha256", "src.gguf.verified.json"]


# ---------------------------------------------------------------- the catalog's model


def test_catalog_entry_is_a_realistic_random_weight_moe() -> None:
    entry = catalog.get_entry("synthetic-moe-8x")
    recipe = entry.synthetic
    assert recipe is not None and entry.derived_from == "smollm2-135m" and not entry.parts
    assert "random" in entry.description.lower() and "random-weights" in entry.filename
    assert recipe.n_expert == 8 and 2 <= recipe.n_expert_used <= 4
    assert 500e6 <= entry.size <= 1.5e9
    weights = sum((2 if half else 4) * math.prod(shape)
                  for _, shape, half, _ in tensors(recipe, 49152))  # SmolLM2's vocabulary
    # The rest of the file is the header: metadata (the tokenizer) and tensor table.
    assert 0 < entry.size - weights < 4_000_000


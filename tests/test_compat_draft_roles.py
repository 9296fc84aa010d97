"""Which models are offered as a draft for a target (``app.core.compat.draft_fit``): only a
compatible, smaller model — never the target's own file or its own model in another
quantization — and what the window shows of a file's real tensor type."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import tiny_models

from app.core.compat import check_draft, draft_fit
from app.core.gguf_info import inspect_model, same_kind


@pytest.fixture(scope="module")
def tiny_f16_twin(tiny_dir: Path, tokenizer_source: Path | None) -> Path:
    """``tiny_dense`` (F32) written in F16: the same model, a smaller file."""
    return tiny_models.dense_llama(tiny_dir, tokenizer_source, dtype="f16")


@pytest.fixture(scope="module")
def tiny_big(tiny_dir: Path, tokenizer_source: Path | None) -> Path:
    """A compatible model with more layers than ``tiny_dense``."""
    return tiny_models.dense_llama(tiny_dir, tokenizer_source, seed=2, n_layer=4)


def test_a_smaller_compatible_model_is_offered(tiny_dense: Path, tiny_draft: Path) -> None:
    target, draft = inspect_model(tiny_dense), inspect_model(tiny_draft)
    assert draft.n_params < target.n_params
    fit = draft_fit(target, draft)
    assert fit.offered, fit.reason
    assert "smaller" in fit.reason


def test_the_target_itself_is_never_offered(tiny_dense: Path, tmp_path: Path) -> None:
    target = inspect_model(tiny_dense)
    fit = draft_fit(target, inspect_model(tiny_dense))
    assert not fit.offered and fit.reason == "the target itself"
    # The same bytes under another name: the target's own model, not a draft.
    copy = tmp_path / "copy.gguf"
    shutil.copyfile(tiny_dense, copy)
    fit = draft_fit(target, inspect_model(copy))
    assert not fit.offered and "own model" in fit.reason


def test_a_twin_in_another_quantization_is_not_offered(
    tiny_dense: Path, tiny_f16_twin: Path
) -> None:
    f32, f16 = inspect_model(tiny_dense), inspect_model(tiny_f16_twin)
    assert f16.n_params == f32.n_params and f16.file_size < f32.file_size
    assert check_draft(f32, f16).compatible  # compatible, and yet no draft
    bigger = draft_fit(f16, f32)  # the F32 copy of an F16 target
    assert not bigger.offered
    assert "own model" in bigger.reason and "F32" in bigger.reason and "larger" in bigger.reason
    smaller = draft_fit(f32, f16)  # smaller file, but every layer again
    assert not smaller.offered and "own model" in smaller.reason and "smaller" in smaller.reason


def test_a_bigger_model_is_not_offered(tiny_dense: Path, tiny_big: Path) -> None:
    target, big = inspect_model(tiny_dense), inspect_model(tiny_big)
    assert big.n_params > target.n_params and big.file_size > target.file_size
    fit = draft_fit(target, big)
    assert not fit.offered and fit.reason.startswith("not smaller than the target")
    # The other way round it is a fine draft.
    assert draft_fit(big, target).offered


def test_an_incompatible_model_is_not_offered_and_names_the_check(
    tiny_dense: Path, tiny_incompatible: Path, tiny_mamba: Path
) -> None:
    target = inspect_model(tiny_dense)
    fit = draft_fit(target, inspect_model(tiny_incompatible))
    assert not fit.offered and fit.reason == "incompatible: token texts"
    ssm = draft_fit(target, inspect_model(tiny_mamba))
    assert not ssm.offered and "draft can speculate" in ssm.reason
    # A compatibility checked before is used as given.
    given = check_draft(target, inspect_model(tiny_incompatible))
    assert draft_fit(target, inspect_model(tiny_incompatible), given) == fit


def test_the_file_type_and_the_dominant_tensor_type(tiny_dense: Path, tiny_f16_twin: Path,
                                                    tmp_path: Path) -> None:
    # Tensor types named by their file types: the mix suffixes are the same kind.
    for file_type, tensor_type in (("Q4_K_M", "Q4_K"), ("IQ3_M", "IQ3_S"), ("Q4_0", "Q4_0"),
                                   ("MXFP4_MOE", "MXFP4"), ("F16", "?")):
        assert same_kind(file_type, tensor_type), (file_type, tensor_type)
    for file_type, tensor_type in (("Q4_K_M", "Q5_0"), ("Q4_0", "Q4_1"), ("F16", "F32")):
        assert not same_kind(file_type, tensor_type), (file_type, tensor_type)
    assert inspect_model(tiny_dense).quantization_label == "F32"
    assert inspect_model(tiny_f16_twin).quantization_label == "F16"
    # A file that calls itself Q4_K_M while its weights are F32.
    relabelled = relabel_file_type(tiny_dense, tmp_path / "says-q4_k_m.gguf", 15)
    info = inspect_model(relabelled)
    assert (info.quantization, info.dominant_tensor_type) == ("Q4_K_M", "F32")
    assert info.quantization_label == "Q4_K_M (file: mostly F32)"


def relabel_file_type(source: Path, out: Path, file_type: int) -> Path:
    """A copy of ``source`` whose ``general.file_type`` (a uint32) says ``file_type``."""
    data = bytearray(source.read_bytes())
    key = b"general.file_type"
    at = data.index(key) + len(key)
    assert int.from_bytes(data[at:at + 4], "little") == 4  # GGUF type uint32
    data[at + 4:at + 8] = file_type.to_bytes(4, "little")
    out.write_bytes(bytes(data))
    return out

"""Model inspection from the header: metadata, MoE and SSM status, broken input."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.core.errors import ModelFileError
from app.core.gguf_info import inspect_model


def test_dense_model_metadata(tiny_dense: Path) -> None:
    info = inspect_model(tiny_dense)
    assert info.architecture == "llama"
    assert info.context_length == 2048
    assert info.n_vocab > 0 and info.n_vocab == len(info.tokens)
    assert info.n_params > 0 and info.size_label
    assert info.file_size == tiny_dense.stat().st_size
    assert not info.is_moe and info.expert_count == 0
    assert info.speculation_allowed and not info.is_recurrent and not info.is_hybrid
    assert info.quantization in {"F32", "F16", "unknown"}
    d = info.to_dict()
    assert "tokens" not in d and d["speculation_allowed"] is True


def test_moe_model_reports_experts(tiny_moe: Path) -> None:
    info = inspect_model(tiny_moe)
    assert info.is_moe
    assert (info.expert_count, info.expert_used_count) == (8, 2)
    assert info.speculation_allowed


def test_mamba_is_recurrent_and_refuses_speculation(tiny_mamba: Path) -> None:
    info = inspect_model(tiny_mamba)
    assert info.architecture == "mamba"
    assert info.is_recurrent and not info.speculation_allowed
    assert "rolled back" in info.speculation_reason
    assert "MoE" in info.speculation_reason  # says what remains


def test_header_reader_agrees_with_llama_cpp(tiny_mamba: Path, tiny_dense: Path) -> None:
    import llama_cpp

    for path, recurrent in ((tiny_mamba, True), (tiny_dense, False)):
        llm = llama_cpp.Llama(str(path), vocab_only=True, verbose=False)
        try:
            assert bool(llama_cpp.llama_model_is_recurrent(llm.model)) is recurrent
            assert inspect_model(path).n_vocab == llm.n_vocab()
        finally:
            llm.close()


@pytest.mark.parametrize(
    "name",
    [
        "missing",
        "empty",
        "text",
        "random",
        "truncated_data",
        "truncated_kv",
        "absurd_tensor_count",
        "absurd_kv_count",
        "bad_version",
    ],
)
def test_broken_files_give_a_named_error_quickly(broken_files: dict[str, Path], name: str) -> None:
    path = broken_files[name]
    with pytest.raises(ModelFileError) as err:
        inspect_model(path)
    assert str(path) in str(err.value)
    assert err.value.problem


def test_a_folder_is_not_a_model(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="folder"):
        inspect_model(tmp_path)

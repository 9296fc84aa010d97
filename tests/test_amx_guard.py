"""A llama.cpp with AMX kernels loads models without its extra weight buffers.

Its AMX matrix product crashes the process on the first decode on some Sapphire Rapids
machines (ggml-org/llama.cpp#20824; every quantized model segfaulted on this project's CI
kind). ``make setup`` builds llama.cpp without AMX; a build that has it anyway (a wheel from
elsewhere, the portable package's Sapphire Rapids variant) must not crash: the app turns
``use_extra_bufts`` off for every model it loads there. A spy on llama.cpp's model wrapper
records the params each load passes."""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

import llama_cpp._internals as llama_internals
import pytest

from app.core import llama_backend
from app.core.llama_backend import LoadedModel, LoadOptions


def _spy(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    seen: list[bool] = []
    real = llama_internals.LlamaModel

    class Spy(real):  # type: ignore[misc, valid-type]
        def __init__(self, *, path_model: str, params: Any, verbose: bool = True) -> None:
            seen.append(bool(params.use_extra_bufts))
            super().__init__(path_model=path_model, params=params, verbose=verbose)

    monkeypatch.setattr(llama_internals, "LlamaModel", Spy)
    return seen


@pytest.mark.parametrize("amx", [True, False])
def test_extra_buffers_are_off_exactly_where_llama_cpp_has_amx(
    amx: bool, tiny_dense: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(llama_backend, "has_amx_kernels", lambda: amx)
    seen = _spy(monkeypatch)
    model = LoadedModel(tiny_dense, LoadOptions(n_ctx=256, threads=1))
    try:
        logits = model.eval(model.tokenize("a b c", True), 1)
        assert logits.shape[-1] == model.n_vocab  # it decodes
    finally:
        model.close()
    assert seen == [not amx]


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="x86-64 only")
def test_make_setup_builds_llama_cpp_without_amx() -> None:
    """The Makefile compiles llama.cpp with -mno-amx-* and rebuilds a cached wheel that
    has AMX: the extra buffers (repacked Q4 kernels) stay on for the app's own build."""
    assert not llama_backend.has_amx_kernels(), (
        "this llama-cpp-python has AMX kernels: run `make setup` (it rebuilds it without)")

"""A loaded model has decoded once, untimed, and starts with an empty cache.

llama.cpp's own tools warm a model up after loading it (one decode, then a cleared cache):
the first decode faults in every weight page of the mapped file. Without it the first run
after a load paid that in its timings. Timings cannot be asserted; a spy records that the
warm-up ran (with all experts, ``llama_set_warmup``) and the cache it leaves is empty."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import llama_cpp
import pytest

from app.core.llama_backend import LoadedModel, LoadOptions


def test_a_load_warms_the_model_up_and_leaves_the_cache_empty(
    tiny_moe: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[Any] = []
    real_warmup, real_decode = llama_cpp.llama_set_warmup, llama_cpp.llama_decode

    def set_warmup(ctx: Any, on: bool) -> None:
        calls.append(("warmup", bool(on)))
        real_warmup(ctx, on)

    def decode(ctx: Any, batch: Any) -> int:
        calls.append(("decode", int(batch.n_tokens)))
        return int(real_decode(ctx, batch))

    monkeypatch.setattr(llama_cpp, "llama_set_warmup", set_warmup)
    monkeypatch.setattr(llama_cpp, "llama_decode", decode)
    model = LoadedModel(tiny_moe, LoadOptions(n_ctx=256, threads=1))
    try:
        assert calls[0] == ("warmup", True) and calls[-1] == ("warmup", False)
        assert [c for c in calls if c[0] == "decode"], calls
        assert model.n_past == 0
        mem = llama_cpp.llama_get_memory(model.ctx)
        assert llama_cpp.llama_memory_seq_pos_max(mem, 0) == -1
    finally:
        model.close()


"""A prefill (an eval that reads no logits back) waits for its work before it returns.

llama_decode may return early when nothing is read back: on RPC workers a 336-token prefill
returned in 6 ms and its 2.6 s were counted in the first answer token (RESULTS session 7);
there the eval reads the last token's logits back (tests/test_rpc_workers.py checks that
remote runs still give the local text). Timings cannot be asserted, so for a local model a
spy records that the eval waits (llama_synchronize on its own context), the real call still
running."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import llama_cpp
import pytest

from app.core.llama_backend import LoadedModel, LoadOptions


def test_an_eval_without_logits_synchronizes(tiny_dense: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    real = llama_cpp.llama_synchronize
    calls: list[Any] = []

    def spy(ctx: Any) -> None:
        calls.append(ctx)
        real(ctx)

    model = LoadedModel(tiny_dense, LoadOptions(n_ctx=256, threads=1))
    try:
        monkeypatch.setattr(llama_cpp, "llama_synchronize", spy)
        model.eval(list(range(5, 40)), 0)
        assert calls == [model.ctx] and model.n_past == 35
        rows = model.eval([41], 1)  # reading logits waits by itself: no extra call needed
        assert rows.shape == (1, model.n_vocab) and len(calls) == 1
    finally:
        model.close()

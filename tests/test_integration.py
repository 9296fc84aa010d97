"""Integration tier: the real pinned models of MODELS.md (fetched once by `make models`)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from given_costs import give_costs

from app.core.compare import compare
from app.core.compat import check_draft
from app.core.events import RunSettings
from app.core.gguf_info import inspect_model
from app.core.session import Session

pytestmark = pytest.mark.integration

PROMPTS = Path(__file__).resolve().parents[2] / "shared" / "prompts"
EXPECTED = {
    # name: (architecture, n_vocab, file type, tokenizer pre)
    "smollm2-135m": ("llama", 49152, "Q4_1", "smollm"),
    "qwen2.5-coder-1.5b": ("qwen2", 151936, "Q4_K_M", "qwen2"),
    "qwen2.5-coder-1.5b-f16": ("qwen2", 151936, "F16", "qwen2"),
    # Labelled Q4_K_M, but its dimensions make llama.cpp fall back to Q5_0 for most tensors.
    "qwen2.5-coder-0.5b": ("qwen2", 151936, "Q4_K_M", "qwen2"),
    "gemma3-270m": ("gemma3", 262144, "Q4_K_M", "default"),
}


def _model(name: str) -> Path:
    from app.core.models.library import installed_path

    path = installed_path(name)
    if path is None:
        pytest.skip(f"{name} not installed")
    return path


def _prompt(name: str) -> str:
    path = PROMPTS / f"{name}.txt"
    if not path.exists():
        pytest.skip(f"benchmark prompt {path} not available")
    return path.read_text(encoding="utf-8")


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_inspect_real_models(name: str) -> None:
    arch, n_vocab, quant, pre = EXPECTED[name]
    proc = subprocess.run([sys.executable, "-m", "app", "inspect", name, "--json"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["architecture"] == arch
    assert info["n_vocab"] == n_vocab
    assert info["quantization"] == quant
    assert info["tokenizer_pre"] == pre
    if name == "qwen2.5-coder-0.5b":
        assert info["dominant_tensor_type"] == "Q5_0"
    assert info["speculation_allowed"] is True and info["is_moe"] is False
    assert info["has_chat_template"] is (name != "gemma3-270m")


def test_real_compatibility_verdicts(tiny_dense: Path) -> None:
    qwen = inspect_model(_model("qwen2.5-coder-1.5b"))
    qwen_f16 = inspect_model(_model("qwen2.5-coder-1.5b-f16"))
    small = inspect_model(_model("qwen2.5-coder-0.5b"))
    smol = inspect_model(_model("smollm2-135m"))
    gemma = inspect_model(_model("gemma3-270m"))
    assert check_draft(qwen, small).compatible
    assert check_draft(qwen_f16, small).compatible
    assert check_draft(smol, inspect_model(tiny_dense)).compatible
    for target, draft in ((qwen, smol), (qwen, gemma), (smol, gemma)):
        result = check_draft(target, draft)
        assert not result.compatible
        assert {"vocabulary size", "token texts"} <= {c.name for c in result.failed}


def test_qwen_pair_is_lossless_and_accepts_drafts() -> None:
    target, draft = _model("qwen2.5-coder-1.5b"), _model("qwen2.5-coder-0.5b")
    # Fixed K: this is about losslessness; on 1 thread adaptive drafting may decline to draft.
    s = RunSettings(max_tokens=48, chat=True, threads=1, ctx=2048, draft_max=4, adaptive=False)
    session = Session()
    try:
        result = compare(session, target, draft, _prompt("code_edit"),
                         ["draft", "lookup", "draft+lookup"], s)
    finally:
        session.close()
    _base, *others = result.runs
    for run in others:
        assert run.result.n_drafted > 0
        assert (run.result.acceptance_rate or 0) > 0.3, run.result.track
        if not run.same_text_as_baseline:
            assert run.near_tie, (run.result.track, run.first_difference, run.baseline_margin)


@pytest.mark.parametrize("adaptive", [True, False])
def test_smollm2_lookup_is_lossless(adaptive: bool) -> None:
    target = _model("smollm2-135m")
    s = RunSettings(max_tokens=64, chat=True, threads=1, ctx=2048, adaptive=adaptive)
    session = Session()
    # Adaptive lookup decides from given costs, not from this machine's timings.
    given = give_costs(session) if adaptive else None
    try:
        result = compare(session, target, None, _prompt("summarize"), ["lookup"], s)
    finally:
        session.close()
    run = result.runs[1]
    assert given is None or given.ignored > 0
    assert run.result.n_drafted > 0
    assert run.same_text_as_baseline or run.near_tie, (run.first_difference, run.baseline_margin)

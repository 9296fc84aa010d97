"""Draft compatibility: every check, passing and failing, with readable details."""

from __future__ import annotations

from pathlib import Path

import pytest
import tiny_models

from app.core.compat import check_draft
from app.core.gguf_info import inspect_model

# variant -> the check that must fail
VARIANT_CHECKS = {
    "token_text": "token texts",
    "vocab_truncated": "vocabulary size",
    "bos_id": "BOS id",
    "add_bos": "adds BOS",
    "eos_id": "EOS id",
    "pre": "pre-tokenizer",
    "model": "tokenizer model",
}


def test_same_tokenizer_is_compatible(tiny_dense: Path, tiny_draft: Path) -> None:
    result = check_draft(inspect_model(tiny_dense), inspect_model(tiny_draft))
    assert result.compatible, result.summary()
    names = {c.name for c in result.checks}
    assert {
        "tokenizer model",
        "pre-tokenizer",
        "vocabulary size",
        "token texts",
        "adds BOS",
        "adds EOS",
        "EOS id",
        "draft can speculate",
    } <= names


@pytest.mark.parametrize("variant", sorted(VARIANT_CHECKS))
def test_each_variant_fails_its_check(
    tiny_dir: Path, tiny_dense: Path, tokenizer_source: Path | None, variant: str
) -> None:
    draft = tiny_models.tokenizer_variant(tiny_dir, variant, tokenizer_source)
    target = inspect_model(tiny_dense)
    result = check_draft(target, inspect_model(draft))
    if variant == "bos_id" and not target.add_bos:
        # llama.cpp compares BOS ids only when BOS is added (SmolLM2 adds none).
        check = next(c for c in result.checks if c.name == "BOS id")
        assert check.ok and "harmless" in check.detail
        return
    assert not result.compatible
    failed = {c.name for c in result.failed}
    assert VARIANT_CHECKS[variant] in failed, result.summary()
    assert all(c.detail for c in result.checks)


def test_token_text_detail_names_the_token(tiny_dense: Path, tiny_incompatible: Path) -> None:
    result = check_draft(inspect_model(tiny_dense), inspect_model(tiny_incompatible))
    detail = next(c.detail for c in result.failed if c.name == "token texts")
    assert detail.startswith("token 17: ")


def test_recurrent_draft_is_refused(tiny_dense: Path, tiny_mamba: Path) -> None:
    result = check_draft(inspect_model(tiny_dense), inspect_model(tiny_mamba))
    assert "draft can speculate" in {c.name for c in result.failed}

"""Can this draft model serve that target? Every check llama.cpp applies, named and explained.

The checks mirror llama.cpp's ``common_speculative_are_compatible`` (vocab type, add-BOS/EOS
flags and ids, vocab sizes within 128, identical token texts from id 5 on) plus the
tokenizer model and pre-tokenizer, and refuse a recurrent or hybrid draft, whose state
cannot be rolled back after a rejection.

``draft_fit`` says whether a compatible model is also worth offering as a draft: it must be
smaller than the target (fewer parameters or a smaller file), and neither the target's own
file nor the same model in another quantization (the F16 copy of a Q4 target is slower
than the target itself; a Q4 copy of an F16 target runs every layer again for each token).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.core.gguf_info import ModelInfo
from app.core.gguf_reader import shown
from app.core.sizes import human_size

VOCAB_SIZE_TOLERANCE = 128
FIRST_COMPARED_TOKEN = 5


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "detail": self.detail}


@dataclass
class Compatibility:
    checks: list[Check] = field(default_factory=list)

    @property
    def compatible(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    def summary(self) -> str:
        if self.compatible:
            return "compatible: every check passed"
        return "incompatible: " + "; ".join(f"{c.name}: {c.detail}" for c in self.failed)

    def to_dict(self) -> dict[str, Any]:
        return {"compatible": self.compatible, "checks": [c.to_dict() for c in self.checks]}


def _quoted(value: object) -> str:
    # Strings come from the files: cut and escaped so a detail stays one short line.
    return shown(value) if isinstance(value, str) else repr(value)


def _same(name: str, target: object, draft: object, what: str = "") -> Check:
    ok = target == draft
    label = f"{what} " if what else ""
    t, d = _quoted(target), _quoted(draft)
    detail = f"both {label}{t}" if ok else f"target {label}{t} vs draft {d}"
    return Check(name, ok, detail)


def _special_token(name: str, flag: str, target: ModelInfo, draft: ModelInfo) -> list[Check]:
    t_add, d_add = getattr(target, f"add_{flag}"), getattr(draft, f"add_{flag}")
    t_id, d_id = getattr(target, f"{flag}_id"), getattr(draft, f"{flag}_id")
    id_check = _same(f"{name} id", t_id, d_id)
    # As llama.cpp: a BOS id only matters when it is added; EOS ends generation: always.
    if not id_check.ok and flag == "bos" and not t_add:
        id_check = Check(id_check.name, True, f"{id_check.detail}, harmless: no {name} is added")
    return [_same(f"adds {name}", t_add, d_add), id_check]


def _token_texts(target: ModelInfo, draft: ModelInfo) -> Check:
    n = min(len(target.tokens), len(draft.tokens))
    if n == 0:
        return Check("token texts", False, "a model has no vocabulary in its file")
    for i in range(FIRST_COMPARED_TOKEN, n):
        if target.tokens[i] != draft.tokens[i]:
            texts = f"{shown(target.tokens[i])} vs {shown(draft.tokens[i])}"
            return Check("token texts", False, f"token {i}: {texts}")
    return Check("token texts", True, f"ids {FIRST_COMPARED_TOKEN}…{n - 1} identical")


def check_draft(target: ModelInfo, draft: ModelInfo) -> Compatibility:
    """Compare ``draft`` with ``target``; never raises, reports every check."""
    result = Compatibility()
    add = result.checks.append
    add(
        Check(
            "draft can speculate",
            draft.speculation_allowed,
            "attention-only draft" if draft.speculation_allowed else draft.speculation_reason,
        )
    )
    add(_same("tokenizer model", target.tokenizer_model, draft.tokenizer_model))
    add(_same("pre-tokenizer", target.tokenizer_pre, draft.tokenizer_pre))
    result.checks.extend(_special_token("BOS", "bos", target, draft))
    result.checks.extend(_special_token("EOS", "eos", target, draft))
    diff = abs(target.n_vocab - draft.n_vocab)
    add(
        Check(
            "vocabulary size",
            diff <= VOCAB_SIZE_TOLERANCE,
            f"vocab {target.n_vocab} vs {draft.n_vocab}"
            + (
                ""
                if diff <= VOCAB_SIZE_TOLERANCE
                else f" (differ by {diff} > {VOCAB_SIZE_TOLERANCE})"
            ),
        )
    )
    add(_token_texts(target, draft))
    return result


@dataclass(frozen=True)
class DraftFit:
    """Whether a model is offered as a draft for a target, and why (a few words)."""

    offered: bool
    reason: str


def _same_file(a: str, b: str) -> bool:
    try:
        return Path(a).resolve() == Path(b).resolve()
    except OSError:
        return a == b


def draft_fit(target: ModelInfo, draft: ModelInfo,
              compatibility: Compatibility | None = None) -> DraftFit:
    """Whether ``draft`` can serve ``target`` as a draft model: compatible (checked here
    unless given), not the target's file, not the target's model in another quantization,
    and smaller than it (fewer parameters or a smaller file)."""
    if _same_file(target.path, draft.path):
        return DraftFit(False, "the target itself")
    c = compatibility if compatibility is not None else check_draft(target, draft)
    if not c.compatible:
        return DraftFit(False, "incompatible: " + ", ".join(x.name for x in c.failed))
    params = f"{draft.size_label} vs {target.size_label} parameters"
    if draft.architecture == target.architecture and draft.n_params == target.n_params:
        larger = "larger" if draft.file_size > target.file_size else "smaller"
        return DraftFit(False, f"the target's own model in another quantization "
                        f"({draft.quantization}, {larger} file: {human_size(draft.file_size)})")
    if draft.n_params >= target.n_params and draft.file_size >= target.file_size:
        return DraftFit(False, f"not smaller than the target ({params})")
    return DraftFit(True, f"compatible and smaller ({params}, {human_size(draft.file_size)})")

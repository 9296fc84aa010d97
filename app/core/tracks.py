"""The registry of decoding-acceleration tracks and whether each applies to a model pair.

Working tracks are built from three ingredients: a draft model (Track 1), prompt lookup
(Track 8) and MoE expert reduction (Track 2). Deprecated tracks stay listed so that a user
who has read about them learns why they do not work on GGUF models and what to use instead.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.core.compat import Compatibility
from app.core.errors import RefusedError
from app.core.gguf_info import ModelInfo


@dataclass(frozen=True)
class Track:
    id: str
    number: int | None
    name: str
    summary: str
    uses_draft: bool = False
    uses_lookup: bool = False
    uses_moe: bool = False
    deprecated: bool = False
    failure: str = ""
    instead: str = ""

    @property
    def speculates(self) -> bool:
        return self.uses_draft or self.uses_lookup

    @property
    def label(self) -> str:
        return f"Track {self.number}: {self.name}" if self.number else self.name


WORKING = (
    Track("baseline", None, "Baseline", "one target token per step: the reference for speed"),
    Track(
        "draft",
        1,
        "Draft model",
        "a small model with the same tokenizer proposes tokens; the target checks them "
        "in one batch",
        uses_draft=True,
    ),
    Track(
        "moe",
        2,
        "MoE expert reduction",
        "run a Mixture-of-Experts model with fewer active experts per token",
        uses_moe=True,
    ),
    Track(
        "lookup",
        8,
        "Prompt lookup",
        "drafts copied from n-gram matches in the prompt and the text so far",
        uses_lookup=True,
    ),
    Track(
        "draft+lookup",
        1,
        "Draft model + prompt lookup",
        "prompt lookup where it matches, the draft model elsewhere",
        uses_draft=True,
        uses_lookup=True,
    ),
    Track(
        "moe+lookup",
        2,
        "MoE reduction + prompt lookup",
        "fewer experts, and drafts from n-gram matches",
        uses_moe=True,
        uses_lookup=True,
    ),
    Track(
        "moe+draft",
        2,
        "MoE reduction + draft model",
        "fewer experts in the target, and a draft model",
        uses_moe=True,
        uses_draft=True,
    ),
    Track(
        "moe+draft+lookup",
        2,
        "MoE reduction + draft model + prompt lookup",
        "all three together",
        uses_moe=True,
        uses_draft=True,
        uses_lookup=True,
    ),
)

DEPRECATED = (
    Track(
        "eagle",
        3,
        "EAGLE-1",
        "a trained feature-level draft head on top of the target",
        deprecated=True,
        failure="checkpoint incompatibility with GGUF quantization: EAGLE heads are trained "
        "on the full-precision target's hidden states, which a quantized GGUF target no "
        "longer reproduces, and llama.cpp has no graph for them",
        instead="Track 1 (draft model) or Track 8 (prompt lookup)",
    ),
    Track(
        "medusa",
        4,
        "Medusa",
        "extra decoding heads predict several tokens at once",
        deprecated=True,
        failure="per-model head training: the heads must be trained for each target, none "
        "exist for GGUF models, and llama.cpp cannot run them",
        instead="Track 1 (draft model)",
    ),
    Track(
        "ssm-spec",
        5,
        "SSM speculation",
        "speculative decoding with state-space models",
        deprecated=True,
        failure="unrollable recurrent state: a rejected draft cannot be undone in a "
        "recurrent state the way a KV cache tail is dropped",
        instead="baseline or Track 2 for SSM models; Track 1 with attention models",
    ),
    Track(
        "cas-spec",
        7,
        "CAS-Spec layer skipping",
        "the target drafts for itself with layers skipped",
        deprecated=True,
        failure="untrained exit classifiers: the cascade needs trained early-exit "
        "classifiers per model, and without them acceptance collapses",
        instead="Track 8 (prompt lookup), also draft-free",
    ),
    Track(
        "clasp-swift",
        9,
        "CLaSp / SWIFT",
        "in-context layer-skipping self-speculation",
        deprecated=True,
        failure="per-model adapter and layer-set search: the skipped-layer set must be "
        "optimised per model, and llama.cpp cannot skip layers per token",
        instead="Track 8 (prompt lookup) or Track 1",
    ),
    Track(
        "kangaroo",
        10,
        "Kangaroo",
        "a shallow sub-network with a trained adapter drafts",
        deprecated=True,
        failure="per-model adapter training: the adapter and early exit must be trained for "
        "each target and do not exist for GGUF models",
        instead="Track 1 (draft model)",
    ),
)

ALL = WORKING + DEPRECATED
BY_ID = {t.id: t for t in ALL}


def get_track(track_id: str) -> Track:
    """The track with this id; RefusedError for unknown or deprecated ones."""
    track = BY_ID.get(track_id)
    if track is None:
        known = ", ".join(t.id for t in WORKING)
        raise RefusedError(f"unknown track {track_id!r} (tracks: {known})")
    if track.deprecated:
        raise RefusedError(
            f"{track.label} is deprecated: {track.failure}. Use {track.instead} instead."
        )
    return track


def availability(
    track: Track,
    target: ModelInfo | None,
    draft: ModelInfo | None = None,
    compatibility: Compatibility | None = None,
) -> str | None:
    """Why ``track`` cannot run on this pair, or None if it can."""
    if track.deprecated:
        return f"deprecated: {track.failure}; use {track.instead}"
    if target is None:
        return "no target model loaded"
    if track.speculates and not target.speculation_allowed:
        return target.speculation_reason
    if track.uses_moe and not target.is_moe:
        return f"not an MoE model ({target.architecture} has no expert_count)"
    if track.uses_draft:
        if draft is None:
            return "no draft model chosen"
        if not draft.speculation_allowed:
            return draft.speculation_reason
        if compatibility is not None and not compatibility.compatible:
            return "draft incompatible: " + "; ".join(
                f"{c.name}: {c.detail}" for c in compatibility.failed
            )
    return None


def require_available(
    track: Track,
    target: ModelInfo,
    draft: ModelInfo | None,
    compatibility: Compatibility | None,
) -> None:
    reason = availability(track, target, draft, compatibility)
    if reason is not None:
        raise RefusedError(f"{track.label} refused: {reason}")

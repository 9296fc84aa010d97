"""How each deprecated track is reproduced, whether it can be on a given model, and what the
study and the papers reported for it (shown beside our numbers, labelled as theirs).

Three experiments cover the six deprecated tracks:
- ``layer-skip`` (7 CAS-Spec, 9 CLaSp/SWIFT, 10 Kangaroo): the target's own first blocks (or,
  for CLaSp/SWIFT, blocks spread over its depth) plus its head, as a Track 1 draft;
- ``ssm`` (5): speculation on a recurrent or hybrid target, rolled back naively and with
  state snapshots;
- ``heads`` (3 EAGLE-1, 4 Medusa): nothing to run without trained heads; the file is
  searched for them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from app.core.errors import RefusedError
from app.core.gguf_info import ModelInfo
from app.core.tracks import DEPRECATED, Track

Kind = Literal["layer-skip", "ssm", "heads"]

KINDS: dict[str, Kind] = {
    "cas-spec": "layer-skip",
    "clasp-swift": "layer-skip",
    "kangaroo": "layer-skip",
    "ssm-spec": "ssm",
    "eagle": "heads",
    "medusa": "heads",
}
# Which blocks a layer-skip track keeps at depth N: an early exit after the first N, or N
# spread over the whole depth (a fixed stand-in for the skipped set CLaSp/SWIFT search for).
SPREAD_TRACKS = frozenset({"clasp-swift"})


@dataclass(frozen=True)
class Reported:
    """A figure someone else reported, with who and under which conditions."""

    what: str  # "acceptance" or "speedup"
    low: float  # a rate (0…1) or a speedup (×)
    high: float
    source: str  # who reported it, and how

    def text(self) -> str:
        if self.what == "acceptance":
            shown = f"{100 * self.low:.3g} %" if self.low == self.high else \
                f"{100 * self.low:.3g}–{100 * self.high:.3g} %"
        else:
            shown = f"{self.low:g}×" if self.low == self.high else f"{self.low:g}–{self.high:g}×"
        return f"{shown} {self.what} ({self.source})"


STUDY_LAYER_SKIP = Reported(
    "acceptance", 0.00446, 0.00446,
    "the study, CAS-Spec layer skipping on GGUF without trained exit classifiers")
PAPERS_LAYER_SKIP = Reported(
    "speedup", 1.3, 2.3,
    "the papers, with trained exits, adapters or searched layer sets; not measured here")
# The layer-skip reference numbers as the study gives them; the papers' speedups need the
# trained parts the GGUF files do not have, so they are never what we measure.
REPORTED: dict[Kind, tuple[Reported, ...]] = {
    "layer-skip": (STUDY_LAYER_SKIP, PAPERS_LAYER_SKIP),
    "ssm": (),
    "heads": (),
}


def deprecated_track(track_id: str) -> Track:
    """The deprecated track ``track_id``; RefusedError for anything else."""
    for t in DEPRECATED:
        if t.id == track_id:
            return t
    known = ", ".join(t.id for t in DEPRECATED)
    raise RefusedError(f"{track_id!r} is not a deprecated track (reproducible: {known})")


def kind_of(track_id: str) -> Kind:
    deprecated_track(track_id)
    return KINDS[track_id]


def refusal(track_id: str, target: ModelInfo) -> str | None:
    """Why ``track_id`` cannot be reproduced on ``target``, or None if it can. EAGLE and
    Medusa are never refused: their experiment is the search for heads, which says why."""
    track = deprecated_track(track_id)
    kind = KINDS[track_id]
    if kind == "ssm" and target.speculation_allowed:
        return (f"{track.label} needs a recurrent or hybrid (SSM) model; "
                f"{target.file_name} is a {target.architecture} attention model, whose KV "
                "cache rolls back: nothing of SSM speculation to show on it")
    if kind == "layer-skip" and not target.speculation_allowed:
        return (f"{track.label} drafts with the target's own blocks as a Track 1 draft, and "
                f"{target.file_name} is a {'recurrent' if target.is_recurrent else 'hybrid'}"
                f" ({target.architecture}) model whose state cannot roll back a rejected "
                "draft: reproduce ssm-spec on it instead")
    return None


def require_reproducible(track_id: str, target: ModelInfo) -> Kind:
    why = refusal(track_id, target)
    if why is not None:
        raise RefusedError(why)
    return KINDS[track_id]

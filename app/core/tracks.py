"""Tracks: which draft sources run together, and whether the target runs with fewer experts.

A working track is a set of draft sources of the registry (``app.core.drafting``) plus the
MoE switch (Track 2, expert reduction); its id joins the parts with ``+`` (``moe`` first,
then the sources in registry order: ``draft+lookup``, ``moe+lookup``, ...). Every
combination of registered sources is a track, so a new source brings its own. Deprecated
tracks stay listed so that a user who has read about them learns why they do not work on
GGUF models and what to use instead.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from itertools import combinations

from app.core.compat import Compatibility
from app.core.drafting.registry import DraftSource, get_source, sources
from app.core.errors import RefusedError
from app.core.gguf_info import ModelInfo

# What any track id looks like: registry ids (and ``moe``) joined by ``+``, or a name.
TRACK_ID = re.compile(r"[a-z][a-z0-9_-]{0,31}(\+[a-z][a-z0-9_-]{0,31}){0,7}")
MOE_NUMBER = 2
MOE_NAME = "MoE expert reduction"


@dataclass(frozen=True)
class Track:
    id: str
    number: int | None
    name: str
    summary: str
    sources: tuple[str, ...] = ()  # registry ids, in the order they propose (priority)
    moe: bool = False
    deprecated: bool = False
    failure: str = ""
    instead: str = ""

    @property
    def speculates(self) -> bool:
        return bool(self.sources)

    @property
    def needs_draft_model(self) -> bool:
        return any(s.needs_draft_model for s in self.draft_sources)

    @property
    def draft_sources(self) -> tuple[DraftSource, ...]:
        return tuple(src for s in self.sources if (src := get_source(s)) is not None)

    @property
    def label(self) -> str:
        return f"Track {self.number}: {self.name}" if self.number else self.name


def make_track(source_ids: tuple[str, ...] | list[str], moe: bool) -> Track:
    """The working track of these sources (any order; each known) with or without MoE."""
    known = sources()
    order = {s.id: i for i, s in enumerate(known)}
    picked = sorted(set(source_ids), key=lambda s: order[s])
    srcs = [s for s in known if s.id in picked]
    if not srcs and not moe:
        return BASELINE
    parts = (["moe"] if moe else []) + picked
    names = ([MOE_NAME if not srcs else "MoE reduction"] if moe else []) + [s.name for s in srcs]
    name = " + ".join(names[:1] + [n[0].lower() + n[1:] for n in names[1:]])
    by_priority = sorted(srcs, key=lambda s: s.priority)
    if len(srcs) == 1 and not moe:
        summary = srcs[0].summary
    elif srcs:
        summary = "drafts from " + ", else ".join(s.label for s in by_priority)
        summary += "; the target runs with fewer experts" if moe else ""
    else:
        summary = "run a Mixture-of-Experts model with fewer active experts per token"
    number = MOE_NUMBER if moe else next((s.number for s in srcs if s.number), None)
    return Track("+".join(parts), number, name, summary,
                 tuple(s.id for s in by_priority), moe)


BASELINE = Track("baseline", None, "Baseline",
                 "one target token per step: the reference for speed")

DEPRECATED = (
    Track(
        "eagle", 3, "EAGLE-1", "a trained feature-level draft head on top of the target",
        deprecated=True,
        failure="checkpoint incompatibility with GGUF quantization: EAGLE heads are trained "
        "on the full-precision target's hidden states, which a quantized GGUF target no "
        "longer reproduces, and llama.cpp has no graph for them",
        instead="Track 1 (draft model) or Track 8 (prompt lookup)",
    ),
    Track(
        "medusa", 4, "Medusa", "extra decoding heads predict several tokens at once",
        deprecated=True,
        failure="per-model head training: the heads must be trained for each target, none "
        "exist for GGUF models, and llama.cpp cannot run them",
        instead="Track 1 (draft model)",
    ),
    Track(
        "ssm-spec", 5, "SSM speculation", "speculative decoding with state-space models",
        deprecated=True,
        failure="unrollable recurrent state: a rejected draft cannot be undone in a "
        "recurrent state the way a KV cache tail is dropped",
        instead="baseline or Track 2 for SSM models; Track 1 with attention models",
    ),
    Track(
        "cas-spec", 7, "CAS-Spec layer skipping",
        "the target drafts for itself with layers skipped",
        deprecated=True,
        failure="untrained exit classifiers: the cascade needs trained early-exit "
        "classifiers per model, and without them acceptance collapses",
        instead="Track 8 (prompt lookup), also draft-free",
    ),
    Track(
        "clasp-swift", 9, "CLaSp / SWIFT", "in-context layer-skipping self-speculation",
        deprecated=True,
        failure="per-model adapter and layer-set search: the skipped-layer set must be "
        "optimised per model, and llama.cpp cannot skip layers per token",
        instead="Track 8 (prompt lookup) or Track 1",
    ),
    Track(
        "kangaroo", 10, "Kangaroo", "a shallow sub-network with a trained adapter drafts",
        deprecated=True,
        failure="per-model adapter training: the adapter and early exit must be trained for "
        "each target and do not exist for GGUF models",
        instead="Track 1 (draft model)",
    ),
)


def working() -> tuple[Track, ...]:
    """Every working track: the baseline, each source alone and MoE alone (by track
    number), then each combination of sources, then each of those with MoE."""
    ids = [s.id for s in sources()]
    singles = [make_track([s], False) for s in ids] + [make_track([], True)]
    singles.sort(key=lambda t: t.number if t.number is not None else 99)
    combos = [make_track(list(c), False) for n in range(2, len(ids) + 1)
              for c in combinations(ids, n)]
    moe = [make_track(list(c), True) for n in range(1, len(ids) + 1)
           for c in combinations(ids, n)]
    return (BASELINE, *singles, *combos, *moe)


def all_tracks() -> tuple[Track, ...]:
    return working() + DEPRECATED


def find_track(track_id: str) -> Track | None:
    """The track with this id (parts in any order), or None."""
    key = track_id.strip()
    if key == "baseline":
        return BASELINE
    for t in DEPRECATED:
        if t.id == key:
            return t
    parts = key.split("+")
    if not parts or len(set(parts)) != len(parts):
        return None
    moe = "moe" in parts
    srcs = [p for p in parts if p != "moe"]
    if any(get_source(p) is None for p in srcs):
        return None
    return make_track(srcs, moe)


def get_track(track_id: str) -> Track:
    """The track with this id; RefusedError for unknown or deprecated ones."""
    track = find_track(track_id)
    if track is None:
        raise RefusedError(unknown_track(track_id))
    return _refuse_deprecated(track)


# -- what a user may type for a track -------------------------------------------------------
# Ids stay the one form that runs, results and history carry; a user may also type a
# track's number, "track8", its name as the window shows it, or "Track 8 · Prompt lookup",
# in any case, and join any of them with "+". ``resolve_track`` turns that into the id.

_SEPARATORS = re.compile(r"[\s_\-:·/.]+")


def _key(text: str) -> str:
    return _SEPARATORS.sub("-", text.strip().lower()).strip("-")


def _alias_table() -> dict[str, str]:
    """Every alias (as ``_key`` writes it) of a single track or part, to its id part."""
    table: dict[str, str] = {"0": "baseline", "base": "baseline"}

    def add(part: str, number: int | None, *names: str) -> None:
        for name in (part, *names):
            table.setdefault(_key(name), part)
        if number is not None:
            for form in (f"{number}", f"track{number}", f"track-{number}"):
                table.setdefault(form, part)
            for name in names:
                table.setdefault(f"track-{number}-{_key(name)}", part)

    add(BASELINE.id, None, BASELINE.name)
    for src in sources():
        add(src.id, src.number, src.name, src.label)
    add("moe", MOE_NUMBER, MOE_NAME, "MoE reduction", "expert reduction")
    for t in DEPRECATED:
        add(t.id, t.number, t.name)
    return table


def resolve_track_alias(text: str) -> Track | None:
    """The track ``text`` means (an id, number, name or label, in any case; parts joined by
    ``+``, e.g. ``1+8``, ``Draft model + prompt lookup``), or None. A deprecated track,
    alone or in a combination, resolves to its deprecated entry (to be refused with why)."""
    table = _alias_table()
    parts = [table.get(_key(p)) for p in text.split("+")]
    if not parts or any(p is None for p in parts):
        return None
    ids = list(dict.fromkeys(p for p in parts if p is not None))
    for t in DEPRECATED:
        if t.id in ids:
            return t
    if len(ids) == 1:
        return find_track(ids[0])
    if BASELINE.id in ids:
        return None  # the baseline drafts nothing: it does not combine
    return find_track("+".join(ids))


def suggest_track(text: str) -> str | None:
    """The id of the track ``text`` was probably meant to name (a typo), or None."""
    table = _alias_table()
    picked = []
    for part in text.split("+"):
        key = _key(part)
        close = table.get(key) or next(iter(difflib.get_close_matches(key, table, 1, 0.6)), None)
        if close is None:
            return None
        picked.append(table.get(close, close))
    track = resolve_track_alias("+".join(picked))
    return track.id if track is not None else None


def unknown_track(text: str) -> str:
    """One line: ``text`` names no track, what it may have meant, and the tracks there are."""
    hint = suggest_track(text)
    singles = [t for t in working() if len(t.sources) + t.moe <= 1]
    known = ", ".join(f"{t.id} ({t.number})" if t.number else t.id for t in singles)
    did = f": did you mean {hint!r}?" if hint else ""
    return f"unknown track {text!r}{did} (tracks: {known}; join with +, e.g. draft+lookup)"


def resolve_track(text: str) -> Track:
    """The track ``text`` means (see ``resolve_track_alias``); RefusedError, one line, for
    an unknown one (with a suggestion) or a deprecated one (with why and what instead)."""
    track = resolve_track_alias(text)
    if track is None:
        raise RefusedError(unknown_track(text))
    return _refuse_deprecated(track)


def _refuse_deprecated(track: Track) -> Track:
    if track.deprecated:
        raise RefusedError(
            f"{track.label} is deprecated: {track.failure}. Use {track.instead} instead."
        )
    return track


def reasons(
    track: Track,
    target: ModelInfo | None,
    draft: ModelInfo | None = None,
    compatibility: Compatibility | None = None,
) -> tuple[str, str] | None:
    """Why ``track`` cannot run on this pair, as (a few words, the whole reason); None if
    it can. The window shows the first beside the track and the second as its tooltip."""
    if track.deprecated:
        return "deprecated", f"deprecated: {track.failure}; use {track.instead}"
    if target is None:
        return "no model loaded", "no target model loaded"
    if track.speculates and not target.speculation_allowed:
        return "SSM model: speculation off", target.speculation_reason
    if track.moe and not target.is_moe:
        return ("not an MoE model",
                f"not an MoE model ({target.architecture} has no expert_count)")
    if track.needs_draft_model:
        if draft is None:
            return "no draft loaded", "no draft model chosen (--draft)"
        if not draft.speculation_allowed:
            return "draft is an SSM model", draft.speculation_reason
        if compatibility is not None and not compatibility.compatible:
            failed = compatibility.failed
            return ("draft incompatible (" + ", ".join(c.name for c in failed) + ")",
                    "draft incompatible: " + "; ".join(f"{c.name}: {c.detail}" for c in failed))
    return None


def availability(
    track: Track,
    target: ModelInfo | None,
    draft: ModelInfo | None = None,
    compatibility: Compatibility | None = None,
) -> str | None:
    """Why ``track`` cannot run on this pair, or None if it can."""
    why = reasons(track, target, draft, compatibility)
    return why[1] if why else None


def require_available(
    track: Track,
    target: ModelInfo,
    draft: ModelInfo | None,
    compatibility: Compatibility | None,
) -> None:
    reason = availability(track, target, draft, compatibility)
    if reason is not None:
        raise RefusedError(f"{track.label} refused: {reason}")

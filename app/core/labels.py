"""What the program calls things on screen: one table of display names for the settings,
the tracks, the stop reasons and the figures, shared by the window, the command line and
the history, so that a setting is "Max tokens" everywhere and never ``max_tokens`` in one
place and "max tokens" in another.

A draft source's own settings and names stay in the registry (``app.core.drafting``: each
source is described once); this table only words them the same way.
"""

from __future__ import annotations

import app.core.drafting.registry as registry
from app.core.tracks import find_track

# The core settings (``RunSettings`` fields), sentence case.
SETTINGS = {
    "track": "Track",
    "max_tokens": "Max tokens",
    "temperature": "Temperature",
    "seed": "Seed",
    "top_k": "Top-k",
    "top_p": "Top-p",
    "min_p": "Min-p",
    "repeat_penalty": "Repeat penalty",
    "repeat_last_n": "Repeat window (tokens)",
    "draft_max": "K (draft max)",
    "draft_min": "Draft min",
    "adaptive": "Adaptive drafting",
    "experts": "Experts",
    "threads": "Threads",
    "ctx": "Context size",
    "chat": "Chat template",
    "system": "System message",
    "gpu_layers": "GPU layers",
    "draft_gpu_layers": "Draft GPU layers",
}

STOP_REASONS = {
    "eos": "End of text",
    "max_tokens": "Max tokens reached",
    "cancelled": "Cancelled",
    "context_full": "Context full",
    "error": "Error",
}

# Mean accepted length, the usual definition (as in the speculative decoding papers' tau):
# per verification round that had drafts, the drafts the target accepted plus the one token
# the target adds itself, i.e. answer tokens per target verify. Always >= 1 where defined.
MEAN_ACCEPTED_LENGTH_HELP = ("tokens per target verification that had drafts: the drafts "
                             "accepted plus the target's own bonus token (at least 1)")

# The figures of a run, as columns and rows name them.
FIELDS = {
    "tokens_per_second": "tok/s",
    "speedup": "Speedup",
    "verdict": "Verdict",
    "acceptance_rate": "Acceptance",
    "mean_accepted_length": "Mean accepted length",
    "n_generated": "Tokens",
    "n_drafted": "Drafted",
    "n_accepted": "Accepted",
    "stop_reason": "Stopped",
    "same_text_as_baseline": "Same answer as baseline",
    "draft_verify": "Draft / verify time",
}

FIELD_HELP = {
    "mean_accepted_length": MEAN_ACCEPTED_LENGTH_HELP,
    "acceptance_rate": "drafted tokens the target accepted, of all drafted",
    "speedup": "tokens/s against the baseline on the same prompt and settings; with repeats "
               "the median of the paired runs, with their range",
}


def track_label(track_id: str) -> str:
    """"Track 8 · Prompt lookup", "Baseline", "MoE reduction + prompt lookup" (no number
    of its own), or the raw id of a track no longer known (an old record)."""
    track = find_track(track_id)
    if track is None:
        return track_id
    return f"Track {track.number} · {track.name}" if track.number else track.name


def setting_label(name: str) -> str:
    """A setting's display name: the table's, a draft source's own label (registry), or
    its key when neither knows it."""
    if name in SETTINGS:
        return SETTINGS[name]
    spec = registry.setting(name)
    return spec.label if spec is not None else name


def stop_label(reason: str) -> str:
    return STOP_REASONS.get(reason, reason)


def field_label(name: str) -> str:
    return FIELDS.get(name, name)

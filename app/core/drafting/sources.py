"""The registry lines: one ``register`` call per built-in draft source.

Each build function imports its module when called, so listing the sources (for ``--help``,
a legend, reading history) loads no model code.
"""

from __future__ import annotations

from typing import Any

from app.core.drafting.registry import BuildContext, DraftSource, Setting, register
from app.core.drafting.suffix import SOURCE as SUFFIX

MAX_NGRAM = 16  # the longest n-gram prompt lookup keeps tables for


def _draft_model(ctx: BuildContext) -> Any:
    import numpy as np

    from app.core.drafting.draft_model import DraftModel, new_bands
    from app.core.sampling import SamplerSettings

    s = ctx.settings
    sampler = SamplerSettings(s.temperature, s.top_k, s.top_p, s.min_p)
    # What adaptive drafting learned about this pair, kept across runs.
    bands = ctx.memory.setdefault((ctx.target.path, ctx.draft.path), new_bands())
    rng = np.random.default_rng(s.seed + 1)
    return DraftModel(ctx.draft, sampler, ctx.option("draft_p_min"), s.adaptive, ctx.costs,
                      rng, bands)


def _lookup(ctx: BuildContext) -> Any:
    from app.core.drafting.lookup import PromptLookup

    # Lookup learns afresh each run: how far copying goes depends on the prompt, and what
    # one prompt taught misleads on the next (measured: summarize after code_edit drafted
    # too far, 1.74x instead of 1.83x).
    return PromptLookup(ctx.option("ngram_min"), ctx.option("ngram_max"), ctx.settings.adaptive,
                        ctx.costs)


register(DraftSource(
    id="draft", label="draft model", name="Draft model", number=1,
    summary="a small model with the same tokenizer proposes tokens; the target checks them "
            "in one batch",
    colour="#c9e2fb", dark_colour="#1d3f63", plot_colour="#1f77b4",
    cost="model", needs_draft_model=True, priority=30, build=_draft_model,
    settings=(
        Setting("draft_p_min", "p-min", "the draft model stops drafting when its top "
                "probability falls below this (fixed drafting)", 0.75, 0.0, 1.0, 0.05,
                sweep=(0.0, 0.2, 0.4, 0.6, 0.8, 0.9)),
    ),
))

register(DraftSource(
    id="lookup", label="prompt lookup", name="Prompt lookup", number=8,
    summary="drafts copied from n-gram matches in the prompt and the text so far",
    colour="#cdeec9", dark_colour="#1f4a22", plot_colour="#2ca02c",
    cost="free", needs_draft_model=False, priority=10, build=_lookup,
    settings=(
        Setting("ngram_min", "n-gram min", "shortest n-gram prompt lookup matches", 1, 1,
                MAX_NGRAM, sweep=(1, 2, 3, 4)),
        Setting("ngram_max", "n-gram max", "longest n-gram prompt lookup matches", 4, 1,
                MAX_NGRAM),
    ),
    check=lambda get: (f"ngram-max ({get('ngram_max')}) must be >= ngram-min "
                       f"({get('ngram_min')})" if get("ngram_max") < get("ngram_min") else None),
))

register(SUFFIX)

"""Speculative sampling through the real engine keeps the target's distribution.

The first answer token comes from a verification round (the last prompt token is
evaluated together with the drafts), so over many seeds its frequencies must match the
target's own sampling distribution after the prompt, whatever the draft proposes.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from app.core.events import RunSettings
from app.core.sampling import SamplerSettings, distribution
from app.core.session import Session, render_prompt

PROMPT = "Once upon a time, in a land far"
RUNS = 1200


@pytest.mark.slow
@pytest.mark.parametrize("track", ["draft", "lookup"])
def test_first_token_distribution_matches_target(
    tiny_dense: Path, tiny_draft: Path, track: str
) -> None:
    s = RunSettings(
        track=track,
        max_tokens=2,
        temperature=1.0,
        top_k=6,
        top_p=1.0,
        min_p=0.0,
        draft_max=2,
        ctx=256,
        threads=1,
        adaptive=False,
        options={"ngram_min": 1, "ngram_max": 1},
    )
    # Give lookup a match that passes llama.cpp's vote thresholds (two samples for n = 1).
    prompt = PROMPT + " far far" if track == "lookup" else PROMPT
    session = Session()
    try:
        counts: Counter[int] = Counter()
        rejected = 0
        for seed in range(RUNS):
            r = session.run(
                tiny_dense, tiny_draft, prompt, replace(s, seed=seed)
            )
            counts[r.token_ids[0]] += 1
            rejected += r.n_drafted - r.n_accepted
        target = session.target
        assert target is not None
        target.reset()
        ids = render_prompt(target, prompt, False, None)
        row = np.array(target.eval(ids, 1)[0])
        p = distribution(row, SamplerSettings(1.0, 6, 1.0, 0.0))
    finally:
        session.close()
    assert rejected > RUNS // 10, "the draft must be rejected often for the test to mean much"
    observed = np.array([counts[int(t)] for t in p.ids], dtype=float) / RUNS
    assert sum(counts.values()) == RUNS and set(counts) <= {int(t) for t in p.ids}
    tv = 0.5 * float(np.abs(observed - p.probs).sum())
    assert tv < 0.07, f"total variation {tv:.3f} from the target distribution"

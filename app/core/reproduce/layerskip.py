"""Layer-skip self-drafting, reproduced (Tracks 7 CAS-Spec, 9 CLaSp/SWIFT, 10 Kangaroo).

For each depth N the target's self-draft (``layercut``: N of its L blocks plus its own head)
drafts as a Track 1 draft of the full target, through the app's one run path
(``Session.run`` with track ``draft``), each right after a baseline run on the same prompt
and settings. Each depth reports acceptance, acceptance by draft position, tokens/s and the
speedup against its own baseline run (a pair, minutes apart at most: a shared machine's
drifting speed skews it less); the study's and the papers' figures stay beside them.

The drafting is fixed (K drafts every round, p-min 0) unless the caller says otherwise: the
question is how often the target takes what its own first blocks propose, and adaptive
drafting would mostly decline to ask.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from app.core.compare import baseline_margin
from app.core.events import RunSettings
from app.core.gguf_info import inspect_cached
from app.core.reproduce import layercut
from app.core.reproduce.plan import SPREAD_TRACKS, require_reproducible
from app.core.reproduce.result import DepthRun, Reproduction, Step, StepSink
from app.core.reproduce.store import new_id
from app.core.reproduce.verdict import layer_skip_verdict
from app.core.verdict import first_difference

if TYPE_CHECKING:
    from app.core.session import Session

DRAFT_MAX = 4


def reproduce_settings(s: RunSettings | None = None) -> RunSettings:
    """``s`` (default: the app's defaults) with the experiment's drafting: fixed, K = 4
    unless set, every round drafts K tokens (p-min 0)."""
    s = s or RunSettings(draft_max=DRAFT_MAX)
    return replace(s, adaptive=False).with_options(draft_p_min=0.0)


def block_sets(track_id: str, depths: Sequence[int], of: int) -> list[tuple[int, ...]]:
    pick = layercut.spread_blocks if track_id in SPREAD_TRACKS else layercut.first_blocks
    return [pick(n, of) for n in depths]


def run_layer_skip(
    session: Session,
    track_id: str,
    target: str | Path,
    prompt: str,
    settings: RunSettings,
    depths: Sequence[int] | None = None,
    progress: StepSink | None = None,
    cancel: threading.Event | None = None,
) -> Reproduction:
    """The experiment (module docstring). A cancel keeps the depths already run."""
    info = inspect_cached(target)
    require_reproducible(track_id, info)
    cancel = cancel or threading.Event()
    say = progress or (lambda _s: None)
    of = layercut.block_count(Path(target))
    chosen = layercut.check_depths(list(depths) if depths else layercut.default_depths(of), of)
    total = 1 + 2 * len(chosen)
    rep = Reproduction(new_id(), track_id, str(target), info.file_name, prompt,
                       settings.to_dict(), time.time())

    def derive_step(what: str, done: int, whole: int) -> None:
        share = f" {100 * done // whole} %" if whole > 1 else ""
        say(Step(0, total, f"deriving self-drafts: {what}{share}"))

    drafts = layercut.derive(target, block_sets(track_id, chosen, of), derive_step, cancel)
    base_settings = replace(settings, track="baseline")
    for i, (draft, reused) in enumerate(drafts):
        if cancel.is_set():
            rep.notes.append("cancelled: the depths not run are missing")
            break
        # A baseline right before each depth: the speedup is a pair measured minutes apart
        # at most, so a machine whose speed drifts (shared, throttled) skews it less.
        say(Step(1 + 2 * i, total, f"baseline run before {draft.n_blocks} blocks"))
        pair = session.run(target, None, prompt, base_settings, cancel=cancel)
        rep.baseline = rep.baseline or pair
        say(Step(2 + 2 * i, total, f"{draft.n_blocks} of {of} blocks as the draft"))
        run = session.run(target, draft.path, prompt, replace(settings, track="draft"),
                          cancel=cancel)
        speedup = (run.tokens_per_second / pair.tokens_per_second
                   if pair.tokens_per_second > 0 and run.n_generated else None)
        rep.depths.append(DepthRun(draft.blocks, of, str(draft.path), draft.size,
                                   draft.seconds, reused, draft.tied_embeddings, run, speedup,
                                   first_difference(run.token_ids, pair.token_ids),
                                   baseline_tokens_per_second=pair.tokens_per_second))
    base = rep.baseline
    session.close_draft()  # the self-drafts are not the user's draft: free their memory
    margins: dict[int, float] = {}
    for d in rep.depths:
        if d.first_difference is not None and not cancel.is_set():
            at = d.first_difference
            if at not in margins and base is not None:
                margins[at] = baseline_margin(session, target, prompt, settings,
                                              base.token_ids, at)
            d.margin_at_difference = margins.get(at)
    say(Step(total, total, "done"))
    rep.verdict = layer_skip_verdict(rep)
    return rep

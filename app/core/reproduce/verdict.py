"""One paragraph in plain words per reproduction: what was done, what came out, how it
stands against the study, and what to use instead. Built from the numbers alone."""

from __future__ import annotations

from pathlib import Path

from app.core.reproduce.plan import (
    PAPERS_LAYER_SKIP,
    SPREAD_TRACKS,
    STUDY_LAYER_SKIP,
    deprecated_track,
)
from app.core.reproduce.result import DepthRun, HeadsCheck, Reproduction, SsmRun
from app.core.sizes import human_size
from app.core.verdict import NEAR_TIE

NOISE = 0.05  # one run each on a shared machine: closer to 1× than this is "no difference"


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.3g} %"


def _x(x: float | None) -> str:
    return "—" if x is None else f"{x:.2f}×"


def layer_skip_verdict(rep: Reproduction) -> str:
    track = deprecated_track(rep.track)
    if not rep.depths:
        return "Nothing was measured: the experiment stopped before the first depth ran."
    of = rep.depths[0].of_blocks
    how = ("blocks spread evenly over its depth (a fixed set, not one searched per prompt)"
           if rep.track in SPREAD_TRACKS else "first blocks")
    depths = ", ".join(str(d.n_blocks) for d in rep.depths)
    rates = [d for d in rep.depths if d.acceptance is not None]
    parts = [f"{track.label}, reproduced without its trained part: {rep.target_name} cut to "
             f"its {how} ({depths} of {of}), each with the model's own final norm and head "
             "and no exit classifier or adapter, drafted for the full model."]
    if rates:
        lo = min(rates, key=lambda d: d.acceptance or 0.0)
        hi = max(rates, key=lambda d: d.acceptance or 0.0)
        span = (f"{_pct(hi.acceptance)} at {hi.n_blocks} blocks" if lo is hi else
                f"from {_pct(lo.acceptance)} ({lo.n_blocks} blocks) to "
                f"{_pct(hi.acceptance)} ({hi.n_blocks} blocks)")
        parts.append(f"The full model accepted {span} of the drafts; the study measured "
                     f"{_pct(STUDY_LAYER_SKIP.low)} for CAS-Spec.")
    else:
        parts.append("No depth drafted anything, so there is no acceptance to report.")
    parts += _differences(rep)
    noisy = [d for d in rep.depths if beyond_bound(d)]
    if noisy:
        parts.append(" ".join(
            f"At {d.n_blocks} blocks the measured {_x(d.speedup)} is more than its "
            f"{d.result.mean_accepted_length or 1.0:.2f} answer tokens per verification can "
            "give (a speedup never exceeds that): the machine's speed changed between the "
            "pair of runs, and that figure is noise." for d in noisy))
    speeds = [d.speedup for d in rep.depths if d.speedup is not None and d not in noisy]
    if speeds:
        best = max(speeds)
        if best < 1 - NOISE:
            parts.append(f"Every {'other ' if noisy else ''}depth was slower than the baseline "
                         f"({_x(min(speeds))} to {_x(best)}): each draft token costs a part "
                         "of a target step, and too few are accepted to pay for it.")
        elif best <= 1 + NOISE:
            parts.append(f"The fastest depth ran at {_x(best)} the baseline's speed, within "
                         "the noise of one run.")
        else:
            at = next(d for d in rep.depths if d.speedup == best)
            parts.append(f"At {at.n_blocks} blocks it ran at {_x(best)} the baseline's speed "
                         "(one run each: repeat it before trusting it).")
    holds = not speeds or max(speeds) <= 1 + NOISE
    parts.append(f"The papers' {PAPERS_LAYER_SKIP.low:g}–{PAPERS_LAYER_SKIP.high:g}× need "
                 "trained exits, adapters or a searched layer set, which a GGUF file does not "
                 "have; without them the study's conclusion "
                 + ("holds on this model and prompt" if holds else
                    "does not clearly hold here, on one run")
                 + f". Use instead: {track.instead}.")
    return " ".join(parts)


def beyond_bound(d: DepthRun) -> bool:
    """Whether ``d``'s speedup is more than its drafts could give: a round yields its
    accepted drafts plus one token for at least one target step, so the speedup is at most
    the mean accepted length (free drafts, a free batch). More than that is noise."""
    bound = d.result.mean_accepted_length or 1.0
    return d.speedup is not None and d.speedup > bound * (1 + NOISE)


def _differences(rep: Reproduction) -> list[str]:
    """Where drafted answers left the baseline's, and whether that was a near-tie."""
    diffs = [d for d in rep.depths if d.first_difference is not None]
    if not diffs:
        return ["Every drafted answer equals the baseline's, token for token."] \
            if rep.depths else []
    at = sorted({d.first_difference for d in diffs if d.first_difference is not None})
    where = ", ".join(str(p) for p in at)
    margins = [d.margin_at_difference for d in diffs]
    if all(m is not None and m < NEAR_TIE for m in margins):
        low = max(m for m in margins if m is not None)
        return [f"{len(diffs)} of {len(rep.depths)} drafted answers left the baseline's at "
                f"token {where}, where the baseline's two best choices were at most {low:.2g} "
                "apart: a near-tie that a batched verification decides otherwise, not a fault "
                "of the drafts."]
    return [f"{len(diffs)} of {len(rep.depths)} drafted answers left the baseline's at token "
            f"{where}, and not at a near-tie: worth reporting as a bug."]


def ssm_verdict(rep: Reproduction) -> str:
    track = deprecated_track(rep.track)
    naive, snap = rep.mode("naive"), rep.mode("snapshot")
    drafted = max((r.result.n_drafted for r in rep.ssm), default=0)
    if not drafted:
        source = "the draft model" if rep.draft else "prompt lookup (no draft model chosen)"
        return (f"{track.label} on {rep.target_name}: {source} proposed nothing on this "
                "prompt, so no draft was ever rejected and there was nothing to roll back. "
                "Choose a draft model with the same tokenizer and try again.")
    parts = [f"{track.label} on {rep.target_name}, a recurrent model. This experiment is the "
             "only place DecodeLab lets a state-space model speculate: the SSM guard is "
             "bypassed here, on purpose, to show why it exists."]
    if naive is not None:
        parts.append(_naive_sentence(naive))
    if snap is not None:
        parts.append(_snapshot_sentence(snap))
    parts.append(f"Elsewhere the guard stays on. Use instead: {track.instead}.")
    return " ".join(parts)


def _naive_sentence(r: SsmRun) -> str:
    n = r.result.n_generated
    if r.refusals:
        text = (f"Rolled back the way a KV cache is, the state could not drop the rejected "
                f"drafts: llama.cpp refused {r.refusals} rollback"
                f"{'s' if r.refusals != 1 else ''}, the first at answer token "
                f"{r.first_refusal}.")
    else:
        text = "llama.cpp accepted every rollback it was asked for."
    if r.failure:
        return text + f" Carrying on regardless stopped the run: {r.failure}."
    if r.first_difference is not None:
        return text + (" Carrying on regardless, as a caller that ignores the refusal would, "
                       f"the answer left the baseline's at token {r.first_difference} of {n}.")
    return text + (" Carrying on regardless, the answer still matched the baseline on this "
                   "prompt: the corruption did not change a greedy choice this time.")


def _snapshot_sentence(r: SsmRun) -> str:
    res = r.result
    tie = r.margin_at_difference is not None and r.margin_at_difference < NEAR_TIE
    same = ("gave the baseline's answer token for token" if r.same_as_baseline else
            f"left the baseline's answer at token {r.first_difference}"
            + (f" ({r.failure})" if r.failure else "")
            + (f", a near-tie (margin {r.margin_at_difference:.2g})" if tie else ""))
    costs = r.snapshot_seconds + r.restore_seconds + r.replay_seconds
    return (f"Saving the sequence state before each drafting round "
            f"({human_size(r.snapshot_bytes)} each, {r.snapshots} times) and, after a "
            f"rejection, restoring it and replaying the accepted tokens ({r.restores} times, "
            f"{r.replayed_tokens} tokens) {same}, at {_x(r.speedup)} the baseline's speed; "
            f"snapshots, restores and replays took {costs:.3g} s of its "
            f"{res.generation_seconds:.3g} s, at {_pct(res.acceptance_rate)} acceptance. "
            "Speculation on an SSM model is possible this way, and pays only when acceptance "
            "covers those costs.")


def heads_verdict(rep: Reproduction, heads: HeadsCheck) -> str:
    track = deprecated_track(rep.track)
    name = Path(rep.target).name
    if not heads.found and not heads.keys:
        return (f"{track.label} is not reproducible on {name}: it needs {_needs(rep.track)}, "
                f"and the file has none (its {heads.n_tensors} tensors and its metadata were "
                "searched for EAGLE, Medusa and multi-token-prediction heads). llama.cpp has no "
                "graph that would run such heads either. Nothing is faked here: use "
                f"{track.instead}.")
    shown = ", ".join((heads.found + heads.keys)[:4])
    return (f"{name} holds what looks like draft heads ({shown}), but {track.label} is still "
            "not reproducible here: DecodeLab drives llama.cpp's plain decoding API, which "
            "runs no extra heads, and the heads must have been trained for this very target. "
            f"Use {track.instead}.")


def _needs(track_id: str) -> str:
    if track_id == "eagle":
        return ("a feature-level draft head trained on this target's full-precision hidden "
                "states")
    return "extra decoding heads trained for this target"

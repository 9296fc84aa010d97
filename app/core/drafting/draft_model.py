"""Track 1's draft source: a small model with the target's tokenizer drafts token by token.

Adaptive drafting plans each round's length from the pair's acceptance and the measured
costs (``app.core.adaptive``), and guards against deciding from noise or from the past:
- a run's first rounds (until its first rejection or FLOOR_JUDGED judged drafts) draft the
  user's whole K by the fixed rule, as fixed drafting would;
- what earlier runs learned about the pair weighs at most CARRIED judged drafts, and a run
  whose carried acceptance says "does not pay" still probes in its first rounds;
- while this run's recent acceptance is high, it drafts at least the fixed K that
  acceptance supports (``floor_length``), and from HIGH_ACCEPTANCE on the user's whole K,
  drafting those tokens by the fixed rule (p-min);
- a draft that the final cut keeps nothing of is followed by plain rounds (doubling) in
  which the draft model does not run at all;
- when it decides not to draft, ``notes`` says why (the engine passes them on).

In a conversation the draft model keeps its KV cache between turns (``resume``): what it
left there is recorded at the end of each run (``drafting.base.hold``), and the next turn
keeps the common prefix and evaluates only the rest.
"""

from __future__ import annotations

import threading
import time

import numpy as np

from app.core.adaptive import (
    FLOOR_ACCEPTANCE,
    FLOOR_JUDGED,
    HIGH_ACCEPTANCE,
    MAX_CHANCE,
    STEP_SAMPLES,
    CostModel,
    Recent,
    best_length,
    floor_length,
    worth_extending,
)
from app.core.drafting.base import Proposal, common_prefix, forget, held_tokens, hold
from app.core.llama_backend import ContextFull, LoadedModel
from app.core.sampling import Distribution, SamplerSettings, distribution, top_probability

CONFIDENCE_BANDS = 10
# A draft token below this learned chance ends an adaptive draft.
UNLIKELY = 0.35
# While drafting does not pay, a round drafts anyway after this many plain ones, to keep
# learning; each probe that finds drafting still does not pay doubles the wait (a probe
# costs the draft's catch-up batch and a bigger verify batch: on a Q4_K_M target, where a
# batch of two costs 1.6 steps, probing every 8th round made adaptive Track 1 0.8x).
PROBE_EVERY = 8
MAX_PROBE_EVERY = 128
# A probe drafts by the fixed rule (stop below p-min) up to this many tokens.
PROBE_LENGTH = 4
# A draft batch longer than this, after plain steps, teaches what catching up costs.
CATCH_UP_MIN = 4
# What earlier runs learned about the pair counts as at most this many judged drafts in a
# new run: a prose run's low acceptance must not keep a code run from drafting.
CARRIED = 12.0
# Plain rounds, at most, after a draft the final cut kept nothing of.
MAX_COOLDOWN = 8


def new_bands() -> list[list[float]]:
    return [[0.0, 0.0] for _ in range(CONFIDENCE_BANDS)]


def carried(bands: list[list[float]]) -> list[list[float]]:
    """``bands`` scaled down to at most CARRIED judged drafts (rates unchanged)."""
    seen = sum(b[1] for b in bands)
    scale = min(1.0, CARRIED / seen) if seen else 1.0
    return [[b[0] * scale, b[1] * scale] for b in bands]


class DraftModel:
    """Track 1: a small model with the target's tokenizer drafts token by token."""

    source = "draft"

    def __init__(
        self,
        model: LoadedModel,
        sampler: SamplerSettings,
        p_min: float,
        adaptive: bool,
        costs: CostModel,
        rng: np.random.Generator,
        bands: list[list[float]] | None = None,
    ):
        self.model = model
        self.sampler = sampler
        self.p_min = p_min
        self.adaptive = adaptive
        self.costs = costs
        self.rng = rng
        self._cached: list[int] = []
        # Calibration curve: acceptance observed per band of the draft's own confidence,
        # [accepted, judged]. ``_memory`` is the caller's, kept across runs of the same pair;
        # this run decides from ``_bands``, where the earlier runs weigh little.
        self._memory = bands if bands is not None else new_bands()
        self._bands = carried(self._memory)
        self._last_bands: list[int] = []
        self.recent = Recent()
        self._skipped = 0
        self._probe_every = PROBE_EVERY
        self._asked = 0
        self._cooldown = 0
        self._empty_cuts = 0
        self._prompt_tokens = 0
        self._paused = False
        self._kept = 0  # rounds that drafted
        # Why adaptive drafting did not draft, for the run's result (see the module doc).
        self.notes: list[str] = []
        self._said: set[str] = set()

    def reset(self) -> None:
        forget(self.model)
        self.model.reset()
        self._cached = []

    def prefill(self, prompt: list[int], cancel: threading.Event) -> None:
        """Evaluate all but the last prompt token, as the target does."""
        self.reset()
        self._prefill_rest(prompt, cancel)

    def resume(self, prompt: list[int], cancel: threading.Event) -> None:
        """``prefill``, keeping the prefix of the prompt the draft's cache already holds
        (the earlier turns of a conversation)."""
        held = held_tokens(self.model)
        forget(self.model)
        if held is None:
            self.reset()
        else:
            keep = common_prefix(held, prompt[:-1])
            self.model.trim(keep)
            self._cached = held[:keep]
        self._prefill_rest(prompt, cancel)

    def _prefill_rest(self, prompt: list[int], cancel: threading.Event) -> None:
        todo = prompt[len(self._cached) : -1]
        self._prompt_tokens = len(prompt)
        if todo:
            try:
                with self.model.abortable(cancel):
                    self.model.eval(todo, 0)
            finally:
                self._cached = list(prompt[: self.model.n_past])
        self._cached = list(prompt[:-1])

    def finish(self, history: list[int], prompt_tokens: int) -> None:
        """Record what the draft's cache holds, for the next turn's ``resume``."""
        hold(self.model, self._cached)

    def _common(self, history: list[int]) -> int:
        """How many leading tokens of ``history`` the draft's KV cache already holds."""
        common = 0
        limit = min(len(self._cached), len(history) - 1)
        while common < limit and self._cached[common] == history[common]:
            common += 1
        return common

    def _sync(self, history: list[int], common: int) -> np.ndarray:
        """Bring the draft's KV cache, which holds ``common`` leading tokens of ``history``,
        to ``history`` and return the next-token logits."""
        self.model.trim(common)
        self._cached = self._cached[:common]
        todo = history[common:]
        t0 = time.perf_counter()
        row = self.model.eval(todo, 1)[0]
        if len(todo) > CATCH_UP_MIN:
            extra = time.perf_counter() - t0 - self.costs.draft_step
            self.costs.observe_catch_up(len(todo) - 1, max(0.0, extra))
        self._cached.extend(todo)
        return row

    @staticmethod
    def _band(conf: float) -> int:
        return min(CONFIDENCE_BANDS - 1, int(conf * CONFIDENCE_BANDS))

    def overall_chance(self) -> float:
        """The pair's conditional acceptance rate so far (a prior of 0.7 before any)."""
        accepted = sum(b[0] for b in self._bands)
        seen = sum(b[1] for b in self._bands)
        return min(MAX_CHANCE, (accepted + 0.7 * 4.0) / (seen + 4.0))

    def chance(self, conf: float) -> float:
        """Acceptance chance of a draft token of confidence ``conf``, as observed so far.

        A draft's confidence is a biased guess (on code a 0.5 is usually accepted), so each
        band learns its own rate; a band with little evidence leans on the pair's overall
        rate, and that on the confidence itself.
        """
        total_acc = sum(b[0] for b in self._bands)
        total_seen = sum(b[1] for b in self._bands)
        overall = (total_acc + 2.0 * conf) / (total_seen + 2.0)
        accepted, seen = self._bands[self._band(conf)]
        return min(MAX_CHANCE, (accepted + 4.0 * overall) / (seen + 4.0))

    def propose(self, history: list[int], limit: int, min_length: int = 1) -> Proposal:
        prop = Proposal(self.source, drafter=self)
        if limit <= 0:
            return prop
        forget(self.model)  # the cache may change now; ``finish`` records it again
        t0 = time.perf_counter()
        self._asked += 1
        probing = False
        typical = 0.0
        floor = 0  # tokens drafted by the fixed rule and kept whatever the cut says
        common = self._common(history)
        if self.adaptive:
            # Plan the length from the pair's conditional acceptance so far and the measured
            # costs; while drafting, stop early only at a token that is likely rejected.
            typical = self.overall_chance()
            draft = self.costs.draft_step
            # After plain steps the draft first catches up on them: that round pays for it.
            behind = len(history) - 1 - common
            catch_up = self.costs.catch_up(behind)
            floor = floor_length(self.recent, limit, self.costs, draft, min_length,
                                 high=HIGH_ACCEPTANCE)
            # When even certain acceptance would not pay for the measured costs and the
            # probe's catch-up, no acceptance a probe could find changes that: do not probe
            # at all (on a Q4_K_M target here each probe's catch-up cost about 0.3 s, a tenth
            # of the run's time with three of them). The catch-up is paid once for drafting
            # that would go on, so it is spread over PROBE_EVERY rounds: a long pause must
            # not rule out drafting for the rest of the run.
            certain = best_length([MAX_CHANCE] * limit, self.costs, draft, min_length,
                                  catch_up / PROBE_EVERY, optimistic=True)
            # A run's first rounds, while each drafted, none of their drafts was rejected and
            # fewer than FLOOR_JUDGED were judged, with the draft (nearly) in sync, draft what
            # fixed drafting would: the user's whole K by the fixed rule, before this run's
            # acceptance is known (shorter early drafts cost adaptive Track 1 a round against
            # fixed K=8 on the refactor prompt, 25 rounds to 24). Where earlier runs saw the
            # pair's drafts mostly rejected, short probes instead: whatever they concluded,
            # they find out whether this run's are.
            early = (self._kept == self._asked - 1 and self.recent.judged < FLOOR_JUDGED
                     and self.recent.rate in (None, 1.0))
            if certain and early and behind <= STEP_SAMPLES:
                first = limit if typical >= FLOOR_ACCEPTANCE else PROBE_LENGTH
                floor = max(floor, min(limit, max(min_length, first)))
            plan = max(floor, best_length([typical] * limit, self.costs, draft, min_length,
                                          catch_up, optimistic=True))
            if plan and not floor and self._cooldown:
                # The last draft was cut to nothing: the draft model rests for a while.
                self._cooldown -= 1
                return self._plain(prop, t0)
            if plan:
                self._skipped, self._probe_every = 0, PROBE_EVERY
            else:
                self._skipped += 1
                if not certain or self._skipped < self._probe_every:
                    # A plain step, and not even a draft step to keep the draft's cache in
                    # sync: it catches up in one batch when drafting resumes.
                    self._explain(history, typical, certain=bool(certain))
                    return self._plain(prop, t0)
                self._skipped = 0
                self._probe_every = min(MAX_PROBE_EVERY, 2 * self._probe_every)
            probing = not plan
            if probing:
                limit = floor = min(limit, max(min_length, PROBE_LENGTH))
            else:
                limit = plan
        try:
            row = self._sync(history, common)
        except ContextFull:
            return prop
        chances: list[float] = []
        confidences: list[float] = []
        while True:
            step0 = time.perf_counter()
            if self.sampler.greedy:
                token, conf = top_probability(row)
                q: Distribution | None = None
            else:
                q = distribution(row, self.sampler)
                token = q.sample(self.rng)
                conf = q.prob(token)
            chance = self.chance(conf)
            # Fixed mode (and the floor of adaptive mode) stops on low confidence as
            # llama.cpp does; adaptive mode beyond it on a low learned chance of acceptance.
            fixed = not self.adaptive or len(prop.tokens) < floor
            low = conf < self.p_min if fixed else chance < UNLIKELY
            if low and len(prop.tokens) >= min_length:
                break
            prop.tokens.append(token)
            prop.q.append(q)
            chances.append(chance)
            confidences.append(conf)
            if len(prop.tokens) >= limit:
                break
            if (self.adaptive and not probing and len(prop.tokens) >= floor
                    and not worth_extending(chances, typical, self.costs, self.costs.draft_step,
                                            optimistic=True)):
                break  # after a doubtful token another draft step would not pay for itself
            try:
                row = self.model.eval([token], 1)[0]
            except ContextFull:
                break
            self._cached.append(token)
            self.costs.observe_draft_step(time.perf_counter() - step0)
        if self.adaptive and prop.tokens and not probing:
            # The drafting is spent whichever prefix is verified: only verify costs weigh.
            keep = max(min(floor, len(prop.tokens)),
                       best_length(chances, self.costs, 0.0, min_length, optimistic=True))
            prop.tokens, prop.q = prop.tokens[:keep], prop.q[:keep]
            if keep:
                self._empty_cuts = 0
            else:
                # The plan said draft, these tokens did not pay: rest the draft model for
                # 1, 2, 4 ... rounds rather than pay a sync and a draft step every round.
                self._empty_cuts += 1
                self._cooldown = min(MAX_COOLDOWN, 2 ** (self._empty_cuts - 1))
                if self._cooldown == MAX_COOLDOWN:
                    self._explain(history, typical, certain=True)
        self._kept += bool(prop.tokens)
        if prop.tokens and self._paused and not probing:
            self._paused = False
            self._say("resumed", f"adaptive drafting resumed at answer token "
                      f"{self._position(history)}")
        self._last_bands = [self._band(c) for c in confidences[: len(prop.tokens)]]
        prop.seconds = time.perf_counter() - t0
        return prop

    @staticmethod
    def _plain(prop: Proposal, t0: float) -> Proposal:
        prop.seconds = time.perf_counter() - t0
        return prop

    def _position(self, history: list[int]) -> int:
        return max(0, len(history) - self._prompt_tokens)

    def _say(self, kind: str, text: str) -> None:
        if kind not in self._said:
            self._said.add(kind)
            self.notes.append(text)

    def _explain(self, history: list[int], typical: float, certain: bool) -> None:
        """Note, once a run, that drafting stops and why (and later if it resumes)."""
        if self._paused:
            return
        self._paused = True
        step = self.costs.step or self.costs.batch(1)
        costs = (f"a verify batch of 2 at {self.costs.steps(2, True):.2f} steps and a draft "
                 f"step of {self.costs.draft_step / step:.2f} steps")
        if not certain:
            why = f"even drafts always accepted cannot pay for {costs}"
        elif self._empty_cuts:
            why = (f"its drafts were cut to nothing {self._empty_cuts} times in a row (the "
                   f"draft model is unsure here); trying again every {MAX_COOLDOWN} rounds")
        else:
            why = (f"acceptance {typical:.2f} cannot pay for {costs}; probing every "
                   f"{PROBE_EVERY}+ rounds")
        what = "paused" if self._kept else "did not draft"
        self._say("paused", f"adaptive drafting {what} from answer token "
                  f"{self._position(history)}: {why}")

    def observe(self, proposal: Proposal, accepted: int) -> None:
        # Tokens after the first rejection were never judged: they teach nothing.
        for i, band in enumerate(self._last_bands[: accepted + 1]):
            hit = 1.0 if i < accepted else 0.0
            for bands in (self._bands, self._memory):
                bands[band][0] += hit
                bands[band][1] += 1.0
        self.recent.add(len(proposal.tokens), accepted)


def learned_acceptance(memory: dict[object, list[list[float]]], target_path: str,
                       draft_path: str) -> tuple[float, int] | None:
    """A pair's acceptance rate so far and over how many drafts, from the source's memory
    (``Session.memory["draft"]``)."""
    bands = memory.get((target_path, draft_path))
    seen = sum(b[1] for b in bands) if bands else 0
    return (sum(b[0] for b in bands) / seen, int(seen)) if bands and seen else None

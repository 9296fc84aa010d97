"""The decoding loop: baseline steps and speculative rounds with exact verification.

Each round feeds the target ``[pending] + drafts`` in one batch with logits for exactly
those rows, accepts the longest prefix the target agrees with (greedy: equal argmax;
sampling: the speculative-sampling rule), emits one more token from the target, and trims
the KV cache back to what was accepted. Events go out as they happen.

A run may continue from what the target's cache already holds (``kept``: the next turn of a
conversation, a regenerated or edited turn): the longest common prefix of the cache and the
prompt stays, the rest is trimmed, and only the new prompt tokens are evaluated
(``RunResult.prefill_tokens`` / ``reused_tokens``). A recurrent state cannot be trimmed: it
is kept only when the whole of it is a prefix of the prompt. What the run leaves in the
cache is recorded (``drafting.base.hold``) for the next turn.
"""

from __future__ import annotations

import codecs
import threading
import time
from collections.abc import Callable, Sequence

import numpy as np

from app.core.adaptive import CostModel, prior_slope
from app.core.drafting.base import Drafter, Proposal, common_prefix, forget, hold
from app.core.errors import RefusedError
from app.core.events import (
    Event,
    NoteEvent,
    Origin,
    RejectionEvent,
    RoundEvent,
    RunResult,
    RunSettings,
    Source,
    StopReason,
    TokenEvent,
)
from app.core.llama_backend import ContextFull, DecodeAborted, LoadedModel
from app.core.rpc import WorkerLost
from app.core.sampling import (
    SamplerSettings,
    choose,
    distribution,
    greedy,
    penalised,
    verify_sampled,
)

EventSink = Callable[[Event], None]


class TextAssembler:
    """Bytes of token pieces in, complete UTF-8 text out (multi-byte safe)."""

    def __init__(self, model: LoadedModel) -> None:
        self.model = model
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.parts: list[str] = []

    def add(self, token: int) -> str:
        text = self._decoder.decode(self.model.piece(token))
        self.parts.append(text)
        return text

    def finish(self) -> str:
        tail = self._decoder.decode(b"", final=True)
        if tail:
            self.parts.append(tail)
        return "".join(self.parts)

    def piece_text(self, token: int) -> str:
        return self.model.piece(token).decode("utf-8", errors="replace")


class Generation:
    """One run of the loop. Create, call ``run()`` once, read the result."""

    def __init__(
        self,
        target: LoadedModel,
        drafters: Sequence[Drafter],
        prompt: list[int],
        settings: RunSettings,
        on_event: EventSink | None = None,
        cancel: threading.Event | None = None,
        costs: CostModel | None = None,
        kept: Sequence[int] | None = None,
    ) -> None:
        self.target = target
        self.drafters = list(drafters)
        self.prompt = list(prompt)
        self.settings = settings
        self.emit = on_event or (lambda _e: None)
        self.cancel = cancel or threading.Event()
        self.costs = costs or CostModel()
        self.costs.use_prior(prior_slope(target.info.file_size, target.info.n_params))
        # What the caller knows the target's cache holds (None: start from an empty cache).
        self.kept = list(kept) if kept is not None else None
        if self.drafters and (target.is_recurrent or target.is_hybrid):
            # The engine's own guard, whatever the caller checked: a recurrent state
            # cannot drop a rejected draft, so speculation would silently corrupt it.
            raise RefusedError(target.info.speculation_reason)
        self.sampler = SamplerSettings(
            settings.temperature, settings.top_k, settings.top_p, settings.min_p,
            settings.repeat_penalty, settings.repeat_last_n,
        )
        self.rng = np.random.default_rng(settings.seed)
        self.text = TextAssembler(target)
        self.history: list[int] = list(prompt)
        self.answer: list[int] = []
        self.events: list[Event] = []
        self.n_drafted = self.n_accepted = self.n_rounds = 0
        self.draft_seconds = self.verify_seconds = 0.0
        self.t0 = 0.0
        # The tokens at the target cache's positions 0…n_past-1, as far as this run knows
        # (recorded for the next turn at the end), and the prompt accounting.
        self.cache: list[int] = []
        self.reused = self.prefilled = 0
        # Drafters may explain themselves (optional ``notes: list[str]``, e.g. why adaptive
        # drafting did not draft): each new line goes out as a NoteEvent and into the result.
        self.notes: list[str] = []
        self._noters = [d for d in self.drafters if isinstance(getattr(d, "notes", None), list)]
        self._heard = [0] * len(self._noters)

    # -- event helpers --------------------------------------------------------------------
    def _send(self, event: Event) -> None:
        self.events.append(event)
        self.emit(event)

    def _append(self, token: int, origin: Origin, source: Source | None, rnd: int) -> None:
        event = TokenEvent(
            token,
            self.text.add(token),
            len(self.answer),
            origin,
            source,
            rnd,
            time.perf_counter() - self.t0,
        )
        self._send(event)
        self.answer.append(token)
        self.history.append(token)

    # -- the loop -------------------------------------------------------------------------
    def run(self) -> RunResult:
        s = self.settings
        stop: StopReason = "max_tokens"
        error: str | None = None
        t_start = time.perf_counter()
        prefill_end = t_start
        forget(self.target)  # until the run knows again what the cache holds
        try:
            if not self.prompt:
                raise ValueError("empty prompt")
            self._keep_prefix()
            # All but the last prompt token: the first round evaluates that one, with the
            # first drafts, so even the first answer token can come from a draft.
            todo = self.prompt[self.reused : -1]
            self.cache = self.prompt[:-1]
            if todo:
                try:
                    with self.target.abortable(self.cancel):
                        self.target.eval(todo, 0)
                finally:
                    self.prefilled = self.target.n_past - self.reused
            for drafter in self.drafters:
                # Optional (see drafting.base): a turn that keeps the target's cache lets a
                # draft model keep its own.
                prefill = getattr(drafter, "resume", None) if self.kept is not None else None
                prefill = prefill or getattr(drafter, "prefill", None)
                if prefill is not None:
                    prefill(self.prompt, self.cancel)
            prefill_end = time.perf_counter()
            self.t0 = prefill_end
            stop = self._loop(self.prompt[-1])
        except DecodeAborted:
            stop = "cancelled"
        except ContextFull:
            stop = "context_full"
        except WorkerLost as exc:  # a remote worker died: the answer so far is kept
            stop, error = "error", str(exc)
        finally:
            hold(self.target, self.cache[: self.target.n_past])
        end = time.perf_counter()
        for drafter in self.drafters:
            finish = getattr(drafter, "finish", None)  # optional: see drafting.base
            if finish is not None:
                finish(self.history, len(self.prompt))
        if self.t0 == 0.0:
            self.t0 = prefill_end = end
        self._hear_notes()
        if s.adaptive and self.drafters and not self.n_drafted and not self.notes \
                and stop != "cancelled" and self.answer:
            self._note("adaptive drafting drafted nothing: no draft source proposed a draft "
                       "worth verifying")
        return RunResult(
            track=s.track,
            text=self.text.finish(),
            stop_reason=stop,
            prompt_tokens=len(self.prompt),
            prefill_tokens=self.prefilled,
            reused_tokens=self.reused,
            n_generated=len(self.answer),
            n_drafted=self.n_drafted,
            n_accepted=self.n_accepted,
            n_rounds=self.n_rounds,
            generation_seconds=end - self.t0,
            prefill_seconds=prefill_end - t_start,
            draft_seconds=self.draft_seconds,
            verify_seconds=self.verify_seconds,
            settings=s.to_dict(),
            effective={},
            token_ids=list(self.answer),
            events=self.events,
            notes=self.notes,
            error=error,
        )

    def _keep_prefix(self) -> None:
        """Trim the target's cache to the longest prefix of the prompt it holds (nothing
        without ``kept``); at least the last prompt token is evaluated again, for its
        logits. A recurrent state is kept whole or not at all."""
        t = self.target
        kept = self.kept
        if kept is None or len(kept) != t.n_past:
            t.reset()  # nothing known (or the caller's knowledge is stale): start empty
            return
        common = common_prefix(kept, self.prompt[:-1])
        if (t.is_recurrent or t.is_hybrid) and common < len(kept):
            t.reset()
            return
        t.trim(common)
        self.reused = common

    def _note(self, text: str) -> None:
        self.notes.append(text)
        self.emit(NoteEvent(text, len(self.answer), time.perf_counter() - self.t0))

    def _hear_notes(self) -> None:
        for i, drafter in enumerate(self._noters):
            said: list[str] = drafter.notes  # type: ignore[attr-defined]
            for text in said[self._heard[i]:]:
                self._note(text)
            self._heard[i] = len(said)

    def _loop(self, pending: int) -> StopReason:
        s = self.settings
        rnd = 0
        while True:
            remaining = s.max_tokens - len(self.answer)
            if remaining <= 0:
                return "max_tokens"
            if self.cancel.is_set():
                return "cancelled"
            room = self.target.n_ctx - self.target.n_past - 1
            if room < 0:
                return "context_full"
            rnd += 1
            limit = min(s.draft_max, remaining - 1, room)
            # Adaptive drafting needs the cost of a plain step to weigh drafts against: the
            # first rounds of a fresh cost model measure it (yielding a token like any other
            # round), more than once, since one timing may be a slow one.
            measure_step = s.adaptive and self.costs.wants_step()
            proposal = self._propose(limit) if limit > 0 and not measure_step else Proposal()
            if self._noters:
                self._hear_notes()
            stop = self._verify(pending, proposal, rnd)
            if stop is not None:
                return stop
            pending = self.answer[-1]

    def _propose(self, limit: int) -> Proposal:
        min_len = max(1, self.settings.draft_min)
        for drafter in self.drafters:
            if limit < min_len:
                break
            proposal = drafter.propose(self.history, limit, min_len)
            self.draft_seconds += proposal.seconds
            if proposal.tokens:
                return proposal
        return Proposal()

    def _verify(self, pending: int, prop: Proposal, rnd: int) -> StopReason | None:
        """Run one round; None to go on, else why generation stops."""
        drafts = prop.tokens
        n_before = self.target.n_past
        t0 = time.perf_counter()
        # The pending token is the last one of history: evaluate it with the drafts.
        logits = self.target.eval([pending, *drafts], len(drafts) + 1)
        if rnd == 1:
            self.prefilled += 1  # the last prompt token, evaluated with the first drafts
        accepted, nxt = self._accept(logits, prop)
        verify_s = time.perf_counter() - t0
        self.costs.observe(len(drafts) + 1, verify_s)
        self.verify_seconds += verify_s
        self.target.trim(n_before + 1 + accepted)
        self.cache += [pending, *drafts[:accepted]]
        if drafts:
            self.n_rounds += 1
            self.n_drafted += len(drafts)
            self.n_accepted += accepted
            prop.drafter.observe(prop, accepted)
        return self._emit_round(prop, accepted, nxt, rnd, verify_s)

    def _accept(self, logits: np.ndarray, prop: Proposal) -> tuple[int, int]:
        """How many drafts the target takes, and the token it adds after them."""
        for i, token in enumerate(prop.tokens):
            # The penalty sees the history up to this row, as the baseline's step would.
            row = penalised(logits[i], self.sampler, self.history, prop.tokens[:i])
            if self.sampler.greedy:
                best = greedy(row)
                if best != token:
                    return i, best
            else:
                replacement = verify_sampled(
                    distribution(row, self.sampler), token, prop.q[i], self.rng
                )
                if replacement is not None:
                    return i, replacement
        last = penalised(logits[len(prop.tokens)], self.sampler, self.history, prop.tokens)
        return len(prop.tokens), choose(last, self.sampler, self.rng)

    def _emit_round(
        self, prop: Proposal, accepted: int, nxt: int, rnd: int, verify_s: float
    ) -> StopReason | None:
        start = len(self.answer)
        stop: StopReason | None = None
        for token in prop.tokens[:accepted]:
            if self.target.is_eog(token):
                stop = "eos"
                break
            self._append(token, "accepted", prop.source, rnd)
        if stop is None:
            for j, token in enumerate(prop.tokens[accepted:]):
                position = start + accepted + j
                piece = self.text.piece_text(token)
                assert prop.source is not None  # only proposals with a source have tokens
                self._send(RejectionEvent(token, piece, position, prop.source, rnd))
            if self.target.is_eog(nxt):
                stop = "eos"
            else:
                self._append(nxt, "target", None, rnd)
        if stop is None and len(self.answer) >= self.settings.max_tokens:
            stop = "max_tokens"
        self._send(
            RoundEvent(
                rnd,
                len(prop.tokens),
                accepted,
                len(self.answer) - start,
                prop.source,
                prop.seconds,
                verify_s,
                time.perf_counter() - self.t0,
            )
        )
        return stop

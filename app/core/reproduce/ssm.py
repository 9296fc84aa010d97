"""SSM speculation (Track 5), reproduced on a recurrent or hybrid target.

THE SSM GUARD IS BYPASSED HERE, and only here: the engine refuses every speculating track on
such a model (a recurrent state cannot drop a rejected draft), so this module runs its own
small greedy loop on the session's loaded target to show why, in two modes:

- ``naive``: after a rejection the target is rolled back the way an attention model's KV
  cache is (``LoadedModel.trim``, i.e. ``llama_memory_seq_rm``). llama.cpp refuses to drop
  part of a recurrent state; the loop records the refusal and carries on as a careless
  caller would (``Llama.generate(draft_model=...)`` ignores it), with the rejected drafts
  still folded into the state, and the answer is compared with the baseline's.
- ``snapshot``: the sequence state is saved before each round that drafts
  (``llama_state_seq_get_data``); after a rejection it is restored (``set_data``) and the
  pending token plus the accepted drafts are replayed in one batch. The answer is the
  baseline's, greedy, and the cost of snapshots, restores and replays is measured.

Drafts come from a draft model with the target's tokenizer (an attention model: its own KV
cache rolls back as usual) or, without one, from prompt lookup; both are the registry's own
drafters. Greedy only: the point is to compare answers token for token.
"""

from __future__ import annotations

import codecs
import ctypes
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import llama_cpp
import numpy as np

from app.core.adaptive import CostModel
from app.core.compare import baseline_margin
from app.core.compat import check_draft
from app.core.drafting.base import Drafter, Proposal
from app.core.drafting.registry import BuildContext, get_source
from app.core.errors import DecodeLabError, RefusedError
from app.core.events import (
    Event,
    RejectionEvent,
    RoundEvent,
    RunResult,
    RunSettings,
    StopReason,
    TokenEvent,
)
from app.core.gguf_info import inspect_cached
from app.core.llama_backend import ContextFull, DecodeAborted, LoadedModel
from app.core.reproduce.plan import require_reproducible
from app.core.reproduce.result import Reproduction, SsmMode, SsmRun, Step, StepSink
from app.core.reproduce.store import new_id
from app.core.reproduce.verdict import ssm_verdict
from app.core.verdict import first_difference

if TYPE_CHECKING:
    from app.core.session import Session

DrafterFactory = Callable[[LoadedModel], Drafter]
GUARD_NOTE = ("the SSM guard was bypassed for this experiment only: the engine refuses "
              "speculation on recurrent and hybrid models everywhere else")


class _State:
    """One saved sequence state of a context (the buffer is reused while it is big enough)."""

    def __init__(self, ctx: Any) -> None:
        self.ctx = ctx
        self.buf: Any = None
        self.capacity = 0
        self.size = 0

    def save(self) -> None:
        need = int(llama_cpp.llama_state_seq_get_size(self.ctx, 0))
        if need > self.capacity:
            self.buf, self.capacity = (ctypes.c_uint8 * need)(), need
        self.size = int(llama_cpp.llama_state_seq_get_data(self.ctx, self.buf, need, 0))
        if self.size == 0:
            raise DecodeLabError("llama.cpp could not copy the sequence state")

    def restore(self) -> None:
        if not llama_cpp.llama_state_seq_set_data(self.ctx, self.buf, self.size, 0):
            raise DecodeLabError("llama.cpp could not restore the sequence state")


class SsmLoop:
    """One greedy speculating run of ``mode`` on a recurrent/hybrid ``model``."""

    def __init__(self, model: LoadedModel, drafter: Drafter, prompt: list[int],
                 settings: RunSettings, mode: SsmMode, cancel: threading.Event | None = None):
        self.model, self.drafter, self.prompt = model, drafter, list(prompt)
        self.s, self.mode = settings, mode
        self.cancel = cancel or threading.Event()
        self.answer: list[int] = []
        self.history = list(prompt)
        self.events: list[Event] = []
        self.state = _State(model.ctx)
        self.run_data = SsmRun(mode, _empty_result(settings), None, None)
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._text: list[str] = []
        self.n_drafted = self.n_accepted = self.n_rounds = 0
        self.draft_s = self.verify_s = 0.0
        self.t0 = 0.0

    def run(self) -> SsmRun:
        m, r = self.model, self.run_data
        stop: StopReason = "max_tokens"
        t_start = time.perf_counter()
        m.reset()
        if len(self.prompt) > 1:
            m.eval(self.prompt[:-1], 0)
        prefill = getattr(self.drafter, "prefill", None)
        if prefill is not None:
            prefill(self.prompt, self.cancel)
        self.t0 = time.perf_counter()
        try:
            stop = self._loop(self.prompt[-1])
        except DecodeAborted:
            stop = "cancelled"
        except ContextFull:
            stop = "context_full"
        except DecodeLabError as exc:  # what llama.cpp does with a corrupted state
            r.failure, stop = str(exc), "error"
        end = time.perf_counter()
        self._text.append(self._decoder.decode(b"", final=True))
        r.result = RunResult(
            track=getattr(self.drafter, "source", None) or "draft", text="".join(self._text),
            stop_reason=stop, prompt_tokens=len(self.prompt), n_generated=len(self.answer),
            n_drafted=self.n_drafted, n_accepted=self.n_accepted, n_rounds=self.n_rounds,
            generation_seconds=end - self.t0, prefill_seconds=self.t0 - t_start,
            draft_seconds=self.draft_s, verify_seconds=self.verify_s,
            settings=self.s.to_dict(),
            effective={"mode": self.mode, "ssm_guard": "bypassed (this experiment only)",
                       "threads": m.threads, "threads_batch": m.threads_batch,
                       "n_ctx": m.n_ctx, "draft_max": self.s.draft_max,
                       "target": m.path},
            token_ids=list(self.answer), events=self.events,
            error=r.failure,
            notes=[GUARD_NOTE])
        return r

    def _loop(self, pending: int) -> StopReason:
        m, s, rnd = self.model, self.s, 0
        while True:
            remaining = s.max_tokens - len(self.answer)
            if remaining <= 0:
                return "max_tokens"
            if self.cancel.is_set():
                return "cancelled"
            room = m.n_ctx - m.n_past - 1
            if room < 0:
                return "context_full"
            rnd += 1
            limit = min(s.draft_max, remaining - 1, room)
            prop = (self.drafter.propose(self.history, limit, max(1, s.draft_min))
                    if limit > 0 else Proposal())
            self.draft_s += prop.seconds
            stop = self._round(pending, prop, rnd)
            if stop is not None:
                return stop
            pending = self.answer[-1]

    def _round(self, pending: int, prop: Proposal, rnd: int) -> StopReason | None:
        m, r, drafts = self.model, self.run_data, prop.tokens
        n_before = m.n_past
        if drafts and self.mode == "snapshot":
            t = time.perf_counter()
            self.state.save()
            r.snapshot_seconds += time.perf_counter() - t
            r.snapshots += 1
            r.snapshot_bytes = max(r.snapshot_bytes, self.state.size)
        t = time.perf_counter()
        logits = m.eval([pending, *drafts], len(drafts) + 1)
        accepted = 0
        while accepted < len(drafts) and int(np.argmax(logits[accepted])) == drafts[accepted]:
            accepted += 1
        nxt = int(np.argmax(logits[accepted]))  # the correction, or the bonus token
        self.verify_s += time.perf_counter() - t
        if accepted < len(drafts):
            self._roll_back(n_before, pending, drafts[:accepted])
        if drafts:
            self.n_rounds += 1
            self.n_drafted += len(drafts)
            self.n_accepted += accepted
            prop.drafter.observe(prop, accepted)
        return self._emit(prop, accepted, nxt, rnd)

    def _roll_back(self, n_before: int, pending: int, kept: list[int]) -> None:
        m, r = self.model, self.run_data
        if self.mode == "naive":
            try:
                m.trim(n_before + 1 + len(kept))  # the rollback an attention model gets
            except RefusedError:
                # llama.cpp refused: carry on as if it had not (positions continue after the
                # rejected drafts, which stay folded into the state).
                r.refusals += 1
                if r.first_refusal is None:
                    r.first_refusal = len(self.answer) + len(kept)
            return
        t = time.perf_counter()
        self.state.restore()
        m.n_past = n_before
        r.restore_seconds += time.perf_counter() - t
        r.restores += 1
        t = time.perf_counter()
        m.eval([pending, *kept], 0)
        r.replay_seconds += time.perf_counter() - t
        r.replayed_tokens += 1 + len(kept)

    def _emit(self, prop: Proposal, accepted: int, nxt: int, rnd: int) -> StopReason | None:
        start = len(self.answer)
        source = prop.source or "draft"
        for token in prop.tokens[:accepted]:
            if self.model.is_eog(token):
                self._round_event(prop, accepted, start, rnd)
                return "eos"
            self._append(token, "accepted", source, rnd)
        for j, token in enumerate(prop.tokens[accepted:]):
            piece = self.model.piece(token).decode("utf-8", errors="replace")
            self.events.append(RejectionEvent(token, piece, start + accepted + j, source, rnd))
        if self.model.is_eog(nxt):
            self._round_event(prop, accepted, start, rnd)
            return "eos"
        self._append(nxt, "target", None, rnd)
        self._round_event(prop, accepted, start, rnd)
        return "max_tokens" if len(self.answer) >= self.s.max_tokens else None

    def _round_event(self, prop: Proposal, accepted: int, start: int, rnd: int) -> None:
        self.events.append(RoundEvent(rnd, len(prop.tokens), accepted, len(self.answer) - start,
                                      prop.source, prop.seconds, 0.0,
                                      time.perf_counter() - self.t0))

    def _append(self, token: int, origin: Any, source: str | None, rnd: int) -> None:
        text = self._decoder.decode(self.model.piece(token))
        self._text.append(text)
        self.events.append(TokenEvent(token, text, len(self.answer), origin, source, rnd,
                                      time.perf_counter() - self.t0))
        self.answer.append(token)
        self.history.append(token)


def _empty_result(s: RunSettings) -> RunResult:
    return RunResult(s.track, "", "max_tokens", 0, 0, 0, 0, 0, 0.0, 0.0, 0.0, 0.0,
                     s.to_dict(), {})


def registry_drafters(session: Session, target: str | Path, draft: str | Path | None,
                      s: RunSettings) -> tuple[DrafterFactory, str]:
    """A maker of fresh drafters for the SSM target: the draft model's (Track 1) when
    ``draft`` is given, else prompt lookup's (Track 8); and the source's id. Refused for a
    draft that is itself an SSM model or does not fit the target."""
    if draft is None:
        src = get_source("lookup")
        assert src is not None
        return (lambda model: src.build(BuildContext(s, model, None, CostModel(), {}))), src.id
    info, dinfo = inspect_cached(target), inspect_cached(draft)
    if not dinfo.speculation_allowed:
        raise RefusedError(f"the draft {dinfo.file_name} is an SSM model too: its own state "
                           "could not roll back either; choose an attention draft")
    compat = check_draft(info, dinfo)
    if not compat.compatible:
        failed = "; ".join(f"{c.name}: {c.detail}" for c in compat.failed)
        raise RefusedError(f"draft incompatible with {info.file_name}: {failed}")
    loaded = session.load_draft(draft, replace(s, track="draft"), dinfo)
    src = get_source("draft")
    assert src is not None
    return (lambda model: src.build(BuildContext(s, model, loaded, CostModel(), {}))), src.id


def run_ssm(
    session: Session,
    target: str | Path,
    prompt: str,
    settings: RunSettings,
    draft: str | Path | None = None,
    progress: StepSink | None = None,
    cancel: threading.Event | None = None,
    drafters: DrafterFactory | None = None,
) -> Reproduction:
    """The experiment (module docstring): a baseline run, then the naive and the snapshot
    mode with fresh drafters (``drafters``: another maker, for tests)."""
    from app.core.session import render_prompt

    info = inspect_cached(target)
    require_reproducible("ssm-spec", info)
    cancel = cancel or threading.Event()
    say = progress or (lambda _s: None)
    s = replace(settings, adaptive=False)
    rep = Reproduction(new_id(), "ssm-spec", str(target), info.file_name, prompt, s.to_dict(),
                       time.time(), draft=str(draft) if draft is not None else None,
                       notes=[GUARD_NOTE])
    if s.temperature != 0:
        rep.notes.append(f"greedy decoding used (temperature {s.temperature:g} asked): the "
                         "answers are compared token for token")
        s = replace(s, temperature=0.0)
    say(Step(0, 3, "baseline run"))
    base_settings = replace(s, track="baseline")
    rep.baseline = base = session.run(target, None, prompt, base_settings, cancel=cancel)
    model = session.load_target(target, base_settings, info)  # the same loaded model
    if not isinstance(model, LoadedModel):
        raise RefusedError("the SSM experiment needs the target in this process (no RPC)")
    make, source = (drafters, "draft") if drafters is not None else \
        registry_drafters(session, target, draft, s)
    ids = render_prompt(model, prompt, s.chat, s.system)
    modes: tuple[SsmMode, ...] = ("naive", "snapshot")
    for step, mode in enumerate(modes, start=1):
        if cancel.is_set():
            rep.notes.append("cancelled before the " + mode + " mode")
            break
        say(Step(step, 3, f"{mode} rollback"))
        run = SsmLoop(model, make(model), ids, replace(s, track=source), mode, cancel).run()
        res = run.result
        run.speedup = (res.tokens_per_second / base.tokens_per_second
                       if base.tokens_per_second > 0 and res.n_generated else None)
        run.first_difference = first_difference(res.token_ids, base.token_ids)
        if mode == "snapshot" and run.first_difference is not None:
            run.margin_at_difference = baseline_margin(session, target, prompt, base_settings,
                                                       base.token_ids, run.first_difference)
        rep.ssm.append(run)
    model.reset()  # the bypassed runs leave nothing behind in the session's target
    say(Step(3, 3, "done"))
    rep.verdict = ssm_verdict(rep)
    return rep

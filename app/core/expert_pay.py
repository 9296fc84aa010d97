"""Will fewer experts pay? What Track 2 costs in agreement per token it gains in speed.

``measure_experts`` loads a Mixture-of-Experts model at its own expert count (the
reference), lets it continue the prompt greedily by ``follow`` tokens, keeping its choice
and its distribution at each of those positions; then, for each count k, loads the model
with ``expert_used_count=k``, evaluates prompt + continuation teacher-forced in one batch
and records how many of k's next-token choices are the reference's (top-1 agreement), the
mean KL(reference ‖ k) there, and the cost of one decode step (the median of several
single-token steps after the prompt). The reference's own count is measured the same way,
so its row says how exactly a batch reproduces the step-by-step decode (1.0 but for
near-ties between kernels) and gives the step every speedup divides.

``explain_experts`` turns a report into words. A step's time is a median of several, so
its noise is that of repeats (``verdict.REPEATS_MARGIN``, 3 %): a count is faster only
beyond it. A synthetic model (``ModelInfo.random_weights``) has random weights: only its
speeds mean something.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from app.core.chat.render import prompt_tokens
from app.core.errors import RefusedError
from app.core.gguf_info import ModelInfo, inspect_model
from app.core.llama_backend import DecodeAborted, LoadedModel, LoadOptions, validate_expert_count
from app.core.predict import NOISY_SPREAD
from app.core.verdict import REPEATS_MARGIN

STEPS = 8  # timed single-token steps per count (after one untimed)
MAX_FOLLOW = 512  # the continuation's logit rows come back in one batch
NOISE = REPEATS_MARGIN  # a median step: the noise of repeats
KEEPS = 0.90  # agreement a count must keep to be "worth trying"
LOST = 0.50  # below this the answer is no longer the model's

Progress = Callable[[int, int, str], None]


@dataclass
class ExpertRow:
    experts: int
    agreement: float  # share of the continuation's positions where k's top-1 is the reference's
    kl: float  # mean KL(reference ‖ k) there, nats per token
    step_seconds: float  # median single-token decode step
    speedup: float = 1.0  # step(reference) / step(k)
    noisy: bool = False  # its steps spread beyond NOISY_SPREAD: the CPU was shared
    # The first position where k's top choice ends the answer and the reference's does not:
    # a free answer would stop there (the MoEfied Qwen at 4 experts ends at once on a
    # prompt where its agreement is 98 %). None: it never does.
    ends_early: int | None = None


@dataclass
class ExpertReport:
    model: str  # file name
    expert_count: int
    reference: int  # the file's own expert_used_count
    random_weights: bool
    positions: int = 0  # continuation tokens compared
    threads: int = 0
    rows: list[ExpertRow] = field(default_factory=list)  # expert count descending
    cancelled: bool = False
    seconds_spent: float = 0.0

    def row(self, experts: int) -> ExpertRow | None:
        return next((r for r in self.rows if r.experts == experts), None)

    @property
    def reductions(self) -> list[ExpertRow]:
        """The counts below the reference's."""
        return [r for r in self.rows if r.experts < self.reference]

    @property
    def gains(self) -> list[ExpertRow]:
        """The reductions faster than the reference beyond noise."""
        return [r for r in self.reductions if r.speedup > 1.0 + NOISE]

    @property
    def worth_trying(self) -> ExpertRow | None:
        """The fastest gain that keeps KEEPS of the choices and the whole answer (never for
        random weights, nor from noisy timings — its own or the reference's: under load one
        count measured 8.6x)."""
        kept = [r for r in self.gains
                if r.agreement >= KEEPS and r.ends_early is None and not r.noisy]
        ref = self.row(self.reference)
        if self.random_weights or (ref is not None and ref.noisy):
            return None
        return max(kept, key=lambda r: r.speedup, default=None)

    @property
    def noisy(self) -> bool:
        return any(r.noisy for r in self.rows)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "explanation": explain_experts(self)}


def default_counts(info: ModelInfo) -> list[int]:
    """The model's own expert count down to 1."""
    return list(range(info.expert_used_count or info.expert_count, 0, -1))


def _counts(info: ModelInfo, counts: Sequence[int] | None) -> list[int]:
    """The counts to measure, the reference's included, descending; refused if any cannot
    run (llama.cpp would abort the process)."""
    if not info.is_moe:
        raise RefusedError(f"{info.file_name} is not a Mixture-of-Experts model: "
                           "there are no experts to reduce")
    if counts is not None and not counts:
        raise RefusedError("no expert count to measure")
    picked = default_counts(info) if counts is None else list(counts)
    for k in picked:
        if isinstance(k, bool) or not isinstance(k, int):
            raise RefusedError(f"expert count {k!r} is not a whole number")
        validate_expert_count(info, k)
    return sorted({*picked, info.expert_used_count}, reverse=True)


def _log_softmax(rows: np.ndarray) -> np.ndarray:
    x = np.asarray(rows, dtype=np.float64)
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def _continue(model: LoadedModel, prompt: list[int], follow: int,
              cancel: threading.Event) -> tuple[list[int], np.ndarray] | None:
    """The reference's greedy continuation (ending at an end-of-generation token, if any)
    and its log-probabilities at each position; None if cancelled."""
    with model.abortable(cancel):
        row = model.eval(prompt, 1)[0]
    tokens: list[int] = []
    logp: list[np.ndarray] = []
    while True:
        logp.append(_log_softmax(row))  # copied: ``row`` is llama.cpp's buffer
        token = int(np.argmax(row))
        tokens.append(token)
        if len(tokens) == follow or model.is_eog(token):
            return tokens, np.stack(logp)
        if cancel.is_set():
            return None
        row = model.eval([token], 1)[0]


def _step_seconds(model: LoadedModel, n_prompt: int, feed: list[int]) -> list[float]:
    """Seconds of single-token decode steps right after the prompt (the KV cache trimmed
    back to it first), feeding the continuation as a decode would."""
    model.trim(n_prompt)
    feed = (feed * (STEPS // len(feed) + 1))[: STEPS + 1]
    model.eval(feed[:1], 1)  # untimed: the first one-token graph reserves its buffers
    model.trim(n_prompt)
    times = []
    for token in feed[1:]:
        t0 = time.perf_counter()
        np.argmax(model.eval([token], 1)[0])  # a step and the decoder's own choice
        times.append(time.perf_counter() - t0)
    return times


def _measure_count(model: LoadedModel, prompt: list[int], cont: list[int],
                   ref_logp: np.ndarray, cancel: threading.Event) -> ExpertRow | None:
    """One count's row (speedup still 1.0); None if cancelled."""
    n = len(cont)
    try:
        with model.abortable(cancel):
            logits = model.eval(prompt + cont[:-1], n)  # row i predicts cont[i]
    except DecodeAborted:
        return None
    logp = _log_softmax(logits)
    picks = logp.argmax(axis=1)
    agreement = float((picks == np.asarray(cont)).mean())
    kl = float((np.exp(ref_logp) * (ref_logp - logp)).sum(axis=1).mean())
    ends = next((i for i, (p, c) in enumerate(zip(picks.tolist(), cont, strict=True))
                 if model.is_eog(int(p)) and not model.is_eog(c)), None)
    times = _step_seconds(model, len(prompt), cont)
    return ExpertRow(model.expert_used_count, agreement, max(0.0, kl),
                     statistics.median(times), noisy=max(times) > NOISY_SPREAD * min(times),
                     ends_early=ends)


def measure_experts(
    target_path: str | Path,
    prompt: str,
    counts: Sequence[int] | None = None,
    threads: int | None = 2,
    follow: int = 48,
    cancel: threading.Event | None = None,
    progress: Progress | None = None,
    chat: bool = False,
    system: str | None = None,
    n_ctx: int = 4096,
) -> ExpertReport:
    """Measure agreement, KL and step cost for each count (default: the model's own count
    down to 1; the reference's count is always measured). ``prompt`` is used as it is
    unless ``chat`` (then wrapped in the model's chat template, as a run does).
    ``progress(done, total, label)`` before each model and once at the end; ``cancel``
    stops between counts (and inside a long batch): the report then holds the counts done
    and ``cancelled``. Refused before loading anything when a count cannot run."""
    t_begin = time.perf_counter()
    info = inspect_model(target_path)
    order = _counts(info, counts)
    if not 1 <= follow <= MAX_FOLLOW:
        raise RefusedError(f"follow must be 1…{MAX_FOLLOW} tokens (got {follow})")
    ref = info.expert_used_count
    order.remove(ref)
    order.insert(0, ref)  # first: every speedup divides its step
    report = ExpertReport(Path(target_path).name, info.expert_count, ref, info.random_weights)
    cancel = cancel or threading.Event()
    say = progress or (lambda _d, _t, _l: None)
    total = len(order) + 1

    def load(experts: int | None) -> LoadedModel:
        return LoadedModel(target_path, LoadOptions(n_ctx=n_ctx, threads=threads,
                                                    expert_used_count=experts), info)

    say(0, total, f"continuing the prompt with the model's own {ref} experts")
    model = load(None)
    try:
        report.threads = model.threads
        ids = prompt_tokens(model, prompt, chat, system)
        if not ids:
            raise RefusedError("the prompt is empty")
        if len(ids) + max(follow, STEPS + 1) > model.n_ctx:
            raise RefusedError(f"the prompt ({len(ids)} tokens) and {follow} more do not fit "
                               f"the context of {model.n_ctx} tokens")
        try:
            got = _continue(model, ids, follow, cancel)
        except DecodeAborted:
            got = None
    finally:
        model.close()
    if got is None:
        report.cancelled = True
        return _done(report, t_begin)
    cont, ref_logp = got
    report.positions = len(cont)
    for done, k in enumerate(order, start=1):
        say(done, total, f"{k} of {info.expert_count} experts")
        if cancel.is_set():
            report.cancelled = True
            break
        model = load(k)
        try:
            row = _measure_count(model, ids, cont, ref_logp, cancel)
        finally:
            model.close()
        if row is None:
            report.cancelled = True
            break
        report.rows.append(row)
    if not report.cancelled:
        say(total, total, "done")
    return _done(report, t_begin)


def _done(report: ExpertReport, t_begin: float) -> ExpertReport:
    base = report.row(report.reference)
    for r in report.rows:
        r.speedup = base.step_seconds / r.step_seconds if base and r.step_seconds > 0 else 1.0
    report.rows.sort(key=lambda r: r.experts, reverse=True)
    report.seconds_spent = time.perf_counter() - t_begin
    return report


# -- words --------------------------------------------------------------------------------


def _pct(x: float) -> str:
    return f"{100 * x:.0f} %"


def _named(report: ExpertReport) -> dict[int, list[str]]:
    """The counts worth naming, each with why: the fastest that keeps KEEPS of the choices,
    the one at half the experts, the fastest."""
    below = report.reductions
    tags: dict[int, list[str]] = {}
    best = report.worth_trying
    if best is not None:
        tags.setdefault(best.experts, []).append(f"the fastest that keeps {_pct(KEEPS)}")
    half = report.row(report.reference // 2)
    if half is not None and half in below:
        tags.setdefault(half.experts, []).append("half the experts")
    fastest = max(below, key=lambda r: r.speedup, default=None)
    if fastest is not None:
        tags.setdefault(fastest.experts, []).append("the fastest")
    return dict(sorted(tags.items(), reverse=True))


def _trade(r: ExpertRow, short: bool = False) -> str:
    """What a count costs in agreement per 1 % of speed gained."""
    lost = 100 * (1.0 - r.agreement)
    gained = 100 * (r.speedup - 1.0)
    if gained <= 100 * NOISE:
        return f"no speed beyond noise for {lost:.0f} points of agreement lost"
    if lost <= 0:
        return "not one choice lost"
    per = "per 1 %" if short else "of agreement lost per 1 % of speed gained"
    return f"about {lost / gained:.1f} points {per}"


def _ends_text(row: ExpertRow) -> str:
    """'' or where this count's free answer would stop."""
    if row.ends_early is None:
        return ""
    return ("it would end the answer before its first token" if row.ends_early == 0 else
            f"it would end the answer after {row.ends_early} tokens")


def _clause(r: ExpertReport, row: ExpertRow, why: list[str], first: bool) -> str:
    lost = " — the answer is no longer the model's" if row.agreement < LOST else ""
    if row.ends_early is not None:
        lost += f" — {_ends_text(row)}"
    named = f" ({', '.join(why)})"
    if first:
        speed = (f"each token comes {row.speedup:.2f}× faster" if row.speedup > 1.0 + NOISE
                 else f"a token costs about the same ({row.speedup:.2f}×, within noise)")
        return (f"With {row.experts} of {r.expert_count} experts{named} {speed} and "
                f"{_pct(row.agreement)} of the next-token choices on this prompt stay "
                f"those of {_reference(r)}: {_trade(row)}{lost}.")
    return (f"{row.experts} experts{named}: {row.speedup:.2f}×, {_pct(row.agreement)}, "
            f"{_trade(row, short=True)}{lost}.")


def _reference(r: ExpertReport) -> str:
    return f"all {r.expert_count}" if r.reference == r.expert_count else \
        f"the model's own {r.reference}"


def explain_experts(report: ExpertReport) -> str:
    """Plain words: what fewer experts gain in speed and lose in agreement, and whether
    that pays."""
    r = report
    below = r.reductions
    ref = _reference(r)
    if r.reference <= 1:
        text = f"{r.model} already runs one expert per token: there are none to reduce."
    elif not below:
        text = ("Nothing measured below the model's own expert count"
                + (" (cancelled)." if r.cancelled else "."))
    elif r.random_weights:
        text = _speed_only(r)
    elif not r.gains:
        fastest = max(below, key=lambda x: x.speedup)
        text = (f"No expert count is faster than {ref} beyond noise ({_pct(NOISE)} of a "
                f"step): fewer experts do not pay on this machine. The fastest, "
                f"{fastest.experts} of {r.expert_count}, measured {fastest.speedup:.2f}× and "
                f"kept {_pct(fastest.agreement)} of the next-token choices.")
    else:
        named = _named(r)
        clauses = [_clause(r, r.row(k) or below[0], why, i == 0)
                   for i, (k, why) in enumerate(named.items())]
        best = r.worth_trying
        if best is not None:
            end = (f"Worth trying: {best.experts} experts, {best.speedup:.2f}× for "
                   f"{_pct(1.0 - best.agreement)} of the choices changed.")
        elif r.noisy and any(x.agreement >= KEEPS and x.ends_early is None for x in r.gains):
            end = "No count is recommended from timings this noisy."
        elif any(x.agreement >= KEEPS for x in r.gains):  # each of them ends early
            end = (f"The counts that keep {_pct(KEEPS)} of the choices would end the answer "
                   f"early: keep {ref}.")
        elif all(x.agreement < LOST for x in r.gains):
            end = (f"Every count that gains speed changes most of the answer: it is no "
                   f"longer the model's. Keep {ref}.")
        else:
            end = (f"No count that gains speed keeps {_pct(KEEPS)} of the choices: here "
                   "fewer experts trade the answer for speed.")
        text = " ".join([*clauses, end])
    if r.noisy:
        text += " (Step timings were noisy: is another program using the CPU? Measure again.)"
    return text


def _speed_only(r: ExpertReport) -> str:
    """Random weights: the speed is real, the text (and so any agreement) is noise."""
    head = ("Random weights: only the speed counts here; the agreement figures mean nothing "
            "(the text is noise whatever the count).")
    ref = _reference(r)
    if not r.gains:
        return (f"{head} No expert count is faster than {ref} beyond noise "
                f"({_pct(NOISE)} of a step): fewer experts do not pay on this machine.")
    named = [x for x in r.reductions if x.experts in _named(r)]
    parts = [f"with {x.experts} of {r.expert_count} experts each token comes "
             f"{x.speedup:.2f}× as fast as with {ref}" for x in named]
    said = "; ".join(parts)
    return f"{head} {said[0].upper()}{said[1:]}."

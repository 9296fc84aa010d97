"""Run metrics over the event lists: throughput over time, acceptance, accepted lengths.

Plain functions over ``TokenEvent`` / ``RoundEvent`` sequences, plus ``LiveMetrics``, an
incremental accumulator that the GUI feeds with each batch of events so that every update
costs time proportional to the new events only, never to the whole run.

Conventions: times are the events' ``t`` (seconds since the end of prefill). Throughput
points earlier than ``MIN_TIME`` are left out, because n / t explodes near t = 0.
Acceptance counts only rounds that proposed at least one token. Mean accepted length is
the usual one (the papers' tau): per round that proposed drafts, the drafts accepted plus
the target's own bonus token, i.e. answer tokens per target verification; so it is at least
1 (``labels.MEAN_ACCEPTED_LENGTH_HELP`` words it for the views and the command line).
"""

from __future__ import annotations

import collections
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from app.core.events import Event, RejectionEvent, RoundEvent, RunResult, TokenEvent
from app.core.verdict import ComparedRun

MIN_TIME = 0.05
DEFAULT_WINDOW = 1.0
ROUND_WINDOW = 20


@dataclass
class Throughput:
    """Tokens per second at each token's time: over a rolling window and since the start."""

    t: list[float] = field(default_factory=list)
    rolling: list[float] = field(default_factory=list)
    cumulative: list[float] = field(default_factory=list)


@dataclass
class Acceptance:
    """Per speculating round: its index, its own acceptance rate, the rate over the last
    ``ROUND_WINDOW`` rounds, the running rate and the number of accepted drafts."""

    round: list[int] = field(default_factory=list)
    rate: list[float] = field(default_factory=list)
    rolling: list[float] = field(default_factory=list)
    cumulative: list[float] = field(default_factory=list)
    accepted: list[int] = field(default_factory=list)


def throughput(times: Sequence[float], window: float = DEFAULT_WINDOW) -> Throughput:
    """Rolling and cumulative tokens/s at each token time (``times`` ascending)."""
    acc = _ThroughputAcc(window)
    for t in times:
        acc.add(t)
    return acc.series


def acceptance(rounds: Iterable[RoundEvent]) -> Acceptance:
    """Acceptance per speculating round and running acceptance rate."""
    acc = _AcceptanceAcc()
    for r in rounds:
        acc.add(r)
    return acc.series


def acceptance_by_position(rounds: Iterable[RoundEvent]) -> tuple[list[int], list[int]]:
    """(proposed, accepted) counts per draft position (0 = first drafted token).

    A round that proposed p tokens and accepted a contributes a proposal at positions
    0…p-1 and an acceptance at positions 0…a-1 (acceptance stops at the first rejection).
    """
    proposed: list[int] = []
    accepted: list[int] = []
    for r in rounds:
        _count_positions(r, proposed, accepted)
    return proposed, accepted


def position_rates(proposed: Sequence[int], accepted: Sequence[int]) -> list[float]:
    """Acceptance rate per draft position (0.0 where nothing was proposed)."""
    return [a / p if p else 0.0 for p, a in zip(proposed, accepted, strict=True)]


def mean_accepted_length(rounds: Iterable[Event]) -> float | None:
    """Answer tokens per target verification that had drafts (accepted drafts + the
    target's bonus token), or None without such rounds. Other events are skipped, so a
    run's whole event list will do."""
    lengths = [r.accepted + 1 for r in rounds if isinstance(r, RoundEvent) and r.proposed > 0]
    return sum(lengths) / len(lengths) if lengths else None


def speedup(tokens_per_second: float, baseline_tokens_per_second: float | None) -> float | None:
    """Throughput relative to a baseline, or None when there is no usable baseline."""
    if not baseline_tokens_per_second or baseline_tokens_per_second <= 0:
        return None
    return tokens_per_second / baseline_tokens_per_second


def summarize(result: RunResult, baseline_tokens_per_second: float | None = None) -> ComparedRun:
    """A finished run with its speedup against ``baseline`` if given: the same verdict type
    a comparison gives each run (the window's summary shows it)."""
    return ComparedRun(result, speedup(result.tokens_per_second, baseline_tokens_per_second),
                       None)


def answer_text(events: Iterable[Event]) -> str:
    """The answer assembled from token events (rejected drafts left out)."""
    return "".join(e.text for e in events if isinstance(e, TokenEvent))


# -- incremental accumulators -------------------------------------------------------------


def _count_positions(r: RoundEvent, proposed: list[int], accepted: list[int]) -> None:
    if r.proposed <= 0:
        return
    if len(proposed) < r.proposed:
        grow = r.proposed - len(proposed)
        proposed.extend([0] * grow)
        accepted.extend([0] * grow)
    for i in range(r.proposed):
        proposed[i] += 1
    for i in range(min(r.accepted, r.proposed)):
        accepted[i] += 1


class _ThroughputAcc:
    def __init__(self, window: float) -> None:
        self.window = window
        self.times: list[float] = []
        self._left = 0
        self.series = Throughput()

    def add(self, t: float) -> None:
        self.times.append(t)
        n = len(self.times)
        while self.times[self._left] <= t - self.window:
            self._left += 1
        if t < MIN_TIME:
            return
        cumulative = n / t
        rolling = (n - self._left) / self.window if t >= self.window else cumulative
        self.series.t.append(t)
        self.series.rolling.append(rolling)
        self.series.cumulative.append(cumulative)


class _AcceptanceAcc:
    def __init__(self, window: int = ROUND_WINDOW) -> None:
        self.proposed = 0
        self.accepted = 0
        self.series = Acceptance()
        self._recent: collections.deque[tuple[int, int]] = collections.deque(maxlen=window)
        self._recent_sums = [0, 0]

    def add(self, r: RoundEvent) -> None:
        if r.proposed <= 0:
            return
        self.proposed += r.proposed
        self.accepted += r.accepted
        if len(self._recent) == self._recent.maxlen:
            old_p, old_a = self._recent[0]
            self._recent_sums[0] -= old_p
            self._recent_sums[1] -= old_a
        self._recent.append((r.proposed, r.accepted))
        self._recent_sums[0] += r.proposed
        self._recent_sums[1] += r.accepted
        self.series.round.append(r.index)
        self.series.rate.append(r.accepted / r.proposed)
        self.series.rolling.append(self._recent_sums[1] / self._recent_sums[0])
        self.series.cumulative.append(self.accepted / self.proposed)
        self.series.accepted.append(r.accepted)


class LiveMetrics:
    """Everything the live plots need, updated batch by batch as events arrive."""

    def __init__(self, window: float = DEFAULT_WINDOW) -> None:
        self._throughput = _ThroughputAcc(window)
        self._acceptance = _AcceptanceAcc()
        self.position_proposed: list[int] = []
        self.position_accepted: list[int] = []
        self.n_tokens = 0
        self.n_rejected = 0
        self.draft_seconds = 0.0
        self.verify_seconds = 0.0
        self.last_t = 0.0

    def add(self, events: Iterable[Event]) -> None:
        for e in events:
            if isinstance(e, TokenEvent):
                self.n_tokens += 1
                self.last_t = max(self.last_t, e.t)
                self._throughput.add(e.t)
            elif isinstance(e, RoundEvent):
                self._acceptance.add(e)
                _count_positions(e, self.position_proposed, self.position_accepted)
                self.draft_seconds += e.draft_seconds
                self.verify_seconds += e.verify_seconds
                self.last_t = max(self.last_t, e.t)
            elif isinstance(e, RejectionEvent):
                self.n_rejected += 1

    @property
    def throughput(self) -> Throughput:
        return self._throughput.series

    @property
    def acceptance(self) -> Acceptance:
        return self._acceptance.series

    @property
    def position_rates(self) -> list[float]:
        return position_rates(self.position_proposed, self.position_accepted)

    @property
    def tokens_per_second(self) -> float:
        return self.n_tokens / self.last_t if self.last_t > 0 else 0.0

    @property
    def acceptance_rate(self) -> float | None:
        acc = self._acceptance
        return acc.accepted / acc.proposed if acc.proposed else None

    @property
    def mean_accepted_length(self) -> float | None:
        """As ``mean_accepted_length``: accepted drafts + 1 per round that drafted."""
        accepted = self._acceptance.series.accepted
        return sum(accepted) / len(accepted) + 1 if accepted else None

"""What every draft source's drafter is: a ``Proposal`` maker the engine calls each round.

A drafter proposes up to ``limit`` tokens continuing ``history`` (prompt + answer so far),
is told afterwards how many the target accepted (so that adaptive drafting can learn how
far to trust it), may evaluate the prompt before the first round (``prefill``), and hears
of the finished answer (``finish``) so that it can keep what it learned for later runs.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # the sampling code loads numpy; reading the registry must not
    from app.core.sampling import Distribution


@dataclass
class Proposal:
    source: str | None = None  # the registry id of the source that drafted it
    tokens: list[int] = field(default_factory=list)
    # Distribution each token was drawn from; None: deterministic (one-hot q).
    q: list[Distribution | None] = field(default_factory=list)
    seconds: float = 0.0
    # The drafter that made it, told the outcome after verification.
    drafter: Any = None


class Drafter(Protocol):
    def propose(self, history: list[int], limit: int, min_length: int = 1) -> Proposal: ...
    def observe(self, proposal: Proposal, accepted: int) -> None: ...


class Prefills(Protocol):
    """Optional: a drafter that evaluates the prompt before the first round."""

    def prefill(self, prompt: list[int], cancel: threading.Event) -> None: ...


class Explains(Protocol):
    """Optional: a drafter that says why it did not draft (``notes``, read by the engine
    after each proposal and at the end, shown under the run's summary)."""

    notes: list[str]


class Finishes(Protocol):
    """Optional: a drafter that keeps something of the finished answer for later runs."""

    def finish(self, history: list[int], prompt_tokens: int) -> None: ...

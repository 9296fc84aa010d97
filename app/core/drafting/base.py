"""What every draft source's drafter is: a ``Proposal`` maker the engine calls each round.

A drafter proposes up to ``limit`` tokens continuing ``history`` (prompt + answer so far),
is told afterwards how many the target accepted (so that adaptive drafting can learn how
far to trust it), may evaluate the prompt before the first round (``prefill``), and hears
of the finished answer (``finish``) so that it can keep what it learned for later runs.
A draft model that keeps its cache across a conversation's turns ``resume``s instead of
``prefill``ing; ``held_tokens`` / ``hold`` record what each model's cache holds.
"""

from __future__ import annotations

import threading
import weakref
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


class Resumes(Protocol):
    """Optional: a drafter whose model keeps its KV cache between the turns of a
    conversation: ``resume`` evaluates only what the cache does not already hold of the
    prompt (the engine calls it instead of ``prefill`` when the target's cache is reused)."""

    def resume(self, prompt: list[int], cancel: threading.Event) -> None: ...


# -- what a loaded model's KV cache holds --------------------------------------------------
# The decoding loop (the engine for the target, the draft model for itself) records here
# the tokens it left in a model's cache, so that the next turn of a conversation can keep
# their common prefix. Anything else may evaluate on a model without telling (a
# measurement, a margin check): the record keeps the model's change count
# (``LoadedModel.changes``) of when it was made, and any decode, trim or reset since makes
# it stale — unknown, so the next turn evaluates from scratch rather than trust it.
_HELD: weakref.WeakKeyDictionary[Any, tuple[int, list[int]]] = weakref.WeakKeyDictionary()


def held_tokens(model: Any) -> list[int] | None:
    """The tokens ``model``'s cache holds at positions 0… (a ``LoadedModel``), or None
    when unknown."""
    held = _HELD.get(model)
    if held is None or held[0] != model.changes or len(held[1]) != model.n_past:
        return None
    return list(held[1])


def hold(model: Any, tokens: list[int]) -> None:
    """Record that ``model``'s cache holds ``tokens`` (forgotten if the length does not
    match its ``n_past``: then nobody knows)."""
    if len(tokens) == model.n_past:
        _HELD[model] = (model.changes, list(tokens))
    else:
        _HELD.pop(model, None)


def forget(model: Any) -> None:
    _HELD.pop(model, None)


def common_prefix(a: list[int], b: list[int]) -> int:
    """How many leading tokens ``a`` and ``b`` share."""
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i

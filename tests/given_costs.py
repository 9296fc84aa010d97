"""Adaptive drafting decided from costs a test gives, not from this machine's timings.

Adaptive drafting (``RunSettings.adaptive``, the default) weighs every draft against what
target batches and draft steps cost (``app.core.adaptive.CostModel``), and the engine and
the draft model time themselves every round: on a loaded machine the same run drafts
differently. ``GivenCosts`` is a ``CostModel`` set from numbers the test gives and deaf to
measurements; ``give_costs`` makes a ``Session`` use it for every target. The session's
adaptive decisions then follow from those costs and from acceptance (fixed by greedy
decoding) alone, on any machine under any load.
"""

from __future__ import annotations

from app.core.adaptive import CostModel
from app.core.session import Session


class GivenCosts(CostModel):
    """A target step of ``step`` seconds, a batch of n at ``1 + slope (n - 1)`` steps, a
    draft-model step of ``draft_step`` seconds; never changed by what is measured.

    ``ignored`` counts the measurements offered to it: above 0 after a run proves that
    the engine really decided from these costs.
    """

    def __init__(self, step: float = 0.01, slope: float = 0.1, draft_step: float = 0.001) -> None:
        super().__init__()
        for n in range(1, self.max_batch + 1):
            super().observe(n, step * (1.0 + slope * (n - 1)))
        super().observe_draft_step(draft_step)
        self.ignored = 0

    def observe(self, n_tokens: int, seconds: float) -> None:
        self.ignored += 1

    def observe_draft_step(self, seconds: float) -> None:
        self.ignored += 1

    def observe_catch_up(self, tokens: int, seconds: float) -> None:
        self.ignored += 1


class _SameForEveryTarget(dict[tuple[object, ...], CostModel]):
    """``Session.costs`` that answers ``costs`` for whatever target is loaded."""

    def __init__(self, costs: CostModel) -> None:
        super().__init__()
        self.costs = costs

    def __getitem__(self, key: tuple[object, ...]) -> CostModel:
        return self.costs

    def __contains__(self, key: object) -> bool:
        return True

    def get(self, key: object, default: object = None) -> CostModel:  # type: ignore[override]
        return self.costs

    def setdefault(  # type: ignore[override]
        self, key: object, default: object = None
    ) -> CostModel:
        return self.costs


def give_costs(session: Session, costs: GivenCosts | None = None) -> GivenCosts:
    """Make every run of ``session`` draft adaptively from ``costs`` (default: cheap
    batches and a draft step a tenth of a target step, where drafting pays)."""
    given = costs if costs is not None else GivenCosts()
    session.costs = _SameForEveryTarget(given)
    return given

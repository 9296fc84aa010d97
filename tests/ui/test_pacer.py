"""The pacer keeps the GUI thread's share of a run within its budget by stretching the
update interval, and returns to the base rate when the share falls. Scripted clocks: the
arithmetic and the decisions are tested, never a timing."""

from __future__ import annotations

from app.ui.pacer import BUDGET, MAX_MS, STRETCH_LIMIT, WINDOW, GuiClock, Pacer


class Scripted(GuiClock):
    """A clock the test advances: wall seconds, and GUI-thread CPU seconds."""

    def __init__(self) -> None:
        super().__init__(wall=lambda: self.now, cpu=lambda: self.used)
        self.now, self.used = 100.0, 5.0

    def spend(self, wall: float, share: float) -> None:
        self.now += wall
        self.used += wall * share


class FakeTimer:
    def __init__(self, ms: int) -> None:
        self.ms, self.sets, self.started = ms, 0, False

    def interval(self) -> int:
        return self.ms

    def setInterval(self, msec: int) -> None:
        self.ms, self.sets = msec, self.sets + 1

    def start(self) -> None:
        self.started = True


def run_for(pacer: Pacer, clock: Scripted, seconds: float, share: float) -> int:
    """Ticks at the pacer's own interval for ``seconds`` at a steady GUI share."""
    end = clock.now + seconds
    while clock.now < end:
        clock.spend(pacer.interval_ms / 1000, share)
        pacer.tick()
    return pacer.interval_ms


def test_within_the_budget_the_base_rate_stays() -> None:
    clock = Scripted()
    pacer = Pacer(80, 0.5, clock)
    assert pacer.start() == 80
    assert run_for(pacer, clock, 10.0, BUDGET * 0.9) == 80
    assert pacer.share is not None and abs(pacer.share - BUDGET * 0.9) < 1e-9


def test_over_the_budget_the_interval_stretches_in_proportion() -> None:
    clock = Scripted()
    pacer = Pacer(80, 0.5, clock)
    pacer.start()
    # 3 % where 2 % is allowed: the first decision after a whole window stretches by 1.5.
    run_for(pacer, clock, WINDOW + 0.01, 1.5 * BUDGET)
    assert pacer.interval_ms == 120
    assert pacer.plot_interval == 0.75  # the plots follow the same stretch


def test_a_decision_waits_for_a_whole_window() -> None:
    clock = Scripted()
    pacer = Pacer(80, 0.5, clock)
    pacer.start()
    clock.spend(0.08, 10 * BUDGET)  # one very slow paint
    assert pacer.tick() == 80
    assert pacer.share is None


def test_the_stretch_is_bounded_per_decision_and_overall() -> None:
    clock = Scripted()
    pacer = Pacer(80, 0.5, clock)
    pacer.start()
    clock.spend(WINDOW, 10 * BUDGET)
    assert pacer.tick() == round(80 * STRETCH_LIMIT)  # bounded at once
    assert run_for(pacer, clock, 30.0, 10 * BUDGET) == MAX_MS


def test_when_the_share_falls_the_rate_comes_back() -> None:
    clock = Scripted()
    pacer = Pacer(80, 0.5, clock)
    pacer.start()
    assert run_for(pacer, clock, 5.0, 4 * BUDGET) > 80
    # Half the budget and more: keep the rate (no flapping around the budget) ...
    held = pacer.interval_ms
    assert run_for(pacer, clock, 5.0, 0.6 * BUDGET) == held
    # ... well below it: back to the base, never faster.
    assert run_for(pacer, clock, 30.0, 0.1 * BUDGET) == 80


def test_a_new_run_starts_where_the_last_one_ended() -> None:
    clock = Scripted()
    pacer = Pacer(80, 0.5, clock)
    assert pacer.start() == 80
    stretched = run_for(pacer, clock, 5.0, 4 * BUDGET)
    assert stretched > 80
    assert pacer.start() == stretched and pacer.share is None
    # A cheaper run (a slower model, fewer tokens per update) goes back to the base.
    assert run_for(pacer, clock, 30.0, 0.1 * BUDGET) == 80


def test_begin_starts_the_timer_at_the_rate_the_last_run_ended_with() -> None:
    clock = Scripted()
    pacer = Pacer(80, 0.5, clock)
    stretched = run_for(pacer, clock, 3.0, 3 * BUDGET)
    assert stretched > 80
    timer = FakeTimer(80)
    pacer.begin(timer)
    assert timer.ms == stretched and timer.started


def test_pace_sets_the_timer_only_when_the_interval_changes() -> None:
    clock = Scripted()
    pacer = Pacer(80, 0.5, clock)
    timer = FakeTimer(pacer.start())
    for _ in range(5):
        clock.spend(0.08, 0.0)
        pacer.pace(timer)
    assert timer.sets == 0
    clock.spend(WINDOW, 3 * BUDGET)
    pacer.pace(timer)
    assert timer.ms > 80 and timer.sets == 1


def test_plots_are_due_at_the_stretched_interval() -> None:
    clock = Scripted()
    pacer = Pacer(80, 0.5, clock)
    pacer.start()
    assert pacer.plot_due()  # the first update of a run draws the plot
    clock.spend(0.3, 0.0)
    assert not pacer.plot_due()
    clock.spend(0.25, 0.0)
    assert pacer.plot_due()
    pacer.interval_ms = 160  # stretched twice: a plot a second
    clock.spend(0.6, 0.0)
    assert not pacer.plot_due()
    clock.spend(0.5, 0.0)
    assert pacer.plot_due()

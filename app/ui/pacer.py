"""How often a streaming view updates: as often as its base rate allows while the GUI
thread stays within a budget of the run's time, less often when it does not.

The window must not slow the run it measures: llama.cpp keeps every core busy, so each
millisecond the GUI thread spends on text, plots and numbers during a run is taken from the
decode. What an update costs depends on the model's speed (tokens per update), the window's
size and the machine, so no fixed rate is right everywhere: at the base rates SmolLM2
(~110 tokens/s) cost the GUI thread 3.3 % of the run here, a 1.5B model 1.2 %. And the
share is what the run loses, not half of it: a paint that preempts one of llama.cpp's two
threads stalls the other at the next barrier (SmolLM2 with Track 8 at 90 tokens/s ran at
0.95-0.97 of the command line with the GUI thread at 2-2.5 %, 1.00 with the updates off).
The pacer measures the GUI thread's own CPU seconds per wall second over the last WINDOW of
updates
(``GuiClock``: the thread's CPU clock, so other threads' work never counts) and stretches the
update interval, up to MAX_MS, while that share is above BUDGET; it returns to the base
rate when the share falls well below. After each change it waits a whole WINDOW before the
next decision, so a decision rests on updates at the current rate, not on one slow paint.
The plots follow the same stretch (a plot repaint costs more than a text one). A new run
starts at the interval the last one ended with.

No Qt here: the views call ``tick`` from their timer and apply the interval it returns.
Tests drive it with scripted clocks.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

BUDGET = 0.01  # GUI-thread CPU seconds per wall second the live updates may take
MAX_MS = 400  # the slowest text update: still reads as streaming
WINDOW = 0.5  # seconds of updates a decision rests on
RELAX = 0.5  # below this share of the budget, the interval shrinks back toward the base
STRETCH_LIMIT = 3.0  # at most this factor per decision: one busy half second is not a trend


@dataclass
class GuiClock:
    """The clocks the window's cost is read from: wall time, and the CPU time of the
    calling thread (read on the GUI thread, it is the GUI thread's own). Tests inject
    their own."""

    wall: Callable[[], float] = time.perf_counter
    cpu: Callable[[], float] = time.thread_time

    def read(self) -> tuple[float, float]:
        return self.wall(), self.cpu()


def gui_share(start: tuple[float, float], end: tuple[float, float]) -> float | None:
    """GUI-thread CPU seconds per wall second between two ``GuiClock.read()``s."""
    wall = end[0] - start[0]
    return max(0.0, (end[1] - start[1]) / wall) if wall > 0 else None


class Timer(Protocol):
    """What the pacer sets: a QTimer's interval."""

    def interval(self) -> int: ...

    def setInterval(self, msec: int) -> None: ...

    def start(self) -> None: ...


class Pacer:
    """The update interval of one streaming view; see the module docstring."""

    def __init__(self, base_ms: int, plot_interval: float = 0.0,
                 clock: GuiClock | None = None, budget: float = BUDGET,
                 max_ms: int = MAX_MS) -> None:
        self.base_ms = base_ms
        self.base_plot = plot_interval
        self.clock = clock or GuiClock()
        self.budget = budget
        self.max_ms = max(base_ms, max_ms)
        self.interval_ms = base_ms
        self._since: tuple[float, float] | None = None  # start of the current window
        self._last_plot: float | None = None
        self.share: float | None = None  # of the last whole window

    def start(self) -> int:
        """A run begins, at the rate the last one ended with: a run of the same model in
        the same window costs the same per update, and most runs follow one like them (a
        first second at the base rate cost a short fast run 0.3-0.5 % more here). A cheaper
        run relaxes to the base within a few seconds."""
        self._since = self.clock.read()
        self._last_plot = None
        self.share = None
        return self.interval_ms

    def begin(self, timer: Timer) -> None:
        """``start``, and start ``timer`` at the interval it returns."""
        timer.setInterval(self.start())
        timer.start()

    @property
    def plot_interval(self) -> float:
        """Seconds between plot repaints: the base, stretched as the text's interval is."""
        return self.base_plot * self.interval_ms / self.base_ms

    def tick(self) -> int:
        """Called at every update: the interval (ms) the next updates should use."""
        now = self.clock.read()
        if self._since is None:
            self._since = now
            return self.interval_ms
        if now[0] - self._since[0] < WINDOW:
            return self.interval_ms
        share = gui_share(self._since, now)
        self._since = now
        if share is None:
            return self.interval_ms
        self.share = share
        if share > self.budget:
            factor = min(STRETCH_LIMIT, share / self.budget)
            self.interval_ms = min(self.max_ms, round(self.interval_ms * factor))
        elif share < RELAX * self.budget:
            self.interval_ms = max(self.base_ms, round(self.interval_ms * 0.8))
        return self.interval_ms

    def pace(self, timer: Timer) -> None:
        """``tick``, and give ``timer`` the interval it returns."""
        interval = self.tick()
        if interval != timer.interval():
            timer.setInterval(interval)

    def plot_due(self) -> bool:
        """Is a plot repaint due now (the first of a run always is)? Marks it done."""
        wall = self.clock.wall()
        if self._last_plot is not None and wall - self._last_plot < self.plot_interval:
            return False
        self._last_plot = wall
        return True

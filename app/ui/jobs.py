"""What the Compare, Sweep and "Will it pay?" views share: the run context taken from the
Run tab, one job at a time on the engine lane, and small widget helpers.

``RunContext`` is a snapshot of the models, prompt and settings chosen in the Run tab;
the window builds it (or says why it cannot). ``JobRunner`` submits one ``Job`` to the
engine lane and re-emits only that job's progress, result and failure, on the GUI thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Qt, Signal, Slot
from PySide6.QtWidgets import QLabel, QWidget

from app.core.events import RunSettings
from app.ui.worker import EngineHost, Job

# One colour per track, the same in every view.
TRACK_COLOURS = {
    "baseline": "#3a4250", "draft": "#1f77b4", "lookup": "#2ca02c", "moe": "#9467bd",
    "draft+lookup": "#17becf", "moe+lookup": "#bcbd22", "moe+draft": "#8c564b",
    "moe+draft+lookup": "#e377c2",
}


@dataclass
class RunContext:
    """The Run tab's choices at the moment a view starts its work."""

    target_path: str
    draft_path: str | None
    prompt: str
    settings: RunSettings  # its ``track`` is the Run tab's selected track
    target_info: Any
    draft_info: Any | None = None
    available: dict[str, bool] = field(default_factory=dict)  # track id -> can run

    def describe(self) -> str:
        draft = f" · draft {Path(self.draft_path).name}" if self.draft_path else ""
        words = " ".join(self.prompt.split())
        words = words if len(words) <= 48 else words[:47] + "…"
        threads = self.settings.threads or "auto"
        return (f"{Path(self.target_path).name}{draft} · {self.settings.max_tokens} tokens · "
                f"temperature {self.settings.temperature:g} · seed {self.settings.seed} · "
                f"{threads} threads · prompt “{words}”")


ContextProvider = Callable[[], "RunContext | str"]  # a context, or why there is none


class JobRunner(QObject):
    """One job at a time for a view: start, cancel, and its own signals only."""

    progressed = Signal(object)
    finished = Signal(object)
    failed = Signal(str, str)  # kind, message
    ended = Signal()  # after finished or failed

    def __init__(self, host: EngineHost, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.host = host
        self.job: Job | None = None
        host.job_progress.connect(self._progress)
        host.job_finished.connect(self._finished)
        host.job_failed.connect(self._failed)

    @property
    def active(self) -> bool:
        return self.job is not None

    def start(self, fn: Callable[[Any, threading.Event, Callable[[object], None]], object]
              ) -> bool:
        if self.job is not None:
            return False
        self.job = self.host.call(fn)
        return True

    def cancel(self) -> None:
        if self.job is not None:
            self.job.cancel.set()

    @property
    def cancelled(self) -> bool:
        return self.job is not None and self.job.cancel.is_set()

    def _mine(self, job_id: int) -> bool:
        return self.job is not None and self.job.job_id == job_id

    @Slot(int, object)
    def _progress(self, job_id: int, x: object) -> None:
        if self._mine(job_id):
            self.progressed.emit(x)

    @Slot(int, object)
    def _finished(self, job_id: int, out: object) -> None:
        if self._mine(job_id):
            self.job = None
            self.finished.emit(out)
            self.ended.emit()

    @Slot(int, str, str)
    def _failed(self, job_id: int, kind: str, message: str) -> None:
        if self._mine(job_id):
            self.job = None
            self.failed.emit(kind, message)
            self.ended.emit()


def hint(text: str, parent: QWidget | None = None) -> QLabel:
    """A grey, wrapping explanatory line (also the empty states)."""
    label = QLabel(text, parent)
    label.setObjectName("Hint")
    label.setWordWrap(True)
    label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    return label


def empty_state(text: str) -> QLabel:
    """A centred sentence saying what to do, shown until there is something to show."""
    label = QLabel(text)
    label.setObjectName("EmptyState")
    label.setWordWrap(True)
    label.setAlignment(Qt.AlignmentFlag.AlignCenter)
    return label


def fmt_rate(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.1f} %"


def fmt_speedup(x: float | None) -> str:
    return "—" if x is None else f"{x:.2f}×"

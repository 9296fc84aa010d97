"""The workbench state the views observe: the chosen models, what is known of them, which
tracks can run on them, and whether a run or a view's job holds the engine.

It is the one place that knows the target and draft paths, their ``ModelInfo`` (or why they
could not be read: ``model_error``, one message the window shows in one place), the
compatibility of the pair (and of every draft candidate, with whether it is fit to serve as
a draft, for the picker) and the availability of each track, as the core's
``app.core.tracks.reasons`` gives it — a few words and the whole reason — or, for a model
that is chosen but not (yet) read, why. It also holds where the target's layers run (the
remote workers' ``placement``), which every run's settings take through ``placed``. Models
are read on the engine lane (a big vocabulary
takes seconds), never on the GUI thread; the views learn what changed from the signals and
read the rest here. The window only wires them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Signal

from app.core.compat import Compatibility, DraftFit, check_draft, draft_fit
from app.core.events import RunSettings
from app.core.gguf_info import ModelInfo, inspect_cached
from app.core.tracks import Track, find_track, reasons, working
from app.ui.lane import JobHandle, Lane, describe_error

Reasons = tuple[str, str] | None  # (a few words, the whole reason) why a track cannot run
LOCAL_PLACEMENT: dict[str, Any] = {"rpc": [], "rpc_split": [], "gpu_layers": 0}
ENGINE_BUSY = "The engine is busy: wait for the current run to end, or stop it."


def norm(path: str | Path) -> str:
    """The one spelling of a model path: absolute, user and links resolved."""
    return str(Path(path).expanduser().resolve())


def check_pair(target_path: str, draft_path: str) -> tuple[Compatibility, DraftFit] | str:
    """The draft's compatibility with the target and whether it is fit to serve as its
    draft, or why the draft could not be read. Raises if the target cannot be read (its own
    inspection says why)."""
    target = inspect_cached(target_path)
    try:
        draft = inspect_cached(draft_path)
    except Exception as exc:
        return describe_error(exc)[1]
    compat = check_draft(target, draft)
    return compat, draft_fit(target, draft, compat)


def _problem(path: str, message: str) -> str:
    """A model error without the path it starts with (the message names the file)."""
    return message.removeprefix(f"{path}: ")


class WorkbenchState(QObject):
    """The models and what follows from them; changed only through its methods.

    ``models_changed``: a path, a ``ModelInfo``, an inspection error or the pair's
    compatibility changed (then ``availability_changed`` if the tracks that can run did).
    ``candidates_changed``: the target changed, or another draft candidate was checked
    against it.
    ``model_error_changed``: the chosen models' problem (``model_error``) appeared, changed
    or went away ("").
    ``busy_changed``: a run or a view's job took or released the engine (``claim``).
    ``settled``: nothing the state asked of the lane is pending any more.
    ``placement_changed``: the remote workers that hold the target's layers changed.
    """

    models_changed = Signal()
    model_error_changed = Signal(str)  # the message, or "" once the cause is gone
    availability_changed = Signal()
    candidates_changed = Signal()
    busy_changed = Signal(bool)
    inspection_failed = Signal(str, str, str)  # role ("target"/"draft"), path, message
    target_read = Signal(object)  # the chosen target's ModelInfo, when it has been read
    settled = Signal()
    placement_changed = Signal()

    def __init__(self, lane: Lane, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.lane = lane
        self.target_path: str | None = None
        self.draft_path: str | None = None
        self.target_info: ModelInfo | None = None
        self.draft_info: ModelInfo | None = None
        # Why the chosen target (draft) could not be read, without its path.
        self.target_error: str | None = None
        self.draft_error: str | None = None
        self.job: str | None = None  # what holds the engine: "run", "comparison", ...
        self._checked: dict[tuple[str, str], Compatibility | str] = {}  # (target, draft)
        self._fits: dict[tuple[str, str], DraftFit] = {}
        self._model_error = ""
        self._candidates: list[str] = []
        self._surveys: dict[tuple[str, str], JobHandle] = {}
        self._pending: set[JobHandle] = set()
        self.availability: dict[str, Reasons] = self._availability()
        # The RunSettings fields rpc, rpc_split and gpu_layers: on this machine by default.
        self.placement: dict[str, Any] = dict(LOCAL_PLACEMENT)

    # -- where the target's layers run ------------------------------------------------------
    def set_placement(self, placement: dict[str, Any]) -> None:
        """Where the next runs put the target's layers (``WorkersPanel.placement()``)."""
        new = {**LOCAL_PLACEMENT, **{k: v for k, v in placement.items()
                                     if k in LOCAL_PLACEMENT}}
        if new != self.placement:
            self.placement = new
            self.placement_changed.emit()

    def placed(self, settings: RunSettings) -> RunSettings:
        """``settings`` with the target's layers where the remote workers say: the one place
        every run of the window (Run, Compare, Sweep, Will it pay?, Chat) takes them from."""
        p = self.placement
        return replace(settings, rpc=list(p["rpc"]), rpc_split=list(p["rpc_split"]),
                       gpu_layers=int(p["gpu_layers"]))

    # -- choosing models ------------------------------------------------------------------
    def set_target(self, path: str | Path | None) -> None:
        """Use ``path`` as the target (read on the lane; read again if chosen again)."""
        p = norm(path) if path else None
        self.target_path, self.target_info, self.target_error = p, None, None
        if p:
            self._inspect("target", p)
            if self.draft_path:
                self._check(p, self.draft_path)
        self._survey()
        self._changed()
        self.candidates_changed.emit()

    def set_draft(self, path: str | Path | None) -> None:
        p = norm(path) if path else None
        self.draft_path, self.draft_info, self.draft_error = p, None, None
        if p:
            self._inspect("draft", p)
            if self.target_path:
                self._check(self.target_path, p)
        self._changed()

    def set_candidates(self, paths: list[str]) -> None:
        """The draft models the user can pick from: each is checked against the target in
        the background (the picker marks them)."""
        self._candidates = list(paths)
        self._survey()
        self.candidates_changed.emit()

    # -- what is known ----------------------------------------------------------------------
    @property
    def compatibility(self) -> Compatibility | None:
        """The chosen draft's compatibility with the chosen target, once checked."""
        if not (self.target_path and self.draft_path):
            return None
        c = self._checked.get((self.target_path, self.draft_path))
        return c if isinstance(c, Compatibility) else None

    def candidates(self) -> dict[str, Compatibility | str]:
        """Draft candidates checked against the target so far: their compatibility, or
        why they could not be read."""
        return {d: c for (t, d), c in self._checked.items() if t == self.target_path}

    def fits(self) -> dict[str, DraftFit]:
        """Draft candidates checked against the target so far: whether each is offered as
        a draft (compatible, smaller, not the target's own model), and why."""
        return {d: f for (t, d), f in self._fits.items() if t == self.target_path}

    @property
    def model_error(self) -> str | None:
        """Why a chosen model could not be read, naming it and the next step (one line per
        model); None when every chosen model was read or is being read."""
        lines = [f"Could not read the {role} model {Path(path).name}: {why}"
                 for role, path, why in (("target", self.target_path, self.target_error),
                                         ("draft", self.draft_path, self.draft_error))
                 if path and why]
        return "\n".join(lines) or None

    def reasons(self, track: Track | str) -> Reasons:
        """Why ``track`` cannot run on the chosen models (the core's words, or that a chosen
        model could not be read or is being read); None if it can. An unknown track id
        cannot run."""
        t = find_track(track) if isinstance(track, str) else track
        if t is None:
            return "unknown track", f"unknown track {track!r}"
        why = reasons(t, self.target_info, self.draft_info, self.compatibility)
        if why is None or t.deprecated:
            return why
        if self.target_info is None and self.target_path:
            return self._unread("target", self.target_error)
        # The draft is what is missing when the target, standing in for it, would do.
        if (t.needs_draft_model and self.draft_info is None and self.draft_path
                and reasons(t, self.target_info, self.target_info) is None):
            return self._unread("draft", self.draft_error)
        return why

    @staticmethod
    def _unread(role: str, error: str | None) -> tuple[str, str]:
        if error is None:
            return f"reading the {role}…", f"the {role} model is being read"
        return f"{role} could not be read", f"{role} could not be read: {error}"

    def available(self, track: Track | str) -> bool:
        return self.reasons(track) is None

    def short_reasons(self) -> dict[str, str | None]:
        """Every working track id -> the few words why it cannot run, or None."""
        return {tid: why[0] if why else None for tid, why in self.availability.items()}

    @property
    def draft_blocked(self) -> str | None:
        """Why no draft model can serve this target (an SSM target), or None."""
        t = self.target_info
        return t.speculation_reason if t is not None and not t.speculation_allowed else None

    @property
    def inspecting(self) -> bool:
        """Whether a model read or a compatibility check the state asked for is pending."""
        return bool(self._pending)

    # -- the engine -----------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        return self.job is not None

    def claim(self, job: str) -> bool:
        """Hold the engine for a run or a view's job (``job`` names it); False if a job
        holds it already. Models and tracks stay as they are until ``release``."""
        if self.job is not None:
            return False
        self.job = job
        self.busy_changed.emit(True)
        return True

    def release(self, job: str) -> None:
        if self.job == job:
            self.job = None
            self.busy_changed.emit(False)

    # -- on the lane ------------------------------------------------------------------------
    def _submit(self, fn: Callable[[], Any], done: Callable[[Any], None],
                error: Callable[[str, str], None], background: bool = False) -> JobHandle:
        """``fn`` on the lane, counted in ``inspecting`` until its callback has run."""
        mine: list[JobHandle] = []

        def finish(callback: Callable[..., None], *args: Any) -> None:
            self._pending.difference_update(mine)
            callback(*args)
            if not self._pending:
                self.settled.emit()

        handle = self.lane.submit(lambda _s, _c, _r: fn(), background=background,
                                  done=lambda out: finish(done, out),
                                  error=lambda kind, message: finish(error, kind, message))
        mine.append(handle)
        self._pending.add(handle)
        return handle

    def _inspect(self, role: str, path: str) -> None:
        self._submit(lambda: inspect_cached(path),
                     lambda info: self._read(role, path, info),
                     lambda _kind, message: self._unreadable(role, path, message))

    def _read(self, role: str, path: str, info: ModelInfo) -> None:
        if role == "target" and path == self.target_path:
            self.target_info = info
            self.target_read.emit(info)
        elif role == "draft" and path == self.draft_path:
            self.draft_info = info
        else:
            return  # another model was chosen meanwhile
        self._changed()

    def _unreadable(self, role: str, path: str, message: str) -> None:
        if role == "target" and path == self.target_path:
            self.target_error = _problem(path, message)
        elif role == "draft" and path == self.draft_path:
            self.draft_error = _problem(path, message)
        else:
            return
        self._changed()
        self.inspection_failed.emit(role, path, message)

    def _check(self, target: str, draft: str, background: bool = False) -> None:
        """Check the pair unless it is known or coming; the chosen pair goes first."""
        key = (target, draft)
        if key in self._checked:
            return
        queued = self._surveys.get(key)
        if queued is not None and not queued.ended:
            if queued.sent or background or not queued.background:
                return  # under way, or coming as soon as asked
            self._forget(queued)  # waiting in the background: the chosen pair goes now
        self._surveys[key] = self._submit(
            lambda: check_pair(target, draft), lambda c: self._compared(key, c),
            lambda _kind, _message: self._check_failed(key), background)

    def _check_failed(self, key: tuple[str, str]) -> None:
        """The target could not be read (its inspection says why): check again later."""
        self._surveys.pop(key, None)

    def _forget(self, job: JobHandle) -> None:
        """Drop a background check that has not started."""
        job.cancel()
        self._pending.discard(job)

    def _compared(self, key: tuple[str, str],
                  checked: tuple[Compatibility, DraftFit] | str) -> None:
        self._surveys.pop(key, None)
        if isinstance(checked, str):
            self._checked[key] = checked
        else:
            self._checked[key], self._fits[key] = checked
        if key[0] == self.target_path:
            self.candidates_changed.emit()
            if key[1] == self.draft_path:
                self._changed()

    def _survey(self) -> None:
        """Check every candidate against the target in the background, after dropping the
        checks against another target that have not started."""
        for (target, _), job in self._surveys.items():
            if target != self.target_path and not job.sent and not job.ended:
                self._forget(job)
        self._surveys = {k: j for k, j in self._surveys.items() if not j.ended}
        if self.target_path and self.target_error is None:
            for path in self._candidates:
                self._check(self.target_path, path, background=True)

    def _changed(self) -> None:
        self.models_changed.emit()
        error = self.model_error or ""
        if error != self._model_error:
            self._model_error = error
            self.model_error_changed.emit(error)
        availability = self._availability()
        if availability != self.availability:
            self.availability = availability
            self.availability_changed.emit()

    def _availability(self) -> dict[str, Reasons]:
        return {t.id: self.reasons(t) for t in working()}

"""The workbench state and the engine lane on their own: availability comes from the core,
the pair's compatibility follows the draft, each job on the lane gets its own callbacks; and
the window keeps no model state of its own."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ui_helpers import choose

from app.core.compat import check_draft
from app.core.errors import RefusedError
from app.core.gguf_info import inspect_model
from app.core.tracks import BASELINE, find_track, reasons, working
from app.ui.lane import Lane
from app.ui.main_window import MainWindow
from app.ui.state import WorkbenchState

TIMEOUT = 60000


@pytest.fixture
def lane() -> Iterator[Lane]:
    lane = Lane()
    try:
        yield lane
    finally:
        lane.shutdown()


@pytest.fixture
def state(lane: Lane) -> WorkbenchState:
    return WorkbenchState(lane)


def settle(qtbot: Any, state: WorkbenchState) -> None:
    qtbot.waitUntil(lambda: not state.lane.busy and not state.inspecting, timeout=TIMEOUT)


def test_an_ssm_target_disables_every_speculating_track_with_the_cores_reason(
    qtbot: Any, state: WorkbenchState, tiny_mamba: Path, tiny_dense: Path
) -> None:
    assert state.reasons("baseline") == reasons(BASELINE, None)  # nothing chosen yet
    with qtbot.waitSignal(state.target_read, timeout=TIMEOUT):
        state.set_target(tiny_mamba)
    settle(qtbot, state)
    info = state.target_info
    assert info is not None and not info.speculation_allowed
    assert state.draft_blocked == info.speculation_reason
    for track in working():
        assert state.reasons(track) == reasons(track, info, None, None), track.id
        why = state.availability[track.id]
        if track.speculates:
            assert why is not None and "SSM" in why[0], track.id
        assert state.short_reasons()[track.id] == (why[0] if why else None)
    assert state.available("baseline")

    state.set_target(tiny_dense)
    settle(qtbot, state)
    assert state.available("lookup") and state.draft_blocked is None


def test_a_draft_change_updates_the_compatibility_and_the_tracks(
    qtbot: Any, state: WorkbenchState, tiny_dense: Path, tiny_incompatible: Path,
    tiny_draft: Path
) -> None:
    target = inspect_model(tiny_dense)
    state.set_target(tiny_dense)
    state.set_draft(tiny_incompatible)
    settle(qtbot, state)
    bad = state.compatibility
    assert bad is not None and not bad.compatible
    assert bad == check_draft(target, inspect_model(tiny_incompatible))
    draft_track = find_track("draft")
    assert draft_track is not None
    assert state.reasons("draft") == reasons(draft_track, target, state.draft_info, bad)
    assert not state.available("draft") and state.available("lookup")

    state.set_draft(tiny_draft)
    assert state.compatibility is None  # not known yet: checked on the lane
    settle(qtbot, state)
    good = state.compatibility
    assert good is not None and good.compatible
    assert state.available("draft") and state.available("draft+lookup")
    # Both pairs stay known, for the draft picker's marks.
    assert set(state.candidates()) == {str(tiny_incompatible.resolve()),
                                       str(tiny_draft.resolve())}

    state.set_draft(None)
    assert state.compatibility is None and not state.available("draft")


def test_the_engine_is_held_by_one_job_at_a_time(state: WorkbenchState) -> None:
    seen: list[bool] = []
    state.busy_changed.connect(seen.append)
    assert state.claim("run") and state.busy
    assert not state.claim("comparison")
    state.release("comparison")  # not the holder: nothing changes
    assert state.job == "run"
    state.release("run")
    assert not state.busy and seen == [True, False]


def test_each_job_gets_its_own_callbacks(qtbot: Any, lane: Lane) -> None:
    done: dict[str, list[object]] = {"a": [], "b": []}
    reported: dict[str, list[object]] = {"a": [], "b": []}
    errors: list[tuple[str, str]] = []

    def job(name: str) -> Any:
        def fn(_session: Any, _cancel: threading.Event, report: Any) -> str:
            report(f"{name} is half-way")
            return f"result of {name}"
        return fn

    def refuse(_session: Any, _cancel: threading.Event, _report: Any) -> None:
        raise RefusedError("not on these models")

    for name in ("a", "b"):
        lane.submit(job(name), progress=reported[name].append, done=done[name].append,
                    error=lambda kind, message: errors.append((kind, message)))
    failing = lane.submit(refuse, done=done["a"].append,
                          error=lambda kind, message: errors.append((kind, message)))
    qtbot.waitUntil(lambda: not lane.busy, timeout=TIMEOUT)
    assert done == {"a": ["result of a"], "b": ["result of b"]}
    assert reported == {"a": ["a is half-way"], "b": ["b is half-way"]}
    assert errors == [("refused", "not on these models")]
    assert failing.ended


def test_an_unexpected_error_reaches_the_error_callback(qtbot: Any, lane: Lane) -> None:
    errors: list[tuple[str, str]] = []

    def broken(_session: Any, _cancel: threading.Event, _report: Any) -> None:
        raise ValueError("bad value")

    lane.submit(broken, error=lambda kind, message: errors.append((kind, message)))
    qtbot.waitUntil(lambda: bool(errors), timeout=TIMEOUT)
    assert errors == [("failed", "unexpected error (ValueError): bad value")]


def test_background_jobs_wait_and_a_cancelled_one_never_runs(qtbot: Any, lane: Lane) -> None:
    gate = threading.Event()
    ran: list[str] = []

    def step(name: str, wait: bool = False) -> Any:
        def fn(_session: Any, _cancel: threading.Event, _report: Any) -> str:
            if wait:
                gate.wait(TIMEOUT / 1000)
            ran.append(name)
            return name
        return fn

    try:
        lane.submit(step("first", wait=True))
        later = lane.submit(step("background"), background=True)
        dropped = lane.submit(step("dropped"), background=True)
        lane.submit(step("second"))
        dropped.cancel()
        assert dropped.ended and not dropped.sent
        assert lane.busy and not later.sent
    finally:
        gate.set()
    qtbot.waitUntil(lambda: not lane.busy, timeout=TIMEOUT)
    assert ran == ["first", "second", "background"]


def test_the_window_keeps_no_model_state(
    qtbot: Any, window: MainWindow, tiny_dense: Path, tiny_draft: Path
) -> None:
    choose(qtbot, window, tiny_dense, draft=tiny_draft)
    for name in ("target_path", "draft_path", "target_info", "draft_info", "compat",
                 "current_compat", "host"):
        assert not hasattr(window, name), name
    assert window.state.target_path == str(tiny_dense.resolve())
    assert window.state.target_info is not None and window.state.draft_info is not None
    assert window.state.compatibility is not None
    # The panels show what the state holds.
    assert window.models.target.current_path == window.state.target_path
    assert window.models.draft.current_path == window.state.draft_path
    assert window.tracks.is_available("draft") == window.state.available("draft")

"""Remote workers in the window: the "Remote workers" section's endpoints go into every
run's settings (Run, Compare/Sweep/Will it pay? through the lab's context, Chat), the model
panel says where the layers run, the list is remembered, and ``gui --rpc`` lists them.
No worker is needed for these: the placement is read before anything connects."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ui_helpers import choose, run_and_wait

from app.core.tracks import get_track
from app.ui.app import preload_workers
from app.ui.jobs import RunContext
from app.ui.main_window import MainWindow
from app.ui.settings import GuiSettings

A, B = "127.0.0.1:50061", "127.0.0.1:50062"


@pytest.fixture
def win(qtbot: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[MainWindow]:
    monkeypatch.setenv("DECODELAB_HOME", str(tmp_path / "home"))
    w = MainWindow(GuiSettings(file=tmp_path / "gui.json"), restore=False)
    qtbot.addWidget(w)
    w.show()
    yield w
    w.close()


def test_the_workers_endpoints_go_into_every_runs_settings(
    qtbot: Any, win: MainWindow, tiny_dense: Path
) -> None:
    choose(qtbot, win, tiny_dense)
    win.prompt.text.setPlainText("alpha beta")
    panel = win.models.workers
    request = win.runs.choices()
    assert not isinstance(request, str)
    assert request.settings.rpc == [] and request.settings.gpu_layers == 0
    assert "all layers on this machine" in win.models.layers_line.text()

    with qtbot.waitSignal(panel.workers_changed):
        panel.set_endpoints([A, B])
    ctx = win.lab.context()  # what Compare, Sweep and Will it pay? run on
    assert isinstance(ctx, RunContext)
    for request in (win.runs.choices(), ctx.request):
        assert not isinstance(request, str)
        assert request.settings.rpc == [A, B] and request.settings.gpu_layers == -1
    chat = win.chat_settings(get_track("baseline"))
    assert not isinstance(chat, str) and chat.rpc == [A, B]
    assert A in win.models.layers_line.text() and B in win.models.layers_line.text()

    panel.layers.setValue(3)  # three layers on the workers, the rest here
    request = win.runs.choices()
    assert not isinstance(request, str) and request.settings.gpu_layers == 3
    assert "3 layers" in win.models.layers_line.text()

    panel.set_endpoints([])
    request = win.runs.choices()
    assert not isinstance(request, str)
    assert request.settings.rpc == [] and request.settings.gpu_layers == 0


def test_a_run_says_where_the_layers_ran(qtbot: Any, win: MainWindow, tiny_dense: Path) -> None:
    choose(qtbot, win, tiny_dense)
    win.prompt.text.setPlainText("alpha beta")
    win.tracks.settings.max_tokens.setValue(3)
    win.tracks.settings.threads.setValue(1)
    win.models.workers.where.setText("")
    result = run_and_wait(qtbot, win)
    assert result is not None and result.effective["devices"] == []
    assert win.models.layers_line.text() == \
        "Target layers: all layers on this machine (last run)"
    assert win.models.workers.where.text() == "Last run: all layers on this machine"
    # Another list of workers: the line says where the next run goes, not the last.
    win.models.workers.set_endpoints([A])
    assert "(last run)" not in win.models.layers_line.text()
    assert A in win.models.layers_line.text()


def test_the_workers_are_remembered_and_gui_rpc_lists_them(
    qtbot: Any, win: MainWindow, tmp_path: Path
) -> None:
    assert not win.models.workers.isVisible()  # folded while there are none
    preload_workers(win, argparse.Namespace(rpc=[A, B], rpc_split=[3.0, 1.0]))
    assert win.models.workers.endpoints() == [A, B] and win.models.workers.isVisible()
    assert win.state.placement["rpc"] == [A, B]
    assert win.state.placement["rpc_split"] == [3.0, 1.0]
    win.save_settings()
    saved = GuiSettings.load(win.gui_settings.file)
    assert saved.workers == [A, B]
    again = MainWindow(saved, restore=True)
    qtbot.addWidget(again)
    try:
        assert again.models.workers.endpoints() == [A, B]
        assert again.state.placement["rpc"] == [A, B]
        assert again.state.placement["rpc_split"] == []  # a --rpc-split is for its session
    finally:
        again.close()
    # Without --rpc the remembered workers stay; a split that does not match is dropped.
    preload_workers(win, argparse.Namespace())
    assert win.models.workers.endpoints() == [A, B]
    win.set_workers([A], [1.0, 2.0])
    assert win.state.placement == {"rpc": [A], "rpc_split": [], "gpu_layers": -1}

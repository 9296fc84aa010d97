"""UI test fixtures: the real window on tiny models, and a guard against leaked threads.

Every ``QThread`` started during a test is recorded; a test that leaves one running (or a
new non-daemon Python thread) fails at teardown, after pytest-qt has closed its widgets.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import tiny_models
from PySide6.QtCore import QThread

from app.ui.main_window import MainWindow
from app.ui.settings import GuiSettings

# Generous: the wait ends as soon as the threads have stopped; a loaded machine stops them late.
THREAD_GRACE = 30.0

# The offscreen platform's default screen is 800x800, smaller than the window: give it a
# desktop-sized screen so that restored geometry is not clamped (before QApplication exists).
if os.environ.get("QT_QPA_PLATFORM") == "offscreen":
    _config = Path(tempfile.mkdtemp(prefix="decodelab-qpa-")) / "offscreen.json"
    _config.write_text(json.dumps({"screens": [{
        "name": "offscreen-fhd", "x": 0, "y": 0, "width": 1920, "height": 1080,
        "logicalDpi": 96, "logicalBaseDpi": 96, "dpr": 1}]}))
    os.environ["QT_QPA_PLATFORM"] = f"offscreen:configfile={_config}"


@pytest.fixture(autouse=True)
def fail_on_running_threads(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    started: list[weakref.ref[QThread]] = []
    original = QThread.start

    def recording_start(self: QThread, *args: Any) -> None:
        started.append(weakref.ref(self))
        original(self, *args)

    monkeypatch.setattr(QThread, "start", recording_start)
    before = {t.ident for t in threading.enumerate()}
    yield
    deadline = time.monotonic() + THREAD_GRACE

    def leftovers() -> list[str]:
        running = [t.objectName() or repr(t) for ref in started
                   if (t := ref()) is not None and t.isRunning()]
        running += [t.name for t in threading.enumerate()
                    if t.ident not in before and not t.daemon and t.is_alive()]
        return running

    while leftovers() and time.monotonic() < deadline:
        time.sleep(0.05)
    left = leftovers()
    if left:
        pytest.fail(f"test left threads running: {left}", pytrace=False)


@pytest.fixture(scope="session")
def tiny_slow(tiny_dir: Path, tokenizer_source: Path | None) -> Path:
    """A wider tiny model whose generation lasts long enough to be stopped half-way."""
    return tiny_models.dense_llama(tiny_dir, tokenizer_source, seed=3, n_layer=6, n_embd=512,
                                   n_head=8, n_head_kv=4, n_ff=1536)


@pytest.fixture
def gui_settings(tmp_path: Path) -> GuiSettings:
    return GuiSettings(file=tmp_path / "gui.json")


@pytest.fixture
def window(qtbot: Any, gui_settings: GuiSettings) -> Iterator[MainWindow]:
    w = MainWindow(gui_settings, restore=False)
    qtbot.addWidget(w)
    w.show()
    yield w
    w.close()

"""Remembered state, first run and fetching, the log, and the scripted session."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QImage
from ui_helpers import choose, run_and_wait, settle

from app.cli import build_parser
from app.core.models import CATALOG, FetchCancelled, FetchProgress, Library, PinnedStatus
from app.ui import app as ui_app
from app.ui.main_window import MainWindow
from app.ui.settings import SCHEMA_VERSION, GuiSettings

ROOT = Path(__file__).resolve().parents[2]


def test_window_state_is_restored(qtbot: Any, gui_settings: GuiSettings, tiny_dense: Path) -> None:
    w = MainWindow(gui_settings, restore=False)
    qtbot.addWidget(w)
    w.show()
    choose(qtbot, w, tiny_dense)
    assert w.tracks.select("lookup")
    w.tracks.settings.max_tokens.setValue(123)
    w.tracks.settings.draft_max.setValue(5)
    w.tracks.settings.widget("ngram_max").setValue(6)  # a source's setting, by its name
    w.prompt.text.setPlainText("hello there")
    w.resize(1200, 800)
    w.close()
    assert gui_settings.file is not None and gui_settings.file.is_file()

    again = GuiSettings.load(gui_settings.file)
    w2 = MainWindow(again)
    qtbot.addWidget(w2)
    w2.show()
    settle(qtbot, w2)
    assert w2.state.target_path == str(tiny_dense.resolve())
    assert w2.state.target_info is not None
    assert w2.tracks.selected() == "lookup"
    assert w2.tracks.settings.max_tokens.value() == 123
    assert w2.tracks.settings.draft_max.value() == 5
    assert w2.tracks.settings.value("ngram_max") == 6
    assert w2.prompt.prompt() == "hello there"
    assert (w2.width(), w2.height()) == (1200, 800)
    w2.close()


def test_settings_file_with_another_schema_gives_defaults(tmp_path: Path) -> None:
    file = tmp_path / "gui.json"
    file.write_text(f'{{"schema": {SCHEMA_VERSION + 1}, "track": "lookup"}}')
    assert GuiSettings.load(file).track == "baseline"
    file.write_text("{not json")
    assert GuiSettings.load(file).track == "baseline"
    assert list(tmp_path.glob("gui.json.bad-*"))


def test_first_run_offers_the_default_model_and_fetch_can_be_cancelled(
    qtbot: Any, gui_settings: GuiSettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = Library(tmp_path / "library.json", [], [])
    monkeypatch.setattr(Library, "load", classmethod(lambda cls, file=None: empty))
    monkeypatch.setattr(Library, "pinned_status", lambda self: [
        PinnedStatus(e, False, None, e.size, None) for e in CATALOG.values()])
    calls: list[str] = []

    def slow_fetch(name: str, progress: Any = None, cancel: threading.Event | None = None,
                   **_: Any) -> Path:
        calls.append(name)
        for i in range(1000):
            if cancel is not None and cancel.is_set():
                raise FetchCancelled(f"fetching {name} was cancelled")
            progress(FetchProgress("download", name, i * 100_000, 100_000_000))
            time.sleep(0.01)
        raise AssertionError("not cancelled")

    monkeypatch.setattr("app.core.models.fetch", slow_fetch)
    w = MainWindow(gui_settings, restore=False)
    qtbot.addWidget(w)
    w.show()
    panel = w.models
    assert not panel.first_run.isHidden()
    assert "smollm2-135m" in panel.first_run.text.text()
    qtbot.mouseClick(panel.first_run.action, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: panel.fetch_bar.value() > 0, timeout=60000)
    assert calls == ["smollm2-135m"]
    assert "download" in panel.fetch_label.text()
    with qtbot.waitSignal(w.fetcher.failed, timeout=60000) as blocker:
        qtbot.mouseClick(panel.fetch_cancel, Qt.MouseButton.LeftButton)
    assert blocker.args[2] is True  # cancelled
    assert "cancelled" in panel.fetch_label.text()
    assert w.error_banner.isHidden()  # a cancel is not an error
    # A pinned model that is not installed, chosen in a picker, is offered for fetching.
    panel.offer_fetch("gemma3-270m")
    assert "gemma3-270m is not installed" in panel.fetch_label.text()
    assert not panel.fetch_button.isHidden()
    w.close()


def test_llama_log_reaches_the_panel_and_the_file(
    qtbot: Any, window: MainWindow, tiny_dense: Path
) -> None:
    log_file = ui_app.configure_logging()
    choose(qtbot, window, tiny_dense)
    window.tracks.settings.max_tokens.setValue(4)
    window.tracks.settings.threads.setValue(1)
    window.prompt.text.setPlainText("hello")
    run_and_wait(qtbot, window)
    window.log_panel.drain()
    text = window.log_panel.view.toPlainText()
    assert "llama.cpp" in text
    assert log_file.is_file() and "llama.cpp" in log_file.read_text(encoding="utf-8")


def test_errors_become_one_line_messages_and_uncaught_ones_are_logged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.core.errors import ModelFileError, RefusedError
    from app.ui.lane import describe_error

    assert describe_error(RefusedError("no")) == ("refused", "no")
    assert describe_error(ModelFileError("/m.gguf", "cut")) == ("failed", "/m.gguf: cut")
    kind, message = describe_error(MemoryError())
    assert kind == "failed" and message.startswith("out of memory")
    assert describe_error(ValueError("x"))[1] == "unexpected error (ValueError): x"

    log_file = ui_app.configure_logging()
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)
    ui_app.install_excepthook(log_file)
    try:
        raise RuntimeError("boom from a slot")
    except RuntimeError:
        sys.excepthook(*sys.exc_info())  # offscreen: logged, no modal dialog
    text = log_file.read_text(encoding="utf-8")
    assert "uncaught exception" in text and "boom from a slot" in text


def _scripted(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    home = tmp_path / "home"
    # The settings the window restores: one thread, a short answer (see test_runs.py).
    (home / "config").mkdir(parents=True)
    (home / "config" / "gui.json").write_text(json.dumps(
        {"schema": SCHEMA_VERSION, "run": {"threads": 1, "max_tokens": 64}}))
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", DECODELAB_HOME=str(home))
    return subprocess.run([sys.executable, "-m", "app", "gui", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=180)


def test_scripted_session_runs_and_saves_a_screenshot(tmp_path: Path, tiny_dense: Path) -> None:
    prompt = tmp_path / "prompt.txt"
    prompt.write_text("one two three one two three one two", encoding="utf-8")
    shot = tmp_path / "shot.png"
    proc = _scripted(tmp_path, "--model", str(tiny_dense), "--track", "lookup",
                     "--prompt-file", str(prompt), "--run", "--screenshot", str(shot), "--exit")
    assert proc.returncode == 0, proc.stderr
    image = QImage(str(shot))
    assert not image.isNull() and image.width() > 800 and image.height() > 500
    assert "Traceback" not in proc.stderr


def test_scripted_session_refuses_speculation_on_mamba(tmp_path: Path, tiny_mamba: Path) -> None:
    prompt = tmp_path / "prompt.txt"
    prompt.write_text("hello", encoding="utf-8")
    proc = _scripted(tmp_path, "--model", str(tiny_mamba), "--track", "lookup",
                     "--prompt-file", str(prompt), "--run", "--exit")
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr


def test_scripted_pay_view_measures_the_source_of_the_given_track(
    qtbot: Any, window: MainWindow, tiny_dense: Path, tiny_draft: Path, tmp_path: Path
) -> None:
    """``--track draft --view pay --run`` measures the draft model, not prompt lookup."""
    prompt = tmp_path / "prompt.txt"
    prompt.write_text("one two three one two three", encoding="utf-8")
    args = build_parser().parse_args([
        "gui", "--model", str(tiny_dense), "--draft", str(tiny_draft), "--track", "draft",
        "--view", "pay", "--prompt-file", str(prompt), "--run", "--threads", "1"])
    session = ui_app.ScriptedSession(window, args)
    session.start()
    qtbot.waitUntil(lambda: session._stage == "done", timeout=120000)
    pay = window.lab.pay
    assert session.exit_code == 0, pay.status.text()
    assert pay.report is not None and pay.report.source == "draft"
    assert pay.source.currentData() == "draft"
    assert pay.measured_for is not None
    assert Path(pay.measured_for[1] or "").name == tiny_draft.name
    assert window.lab.tabs.currentWidget() is pay
    qtbot.wait(400)  # the (empty) capture step ends the session


@pytest.mark.parametrize("experts, code", [(1, 0), (99, 2)])
def test_scripted_session_sets_the_experts(
    qtbot: Any, window: MainWindow, tiny_moe: Path, tmp_path: Path, experts: int, code: int
) -> None:
    """``--experts N`` runs Track 2 with N active experts; a count the model does not
    have is refused (exit 2) before anything runs."""
    prompt = tmp_path / "prompt.txt"
    prompt.write_text("one two three", encoding="utf-8")
    args = build_parser().parse_args([
        "gui", "--model", str(tiny_moe), "--track", "moe", "--prompt-file", str(prompt),
        "--run", "--threads", "1", "--max-tokens", "4", "--experts", str(experts)])
    session = ui_app.ScriptedSession(window, args)
    session.start()
    qtbot.waitUntil(lambda: session._stage == "done", timeout=120000)
    assert session.exit_code == code
    result = window.runs.last_result
    if code == 0:
        assert result is not None and result.effective["expert_used_count"] == 1
    else:
        assert result is None
    qtbot.wait(200)


def test_pay_panel_follows_a_track(
    qtbot: Any, window: MainWindow, tiny_dense: Path, tiny_draft: Path
) -> None:
    """Every track with a draft model measures the draft; the other speculating ones
    prompt lookup; a track that does not speculate changes nothing."""
    choose(qtbot, window, tiny_dense, draft=tiny_draft)
    pay = window.lab.pay
    for track, source in (("draft", "draft"), ("lookup", "lookup"), ("draft+lookup", "draft"),
                          ("moe+lookup", "lookup"), ("moe+draft+lookup", "draft")):
        other = "lookup" if source == "draft" else "draft"
        pay.source.setCurrentIndex(pay.source.findData(other))
        assert pay.follow(track), track
        assert pay.source.currentData() == source, track
        assert not pay.follow("baseline") and not pay.follow("moe")
        assert pay.source.currentData() == source, track


def test_application_is_named_for_its_desktop_file(qapp: Any) -> None:
    saved = (qapp.styleSheet(), qapp.style().name(), qapp.applicationName(),
             qapp.organizationName(), sys.getswitchinterval())
    try:
        assert ui_app.make_application().desktopFileName() == "decodelab"
    finally:
        qapp.setStyleSheet(saved[0])
        qapp.setStyle(saved[1])
        qapp.setApplicationName(saved[2])
        qapp.setOrganizationName(saved[3])
        sys.setswitchinterval(saved[4])

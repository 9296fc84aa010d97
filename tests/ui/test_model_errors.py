"""A model that cannot be read: said once (the error banner), in sizes a person reads and with
the next step, gone as soon as the cause is; the broken file can be taken off the recent
files; and the tracks name the real cause instead of "no model loaded"."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ui_helpers import choose, settle

from app.core.models.library import Library
from app.ui.main_window import MainWindow
from app.ui.settings import GuiSettings


@pytest.fixture
def home_window(qtbot: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                tokenizer_source: Path | None) -> Iterator[MainWindow]:
    """The window on a home of its own (its recent files are this test's) and an empty
    models folder (no pinned model to read). ``tokenizer_source`` is resolved first, so
    the tiny models keep the session's tokenizer."""
    monkeypatch.setenv("DECODELAB_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DECODELAB_MODELS_DIR", str(tmp_path / "no-models"))
    w = MainWindow(GuiSettings(file=tmp_path / "gui.json"), restore=False)
    qtbot.addWidget(w)
    w.show()
    yield w
    w.close()


@pytest.fixture
def cut_short(tiny_dense: Path, tmp_path: Path) -> tuple[Path, int, int]:
    """A copy of a tiny model cut to 60 %, named as the pinned SmolLM2 file: (path, bytes
    there, bytes of the whole file)."""
    data = tiny_dense.read_bytes()
    folder = tmp_path / "downloads"
    folder.mkdir()
    path = folder / "smollm2-135m.Q4_1.gguf"
    path.write_bytes(data[: len(data) * 6 // 10])
    return path, len(data) * 6 // 10, len(data)


def amounts(message: str) -> tuple[float, float, str]:
    found = re.search(r"incomplete file \((\d+\.\d) of (\d+\.\d) (kB|MB)\)", message)
    assert found, message
    return float(found[1]), float(found[2]), found[3]


def test_a_broken_target_is_said_once_with_the_next_step_and_goes_with_a_good_model(
    qtbot: Any, home_window: MainWindow, cut_short: tuple[Path, int, int], tiny_dense: Path
) -> None:
    w = home_window
    path, size, whole = cut_short
    choose(qtbot, w, path)
    message = w.error_banner.message()
    assert message.startswith(f"Could not read the target model {path.name}: ")
    have, need, unit = amounts(message)
    scale = {"kB": 1e3, "MB": 1e6}[unit]
    assert abs(have - size / scale) <= 0.05 and abs(need - whole / scale) <= 0.05 * need
    assert "download it again with `decodelab models fetch smollm2-135m`" in message
    assert "or choose another file" in message
    assert "bytes" not in message and str(path.parent) not in message
    # One place: not again under the picker, nor in the status bar.
    assert "incomplete" not in w.models.target_info.text()
    assert "incomplete" not in w.statusBar().currentMessage()
    assert not w.prompt.run_button.isEnabled()

    choose(qtbot, w, tiny_dense)
    assert w.error_banner.isHidden() and w.error_banner.message() == ""
    assert w.state.model_error is None
    assert "llama" in w.models.target_info.text()
    assert w.tracks.is_available("baseline")


def test_a_broken_draft_is_named_and_cleared_when_it_is_unchosen(
    qtbot: Any, home_window: MainWindow, cut_short: tuple[Path, int, int], tiny_dense: Path
) -> None:
    w = home_window
    path, _, _ = cut_short
    choose(qtbot, w, tiny_dense, draft=path)
    assert w.error_banner.message().startswith(f"Could not read the draft model {path.name}")
    assert w.state.reasons("draft") is not None
    assert w.state.reasons("draft")[0] == "draft could not be read"  # type: ignore[index]
    assert "incomplete file" in w.state.reasons("draft")[1]  # type: ignore[index]
    assert w.state.available("lookup")  # no draft model needed
    choose(qtbot, w, draft=None)
    assert w.error_banner.isHidden()
    assert w.state.reasons("draft") is not None
    assert w.state.reasons("draft")[0] == "no draft loaded"  # type: ignore[index]


def test_the_tracks_name_the_broken_target_not_a_missing_one(
    qtbot: Any, home_window: MainWindow, cut_short: tuple[Path, int, int]
) -> None:
    w = home_window
    assert w.state.reasons("baseline") == ("no model loaded", "no target model loaded")
    path, _, _ = cut_short
    choose(qtbot, w, path)
    for track in ("baseline", "lookup", "draft"):
        short, full = w.state.reasons(track) or ("", "")
        assert short == "target could not be read", track
        assert full.startswith("target could not be read: incomplete file ("), full
        assert w.state.short_reasons()[track] == short
        assert w.tracks.reason(track) == short
    assert "target could not be read" in w.tracks.runs_line.text()
    assert w.tracks.parts["lookup"].reason.text() == "unavailable: target could not be read"


def test_a_broken_recent_file_can_be_removed_from_the_list(
    qtbot: Any, home_window: MainWindow, cut_short: tuple[Path, int, int], tiny_dense: Path
) -> None:
    w = home_window
    path, _, _ = cut_short
    picker = w.models.target
    w.models.use_path(picker, str(path))  # as Open… does: listed under Recent files
    settle(qtbot, w)
    resolved = str(path.resolve())
    assert resolved in map(str, w.models.library.recent)
    assert picker.kind_of(resolved) == "recent"
    assert not w.error_banner.isHidden()
    assert picker.remove_button.isVisibleTo(w)
    # A readable recent file offers no Remove button.
    w.models.use_path(picker, str(tiny_dense))
    settle(qtbot, w)
    assert not picker.remove_button.isVisibleTo(w) and w.error_banner.isHidden()

    w.models.use_path(picker, str(path))
    settle(qtbot, w)
    assert picker.remove_button.isVisibleTo(w)
    picker.remove_button.click()
    settle(qtbot, w)
    assert picker.row_of(resolved) < 0 and w.models.draft.row_of(resolved) < 0
    assert resolved not in map(str, Library.load().recent)  # saved
    assert path.is_file()  # off the list, not off the disk
    assert w.state.target_path is None
    assert w.error_banner.isHidden()
    assert not picker.remove_button.isVisibleTo(w)


def test_an_empty_or_cut_header_file_says_what_to_do(
    qtbot: Any, home_window: MainWindow, broken_files: dict[str, Path]
) -> None:
    w = home_window
    choose(qtbot, w, broken_files["truncated_kv"])
    message = w.error_banner.message()
    assert "damaged or incomplete file" in message and "kB" in message
    assert "download it again or choose another file" in message
    choose(qtbot, w, broken_files["empty"])
    assert "empty" in w.error_banner.message()
    assert "choose another file" in w.error_banner.message()

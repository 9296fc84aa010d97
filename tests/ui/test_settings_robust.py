"""A damaged window settings file, model library or history record never stops the window:
the file is set aside (renamed ``.bad-…`` or moved to ``bad/``), the defaults are used and
the window says so."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from app.core import paths
from app.core.events import RunSettings
from app.ui.main_window import MainWindow
from app.ui.settings import SCHEMA_VERSION, GuiSettings

GOOD = {"schema": SCHEMA_VERSION, "track": "lookup", "prompt": "kept",
        "run": {"max_tokens": 77, "temperature": 0.5}}

# (id, gui.json text, key word of the reason)
BAD_SETTINGS = [
    ("geometry-number", json.dumps({**GOOD, "geometry": 5}), "geometry"),
    ("geometry-not-base64", json.dumps({**GOOD, "geometry": "no*base64!"}), "geometry"),
    ("track-list", json.dumps({**GOOD, "track": ["x"]}), "track"),
    ("track-unknown", json.dumps({**GOOD, "track": "warp-drive"}), "track"),
    ("max-tokens-huge", json.dumps({**GOOD, "run": {"max_tokens": 1e30}}), "max_tokens"),
    ("max-tokens-infinity", json.dumps(GOOD).replace("77", "Infinity"), "Infinity"),
    ("max-tokens-out-of-range", json.dumps({**GOOD, "run": {"max_tokens": 10**9}}),
     "max_tokens"),
    ("temperature-text", json.dumps({**GOOD, "run": {"temperature": "hot"}}), "temperature"),
    ("adaptive-number", json.dumps({**GOOD, "run": {"adaptive": 1}}), "adaptive"),
    # A draft source's setting is checked against its registry range and kind.
    ("ngram-min-out-of-range", json.dumps({**GOOD, "run": {"ngram_min": 99}}), "ngram_min"),
    ("p-min-text", json.dumps({**GOOD, "run": {"draft_p_min": "high"}}), "draft_p_min"),
    ("splitter-number", json.dumps({**GOOD, "splitters": {"main": 5}}), "splitters"),
    ("chat-text", json.dumps({**GOOD, "chat": "yes"}), "chat"),
    ("deep", "[" * 200_000 + "]" * 200_000, "nested"),
    ("not-an-object", "[1, 2]", "schema"),
]


@pytest.fixture(autouse=True)
def own_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Settings, library and history of this test's own."""
    monkeypatch.setenv("DECODELAB_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def start_window(qtbot: Any) -> MainWindow:
    """The window as `decodelab gui` makes it: it loads its settings itself."""
    w = MainWindow()
    qtbot.addWidget(w)
    w.show()
    return w


@pytest.mark.parametrize("text,word", [c[1:] for c in BAD_SETTINGS],
                         ids=[c[0] for c in BAD_SETTINGS])
def test_wrong_typed_settings_are_set_aside_and_the_window_starts(
    qtbot: Any, text: str, word: str
) -> None:
    file = paths.config_dir() / "gui.json"
    file.write_text(text, encoding="utf-8")
    w = start_window(qtbot)
    problem = w.gui_settings.set_aside
    assert problem is not None and word in problem.reason
    assert problem.moved_to is not None and problem.moved_to.name.startswith("gui.json.bad-")
    assert problem.moved_to.read_text(encoding="utf-8") == text and not file.exists()
    # Defaults, and the window says what happened.
    assert w.tracks.settings.max_tokens.value() == RunSettings().max_tokens
    assert w.prompt.prompt() == ""
    assert "gui.json" in w.error_banner.message()
    w.close()
    assert json.loads(file.read_text(encoding="utf-8"))["schema"] == SCHEMA_VERSION


def test_good_settings_are_restored_and_not_set_aside(qtbot: Any) -> None:
    file = paths.config_dir() / "gui.json"
    # A setting no registered source has (one removed since) is dropped, not a damage.
    run = {**GOOD["run"], "ngram_max": 6, "draft_p_min": 0.5, "retired_source_depth": 3}
    file.write_text(json.dumps({**GOOD, "run": run}), encoding="utf-8")
    w = start_window(qtbot)
    assert w.gui_settings.set_aside is None and w.error_banner.message() == ""
    assert w.tracks.settings.max_tokens.value() == 77
    assert w.tracks.settings.temperature.value() == 0.5
    assert w.tracks.settings.value("ngram_max") == 6
    assert w.tracks.settings.value("draft_p_min") == 0.5
    assert "retired_source_depth" not in w.gui_settings.run
    assert w.prompt.prompt() == "kept"
    w.close()


def test_settings_of_a_newer_version_give_defaults_without_set_aside(tmp_path: Path) -> None:
    file = tmp_path / "gui.json"
    file.write_text(json.dumps({**GOOD, "schema": SCHEMA_VERSION + 1, "geometry": 5}))
    settings = GuiSettings.load(file)
    assert settings.set_aside is None and settings.track == "baseline" and file.is_file()


def test_window_starts_with_a_damaged_library_and_history_record(
    qtbot: Any, own_home: Path
) -> None:
    (paths.config_dir() / "library.json").write_text('{"folders": [1, 2]}')
    history = paths.data_dir() / "history"
    history.mkdir(parents=True)
    bad_record = history / "20240101-000000-abcdef.json"
    bad_record.write_text(json.dumps({"format": "decodelab-run", "version": 1,
                                      "id": "20240101-000000-abcdef",
                                      "created_unix": 1e300}))
    w = start_window(qtbot)
    message = w.error_banner.message()
    assert "library.json" in message and bad_record.name in message
    assert w.models.library.set_aside is not None
    assert (history / "bad" / bad_record.name).is_file() and not bad_record.exists()
    assert w.lab.history.ids() == []
    w.close()

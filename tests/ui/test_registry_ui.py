"""A draft source registered later shows up in the window with no edit there: a checkbox in
the track selector, its settings' controls (by kind, range, default), its rule across its
settings, the saved-settings validation, and a run that carries its settings."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtWidgets import QCheckBox, QDoubleSpinBox, QSpinBox
from ui_helpers import choose, run_and_wait

from app.core.drafting import registry
from app.core.drafting.base import Proposal
from app.core.drafting.registry import BuildContext, DraftSource, Setting
from app.core.gguf_info import inspect_model
from app.ui.main_window import MainWindow
from app.ui.settings import SCHEMA_VERSION, GuiSettings
from app.ui.track_panel import TrackPanel


class ProposesNothing:
    """The smallest drafter: never proposes, so every round is one target step."""

    def propose(self, history: list[int], limit: int, min_length: int = 1) -> Proposal:
        return Proposal(source="toy")

    def observe(self, proposal: Proposal, accepted: int) -> None:
        pass


def _build(_ctx: BuildContext) -> ProposesNothing:
    return ProposesNothing()


TOY = DraftSource(
    id="toy", label="toy source", name="Toy source", number=None,
    summary="a test source that proposes nothing",
    colour="#eeeeee", dark_colour="#333333", plot_colour="#999999",
    cost="free", needs_draft_model=False, priority=50, build=_build,
    settings=(
        Setting("toy_depth", "depth", "how deep the toy looks", 3, 1, 8),
        Setting("toy_ratio", "ratio", "a toy fraction", 0.25, 0.0, 1.0, 0.125),
        Setting("toy_strict", "strict toy", "a toy switch", False),
    ),
    check=lambda get: "toy depth must be odd" if get("toy_depth") % 2 == 0 else None,
)


@pytest.fixture
def toy() -> Iterator[DraftSource]:
    registry.sources()  # the built-in sources first, as when the app registers a plug-in
    registry.register(TOY)
    try:
        yield TOY
    finally:
        registry.unregister(TOY.id)


def test_a_registered_source_gets_a_checkbox_and_its_settings(
    qtbot: Any, toy: DraftSource, tiny_dense: Path
) -> None:
    panel = TrackPanel()
    qtbot.addWidget(panel)
    row = panel.parts["toy"]
    assert row.check.text() == toy.title and row.summary.text() == toy.summary
    assert not row.check.isEnabled()  # no model yet

    depth = panel.settings.widget("toy_depth")
    ratio = panel.settings.widget("toy_ratio")
    strict = panel.settings.widget("toy_strict")
    assert isinstance(depth, QSpinBox) and (depth.minimum(), depth.maximum()) == (1, 8)
    assert depth.value() == 3
    assert isinstance(ratio, QDoubleSpinBox) and ratio.singleStep() == 0.125
    assert ratio.value() == 0.25 and ratio.decimals() >= 3
    assert isinstance(strict, QCheckBox) and not strict.isChecked()
    assert panel.settings.headers["toy"].text() == toy.title

    panel.set_models(inspect_model(tiny_dense), None, None)
    assert row.check.isEnabled()
    assert not depth.isEnabled()  # the baseline does not use it
    row.check.click()
    assert panel.selected() == "toy" and "(toy)" in panel.runs_line.text()
    assert depth.isEnabled() and ratio.isEnabled() and strict.isEnabled()
    assert panel.select("lookup+toy") and panel.selected() == "lookup+toy"

    # The source's own rule is shown under its group and keeps the track from running.
    depth.setValue(4)
    assert "odd" in panel.settings.problems["toy"].text()
    assert panel.settings.problem(panel.selected_track()) is not None
    depth.setValue(5)
    assert panel.settings.problems["toy"].isHidden()

    s = panel.settings.settings(panel.selected_track(), None, False, "")
    assert s.track == "lookup+toy"
    assert s.option("toy_depth") == 5 and s.option("toy_ratio") == 0.25
    assert s.to_dict()["toy_strict"] is False
    saved = panel.settings.dump()
    assert saved["toy_depth"] == 5
    again = TrackPanel()
    qtbot.addWidget(again)
    again.settings.load(saved | {"toy_ratio": 0.5})
    assert again.settings.value("toy_depth") == 5 and again.settings.value("toy_ratio") == 0.5


def test_saved_settings_of_a_registered_source_are_checked_by_its_range(
    toy: DraftSource, tmp_path: Path
) -> None:
    file = tmp_path / "gui.json"
    file.write_text(json.dumps({"schema": SCHEMA_VERSION, "track": "toy",
                                "run": {"toy_depth": 99}}))
    settings = GuiSettings.load(file)
    assert settings.set_aside is not None and "toy_depth" in settings.set_aside.reason
    file.write_text(json.dumps({"schema": SCHEMA_VERSION, "track": "toy",
                                "run": {"toy_depth": 7}}))
    settings = GuiSettings.load(file)
    assert settings.set_aside is None and settings.run == {"toy_depth": 7}


def test_the_window_runs_a_registered_source_with_its_settings(
    qtbot: Any, toy: DraftSource, gui_settings: GuiSettings, tiny_dense: Path
) -> None:
    w = MainWindow(gui_settings, restore=False)
    qtbot.addWidget(w)
    w.show()
    choose(qtbot, w, tiny_dense)
    assert w.tracks.select("toy"), w.tracks.reason("toy")
    w.tracks.settings.widget("toy_depth").setValue(7)
    w.tracks.settings.max_tokens.setValue(8)
    w.tracks.settings.threads.setValue(1)
    w.tracks.settings.adaptive.setChecked(False)
    w.prompt.text.setPlainText("alpha beta gamma")
    w.prompt.chat.setChecked(False)
    result = run_and_wait(qtbot, w)
    assert result is not None and result.track == "toy"
    assert result.settings["toy_depth"] == 7
    assert result.n_generated > 0 and result.n_drafted == 0
    w.close()

"""Picking models updates metadata, track availability, the SSM rule and draft marks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ui_helpers import choose

from app.core.drafting.registry import sources
from app.core.tracks import DEPRECATED, working
from app.ui.main_window import MainWindow

SPECULATING = [t.id for t in working() if t.speculates]


def reason(w: MainWindow, track: str) -> str:
    return w.tracks.reason(track) or ""


def shown_reason(w: MainWindow, part: str) -> str:
    """The reason the window shows beside a source's (or MoE's) checkbox."""
    row = w.tracks.parts[part]
    return row.reason.text() if not row.reason.isHidden() else ""


def test_every_source_and_track_is_listed_with_number_and_explanation(
    window: MainWindow,
) -> None:
    for src in sources():
        row = window.tracks.parts[src.id]
        assert row.check.text() == src.title
        assert row.summary.text() == src.summary
    moe = window.tracks.parts["moe"].check.text()
    assert "MoE expert reduction" in moe and "Track 2" in moe
    for t in DEPRECATED:
        dep = window.tracks.deprecated_rows[t.id]
        assert dep.radio.text() == t.label and dep.summary.text() == t.summary
        assert not dep.radio.isEnabled()
        assert t.failure in dep.reason.text() and t.instead in dep.reason.text()
    # Nothing ticked is the baseline, and the line under the boxes says so.
    assert window.tracks.selected() == "baseline"
    assert "Baseline" in window.tracks.runs_line.text()
    # Nothing loaded: nothing can run, and the window says why.
    assert not window.prompt.run_button.isEnabled()
    assert reason(window, "baseline") == "no model loaded"
    assert shown_reason(window, "draft") == "unavailable: no model loaded"


def test_picking_models_updates_metadata_and_tracks(
    qtbot: Any, window: MainWindow, tiny_dense: Path, tiny_draft: Path, tiny_moe: Path
) -> None:
    choose(qtbot, window, tiny_dense)
    meta = window.models.target_info.text()
    for word in ("llama", "dense (no experts)", "attention only", "context", "vocabulary"):
        assert word in meta
    assert window.tracks.is_available("baseline") and window.tracks.is_available("lookup")
    assert reason(window, "draft") == "no draft loaded"
    assert shown_reason(window, "draft") == "unavailable: no draft loaded"
    assert not window.tracks.parts["draft"].check.isEnabled()
    assert reason(window, "moe") == "not an MoE model"
    assert shown_reason(window, "moe") == "unavailable: not an MoE model"
    assert not window.tracks.settings.experts.isEnabled()

    choose(qtbot, window, draft=tiny_draft)
    assert window.tracks.is_available("draft") and window.tracks.is_available("draft+lookup")
    # Ticking sources makes the track: the line under the boxes names it, with its id.
    with qtbot.waitSignal(window.tracks.track_changed) as changed:
        window.tracks.parts["lookup"].check.click()  # as the user's click: toggled, clicked
    assert changed.args == ["lookup"]
    window.tracks.parts["draft"].check.click()
    assert window.tracks.selected() == "draft+lookup" == window.tracks.preferred
    assert "(draft+lookup)" in window.tracks.runs_line.text()
    assert "Track 1" in window.tracks.runs_line.text()
    assert "compatible" in window.models.compat.text()
    assert window.models.draft_info.isVisibleTo(window)

    choose(qtbot, window, tiny_moe)
    assert "8 experts, 2 used per token" in window.models.target_info.text()
    assert window.tracks.is_available("moe")
    assert window.tracks.select("moe")
    experts = window.tracks.settings.experts
    assert experts.isEnabled()
    assert (experts.minimum(), experts.maximum(), experts.value()) == (1, 8, 2)
    assert window.tracks.settings.settings(window.tracks.selected_track(),
                                           window.state.target_info,
                                           False, "").experts == 2


def test_mamba_target_disables_every_speculation_control(
    qtbot: Any, window: MainWindow, tiny_dense: Path, tiny_mamba: Path
) -> None:
    choose(qtbot, window, tiny_dense, draft=tiny_dense)
    assert window.tracks.select("draft+lookup")
    assert window.ssm_banner.isHidden()

    choose(qtbot, window, tiny_mamba)
    banner = window.ssm_banner
    assert not banner.isHidden()
    text = banner.text.text()
    assert "cannot be rolled back after a rejected draft" in text
    assert "baseline" in text and "MoE expert reduction" in text
    assert "recurrent" in window.models.target_info.text()
    assert not window.models.draft.isEnabled()
    for tid in SPECULATING:
        assert not window.tracks.is_available(tid), tid
        assert "SSM" in reason(window, tid)
        assert "rolled back" in (window.tracks.reason(tid, full=True) or "")
    for src in sources():
        row = window.tracks.parts[src.id]
        assert not row.check.isEnabled(), src.id
        assert "SSM" in shown_reason(window, src.id)
        assert "rolled back" in row.check.toolTip()
    assert window.tracks.selected() == "baseline" and window.tracks.is_available("baseline")
    for widget in window.tracks.settings.speculation_widgets():
        assert not widget.isEnabled()
        assert "rolled back" in widget.toolTip()

    # Back to an attention model: the controls come back, the preferred track too.
    choose(qtbot, window, tiny_dense)
    assert banner.isHidden()
    assert window.models.draft.isEnabled()
    assert window.tracks.selected() == "draft+lookup"
    used = window.tracks.settings.speculation_widgets(window.tracks.selected_track())
    assert all(w.isEnabled() for w in used)


def test_mamba_draft_is_refused_as_a_draft(
    qtbot: Any, window: MainWindow, tiny_dense: Path, tiny_mamba: Path
) -> None:
    choose(qtbot, window, tiny_dense, draft=tiny_mamba)
    assert not window.ssm_banner.isHidden()
    assert "cannot serve as a draft" in window.ssm_banner.text.text()
    assert not window.tracks.is_available("draft")
    assert window.tracks.is_available("lookup")  # lookup needs no draft model
    assert window.models.draft.isEnabled()  # so another draft can be chosen


def test_incompatible_draft_disables_track1_with_the_reason(
    qtbot: Any, window: MainWindow, tiny_dense: Path, tiny_incompatible: Path, tiny_draft: Path
) -> None:
    choose(qtbot, window, tiny_dense, draft=tiny_incompatible)
    for tid in ("draft", "draft+lookup"):
        assert not window.tracks.is_available(tid)
        assert reason(window, tid) == "draft incompatible (token texts)"
    assert not window.tracks.parts["draft"].check.isEnabled()
    assert shown_reason(window, "draft") == "unavailable: draft incompatible (token texts)"
    assert "token 17" in window.tracks.parts["draft"].check.toolTip()
    assert "incompatible" in window.models.compat.text()
    assert "✗</span> token texts" in window.models.compat.text()
    # The draft picker lists it, marked, with the failed check on hover.
    picker = window.models.draft
    item = picker.model.item(picker.row_of(str(tiny_incompatible.resolve())))
    assert "incompatible" in item.text()
    assert "token texts" in item.toolTip()
    # A compatible draft in the same list is marked as such.
    choose(qtbot, window, draft=tiny_draft)
    ok_item = picker.model.item(picker.row_of(str(tiny_draft.resolve())))
    assert "✓" in ok_item.text()
    assert window.tracks.is_available("draft")


def test_chat_switch_and_sample_prompts(qtbot: Any, window: MainWindow, tiny_dense: Path) -> None:
    choose(qtbot, window, tiny_dense)
    info = window.state.target_info
    assert info is not None
    has_template = info.has_chat_template
    assert window.prompt.chat.isEnabled() == has_template
    assert window.prompt.chat.isChecked() == has_template
    actions = window.prompt.samples.menu().actions()
    assert len(actions) == 4
    texts = set()
    for action in actions:
        action.trigger()
        texts.add(window.prompt.prompt())
        assert len(window.prompt.prompt()) > 100
    assert len(texts) == 4
    assert window.prompt.run_button.isEnabled()

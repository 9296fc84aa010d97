"""The window's sampling settings (context size, top-k, top-p, min-p, repetition penalty and
its window): ranged by the core's limits, handed to the run in its RunSettings (and so to the
engine), remembered, and with the exactness caveat of speculative sampling stated when a
token is sampled."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from ui_helpers import choose, run_and_wait

from app.core.events import RunSettings
from app.core.settings_check import LIMITS
from app.ui.main_window import MainWindow
from app.ui.settings import GuiSettings
from app.ui.track_settings import EXACTNESS, TrackSettings

PROMPT = "def mean(values):\n    return sum(values) / len(values)\n\ndef mean(values):\n"


def test_the_controls_take_the_cores_ranges_and_state_the_caveat(qtbot: Any) -> None:
    form = TrackSettings()
    qtbot.addWidget(form)
    form.show()
    for name in ("ctx", "top_k", "top_p", "min_p"):
        w, limit = getattr(form, name), LIMITS[name]
        assert (w.minimum(), w.maximum()) == (limit.lo, min(limit.hi, 2**31 - 1)), name
        assert w.value() == getattr(RunSettings(), name), name
    # Greedy: top-k/p and min-p do nothing, and every track gives the baseline's text.
    assert form.temperature.value() == 0
    assert not form.top_k.isEnabled() and not form.exactness.isVisible()
    assert "temperature 0" in form.top_p.toolTip()
    form.temperature.setValue(0.8)
    assert form.top_k.isEnabled() and form.top_p.isEnabled() and form.min_p.isEnabled()
    assert form.exactness.isVisible()
    assert ("with temperature > 0, speculative sampling matches the target's distribution, "
            "not the baseline's tokens") in form.exactness.text().lower()
    assert EXACTNESS in form.temperature.toolTip()
    form.temperature.setValue(0.0)
    assert not form.exactness.isVisible()


def test_the_chosen_values_reach_the_runs_settings_and_are_remembered(
    qtbot: Any, window: MainWindow, tiny_dense: Path, tmp_path: Path
) -> None:
    choose(qtbot, window, tiny_dense)
    form = window.tracks.settings
    chosen = {"temperature": 0.7, "top_k": 7, "top_p": 0.8, "min_p": 0.1, "ctx": 512}
    for name, value in chosen.items():
        getattr(form, name).setValue(value)
    window.prompt.text.setPlainText(PROMPT)
    request = window.runs.choices()
    assert not isinstance(request, str), request
    got = {name: getattr(request.settings, name) for name in chosen}
    assert got == pytest.approx(chosen)
    assert "2,048 tokens" in form.ctx.toolTip()  # the model's own context

    # Remembered with the window (checked against the core's limits when read back).
    saved = GuiSettings(file=tmp_path / "gui.json", run=form.dump())
    saved.save()
    again = TrackSettings()
    qtbot.addWidget(again)
    again.load(GuiSettings.load(tmp_path / "gui.json").run)
    assert {name: getattr(again, name).value() for name in chosen} == pytest.approx(chosen)


def test_a_sampled_run_uses_the_top_k_and_the_context_size(
    qtbot: Any, window: MainWindow, tiny_dense: Path
) -> None:
    choose(qtbot, window, tiny_dense)
    form = window.tracks.settings
    form.max_tokens.setValue(24)
    form.threads.setValue(1)
    window.prompt.text.setPlainText(PROMPT)
    window.prompt.chat.setChecked(False)
    greedy = run_and_wait(qtbot, window)
    assert greedy is not None and greedy.n_generated > 0
    # Sampling among the single most likely token is greedy decoding, whatever the seed.
    form.temperature.setValue(1.5)
    form.top_k.setValue(1)
    form.seed.setValue(12345)
    form.ctx.setValue(512)
    sampled = run_and_wait(qtbot, window)
    assert sampled is not None
    assert sampled.settings["top_k"] == 1 and sampled.settings["temperature"] == 1.5
    assert sampled.effective["n_ctx"] == 512
    assert sampled.token_ids == greedy.token_ids
    # With the whole vocabulary open, the same seed's draw leaves the greedy path.
    form.top_k.setValue(0)
    form.top_p.setValue(1.0)
    form.min_p.setValue(0.0)
    wide = run_and_wait(qtbot, window)
    assert wide is not None and wide.token_ids != greedy.token_ids


def test_the_repetition_penalty_and_its_window_reach_the_run(
    qtbot: Any, window: MainWindow, tiny_dense: Path
) -> None:
    choose(qtbot, window, tiny_dense)
    form = window.tracks.settings
    defaults = RunSettings()
    assert form.repeat_penalty.value() == defaults.repeat_penalty
    assert form.repeat_last_n.value() == defaults.repeat_last_n
    for name in ("repeat_penalty", "repeat_last_n"):
        w, limit = getattr(form, name), LIMITS[name]
        assert (w.minimum(), w.maximum()) == (limit.lo, limit.hi), name
    form.max_tokens.setValue(200)
    form.threads.setValue(1)
    window.prompt.text.setPlainText(PROMPT)
    window.prompt.chat.setChecked(False)
    plain = run_and_wait(qtbot, window)
    assert plain is not None
    assert len(set(plain.token_ids)) < len(plain.token_ids)  # it repeats itself
    # Greedy too: a token already seen (prompt included) loses to one not seen.
    form.repeat_penalty.setValue(10.0)
    form.repeat_last_n.setValue(-1)
    assert form.repeat_last_n.text() == "whole context"
    penalised = run_and_wait(qtbot, window)
    assert penalised is not None
    assert (penalised.settings["repeat_penalty"], penalised.settings["repeat_last_n"]) == (10.0, -1)
    assert penalised.token_ids != plain.token_ids
    assert {"repeat_penalty", "repeat_last_n"} <= set(form.dump())

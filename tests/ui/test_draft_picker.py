"""The draft picker offers the models that can serve the target as a draft (compatible and
smaller, neither the target nor its own model in another quantization); "show all" lists the
others with their reason. The model facts show the tensor type most of a file's bytes are
in beside the file type it declares."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import tiny_models
from test_compat_draft_roles import relabel_file_type
from ui_helpers import choose

from app.ui.main_window import MainWindow
from app.ui.settings import GuiSettings


@pytest.fixture
def home_window(qtbot: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                tokenizer_source: Path | None) -> Iterator[MainWindow]:
    """The window on a home of its own and an empty models folder: the draft list is the
    test's folder (``tokenizer_source`` is resolved first: the session's tiny models)."""
    monkeypatch.setenv("DECODELAB_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DECODELAB_MODELS_DIR", str(tmp_path / "no-models"))
    w = MainWindow(GuiSettings(file=tmp_path / "gui.json"), restore=False)
    qtbot.addWidget(w)
    w.show()
    yield w
    w.close()


@pytest.fixture
def f16_target(tiny_dir: Path, tokenizer_source: Path | None) -> Path:
    """``tiny_dense`` written in F16: its F32 copy (``tiny_dense``) is its bigger twin."""
    return tiny_models.dense_llama(tiny_dir, tokenizer_source, dtype="f16")


def test_the_draft_list_hides_the_target_and_its_bigger_twin_unless_show_all(
    qtbot: Any, home_window: MainWindow, tmp_path: Path, f16_target: Path, tiny_dense: Path,
    tiny_draft: Path, tiny_incompatible: Path
) -> None:
    w = home_window
    folder = tmp_path / "models"
    folder.mkdir()
    for name, source in (("target-f16.gguf", f16_target), ("twin-f32.gguf", tiny_dense),
                         ("small.gguf", tiny_draft), ("other-vocab.gguf", tiny_incompatible)):
        (folder / name).symlink_to(source)
    w.models.add_folder(str(folder))
    choose(qtbot, w, f16_target)
    target, twin, small, other = (str(p.resolve()) for p in
                                  (f16_target, tiny_dense, tiny_draft, tiny_incompatible))
    picker = w.models.draft
    assert set(w.state.fits()) == {target, twin, small, other}  # every one was checked

    # By default: only the smaller compatible model.
    assert not picker.is_hidden(small)
    assert "✓" in picker.model.item(picker.row_of(small)).text()
    for path in (target, twin, other):
        assert picker.is_hidden(path), path
        assert not picker.model.item(picker.row_of(path)).isEnabled()  # keys skip it too
    assert w.models.draft_all.isVisibleTo(w)
    assert "3 hidden" in w.models.draft_all.text()

    # Show all: each of the others, with its reason.
    w.models.draft_all.click()
    assert not any(picker.is_hidden(p) for p in (target, twin, small, other))

    def text(path: str) -> str:
        return str(picker.model.item(picker.row_of(path)).text())

    assert text(target).endswith("— the target itself")
    assert "own model in another quantization (F32, larger file" in text(twin)
    assert "⚠ incompatible: token texts" in text(other)
    assert "Not offered as a draft" in picker.model.item(picker.row_of(twin)).toolTip()

    # Hidden again; a model the user chose anyway stays listed (and works: compatible).
    w.models.draft_all.click()
    assert picker.is_hidden(twin)
    choose(qtbot, w, draft=tiny_dense)
    assert not picker.is_hidden(twin) and picker.current_path == twin
    assert picker.is_hidden(target)
    assert w.state.available("draft")

    # Another target: the marks follow it (the F16 model is now the smaller twin).
    choose(qtbot, w, tiny_dense, draft=None)
    assert picker.is_hidden(twin)  # now the target itself
    assert picker.is_hidden(target)
    assert not picker.is_hidden(small)


def test_the_window_shows_the_dominant_tensor_type_beside_the_declared_one(
    qtbot: Any, home_window: MainWindow, tiny_dense: Path, tmp_path: Path
) -> None:
    w = home_window
    choose(qtbot, w, tiny_dense)
    assert "<td>F32</td>" in w.models.target_info.text()
    relabelled = relabel_file_type(tiny_dense, tmp_path / "says-q4_k_m.gguf", 15)
    choose(qtbot, w, relabelled)
    assert "Q4_K_M (file: mostly F32)" in w.models.target_info.text()

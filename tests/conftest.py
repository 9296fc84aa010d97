"""Test setup: offscreen Qt, a throw-away DecodeLab home, tiny generated models.

The environment is set before anything imports Qt or reads the data folders. Models
downloaded by `make test` stay in the user's models folder and are reused; everything
else (settings, runs, logs) lives in a temporary folder per test session.

Tests never depend on timing or machine load. Adaptive drafting (the default) chooses what
to draft from costs it measures while it runs, so a test that asserts on what was drafted,
accepted or rejected, on rounds, draft lengths or acceptance runs with fixed drafting
(``RunSettings(adaptive=False)``, CLI ``--fixed``, the window's "adaptive drafting" box
unticked) or with adaptive decisions made from injected costs (``given_costs.give_costs``
for a Session, a ``CostModel`` with given costs for a drafter, as in test_adaptive.py).
Never assert on how fast something ran (only that reported speeds agree with each other);
bound waits generously (a wait returns as soon as its condition holds); assert on state,
not on how long something took.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

_TMP_HOME = tempfile.mkdtemp(prefix="decodelab-test-home-")
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("LANG", "C.UTF-8")
os.environ["DECODELAB_HOME"] = _TMP_HOME
_runtime = Path(_TMP_HOME) / "xdg-runtime"
_runtime.mkdir(mode=0o700, exist_ok=True)
os.environ.setdefault("XDG_RUNTIME_DIR", str(_runtime))

from collections.abc import Callable  # noqa: E402

import platformdirs  # noqa: E402
import pytest  # noqa: E402

from app.core import paths  # noqa: E402

os.environ.setdefault("DECODELAB_MODELS_DIR", str(paths.default_models_dir()))
sys.path.insert(0, str(Path(__file__).parent))

import tiny_models  # noqa: E402

TINY_CACHE = Path(
    os.environ.get("DECODELAB_TEST_CACHE")
    or Path(platformdirs.user_cache_dir("decodelab")) / "tiny-models"
)


def installed_model(name: str) -> Path | None:
    from app.core.models.library import installed_path

    return installed_path(name)


def _require(name: str) -> Path:
    path = installed_model(name)
    if path is None:
        pytest.skip(f"pinned model {name} is not installed (make models)")
    return path


@pytest.fixture(scope="session")
def pinned_model() -> Callable[[str], Path]:
    """`pinned_model(name)`: an installed catalog model's path, or skip the test.

    A fixture rather than an import: `from conftest import` resolves to whichever
    conftest.py pytest imported last (tests/ui has its own)."""
    return _require


@pytest.fixture(scope="session")
def tiny_dir() -> Path:
    TINY_CACHE.mkdir(parents=True, exist_ok=True)
    return TINY_CACHE


@pytest.fixture(scope="session")
def smollm2_path() -> Path:
    return _require("smollm2-135m")


@pytest.fixture(scope="session")
def tokenizer_source() -> Path | None:
    """SmolLM2's tokenizer when installed, so tiny models are compatible with it."""
    return installed_model("smollm2-135m")


@pytest.fixture(scope="session")
def tiny_dense(tiny_dir: Path, tokenizer_source: Path | None) -> Path:
    return tiny_models.dense_llama(tiny_dir, tokenizer_source)


@pytest.fixture(scope="session")
def tiny_draft(tiny_dir: Path, tokenizer_source: Path | None) -> Path:
    """Another dense model with the same tokenizer (other weights): a valid draft."""
    return tiny_models.dense_llama(tiny_dir, tokenizer_source, seed=1, n_layer=1)


@pytest.fixture(scope="session")
def tiny_moe(tiny_dir: Path, tokenizer_source: Path | None) -> Path:
    return tiny_models.moe_llama(tiny_dir, tokenizer_source)


@pytest.fixture(scope="session")
def tiny_mamba(tiny_dir: Path, tokenizer_source: Path | None) -> Path:
    return tiny_models.mamba(tiny_dir, tokenizer_source)


@pytest.fixture(scope="session")
def tiny_incompatible(tiny_dir: Path, tokenizer_source: Path | None) -> Path:
    """A dense model whose tokenizer differs at one token text: an incompatible draft."""
    return tiny_models.tokenizer_variant(tiny_dir, "token_text", tokenizer_source)


@pytest.fixture(scope="session")
def broken_files(tiny_dir: Path) -> dict[str, Path]:
    return tiny_models.broken_files(tiny_dir)


@pytest.fixture(scope="session")
def qwen_pair() -> tuple[Path, Path]:
    return _require("qwen2.5-coder-1.5b"), _require("qwen2.5-coder-0.5b")


@pytest.fixture(scope="session")
def gemma_path() -> Path:
    return _require("gemma3-270m")


@pytest.fixture
def models_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A throw-away models folder (not created) and home, for fetcher tests."""
    folder = tmp_path / "models"
    monkeypatch.setenv("DECODELAB_MODELS_DIR", str(folder))
    monkeypatch.setenv("DECODELAB_HOME", str(tmp_path / "home"))
    return folder


@pytest.fixture
def wheelhouse(tmp_path: Path) -> Path:
    """Where fetcher tests put the local wheels they install from (no network)."""
    return tmp_path / "wheelhouse"

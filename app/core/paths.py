"""Where DecodeLab keeps its files.

Everything lives in the platformdirs folders for "decodelab" unless ``DECODELAB_HOME``
points elsewhere (tests, portable installs). Models may be kept apart from the rest with
``DECODELAB_MODELS_DIR`` so that tests can use a throw-away home and still reuse the models
that were downloaded once.

Each function creates its folder on first use (``create=False``: just the path, for readers
that can do without it); a folder that cannot be created (no permission, a file in the
way) is a ``StorageError``: one line naming the folder, exit code 1.
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

from app.core.store import ensure_folder

APP_NAME = "decodelab"


def _home() -> Path | None:
    value = os.environ.get("DECODELAB_HOME")
    return Path(value).expanduser() if value else None


def _ensure(path: Path, create: bool) -> Path:
    return ensure_folder(path) if create else path


def data_dir(create: bool = True) -> Path:
    home = _home()
    path = home / "data" if home else Path(platformdirs.user_data_dir(APP_NAME))
    return _ensure(path, create)


def config_dir(create: bool = True) -> Path:
    home = _home()
    path = home / "config" if home else Path(platformdirs.user_config_dir(APP_NAME))
    return _ensure(path, create)


def cache_dir(create: bool = True) -> Path:
    home = _home()
    path = home / "cache" if home else Path(platformdirs.user_cache_dir(APP_NAME))
    return _ensure(path, create)


def log_dir(create: bool = True) -> Path:
    home = _home()
    path = home / "logs" if home else Path(platformdirs.user_log_dir(APP_NAME))
    return _ensure(path, create)


def models_dir(create: bool = True) -> Path:
    value = os.environ.get("DECODELAB_MODELS_DIR")
    path = Path(value).expanduser() if value else data_dir(create=False) / "models"
    return _ensure(path, create)


def runs_dir(create: bool = True) -> Path:
    return _ensure(data_dir(create=False) / "runs", create)


def default_models_dir() -> Path:
    """The models folder a user without overrides has (tests point at it to reuse downloads)."""
    return Path(platformdirs.user_data_dir(APP_NAME)) / "models"

"""Where DecodeLab keeps its files.

Everything lives in the platformdirs folders for "decodelab" unless ``DECODELAB_HOME``
points elsewhere (tests, portable installs). Models may be kept apart from the rest with
``DECODELAB_MODELS_DIR`` so that tests can use a throw-away home and still reuse the models
that were downloaded once.
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP_NAME = "decodelab"


def _home() -> Path | None:
    value = os.environ.get("DECODELAB_HOME")
    return Path(value).expanduser() if value else None


def _ensure(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def data_dir() -> Path:
    home = _home()
    return _ensure(home / "data" if home else Path(platformdirs.user_data_dir(APP_NAME)))


def config_dir() -> Path:
    home = _home()
    return _ensure(home / "config" if home else Path(platformdirs.user_config_dir(APP_NAME)))


def cache_dir() -> Path:
    home = _home()
    return _ensure(home / "cache" if home else Path(platformdirs.user_cache_dir(APP_NAME)))


def log_dir() -> Path:
    home = _home()
    return _ensure(home / "logs" if home else Path(platformdirs.user_log_dir(APP_NAME)))


def models_dir() -> Path:
    value = os.environ.get("DECODELAB_MODELS_DIR")
    return _ensure(Path(value).expanduser() if value else data_dir() / "models")


def runs_dir() -> Path:
    return _ensure(data_dir() / "runs")


def default_models_dir() -> Path:
    """The models folder a user without overrides has (tests point at it to reuse downloads)."""
    return Path(platformdirs.user_data_dir(APP_NAME)) / "models"

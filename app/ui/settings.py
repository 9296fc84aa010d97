"""The window's remembered state: a versioned JSON file in the config folder.

Loading never raises: a missing, unreadable or newer-schema file gives the defaults (an
unreadable one is set aside as ``gui.json.corrupt``). Saving is atomic (temp + replace).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from app.core import paths

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
FILE_NAME = "gui.json"


@dataclass
class GuiSettings:
    """What the window restores on start."""

    geometry: str | None = None  # base64 of QWidget.saveGeometry()
    window_state: str | None = None
    splitters: dict[str, str] = field(default_factory=dict)
    target: str | None = None
    draft: str | None = None
    track: str = "baseline"
    run: dict[str, Any] = field(default_factory=dict)  # RunSettings fields the UI edits
    chat: bool | None = None
    system: str = ""
    prompt: str = ""
    show_rejected: bool = True
    file: Path | None = field(default=None, repr=False, compare=False)

    @classmethod
    def load(cls, file: Path | None = None) -> GuiSettings:
        file = file or paths.config_dir() / FILE_NAME
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return cls(file=file)
        except (OSError, ValueError) as exc:
            log.warning("%s is unreadable (%s): starting with defaults", file, exc)
            with contextlib.suppress(OSError):
                os.replace(file, file.with_name(file.name + ".corrupt"))
            return cls(file=file)
        if not isinstance(data, dict) or data.get("schema") != SCHEMA_VERSION:
            log.warning("%s has another schema version: starting with defaults", file)
            return cls(file=file)
        known = {f.name for f in fields(cls)} - {"file"}
        values = {k: v for k, v in data.items() if k in known}
        try:
            settings = cls(**values, file=file)
        except TypeError:
            return cls(file=file)
        if not isinstance(settings.run, dict):
            settings.run = {}
        if not isinstance(settings.splitters, dict):
            settings.splitters = {}
        return settings

    def save(self) -> None:
        file = self.file or paths.config_dir() / FILE_NAME
        data = {"schema": SCHEMA_VERSION, **asdict(self)}
        data.pop("file", None)
        try:
            file.parent.mkdir(parents=True, exist_ok=True)
            tmp = file.with_name(f".{file.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
            os.replace(tmp, file)
        except OSError as exc:  # a read-only config folder must not break closing
            log.warning("could not save %s: %s", file, exc)

"""The window's remembered state: a versioned JSON file in the config folder.

Loading never raises: a missing file or one from a newer version gives the defaults; a
damaged one (unreadable, not JSON, nested too deep, or any field of the wrong type or out of
range) is renamed ``gui.json.bad-<YYYYmmdd-HHMMSS>``, the defaults are used and
``set_aside`` says why, for the window to show. Saving is atomic (``store.atomic_write_text``)
and a failed save is a logged warning: closing the window never fails.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import app.core.drafting.registry as registry
from app.core import paths
from app.core.settings_check import LIMITS, problem
from app.core.store import SetAside, atomic_write_text, read_json, set_aside, sweep_temp
from app.core.tracks import find_track
from app.core.validate import FormatError, fields_of

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
FILE_NAME = "gui.json"
# The run settings the window keeps are checked against the core's limits (the same as the
# command line's), a draft source's settings against their ``Setting`` range; the spin boxes
# then clamp to their own, narrower, ranges. Threads 0 is the window's "auto" (None in
# RunSettings). A setting of a source no longer registered is dropped, not an error.
_RUN_FLAGS = ("adaptive", "chat")
_NOT_SAVED = ("file", "set_aside")
MAX_WORKERS = 64


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
    # The prompt's system message: None is the default one (``DEFAULT_SYSTEM``), "" none.
    # (Files before the default message kept ``system``, where "" meant the default: left
    # out, so that no one's window turns the default off.)
    system_message: str | None = None
    prompt: str = ""
    workers: list[str] = field(default_factory=list)  # remote workers' host:port
    show_rejected: bool = True
    file: Path | None = field(default=None, repr=False, compare=False)
    # Set by load() when a damaged file was set aside; not saved.
    set_aside: SetAside | None = field(default=None, repr=False, compare=False)

    @classmethod
    def load(cls, file: Path | None = None) -> GuiSettings:
        if file is None:
            try:
                file = paths.config_dir() / FILE_NAME
            except OSError as exc:  # StorageError: say so, start with the defaults
                log.warning("%s; starting with default window settings", exc)
                return cls()
        sweep_temp(file.parent, file.name)
        try:
            data = read_json(file)
        except FileNotFoundError:
            return cls(file=file)
        except (OSError, ValueError) as exc:
            return cls._damaged(file, str(exc) or type(exc).__name__)
        schema = data.get("schema") if isinstance(data, dict) else None
        if isinstance(schema, int) and not isinstance(schema, bool) and schema > SCHEMA_VERSION:
            log.warning("%s is from a newer DecodeLab: starting with defaults", file)
            return cls(file=file)
        try:
            return cls(**_checked(data), file=file)
        except ValueError as exc:
            return cls._damaged(file, str(exc))

    @classmethod
    def _damaged(cls, file: Path, why: str) -> GuiSettings:
        settings = cls(file=file, set_aside=set_aside(file, why))
        log.warning("the window settings were damaged: %s", settings.set_aside)
        return settings

    def save(self) -> None:
        file = self.file or paths.config_dir() / FILE_NAME
        data = {"schema": SCHEMA_VERSION, **asdict(self)}
        for name in _NOT_SAVED:
            data.pop(name, None)
        try:
            atomic_write_text(file, json.dumps(data, indent=2) + "\n")
        except OSError as exc:  # a read-only config folder must not break closing
            log.warning("could not save the window settings: %s", exc)


def _checked(data: object) -> dict[str, Any]:
    """The fields of a settings document, each checked; ValueError saying which is wrong."""
    if not isinstance(data, dict) or data.get("schema") != SCHEMA_VERSION:
        raise FormatError(f"not a settings file of schema {SCHEMA_VERSION}")
    values = fields_of(GuiSettings, data, "settings", skip=_NOT_SAVED)
    for name in ("geometry", "window_state"):
        _base64(values.get(name), name)
    for name, state in values.get("splitters", {}).items():
        _base64(state, f"splitters.{name}")
    track = values.get("track", "baseline")
    if not isinstance(track, str) or find_track(track) is None:
        raise FormatError(f"settings.track: unknown track {str(values['track'])[:40]!r}")
    for name in ("target", "draft"):
        if "\x00" in (values.get(name) or ""):
            raise FormatError(f"settings.{name}: not a path")
    workers = values.get("workers", [])
    if len(workers) > MAX_WORKERS or any(len(w) > 300 or "\x00" in w for w in workers):
        raise FormatError("settings.workers: not a list of host:port addresses")
    run = values.get("run", {})
    for name, value in run.items():
        why = None
        if name in _RUN_FLAGS and not isinstance(value, bool):
            why = f"expected true or false, got {value!r:.40}"
        elif name in LIMITS:
            why = problem(name, None if name == "threads" and value == 0 else value)
        elif (spec := registry.setting(name)) is not None:
            why = spec.problem(value)
        if why is not None:
            raise FormatError(f"settings.run.{name}: {why[:120]}")
    values["run"] = {k: v for k, v in run.items()
                     if k in LIMITS or k in _RUN_FLAGS or registry.setting(k) is not None}
    return values


def _base64(value: object, name: str) -> None:
    if value is None:
        return
    try:
        base64.b64decode(str(value), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise FormatError(f"settings.{name}: not a saved Qt state ({exc})") from None

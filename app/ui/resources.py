"""One place that finds the bundled resources, from source and in a frozen app.

From source the resources live in ``<repo>/resources``; in a PyInstaller bundle they are
collected to ``<bundle>/resources`` (``sys._MEIPASS``). ``DECODELAB_RESOURCES`` overrides
both (packagers, tests).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path


@cache
def resources_dir() -> Path:
    override = os.environ.get("DECODELAB_RESOURCES")
    if override:
        return Path(override)
    bundle = getattr(sys, "_MEIPASS", None)
    if bundle:
        return Path(bundle) / "resources"
    return Path(__file__).resolve().parents[2] / "resources"


def resource_path(*parts: str) -> Path:
    """The path of a bundled resource (it may not exist if the bundle is incomplete)."""
    return resources_dir().joinpath(*parts)


def read_text(*parts: str, default: str = "") -> str:
    """A text resource, or ``default`` if it is missing (the app still starts)."""
    try:
        return resource_path(*parts).read_text(encoding="utf-8")
    except OSError:
        return default


@dataclass(frozen=True)
class SamplePrompt:
    kind: str
    title: str
    file: str

    def text(self) -> str:
        return read_text("prompts", self.file)


SAMPLE_PROMPTS = (
    SamplePrompt("code_edit", "Code edit (rename in a module: lookup gains most)", "code_edit.txt"),
    SamplePrompt("summary", "Summary (grounded in the prompt's wording)", "summary.txt"),
    SamplePrompt("new_code", "New code (little to copy: draft model)", "new_code.txt"),
    SamplePrompt("prose", "Prose (hardest for every track)", "prose.txt"),
)

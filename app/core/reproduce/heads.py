"""EAGLE-1 (Track 3) and Medusa (Track 4): nothing to run without trained heads, so the
experiment is a search of the user's file for them, read from its header (no weights).

Ordinary GGUF files hold none: converters drop EAGLE and Medusa heads, and the nearest thing
llama.cpp knows, multi-token-prediction blocks (``nextn``), is found and named too.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

from app.core.gguf_info import inspect_cached
from app.core.gguf_reader import read_header
from app.core.reproduce.plan import deprecated_track
from app.core.reproduce.result import HeadsCheck, Reproduction
from app.core.reproduce.store import new_id
from app.core.reproduce.verdict import heads_verdict

HEAD_WORDS = re.compile(r"medusa|eagle|nextn|\bmtp\b|mtp[._]|draft_head|spec_head",
                        re.IGNORECASE)


def find_heads(target: str | Path) -> HeadsCheck:
    header = read_header(target)
    names = [t.name for t in header.tensors]
    found = [n for n in names if HEAD_WORDS.search(n)]
    keys = [k for k in header.metadata if HEAD_WORDS.search(k)]
    return HeadsCheck(len(names), found, keys)


def check_heads(track_id: str, target: str | Path, prompt: str = "",
                settings: dict[str, object] | None = None) -> Reproduction:
    """The reproduction of an EAGLE or Medusa track: never reproducible, the search says
    what the file holds and the verdict why."""
    track = deprecated_track(track_id)
    info = inspect_cached(target)
    heads = find_heads(target)
    rep = Reproduction(new_id(), track_id, str(target), info.file_name, prompt,
                       dict(settings or {}), time.time(), reproducible=False,
                       reason=f"not reproducible: {track.failure}", heads=heads)
    rep.verdict = heads_verdict(rep, heads)
    return rep

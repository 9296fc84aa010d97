"""The allowed range of every run setting and the prompt, checked in one place.

``check_settings`` is what the core applies before any decoding, whoever built the
``RunSettings`` (CLI, window, API, a history record); the command line parses its options
with ``parse_setting``, so both refuse the same values with the same limits. Nothing here
imports llama.cpp: the command line reads these limits on every start.
"""

from __future__ import annotations

import codecs
import math
from dataclasses import dataclass
from pathlib import Path

import app.core.drafting.registry as registry
from app.core.errors import RefusedError
from app.core.events import RunSettings

# Every context is created with n_batch = n_ubatch = VERIFY_BATCH, and llama.cpp returns
# logits only for rows of one micro-batch: a verification (the pending token plus K
# drafts) must fit in one, so K is at most VERIFY_BATCH - 1.
VERIFY_BATCH = 512
MAX_DRAFT = VERIFY_BATCH - 1
# Settings are kept in the history, whose reader (app.core.serialization) takes numbers in
# -1…2**31-1: every limit stays inside that.
MAX_INT32 = 2**31 - 1
MAX_CTX = 1 << 20  # a million tokens: more than any model here was trained for
MAX_THREADS = 512  # GGML_MAX_N_THREADS
MAX_SEED = MAX_INT32
MAX_TEMPERATURE = 100.0  # far past the point where sampling is uniform over the candidates
# The penalty divides positive logits: 0 is no value, and 10 all but bans a seen token.
MIN_REPEAT_PENALTY, MAX_REPEAT_PENALTY = 0.1, 10.0


@dataclass(frozen=True)
class Limit:
    """The range ``lo``…``hi`` (both allowed) of one ``RunSettings`` field."""

    name: str  # the name the user knows it by: the command-line option without "--"
    kind: type[int] | type[float]
    lo: float
    hi: float
    optional: bool = False  # None allowed (the model's or the machine's default)
    why: str = ""


LIMITS: dict[str, Limit] = {
    "max_tokens": Limit("max-tokens", int, 1, MAX_CTX),
    "temperature": Limit("temp", float, 0.0, MAX_TEMPERATURE, why="0 = greedy"),
    "seed": Limit("seed", int, 0, MAX_SEED),
    "top_k": Limit("top-k", int, 0, MAX_INT32, why="0 = the whole vocabulary"),
    "top_p": Limit("top-p", float, 0.0, 1.0),
    "min_p": Limit("min-p", float, 0.0, 1.0),
    "repeat_penalty": Limit("repeat-penalty", float, MIN_REPEAT_PENALTY, MAX_REPEAT_PENALTY,
                            why="1 = off; above 1 repeats less"),
    "repeat_last_n": Limit("repeat-last-n", int, -1, MAX_CTX,
                           why="-1 = the whole context, 0 = off"),
    "draft_max": Limit("draft-max", int, 0, MAX_DRAFT,
                       why=f"the pending token and K drafts share one batch of {VERIFY_BATCH}"),
    "draft_min": Limit("draft-min", int, 0, MAX_DRAFT),
    "experts": Limit("experts", int, 1, MAX_INT32, optional=True,
                     why="at most the model's expert count"),
    "threads": Limit("threads", int, 1, MAX_THREADS, optional=True),
    "ctx": Limit("ctx", int, 1, MAX_CTX),
    "gpu_layers": Limit("gpu-layers", int, -1, MAX_INT32, why="-1 = all"),
    "draft_gpu_layers": Limit("draft-gpu-layers", int, -1, MAX_INT32, why="-1 = all"),
}


def problem(field: str, value: object) -> str | None:
    """Why ``value`` is not allowed for the ``RunSettings`` field ``field``, or None."""
    limit = LIMITS[field]
    if value is None:
        return None if limit.optional else "a value is required"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"{value!r} is not a number"
    if limit.kind is int and not isinstance(value, int):
        return f"{value!r} is not a whole number"
    if not math.isfinite(value):
        return f"{value} is not a finite number"
    if not limit.lo <= value <= limit.hi:
        span = f">= {limit.lo}" if limit.hi == MAX_INT32 else f"in {limit.lo}…{limit.hi}"
        why = f" ({limit.why})" if limit.why else ""
        return f"{value} is out of range: must be {span}{why}"
    return None


def parse_setting(field: str, text: str) -> int | float:
    """``text`` as a value of ``field``; RefusedError (without the name) if not allowed."""
    limit = LIMITS[field]
    try:
        value: int | float = limit.kind(text.strip())
    except ValueError:
        kind = "a whole number" if limit.kind is int else "a number"
        raise RefusedError(f"{text!r} is not {kind}") from None
    why = problem(field, value)
    if why is not None:
        raise RefusedError(why)
    return value


def check_settings(s: RunSettings) -> None:
    """Refuse (RefusedError naming the setting) any value out of its range."""
    for field, limit in LIMITS.items():
        why = problem(field, getattr(s, field))
        if why is not None:
            raise RefusedError(f"{limit.name}: {why}")
    for name in s.options:
        if registry.setting(name) is None:
            raise RefusedError(f"no draft source has a setting {name!r}")
    for source in registry.sources():
        for spec in source.settings:
            why = spec.problem(s.option(spec.name))
            if why is not None:
                raise RefusedError(f"{spec.flag[2:]}: {why.split(': ', 1)[-1]}")
        if source.check is not None and (why := source.check(s.option)) is not None:
            raise RefusedError(why)


def check_prompt(prompt: str) -> None:
    """Refuse a prompt with nothing but white space in it."""
    if not prompt.strip():
        raise RefusedError("the prompt is empty")


def read_prompt_file(path: str | Path) -> str:
    """The text of a prompt file; RefusedError naming the file if it cannot be a prompt."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise RefusedError(f"{path}: cannot read prompt: {exc.strerror or exc}") from exc
    # A byte-order mark (Windows editors write one) is not part of the prompt.
    skip = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    try:
        text = data[skip:].decode("utf-8")
    except UnicodeDecodeError as exc:
        at = skip + exc.start
        raise RefusedError(
            f"{path}: not UTF-8 text: byte 0x{data[at]:02x} at byte {at} cannot be decoded"
        ) from None
    if not text.strip():
        raise RefusedError(f"{path}: the prompt file is empty")
    return text

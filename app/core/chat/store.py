"""Conversations kept as they go: one JSON file per conversation in
``data_dir()/conversations``, and their export as JSON (re-importable) and Markdown.

Guarantees (as for run history):

- ``save`` writes atomically (``store.atomic_write_text``): a writer killed at any moment
  leaves the old file or the new one, whole. The chat saves when a user message is sent
  (before its answer runs) and when the answer ends, so a crash mid-turn loses at most the
  answer being written; reopened, the last user message waits for an answer.
- ``list`` never raises on what it finds: a damaged file (corrupt, foreign, a field of the
  wrong type) is moved into ``bad/`` and listed by ``problems()`` with its reason; one from
  a newer DecodeLab is listed there and left in place. Temp files of dead writers are
  removed when the store is opened.
- ``load(c.id)`` equals the saved conversation (each turn's run and events included).
"""

from __future__ import annotations

import builtins
import contextlib
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from app.core import paths
from app.core.chat.conversation import Conversation, conversation_from_dict, turn_stats
from app.core.errors import DecodeLabError, RefusedError
from app.core.labels import track_label
from app.core.store import (
    SetAside,
    atomic_write_text,
    ensure_folder,
    loads,
    read_json,
    reason,
    set_aside,
    sweep_temp,
)
from app.core.validate import FormatError

CONVERSATIONS_DIR = "conversations"
BAD_DIR = "bad"
_ID = re.compile(r"^chat-[0-9]{8}-[0-9]{6}-[0-9a-f]{6}$")


class ConversationNotFound(RefusedError):
    """No conversation with that id (a bad argument: exit code 2)."""


class ConversationFileError(DecodeLabError):
    """A conversation file exists but cannot be read."""


@dataclass(frozen=True)
class ConversationSummary:
    id: str
    title: str
    turns: int
    tracks: tuple[str, ...]  # the tracks its answers used, in order of first use
    target: str | None
    updated: float
    waiting: bool  # its last user message has no answer (the app stopped mid-turn)


def summarize(conv: Conversation) -> ConversationSummary:
    tracks = tuple(dict.fromkeys(m.run.track for m in conv.messages if m.run is not None))
    return ConversationSummary(conv.id, conv.title, conv.turns, tracks, conv.target,
                               conv.updated, conv.waiting)


class ConversationStore:
    """The conversations folder. Safe to create any number of times."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = ensure_folder(root if root is not None
                                  else paths.data_dir() / CONVERSATIONS_DIR)
        self._cache: dict[str, tuple[tuple[int, int], ConversationSummary | None]] = {}
        self._problems: builtins.list[SetAside] = []
        sweep_temp(self.root)

    def problems(self) -> builtins.list[SetAside]:
        """The files skipped so far, with their reasons and where they went."""
        return list(self._problems)

    def path(self, conv_id: str) -> Path:
        if not _ID.match(conv_id):
            raise ConversationNotFound(f"{conv_id!r} is not a conversation id")
        return self.root / f"{conv_id}.json"

    def save(self, conv: Conversation) -> Path:
        """Write ``conv`` atomically; StorageError (one line) if the disk fails."""
        p = self.path(conv.id)
        atomic_write_text(p, json.dumps(conv.to_dict(), ensure_ascii=False))
        return p

    def delete(self, conv_id: str) -> None:
        try:
            self.path(conv_id).unlink()
        except FileNotFoundError:
            raise ConversationNotFound(f"no conversation {conv_id}") from None

    def load(self, conv_id: str) -> Conversation:
        try:
            return self._read(self.path(conv_id))
        except FileNotFoundError:
            raise ConversationNotFound(f"no conversation {conv_id}") from None

    def list(self) -> builtins.list[ConversationSummary]:
        """Summaries, most recently changed first."""
        found: builtins.list[ConversationSummary] = []
        try:
            files = [p for p in self.root.iterdir() if p.suffix == ".json"]
        except OSError:
            return []
        for p in files:
            s = self._summary(p)
            if s is not None:
                found.append(s)
        return sorted(found, key=lambda s: (s.updated, s.id), reverse=True)

    def resolve(self, prefix: str) -> str:
        """The one conversation id starting with ``prefix`` ("last": the latest)."""
        listed = self.list()
        if prefix == "last" and listed:
            return listed[0].id
        hits = sorted(s.id for s in listed if s.id.startswith(prefix))
        if prefix in hits:
            return prefix
        if len(hits) != 1:
            raise ConversationNotFound(
                f"no conversation {prefix!r}" if not hits else
                f"{prefix!r} is ambiguous: {len(hits)} conversations start with it")
        return hits[0]

    def _summary(self, p: Path) -> ConversationSummary | None:
        try:
            st = p.stat()
        except OSError:
            return None
        stamp = (st.st_mtime_ns, st.st_size)
        cached = self._cache.get(p.name)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        summary = None
        with contextlib.suppress(ConversationFileError, FileNotFoundError):
            summary = summarize(self._read(p))
        self._cache[p.name] = (stamp, summary)
        return summary

    def _read(self, p: Path) -> Conversation:
        try:
            conv = conversation_from_dict(read_json(p))
            if conv.id != p.stem:
                raise FormatError(f"its id {conv.id!r} does not match the file name")
            return conv
        except FileNotFoundError:
            raise
        except OSError as exc:
            problem = SetAside(p, reason(exc), None)
        except ValueError as exc:
            if "format version" in str(exc):  # a newer DecodeLab's: leave it where it is
                problem = SetAside(p, str(exc), None)
            else:
                problem = set_aside(p, str(exc) or type(exc).__name__, self.root / BAD_DIR)
        self._problems.append(problem)
        raise ConversationFileError(str(problem))


# -- export and import -------------------------------------------------------------------------


def export_json(conv: Conversation) -> str:
    """The conversation as ``import_json`` reads it back (every run and event included)."""
    return json.dumps(conv.to_dict(), ensure_ascii=False, indent=1)


def import_json(text: str, store: ConversationStore | None = None) -> Conversation:
    """A conversation from ``export_json`` output, with a new id if ``store`` already has
    its id (saved there when a store is given)."""
    try:
        conv = conversation_from_dict(loads(text))
    except ValueError as exc:
        raise RefusedError(f"not a conversation DecodeLab can read: {exc}") from None
    if store is not None:
        if not _ID.match(conv.id) or store.path(conv.id).exists():
            from app.core.chat.conversation import new_conversation_id

            conv.id = new_conversation_id()
        store.save(conv)
    return conv


def export_markdown(conv: Conversation) -> str:
    """A readable transcript: the system message, each message, and under each answer its
    track and figures."""
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(conv.updated))
    lines = [f"# {conv.title or 'Conversation'}", ""]
    model = os.path.basename(conv.target) if conv.target else "—"
    lines += [f"*{when} · model {model} · {conv.turns} turns*", ""]
    if conv.system is not None:
        lines += [f"**System:** {conv.system or '(none)'}", ""]
    for i, m in enumerate(conv.messages):
        if i == conv.start and conv.start:
            lines += ["> *the model's context starts here (the turns above no longer "
                      "fitted)*", ""]
        if m.role == "user":
            lines += [f"## User (turn {conv.turn_of(i)})", "", m.text, ""]
            continue
        lines += ["### Assistant", "", m.text, ""]
        if m.run is not None:
            from app.core.chat.conversation import stats_line

            lines += [f"*{stats_line(turn_stats(conv, i), track_label(m.run.track))}*", ""]
    for note in conv.notes:
        lines += [f"> note: {note}", ""]
    return "\n".join(lines).rstrip() + "\n"

"""A conversation: the system message, the messages, each assistant turn's run, and what
the model's context holds of it.

Run data: imports nothing of the engine (a stored conversation is read without llama.cpp).
Each assistant message keeps its ``RunResult`` (events included, so a reopened turn shows
its accepted and rejected drafts again) and the target its token ids belong to: the next
turn feeds those very ids back (``render``), so that the KV cache of the last turn is a
prefix of the next prompt.

``start`` is the first message the model sees: when the context was full and the user chose
to continue, the turns before it stay in the conversation (shown, saved, exported) but are
left out of the prompt, and ``notes`` says so. Nothing is dropped silently.

JSON form (``to_dict`` / ``conversation_from_dict``; what the store saves and the export
writes, re-importable): ``{"format": "decodelab-conversation", "version": 1, "id",
"title", "created", "updated", "target", "draft", "system", "start", "notes",
"messages": [{"role", "text", "model", "run"}]}``, ``run`` being ``RunResult.to_dict()``.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from app.core.events import RunResult
from app.core.serialization import result_from_dict, settings_from_dict
from app.core.validate import FormatError, as_mapping, checker
from app.core.verdict import baseline_key

Role = Literal["user", "assistant"]
FORMAT = "decodelab-conversation"
VERSION = 1
TITLE_CHARS = 60


def new_conversation_id() -> str:
    """Sortable and unique: UTC time to the second plus 24 random bits."""
    return f"chat-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{secrets.token_hex(3)}"


@dataclass
class Message:
    role: Role
    text: str
    # Assistant turns: the run that wrote it, and the target file its token ids belong to.
    run: RunResult | None = None
    model: str | None = None

    @property
    def token_ids(self) -> list[int]:
        return self.run.token_ids if self.run is not None else []

    @property
    def partial(self) -> bool:
        """An answer that did not end by itself (stopped, cut by the context or the limit)."""
        return self.run is not None and self.run.stop_reason in ("cancelled", "context_full")

    def to_dict(self, with_events: bool = True) -> dict[str, Any]:
        d: dict[str, Any] = {"role": self.role, "text": self.text}
        if self.role == "assistant":
            d["model"] = self.model
            d["run"] = self.run.to_dict(with_events) if self.run is not None else None
        return d


@dataclass
class Conversation:
    id: str = field(default_factory=new_conversation_id)
    title: str = ""
    # None: the default rendering (``render.DEFAULT_SYSTEM``); "" or text: this message.
    system: str | None = None
    messages: list[Message] = field(default_factory=list)
    target: str | None = None  # the models of the last turn
    draft: str | None = None
    start: int = 0  # the first message in the model's context
    notes: list[str] = field(default_factory=list)
    created: float = field(default_factory=time.time)
    updated: float = field(default_factory=time.time)

    # -- reading --------------------------------------------------------------------------
    @property
    def turns(self) -> int:
        """User messages so far (a turn is a user message and its answer)."""
        return sum(1 for m in self.messages if m.role == "user")

    @property
    def waiting(self) -> bool:
        """The last message is the user's: the next answer is due."""
        return bool(self.messages) and self.messages[-1].role == "user"

    def in_context(self) -> list[Message]:
        return self.messages[self.start :]

    def turn_of(self, index: int) -> int:
        """The 1-based turn number of message ``index``."""
        return sum(1 for m in self.messages[: index + 1] if m.role == "user")

    # -- changing -------------------------------------------------------------------------
    def add_user(self, text: str) -> None:
        if self.waiting:
            raise ValueError("the last user message has no answer yet")
        self.messages.append(Message("user", text))
        if not self.title:
            line = " ".join(text.split())
            self.title = line if len(line) <= TITLE_CHARS else line[: TITLE_CHARS - 1] + "…"
        self.touch()

    def add_answer(self, result: RunResult, target: str, draft: str | None) -> None:
        if not self.waiting:
            raise ValueError("no user message waits for an answer")
        self.messages.append(Message("assistant", result.text, result, target))
        self.target, self.draft = target, draft
        self.touch()

    def cut(self, index: int) -> None:
        """Drop message ``index`` and everything after it (editing, regenerating)."""
        if not 0 <= index <= len(self.messages):
            raise IndexError(f"no message {index}")
        del self.messages[index:]
        self.start = min(self.start, len(self.messages))
        self.touch()

    def regenerate(self) -> None:
        """Drop the last answer, so that its user message waits again."""
        if not self.messages or self.messages[-1].role != "assistant":
            raise ValueError("there is no answer to regenerate")
        self.cut(len(self.messages) - 1)

    def edit(self, index: int, text: str) -> None:
        """Replace user message ``index`` and cut the conversation there."""
        if not 0 <= index < len(self.messages) or self.messages[index].role != "user":
            raise ValueError(f"message {index} is not a user message")
        if index < self.start:
            raise ValueError("that message is no longer in the model's context")
        self.cut(index)
        self.messages.append(Message("user", text))
        self.touch()

    def leave_out(self, start: int, why: str) -> None:
        """Start the model's context at message ``start`` (a user message); say so."""
        if not 0 <= start < len(self.messages) or self.messages[start].role != "user":
            raise ValueError(f"message {start} is not a user message")
        self.start = start
        first = self.turn_of(start)
        left = "turn 1" if first == 2 else f"turns 1–{first - 1}"
        self.notes.append(f"{why}: from turn {first} on, {left} stay here but are no longer "
                          "in the model's context; the rest was evaluated again")
        self.touch()

    def touch(self) -> None:
        self.updated = time.time()

    def snapshot(self) -> Conversation:
        """A copy whose message list is its own (messages are shared, never changed): what
        another thread may render and answer while this one is shown."""
        return Conversation(self.id, self.title, self.system, list(self.messages), self.target,
                            self.draft, self.start, list(self.notes), self.created,
                            self.updated)

    # -- JSON -----------------------------------------------------------------------------
    def to_dict(self, with_events: bool = True) -> dict[str, Any]:
        return {
            "format": FORMAT, "version": VERSION, "id": self.id, "title": self.title,
            "created": self.created, "updated": self.updated, "target": self.target,
            "draft": self.draft, "system": self.system, "start": self.start,
            "notes": list(self.notes),
            "messages": [m.to_dict(with_events) for m in self.messages],
        }


_STR = checker(str)
_OPT_STR = checker(str | None)
_STRS = checker(list[str])
_TIME = checker(float, float_range=(0.0, 32_503_680_000.0))


def _get(m: Any, key: str, check: Any, default: Any = None, required: bool = False) -> Any:
    if key not in m:
        if required:
            raise FormatError(f"conversation: missing {key!r}")
        return default
    try:
        return check(m[key])
    except FormatError as exc:
        raise FormatError(f"conversation.{key}: {exc}") from None


def conversation_from_dict(d: object) -> Conversation:
    """The conversation ``Conversation.to_dict()`` wrote; ``FormatError`` saying which field
    when it is not one (another file, a damaged one, a newer version)."""
    m = as_mapping(d, "conversation")
    if m.get("format") != FORMAT:
        raise FormatError("not a DecodeLab conversation (no \"format\": "
                          f"\"{FORMAT}\")")
    version = m.get("version")
    if not isinstance(version, int) or version > VERSION:
        raise FormatError(f"conversation format version {version!r}: this DecodeLab reads "
                          f"up to {VERSION}")
    raw = m.get("messages")
    if not isinstance(raw, list):
        raise FormatError("conversation: 'messages' is not a list")
    messages: list[Message] = []
    for i, item in enumerate(raw):
        messages.append(_message(item, f"conversation.messages[{i}]"))
    for i, msg in enumerate(messages):
        want = "user" if i % 2 == 0 else "assistant"
        if msg.role != want:
            raise FormatError(f"conversation.messages[{i}]: expected a {want} message")
    conv = Conversation(
        id=_get(m, "id", _STR, required=True),
        title=_get(m, "title", _STR, ""),
        system=_get(m, "system", _OPT_STR),
        messages=messages,
        target=_get(m, "target", _OPT_STR),
        draft=_get(m, "draft", _OPT_STR),
        start=_get(m, "start", checker(int), 0),
        notes=_get(m, "notes", _STRS, []),
        created=_get(m, "created", _TIME, 0.0),
        updated=_get(m, "updated", _TIME, 0.0),
    )
    if not conv.id or "/" in conv.id or "\\" in conv.id or conv.id.startswith("."):
        raise FormatError(f"conversation.id: not a usable id: {conv.id!r}")
    if not 0 <= conv.start <= len(messages) or (
            conv.start < len(messages) and messages[conv.start].role != "user"):
        raise FormatError("conversation.start: not the index of a user message")
    return conv


def _message(d: object, what: str) -> Message:
    m = as_mapping(d, what)
    role = m.get("role")
    if role not in ("user", "assistant"):
        raise FormatError(f"{what}.role: expected 'user' or 'assistant', got {role!r}")
    text = m.get("text")
    if not isinstance(text, str):
        raise FormatError(f"{what}.text: expected text")
    if role == "user":
        return Message("user", text)
    run = None
    if m.get("run") is not None:
        try:
            run = result_from_dict(m["run"])
        except FormatError as exc:
            raise FormatError(f"{what}.{exc}") from None
    model = m.get("model")
    if model is not None and not isinstance(model, str):
        raise FormatError(f"{what}.model: expected a path")
    return Message("assistant", text, run, model)


# -- per-turn figures ------------------------------------------------------------------------


@dataclass(frozen=True)
class TurnStats:
    """What one quiet line under an answer says."""

    turn: int
    track: str
    tokens_per_second: float
    acceptance: float | None
    drafted: int
    speedup: float | None  # against the last earlier baseline turn of comparable settings
    baseline_turn: int | None
    prefill_tokens: int
    reused_tokens: int
    stop_reason: str


def comparable(msg: Message) -> tuple[Any, ...] | None:
    """What a baseline turn's speed is valid for (``verdict.baseline_key`` without the
    prompt, which every turn changes)."""
    if msg.run is None or msg.model is None:
        return None
    try:
        s = settings_from_dict(msg.run.settings)
    except FormatError:
        return None
    return baseline_key(msg.model, "", s)


def turn_stats(conv: Conversation, index: int) -> TurnStats:
    """The figures of assistant message ``index``."""
    msg = conv.messages[index]
    if msg.run is None:
        raise ValueError(f"message {index} has no run")
    r = msg.run
    speedup = base_turn = None
    key = comparable(msg)
    if r.track != "baseline" and key is not None:
        for j in range(index - 1, -1, -1):
            other = conv.messages[j]
            if (other.run is not None and other.run.track == "baseline"
                    and other.run.stop_reason != "cancelled" and comparable(other) == key
                    and other.run.tokens_per_second > 0):
                speedup = r.tokens_per_second / other.run.tokens_per_second
                base_turn = conv.turn_of(j)
                break
    return TurnStats(conv.turn_of(index), r.track, r.tokens_per_second, r.acceptance_rate,
                     r.n_drafted, speedup, base_turn, r.prefill_tokens, r.reused_tokens,
                     r.stop_reason)


def stats_line(st: TurnStats, track_label: str) -> str:
    """``Prompt lookup (Track 8) · 41.2 tok/s · acceptance 63% · 1.82× vs turn 2 ·
    prefill 18 tokens, 412 reused``"""
    parts = [track_label, f"{st.tokens_per_second:.1f} tok/s"]
    if st.track != "baseline":
        parts.append(f"acceptance {st.acceptance:.0%}" if st.acceptance is not None
                     else "drafted nothing")
        parts.append(f"{st.speedup:.2f}× vs baseline turn {st.baseline_turn}"
                     if st.speedup is not None else "no baseline turn to compare")
    prefill = f"prefill {st.prefill_tokens} tokens"
    if st.reused_tokens:
        prefill += f", {st.reused_tokens} reused"
    parts.append(prefill)
    if st.stop_reason == "cancelled":
        parts.append("stopped")
    elif st.stop_reason == "context_full":
        parts.append("context full")
    return " · ".join(parts)


def script_turns(text: str) -> list[str]:
    """The user turns of a chat script: messages separated by lines holding only ``---``
    (surrounding blank lines dropped; empty turns left out)."""
    turns: list[list[str]] = [[]]
    for line in text.splitlines():
        if line.strip() == "---":
            turns.append([])
        else:
            turns[-1].append(line)
    return [t for t in ("\n".join(lines).strip("\n") for lines in turns) if t.strip()]

"""One turn of a conversation: render it, keep what the caches hold of it, run the track.

``run_turn`` answers the conversation's waiting user message with the settings given (the
track and its settings may change from turn to turn) and adds the answer. The target's and
the draft model's KV caches keep their longest common prefix with the new prompt: a next
turn evaluates only its new tokens, a regenerated or edited turn trims the caches back to
where the conversation changed (``RunResult.prefill_tokens`` / ``reused_tokens``). Prompt
lookup and suffix drafting see the whole conversation (their history is the prompt).

A turn whose prompt leaves less than ``ANSWER_ROOM`` tokens (or ``max_tokens``, if fewer)
of the context for its answer is refused with ``ConversationFull``, which says how full it is and
from which turn on the conversation would fit: the caller offers to continue from there
(``Conversation.leave_out``: the earlier turns stay in the conversation, the rest is
evaluated again, and a note says so) or to start a new chat. Nothing is dropped silently.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path

from app.core.chat.conversation import Conversation
from app.core.chat.render import Tokenizing, conversation_tokens
from app.core.engine import EventSink
from app.core.errors import RefusedError
from app.core.events import RunResult, RunSettings
from app.core.session import Session

# Tokens of context a turn's answer needs at least (fewer if max_tokens asks for fewer).
ANSWER_ROOM = 64
FULL_NOTE = "the context was full"


class ConversationFull(RefusedError):
    """The next turn does not fit in the model's context."""

    def __init__(self, needed: int, n_ctx: int, fits_from: int | None, fits_turn: int | None):
        self.needed, self.n_ctx = needed, n_ctx
        # The first user message (index) from which on the conversation fits, if any.
        self.fits_from, self.fits_turn = fits_from, fits_turn
        way = (f"continue from turn {fits_turn} (the earlier turns stay in the conversation "
               "but leave the model's context) or start a new chat"
               if fits_turn is not None else
               "start a new chat, or a larger context (the last message alone does not fit)")
        super().__init__(f"context full: this turn needs {needed} tokens with room for the "
                         f"answer, the context holds {n_ctx}; {way}")


def answer_room(s: RunSettings) -> int:
    return min(ANSWER_ROOM, s.max_tokens)


def turn_tokens(model: Tokenizing, conv: Conversation, n_ctx: int, room: int) -> list[int]:
    """The prompt of the conversation's next answer; ``ConversationFull`` if it does not fit."""
    ids = conversation_tokens(model, conv.system, conv.in_context())
    if len(ids) + room <= n_ctx:
        return ids
    fits = None
    for i in range(conv.start + 1, len(conv.messages)):
        if conv.messages[i].role != "user":
            continue
        if len(conversation_tokens(model, conv.system, conv.messages[i:])) + room <= n_ctx:
            fits = i
            break
    raise ConversationFull(len(ids) + room, n_ctx, fits,
                      conv.turn_of(fits) if fits is not None else None)


def turn_settings(conv: Conversation, s: RunSettings) -> RunSettings:
    """The settings a turn runs with: the chat template on, the conversation's system."""
    return replace(s, chat=True, system=conv.system)


def run_turn(
    session: Session,
    conv: Conversation,
    target: str | Path,
    draft: str | Path | None,
    s: RunSettings,
    on_event: EventSink | None = None,
    cancel: threading.Event | None = None,
    reuse: bool = True,
) -> RunResult:
    """Answer the waiting user message with ``s`` (its track), keeping the caches (unless
    ``reuse`` is False: a measurement of what a turn costs without); the answer (also a
    stopped or cut one) is added to ``conv``."""
    if not conv.waiting:
        raise RefusedError("nothing to answer: the last message is not the user's")
    settings = turn_settings(conv, s)
    room = answer_room(settings)

    def tokens(model: Tokenizing) -> list[int]:
        return turn_tokens(model, conv, model.n_ctx, room)  # type: ignore[attr-defined]

    result = session.generate(target, draft, tokens, settings, on_event, cancel, reuse=reuse)
    conv.add_answer(result, str(target), str(draft) if draft is not None else None)
    return result


def continue_trimmed(conv: Conversation, full: ConversationFull) -> None:
    """Take the way out ``full`` offers: the model's context starts at the turn that fits."""
    if full.fits_from is None:
        raise RefusedError("even the last message alone does not fit: start a new chat or "
                           "choose a larger context")
    conv.leave_out(full.fits_from, FULL_NOTE)

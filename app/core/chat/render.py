"""A conversation as the target's tokens: the model's chat template, with each earlier
answer fed back as the very token ids the model generated.

Re-tokenizing an answer's text need not give back the ids that were generated (a word the
model spelled in two pieces becomes one token), and then the cache of the last turn would
be a prefix of the next prompt only up to that word. So the template is rendered with a
placeholder for each answer whose ids are known; the text between placeholders is
tokenized (special tokens parsed, as for a single prompt) and the answers' ids go in
between. A template that changes an answer's text (strips it, drops a reasoning block)
would no longer match the placeholder's rendering: then the whole conversation is
tokenized as text, which is still what the template says, only with less of the cache kept.

A model without a chat template gets a plain transcript (``User:`` / ``Assistant:``).

The system message (``system``): None is ``DEFAULT_SYSTEM``, "You are a helpful
assistant." (the window shows it in the system message box, where it can be changed); ""
gives the template no system message at all (it may insert its own default); any other text
is used as given. Why that default:
SmolLM2's template (like Qwen's) inserts its own system message when none is given, and with
SmolLM2-135M-Instruct that one ("You are a helpful AI assistant named SmolLM, trained by
Hugging Face") answers "What is the capital of France?" with "L'Étoile, la Marseillaise, la
femme au roi, …" (greedy). Measured greedy on twelve short questions and the four sample
prompts (``benchmarks/chat_turns.py renderings``): "You are a helpful assistant." answered
France, Germany, 7 x 8 = 56, the spider's eight legs and Romeo and Juliet right; an empty
system message and no system block at all (llama.cpp's ``-cnv`` rendering) answered France
right too but slipped elsewhere (Shakespeare's "son"; 7 x 8 = 54; the story prompt answered
"What is it?" and the summary looping, without a system block). On the sample prompts every
rendering is about as weak (the 135M model does not rename in the code edit and its stories
loop): the default changes the first answer, not the model.
``system_note`` says in one line what a chat's system message is, for the window
and the command line to show beside it.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol, cast

from app.core.chat.conversation import Message
from app.core.errors import RefusedError

if TYPE_CHECKING:  # llama_cpp is loaded when a template is first rendered, not on import
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

# The system message of a chat or run that does not choose one (see the module docstring).
DEFAULT_SYSTEM = "You are a helpful assistant."
_OPEN, _CLOSE = "\ue000", "\ue001"  # private-use characters: no template or prompt has them


class Tokenizing(Protocol):
    """What rendering needs of a ``LoadedModel``."""

    path: str
    info: Any

    def tokenize(self, text: str, add_bos: bool, special: bool = True) -> list[int]: ...
    def piece(self, token: int) -> bytes: ...


@functools.lru_cache(maxsize=8)
def _formatter(template: str, eos: str, bos: str, generation: bool) -> Jinja2ChatFormatter:
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    return Jinja2ChatFormatter(template, eos_token=eos, bos_token=bos,
                               add_generation_prompt=generation)


def _special_text(model: Tokenizing, token: int | None) -> str:
    return model.piece(token).decode("utf-8", "replace") if token is not None else ""


@functools.lru_cache(maxsize=8)
def template_default_system(template: str | None) -> str | None:
    """The system message ``template`` inserts when a conversation has none, if any."""
    if not template:
        return None
    try:
        fmt = _formatter(template, "", "", False)
        bare = fmt(messages=cast(Any, [{"role": "user", "content": _OPEN}])).prompt
        mark = _OPEN + "s" + _CLOSE
        given = fmt(messages=cast(Any, [{"role": "system", "content": mark},
                                        {"role": "user", "content": _OPEN}])).prompt
    except Exception:
        return None
    head, _, tail = given.partition(mark)
    if not tail or not bare.startswith(head):
        return None
    rest = bare[len(head):]
    end = tail.split(_OPEN, 1)[0]  # what follows the system text, up to the user message
    cut = rest.find(end) if end else -1
    found = rest[:cut] if cut > 0 else None
    return found if found and _OPEN not in found else None


def render_text(model: Tokenizing, system: str | None, contents: Sequence[tuple[str, str]],
                generation: bool = True) -> str:
    """The prompt text of ``(role, content)`` pairs: the chat template's, or a plain
    transcript for a model without one."""
    info = model.info
    template = info.chat_template
    if template:
        bos = _special_text(model, info.bos_id)
        eos = _special_text(model, info.eos_id)
        chat = [{"role": role, "content": content} for role, content in contents]
        fmt = _formatter(template, eos, bos, generation)
        text = system if system is not None else DEFAULT_SYSTEM
        try:
            return _apply(fmt, ([{"role": "system", "content": text}] if text else []) + chat)
        except RefusedError:
            if system is not None or not takes_no_system(template):
                raise
        # A template that refuses system messages: the default is left out, not forced.
        return _apply(fmt, chat)
    text = system if system is not None else DEFAULT_SYSTEM
    lines = [text + "\n"] if text else []
    for role, content in contents:
        lines.append(f"{'User' if role == 'user' else 'Assistant'}: {content}\n")
    if generation:
        lines.append("Assistant:")
    return "".join(lines)


def _apply(fmt: Jinja2ChatFormatter, messages: list[dict[str, str]]) -> str:
    try:
        return str(fmt(messages=cast(Any, messages)).prompt)
    except Exception as exc:  # a template's own raise_exception, or a broken template
        why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise RefusedError(f"the model's chat template refused this conversation: "
                           f"{why}") from None


@functools.lru_cache(maxsize=8)
def takes_no_system(template: str) -> bool:
    """Whether ``template`` refuses a system message (some raise an error for one)."""
    fmt = _formatter(template, "", "", True)
    try:
        _apply(fmt, [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}])
    except RefusedError:
        return True
    return False


def system_note(info: Any, system: str | None) -> str:
    """One line: what the system message of a chat with this model is."""
    template = info.chat_template
    if not template:
        return "no chat template: a plain User:/Assistant: transcript"
    if system is None and takes_no_system(template):
        return "no system message: this model's chat template takes none"
    own = template_default_system(template)
    if system == "":
        return (f"no system message: the template inserts its own, \"{own}\"" if own
                else "no system message")
    if system is None:
        return ("the default system message" + (
            f"; left empty, the template would insert its own (\"{own}\")" if own else ""))
    return "system message as written"


def _slot(i: int) -> str:
    return f"{_OPEN}{i}{_CLOSE}"


def conversation_tokens(model: Tokenizing, system: str | None, messages: Sequence[Message],
                        generation: bool = True) -> list[int]:
    """The prompt of ``messages`` (the model's context, ``Conversation.in_context()``): the
    answers' own token ids where they were generated by this target, the rest tokenized."""
    reuse = {i for i, m in enumerate(messages)
             if m.role == "assistant" and m.token_ids and m.model == model.path}
    real = [(m.role, m.text) for m in messages]
    text = render_text(model, system, real, generation)
    pieces: list[str | list[int]] = [text]
    if reuse:
        marked = [(m.role, _slot(i) if i in reuse else m.text) for i, m in enumerate(messages)]
        with_slots = render_text(model, system, marked, generation)
        back = with_slots
        for i in reuse:
            back = back.replace(_slot(i), messages[i].text, 1)
        if back == text and all(with_slots.count(_slot(i)) == 1 for i in reuse):
            pieces = _split(with_slots, {i: messages[i].token_ids for i in reuse})
    return _tokens(model, text, pieces)


def _split(text: str, ids: dict[int, list[int]]) -> list[str | list[int]]:
    out: list[str | list[int]] = []
    rest = text
    while _OPEN in rest:
        head, _, tail = rest.partition(_OPEN)
        number, _, rest = tail.partition(_CLOSE)
        out += [head, list(ids[int(number)])]
    out.append(rest)
    return out


def _tokens(model: Tokenizing, text: str, pieces: Sequence[str | list[int]]) -> list[int]:
    info = model.info
    bos = _special_text(model, info.bos_id)
    ids: list[int] = []
    if info.add_bos and info.bos_id is not None and not (bos and text.startswith(bos)):
        ids.append(info.bos_id)
    for piece in pieces:
        if isinstance(piece, list):
            ids += piece
        elif piece:
            ids += model.tokenize(piece, add_bos=False, special=True)
    return ids


def prompt_tokens(model: Tokenizing, text: str, chat: bool, system: str | None) -> list[int]:
    """One prompt (a single run): ``text`` as the one user message of a conversation, or
    as it is without ``chat`` (or without a template)."""
    if chat and model.info.chat_template:
        return conversation_tokens(model, system, [Message("user", text)])
    return model.tokenize(text, add_bos=model.info.add_bos, special=True)



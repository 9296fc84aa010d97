"""Rendering a conversation: the answers' own token ids go back verbatim, the system message
default and its note, a template that rewrites content, and the default model's first
answer (issue: SmolLM2's own default system message answers France in French gibberish)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest

from app.core.chat.conversation import Message
from app.core.chat.render import (
    DEFAULT_SYSTEM,
    conversation_tokens,
    render_text,
    system_note,
    template_default_system,
)
from app.core.events import RunResult, RunSettings
from app.core.llama_backend import LoadedModel
from app.core.session import Session, render_prompt

SMOL_DEFAULT = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"


@pytest.fixture
def model(tiny_dense: Path) -> Iterator[LoadedModel]:
    s = Session()
    yield s.load_target(tiny_dense, RunSettings(threads=1, ctx=512))
    s.close()


def answer(model: LoadedModel, ids: list[int], text: str) -> Message:
    run = RunResult("baseline", text, "eos", 0, len(ids), 0, 0, 0, 0.0, 0.0, 0.0, 0.0, {}, {},
                    token_ids=ids)
    return Message("assistant", text, run, model.path)


def test_answer_ids_go_back_verbatim(model: LoadedModel) -> None:
    assert model.info.chat_template and template_default_system(
        model.info.chat_template) == SMOL_DEFAULT
    # " Paris is big" spelled byte by byte: text that tokenizes otherwise.
    text = " Paris is big"
    pieces = [model.tokenize(ch, add_bos=False, special=False) for ch in text]
    ids = [t for p in pieces for t in p]
    assert ids != model.tokenize(text, add_bos=False, special=False)
    msgs = [Message("user", "Where?"), answer(model, ids, text), Message("user", "And?")]
    got = conversation_tokens(model, None, msgs)
    first = conversation_tokens(model, None, msgs[:1])
    assert got[: len(first) + len(ids)] == first + ids
    # The same conversation with the answer re-tokenized from its text (another model's
    # answer, or one without ids) is the template's text, tokenized.
    foreign = replace(msgs[1], model="other.gguf")
    plain = conversation_tokens(model, None, [msgs[0], foreign, msgs[2]])
    assert plain == model.tokenize(render_text(model, None, [(m.role, m.text) for m in msgs]),
                                   add_bos=False, special=True)
    assert plain != got


def test_a_template_that_rewrites_answers_is_tokenized_as_text(model: LoadedModel) -> None:
    trimming = SimpleNamespace(
        path=model.path, tokenize=model.tokenize, piece=model.piece,
        info=replace(model.info, chat_template=(
            "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content | trim }}"
            "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n"
            "{% endif %}")))
    ids = model.tokenize(" padded ", add_bos=False, special=False)
    msgs = [Message("user", "Hi"), answer(model, ids, " padded "), Message("user", "Ok")]
    got = conversation_tokens(trimming, None, msgs)
    text = render_text(trimming, None, [(m.role, m.text) for m in msgs])
    assert "padded<|im_end|>" in text
    assert got == model.tokenize(text, add_bos=False, special=True)


def test_system_message_default_empty_and_given(model: LoadedModel) -> None:
    one = [("user", "Hi")]
    assert f"<|im_start|>system\n{DEFAULT_SYSTEM}<|im_end|>" in render_text(model, None, one)
    assert SMOL_DEFAULT in render_text(model, "", one)  # none given: the template's own
    assert "<|im_start|>system\nBe brief.<|im_end|>" in render_text(model, "Be brief.", one)
    info = model.info
    assert SMOL_DEFAULT in system_note(info, None) and "default" in system_note(info, None)
    assert SMOL_DEFAULT in system_note(info, "")
    assert system_note(replace(info, chat_template=None), None).startswith("no chat template")
    # A single run renders as the first turn of a conversation.
    assert render_prompt(model, "Hi", True, None) == conversation_tokens(
        model, None, [Message("user", "Hi")])


def test_the_default_model_answers_the_first_question(smollm2_path: Path) -> None:
    session = Session()
    try:
        s = RunSettings(chat=True, max_tokens=24, threads=2, ctx=512)
        default = session.run(smollm2_path, None, "What is the capital of France?", s)
        assert "Paris" in default.text, default.text
        # What a newcomer met before: the template's own system message.
        own = session.run(smollm2_path, None, "What is the capital of France?",
                          replace(s, system=""))
        assert "Paris" not in own.text, own.text
    finally:
        session.close()

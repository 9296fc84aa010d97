"""The conversation store: saved whole or not at all (a killed writer), damaged files set
aside, reopened and continued, exported as JSON (re-imported equal) and Markdown."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from app.core.chat.conversation import Conversation
from app.core.chat.runner import run_turn
from app.core.chat.store import (
    ConversationNotFound,
    ConversationStore,
    export_json,
    export_markdown,
    import_json,
)
from app.core.errors import RefusedError
from app.core.events import RunSettings
from app.core.session import Session


def two_turns(model: Path) -> Conversation:
    session = Session()
    try:
        conv = Conversation(system="Answer briefly.")
        conv.add_user("Write a function that adds two numbers.")
        run_turn(session, conv, model, None, RunSettings(max_tokens=8, threads=1, ctx=512))
        conv.add_user("Now rename it.")
        run_turn(session, conv, model, None, RunSettings(track="lookup", max_tokens=8,
                                                         threads=1, ctx=512))
        return conv
    finally:
        session.close()


def test_saved_conversation_reopens_equal(tmp_path: Path, tiny_dense: Path) -> None:
    conv = two_turns(tiny_dense)
    store = ConversationStore(tmp_path)
    store.save(conv)
    again = ConversationStore(tmp_path).load(conv.id)
    assert again == conv
    assert again.messages[3].run is not None and again.messages[3].run.events
    [summary] = store.list()
    assert (summary.id, summary.turns, summary.tracks) == (conv.id, 2, ("baseline", "lookup"))
    assert store.resolve("last") == store.resolve(conv.id[:12]) == conv.id
    with pytest.raises(ConversationNotFound):
        store.load("chat-20000101-000000-000000")


def test_a_killed_writer_leaves_a_whole_conversation(tmp_path: Path, tiny_dense: Path) -> None:
    conv = two_turns(tiny_dense)
    store = ConversationStore(tmp_path)
    store.save(conv)
    # Another process saves the conversation over and over, each time longer, until it is
    # killed; whatever moment the kill hits, the file holds one whole version.
    script = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        from app.core.chat.store import ConversationStore
        store = ConversationStore(Path({str(tmp_path)!r}))
        conv = store.load({conv.id!r})
        n = 0
        while True:
            conv.messages[0].text += " more" * 200
            store.save(conv)
            n += 1
            if n == 3:
                print("saved", flush=True)
    """)
    writer = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                              cwd=Path(__file__).resolve().parents[1])
    try:
        assert writer.stdout is not None and writer.stdout.readline().strip() == "saved"
    finally:
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait(timeout=60)
    reopened = ConversationStore(tmp_path)  # sweeps the dead writer's temp file
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    back = reopened.load(conv.id)
    assert back.messages[0].text.startswith(conv.messages[0].text)
    assert back.messages[0].text.count(" more") >= 3 * 200
    assert back.messages[1:] == conv.messages[1:]
    assert reopened.problems() == []


def test_a_reopened_conversation_continues(tmp_path: Path, tiny_dense: Path) -> None:
    conv = two_turns(tiny_dense)
    conv.add_user("Add a docstring.")  # the app died before this one was answered
    store = ConversationStore(tmp_path)
    store.save(conv)
    back = store.load(conv.id)
    assert back.waiting and store.list()[0].waiting
    session = Session()
    try:
        r = run_turn(session, back, tiny_dense, None, RunSettings(max_tokens=8, threads=1,
                                                                  ctx=512))
    finally:
        session.close()
    # A new process has nothing cached: the whole conversation is evaluated again.
    assert r.reused_tokens == 0 and r.prefill_tokens == r.prompt_tokens
    assert len(back.messages) == 6 and not back.waiting


def test_damaged_and_foreign_files_are_set_aside(tmp_path: Path, tiny_dense: Path) -> None:
    store = ConversationStore(tmp_path)
    good = two_turns(tiny_dense)
    store.save(good)
    (tmp_path / "chat-20240101-000000-aaaaaa.json").write_text("{\"format\": \"decodelab-con")
    bad = good.to_dict()
    bad["id"] = "chat-20240101-000000-bbbbbb"
    bad["messages"][1]["run"]["n_generated"] = "many"
    (tmp_path / "chat-20240101-000000-bbbbbb.json").write_text(json.dumps(bad))
    assert [s.id for s in store.list()] == [good.id]
    reasons = {p.file.name: p.reason for p in store.problems()}
    assert "n_generated" in reasons["chat-20240101-000000-bbbbbb.json"]
    assert (tmp_path / "bad" / "chat-20240101-000000-aaaaaa.json").exists()


def test_export_json_reimports_and_markdown_reads(tmp_path: Path, tiny_dense: Path) -> None:
    conv = two_turns(tiny_dense)
    store = ConversationStore(tmp_path)
    store.save(conv)
    text = export_json(conv)
    copy = import_json(text, store)  # the id is taken: a new one
    assert copy.id != conv.id and store.load(copy.id).messages == conv.messages
    assert import_json(text) == conv  # without a store: as written
    with pytest.raises(RefusedError, match="not a conversation"):
        import_json(json.dumps({"format": "decodelab-run"}))
    md = export_markdown(conv)
    assert md.startswith(f"# {conv.title}")
    assert "**System:** Answer briefly." in md
    assert "## User (turn 2)" in md and md.count("### Assistant") == 2
    assert conv.messages[1].text in md
    assert "Track 8 · Prompt lookup" in md and "reused" in md

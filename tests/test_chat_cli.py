"""`decodelab chat`: the scripted conversation's JSON contract, refusals, the interactive
commands on piped input, and a conversation that survives the process being killed."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from app.core.chat.store import ConversationStore

ROOT = Path(__file__).resolve().parents[1]
RUN_KEYS = {"track", "text", "n_generated", "n_drafted", "n_accepted", "acceptance_rate",
            "tokens_per_second", "prompt_tokens", "stop_reason", "settings", "effective"}


def chat(*args: str | Path, stdin: str | None = None,
         home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DECODELAB_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "app", "chat", *map(str, args)],
                          capture_output=True, text=True, timeout=300, env=env, input=stdin,
                          cwd=ROOT)


@pytest.fixture
def script(tmp_path: Path) -> Path:
    p = tmp_path / "turns.txt"
    p.write_text("Write a function that adds two numbers.\n---\nNow rename it to total.\n"
                 "---\n\nAdd a docstring.\n", encoding="utf-8")
    return p


def test_scripted_json_is_one_object_per_turn(tmp_path: Path, tiny_dense: Path,
                                              script: Path) -> None:
    proc = chat("--model", tiny_dense, "--track", "8", "--script", script, "--json",
                "--max-tokens", "10", "--threads", "1", "--fixed", home=tmp_path)
    assert proc.returncode == 0, proc.stderr
    turns = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [t["turn"] for t in turns] == [1, 2, 3]
    for t in turns:
        assert t.keys() >= RUN_KEYS and "events" in t
        assert t["track"] == "lookup" and t["settings"]["chat"] is True
        assert t["prefill_tokens"] + t["reused_tokens"] == t["prompt_tokens"]
    assert turns[0]["reused_tokens"] == 0
    # Each later turn keeps the cache of the one before: it evaluates only its new tokens.
    for before, after in itertools.pairwise(turns):
        kept = before["prompt_tokens"] + before["n_generated"] - (
            0 if before["stop_reason"] == "eos" else 1)
        assert after["reused_tokens"] == kept
    assert len({t["conversation"] for t in turns}) == 1
    # Kept as it went: the store has the three turns.
    store = ConversationStore(tmp_path / "data" / "conversations")
    conv = store.load(turns[0]["conversation"])
    assert conv.turns == 3 and [m.text for m in conv.messages[1::2]] == [
        t["text"] for t in turns]
    assert sum(1 for line in proc.stderr.splitlines() if line.startswith("[turn ")) == 3


def test_refusals_are_one_line_with_exit_2(tmp_path: Path, tiny_dense: Path,
                                          script: Path) -> None:
    for args in (("--track", "1"), ("--track", "lokup"), ("--json",)):
        proc = chat("--model", tiny_dense, "--max-tokens", "4", *args, home=tmp_path)
        assert proc.returncode == 2, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    proc = chat("--model", tiny_dense, "--track", "1", home=tmp_path)
    assert "--draft" in proc.stderr
    # A conversation that outgrows the context stops a script, saying what to do ...
    long = tmp_path / "long.txt"
    long.write_text(("Tell me about the weather in the mountains. " * 20 + "\n---\n") * 3)
    proc = chat("--model", tiny_dense, "--script", long, "--json", "--ctx", "256",
                "--max-tokens", "8", "--threads", "1", home=tmp_path)
    assert proc.returncode == 2 and "context full" in proc.stderr
    assert "--trim-when-full" not in proc.stdout and len(proc.stdout.splitlines()) == 1
    # ... or, asked to, goes on from the turn that fits and says so.
    proc = chat("--model", tiny_dense, "--script", long, "--json", "--ctx", "256",
                "--max-tokens", "8", "--threads", "1", "--trim-when-full", home=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.splitlines()) == 3 and "no longer in the model's context" in proc.stderr


def test_interactive_commands_on_piped_input(tmp_path: Path, tiny_dense: Path) -> None:
    md = tmp_path / "out.md"
    stdin = (f"Hello there\n/track suffix\nAgain please\n/regen\n/system Be brief.\n"
             f"/save {md}\n/new\nA new start\n/quit\n")
    proc = chat("--model", tiny_dense, "--max-tokens", "6", "--threads", "1", stdin=stdin,
                home=tmp_path)
    assert proc.returncode == 0, proc.stderr
    stats = [line for line in proc.stderr.splitlines() if line.startswith("[turn ")]
    assert len(stats) == 4  # two turns, one regenerated, and the new conversation's first
    assert "Baseline" in stats[0] and "Suffix drafting" in stats[1]
    assert "[turn 1]" in stats[3]
    text = md.read_text(encoding="utf-8")
    assert "**System:** Be brief." in text and "## User (turn 2)" in text
    store = ConversationStore(tmp_path / "data" / "conversations")
    assert sorted(s.turns for s in store.list()) == [1, 2]


def test_a_killed_chat_reopens_and_continues(tmp_path: Path, tiny_dense: Path) -> None:
    many = tmp_path / "many.txt"
    many.write_text("\n---\n".join(f"Question number {i}: what comes next?" for i in range(40)))
    env = {**os.environ, "DECODELAB_HOME": str(tmp_path)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "app", "chat", "--model", str(tiny_dense), "--script",
         str(many), "--json", "--no-events", "--max-tokens", "40", "--threads", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env, cwd=ROOT)
    try:
        assert proc.stdout is not None
        first = json.loads(proc.stdout.readline())
        json.loads(proc.stdout.readline())  # the second turn ended: killed during a later one
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    store = ConversationStore(tmp_path / "data" / "conversations")
    conv = store.load(first["conversation"])
    assert conv.turns >= 2 and store.problems() == []
    answered = sum(1 for m in conv.messages if m.role == "assistant")
    assert answered >= 2
    # Continued: a waiting question (killed mid-turn) is answered first, then the script.
    more = tmp_path / "more.txt"
    more.write_text("One more question.")
    again = chat("--model", tiny_dense, "--continue", "last", "--script", more, "--json",
                 "--no-events", "--max-tokens", "6", "--threads", "1", home=tmp_path)
    assert again.returncode == 0, again.stderr
    turns = [json.loads(line) for line in again.stdout.splitlines()]
    assert len(turns) == 1 + conv.waiting and turns[-1]["turn"] == conv.turns + 1
    assert turns[0]["reused_tokens"] == 0  # a new process: the conversation is re-prefilled
    reopened = store.load(conv.id)
    assert not reopened.waiting and reopened.messages[-2].text == "One more question."


def test_accepted_drafts_are_coloured_by_source(tmp_path: Path, tiny_dense: Path,
                                               script: Path) -> None:
    from app.core.drafting.registry import get_source

    proc = chat("--model", tiny_dense, "--track", "lookup", "--script", script, "--fixed",
                "--max-tokens", "10", "--threads", "1", "--color", "always", "--no-save",
                home=tmp_path)
    assert proc.returncode == 0, proc.stderr
    src = get_source("lookup")
    assert src is not None
    c = src.plot_colour.lstrip("#")
    code = f"\x1b[38;2;{int(c[0:2], 16)};{int(c[2:4], 16)};{int(c[4:6], 16)}m"
    assert code in proc.stdout  # the run accepted lookup drafts (fixed K on these models)
    plain = chat("--model", tiny_dense, "--track", "lookup", "--script", script, "--fixed",
                 "--max-tokens", "10", "--threads", "1", "--no-save", home=tmp_path)
    assert "\x1b[" not in plain.stdout  # not a terminal: no colour
    assert plain.stdout == proc.stdout.replace(code, "").replace("\x1b[0m", "")

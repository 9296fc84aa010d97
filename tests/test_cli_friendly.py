"""The command line for a newcomer: track aliases, help with tracks and defaults, "did you
mean", errors naming the flag to add, the chat template on by default, compare's progress."""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from app.cli import build_parser
from app.cli_common import HelpFormatter
from app.core.errors import RefusedError
from app.core.labels import track_label
from app.core.tracks import DEPRECATED, Track, resolve_track, resolve_track_alias, working

ROOT = Path(__file__).resolve().parents[1]
FAST = ("--max-tokens", "4", "--threads", "1", "--no-save")


def cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "app", *map(str, args)], capture_output=True,
                          text=True, timeout=300, cwd=ROOT, env=dict(os.environ))


def one_line_error(proc: subprocess.CompletedProcess[str], code: int = 2) -> str:
    assert proc.returncode == code, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]


# -- track aliases ------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "track_id"), [
    ("8", "lookup"), ("track8", "lookup"), ("track-8", "lookup"), ("Track 8", "lookup"),
    ("lookup", "lookup"), ("LOOKUP", "lookup"), ("prompt-lookup", "lookup"),
    ("Prompt lookup", "lookup"), ("prompt_lookup", "lookup"),
    ("Track 8 · Prompt lookup", "lookup"), ("Track 8: Prompt lookup", "lookup"),
    ("1", "draft"), ("draft", "draft"), ("Draft model", "draft"), ("track-1", "draft"),
    ("2", "moe"), ("moe", "moe"), ("MoE expert reduction", "moe"), ("Track2", "moe"),
    ("0", "baseline"), ("baseline", "baseline"), ("Baseline", "baseline"),
    ("1+8", "draft+lookup"), ("8+1", "draft+lookup"), ("draft+lookup", "draft+lookup"),
    ("Draft model + prompt lookup", "draft+lookup"),
    ("Track 1 · Draft model + prompt lookup", "draft+lookup"),
    ("2+8", "moe+lookup"), ("lookup+moe", "moe+lookup"), ("suffix", "suffix"),
    ("Suffix drafting", "suffix"),
])
def test_track_aliases(text: str, track_id: str) -> None:
    track = resolve_track_alias(text)
    assert track is not None and track.id == track_id
    assert resolve_track(text).id == track_id


def test_every_window_label_and_id_resolves() -> None:
    for track in working():
        for text in (track.id, track.label, track_label(track.id), track.name.upper()):
            found = resolve_track_alias(text)
            assert found is not None and found.id == track.id, text


@pytest.mark.parametrize("track", DEPRECATED, ids=lambda t: str(t.number))
def test_deprecated_numbers_are_refused_with_their_reason(track: Track) -> None:
    for text in (str(track.number), f"track{track.number}", f"{track.number}+8"):
        assert resolve_track_alias(text) == track
        with pytest.raises(RefusedError, match="deprecated") as exc:
            resolve_track(text)
        assert track.failure in str(exc.value)


@pytest.mark.parametrize("text", ["6", "0+8", "look", "", "+", "baseline+lookup"])
def test_unknown_tracks(text: str) -> None:
    assert resolve_track_alias(text) is None
    with pytest.raises(RefusedError, match="unknown track"):
        resolve_track(text)


def test_cli_runs_a_track_by_its_number(tiny_dense: Path) -> None:
    proc = cli("run", "--model", tiny_dense, "--track", "8", "--prompt", "a b a b",
               "--json", "--no-events", *FAST)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["track"] == "lookup" and data["effective"]["track"] == "lookup"


def test_cli_refuses_a_deprecated_number(tiny_dense: Path) -> None:
    line = one_line_error(cli("run", "--model", tiny_dense, "--track", "4", "--prompt", "x"))
    assert "Medusa is deprecated" in line and "instead" in line


# -- help ---------------------------------------------------------------------------------


def _subparser(name: str) -> argparse.ArgumentParser:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    parser: argparse.ArgumentParser = sub.choices[name]
    return parser


@pytest.mark.parametrize("command", ["run", "compare"])
def test_help_lists_tracks_and_every_default(command: str) -> None:
    proc = cli(command, "--help")
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    for track in working():
        if len(track.sources) + track.moe <= 1:  # each single track on its own line
            assert re.search(rf"^  {re.escape(track.id)} .*{re.escape(track.name)}: ", text,
                             re.M), track.id
        else:
            assert track.id in text
    assert re.search(r"^  lookup +8 ", text, re.M) and re.search(r"^  draft +1 ", text, re.M)
    for track in DEPRECATED:
        assert f"{track.number}\N{NO-BREAK SPACE}{track.id}" in text
    assert "(default: 256)" in text and "(default: 4096)" in text
    assert "not the baseline's exact tokens" in text  # the exactness caveat of sampling
    # Every option that takes a value and is not required says its default.
    formatter = HelpFormatter(prog="decodelab")
    parser = _subparser(command)
    required = {a.dest for g in parser._mutually_exclusive_groups if g.required
                for a in g._group_actions}
    for action in parser._actions:
        if not action.option_strings or action.nargs == 0 or action.required \
                or action.dest in required:
            continue
        shown = formatter._get_help_string(action) or ""
        assert "default" in shown.lower(), action.option_strings


# -- did you mean, and the flag to add ----------------------------------------------------


def test_track_typo_suggests(tiny_dense: Path) -> None:
    line = one_line_error(cli("run", "--model", tiny_dense, "--track", "lokup", "--prompt", "x"))
    assert "unknown track 'lokup'" in line and "did you mean 'lookup'?" in line


def test_model_typo_suggests() -> None:
    line = one_line_error(cli("run", "--model", "smolm2-135m", "--prompt", "x"))
    assert "did you mean 'smollm2-135m'?" in line


def test_scripted_window_takes_aliases_and_suggests() -> None:
    # Refused before the window opens (no Qt needed).
    assert "did you mean 'lookup'?" in one_line_error(cli("gui", "--track", "lokup", "--exit"))
    line = one_line_error(cli("gui", "--model", "qwen2.5-coder-05b", "--exit"))
    assert "did you mean 'qwen2.5-coder-0.5b'?" in line


def test_command_and_option_typos_suggest() -> None:
    assert "did you mean 'run'?" in one_line_error(cli("rnu"))
    assert "did you mean 'compare'?" in one_line_error(cli("compar"))
    line = one_line_error(cli("run", "--model", "x", "--prompt", "y", "--tmp", "0.5"))
    assert "did you mean '--temp'?" in line


@pytest.mark.parametrize("tracks", [("run", "--track", "1"), ("compare", "--tracks", "8,1+8")])
def test_missing_draft_names_the_flag(tiny_dense: Path, tracks: tuple[str, ...]) -> None:
    line = one_line_error(cli(tracks[0], "--model", tiny_dense, *tracks[1:], "--prompt", "x"))
    assert "no draft model chosen" in line
    assert re.search(r"add --draft MODEL \(e\.g\. --draft [\w.-]+\)", line), line


# -- the chat template --------------------------------------------------------------------


def _run_json(*args: str | Path) -> dict[str, object]:
    proc = cli("run", *args, "--prompt", "What is the capital of France?", "--json",
               "--no-events", *FAST)
    assert proc.returncode == 0, proc.stderr
    data: dict[str, object] = json.loads(proc.stdout)
    return data


def test_chat_template_on_by_default_and_raw_turns_it_off(tiny_dense: Path) -> None:
    default = _run_json("--model", tiny_dense)
    raw = _run_json("--model", tiny_dense, "--raw")
    legacy = _run_json("--model", tiny_dense, "--chat")  # the old flag: the default now
    for data, applied in ((default, True), (raw, False), (legacy, True)):
        effective, settings = data["effective"], data["settings"]
        assert isinstance(effective, dict) and isinstance(settings, dict)
        assert effective["chat_template_applied"] is applied
        assert settings["chat"] is applied
    assert default["prompt_tokens"] != raw["prompt_tokens"]  # the template wrapped it


def test_system_message_needs_the_template(tiny_dense: Path) -> None:
    line = one_line_error(cli("run", "--model", tiny_dense, "--prompt", "x", "--raw",
                              "--system", "be brief"))
    assert "--system" in line and "--raw" in line


# -- compare's progress -------------------------------------------------------------------

PROGRESS = re.compile(r"^\[(\d+)/(\d+)\] (.+): (\d+) tokens, (\d+\.\d) tok/s$")


def test_compare_streams_progress_to_stderr_and_keeps_json_clean(
    tiny_dense: Path, tiny_draft: Path
) -> None:
    proc = cli("compare", "--model", tiny_dense, "--draft", tiny_draft, "--tracks", "8,1",
               "--prompt", "one two three one two three", "--json", "--no-events", "--fixed",
               *FAST)
    assert proc.returncode == 0, proc.stderr
    runs = json.loads(proc.stdout)["runs"]  # nothing but the JSON on standard output
    assert [r["track"] for r in runs] == ["baseline", "lookup", "draft"]
    lines = [m for line in proc.stderr.splitlines() if (m := PROGRESS.match(line))]
    assert len(lines) == 3, proc.stderr
    for i, (m, run) in enumerate(zip(lines, runs, strict=True)):
        assert (int(m[1]), int(m[2])) == (i + 1, 3)
        assert m[3] == track_label(run["track"])
        assert int(m[4]) == run["n_generated"]
        assert m[5] == f"{run['tokens_per_second']:.1f}"

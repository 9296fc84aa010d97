"""Bad command-line input: one line on stderr, the documented exit code, nothing lost.

Every run here is tiny (tiny models, a few tokens, one thread); the history is the test
session's DECODELAB_HOME (conftest), passed through to every subprocess.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import IO, Any

import pytest

from app.cli import build_parser
from app.core.errors import RefusedError
from app.core.events import RunSettings
from app.core.llama_backend import LoadedModel, LoadOptions
from app.core.session import Session
from app.core.settings_check import MAX_DRAFT, VERIFY_BATCH, check_settings

ROOT = Path(__file__).resolve().parents[1]
FAST = ("--max-tokens", "4", "--threads", "1")


def cli(*args: str | Path, stdout: int | IO[Any] = subprocess.PIPE,
        env: dict[str, str] | None = None,
        timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "app", *map(str, args)], stdout=stdout,
                          stderr=subprocess.PIPE, text=True, timeout=timeout, cwd=ROOT,
                          env=env or dict(os.environ))


# What ``compare`` writes to stderr as each run ends ("[2/3] Track 8 · Prompt lookup: ...").
PROGRESS = re.compile(r"\[\d+/\d+\] ")


def one_line_error(proc: subprocess.CompletedProcess[str], code: int) -> str:
    """The single stderr line (besides compare's progress lines) of a process that exited
    with ``code``."""
    assert proc.returncode == code, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.strip().splitlines() if not PROGRESS.match(line)]
    assert len(lines) == 1, proc.stderr
    return lines[0]


def saved(prompt: str) -> list[dict[str, Any]]:
    """The history rows whose prompt holds ``prompt``."""
    proc = cli("history", "list", "--prompt", prompt, "--json")
    assert proc.returncode == 0, proc.stderr
    rows: list[dict[str, Any]] = json.loads(proc.stdout)
    return rows


def unique_prompt() -> str:
    return f"alpha beta alpha beta {uuid.uuid4().hex[:8]}"


# -- 3: K is bounded by the verify batch --------------------------------------------------


def test_one_verify_batch_holds_max_draft_plus_one(tiny_dense: Path) -> None:
    """The limit is the backend's real one: K + 1 rows of logits from one batch."""
    model = LoadedModel(tiny_dense, LoadOptions(n_ctx=2 * VERIFY_BATCH, threads=1))
    try:
        tokens = [1 + i % 100 for i in range(MAX_DRAFT + 1)]
        assert model.eval(tokens, MAX_DRAFT + 1).shape == (MAX_DRAFT + 1, model.n_vocab)
        model.reset()
        with pytest.raises(ValueError):
            model.eval([*tokens, 1], MAX_DRAFT + 2)
    finally:
        model.close()


def test_cli_and_core_share_the_draft_limit(tiny_dense: Path) -> None:
    base = ["run", "--model", "m", "--track", "lookup", "--prompt", "x"]
    assert build_parser().parse_args([*base, "--draft-max", str(MAX_DRAFT)]).draft_max == MAX_DRAFT
    with pytest.raises(SystemExit):
        build_parser().parse_args([*base, "--draft-max", str(MAX_DRAFT + 1)])
    check_settings(RunSettings(draft_max=MAX_DRAFT))
    with pytest.raises(RefusedError, match="draft-max"):
        Session.check(tiny_dense, None, RunSettings(track="lookup", draft_max=MAX_DRAFT + 1))


@pytest.mark.parametrize(
    ("field", "value"),
    [("temperature", float("nan")), ("temperature", -1.0), ("seed", -1), ("max_tokens", 0),
     ("draft_min", MAX_DRAFT + 1), ("draft_p_min", 2.0), ("threads", 0), ("ctx", 0),
     ("experts", 0), ("ngram_max", 0), ("top_p", float("inf"))],
)
def test_session_refuses_bad_settings_before_decoding(
    tiny_dense: Path, field: str, value: object
) -> None:
    """Whatever the caller (window, API) checked: refused before any model is loaded."""
    session = Session()
    s = RunSettings(track="lookup", max_tokens=4, threads=1)
    if hasattr(s, field):
        setattr(s, field, value)
    else:  # a draft source's own setting
        s.options[field] = value
    with pytest.raises(RefusedError):
        session.run(tiny_dense, None, "hello", s)
    assert session.target is None
    with pytest.raises(RefusedError, match="empty"):
        session.run(tiny_dense, None, " \n", RunSettings(max_tokens=4, threads=1))


# -- 4: bad options are one line, exit 2 ---------------------------------------------------


REPORTED = [("--draft-max", "600"), ("--temp", "nan"), ("--seed=-1",), ("--prompt", "")]
BAD_OPTIONS = [
    *REPORTED, ("--draft-max", str(MAX_DRAFT + 1)), ("--draft-min", "-1"), ("--temp", "inf"),
    ("--temp", "-0.5"), ("--seed", "x"), ("--max-tokens", "0"), ("--threads", "0"),
    ("--ctx", "0"), ("--experts", "0"), ("--ngram-min", "0"), ("--ngram-max", "99"),
    ("--draft-p-min", "1.5"), ("--top-p", "nan"),
]


@pytest.mark.parametrize(
    ("command", "bad"),
    [*[("run", b) for b in BAD_OPTIONS], *[("compare", b) for b in REPORTED]],
)
def test_bad_option_is_refused_in_one_line(tiny_dense: Path, command: str,
                                           bad: tuple[str, ...]) -> None:
    which = ("--track", "lookup") if command == "run" else ("--tracks", "lookup")
    prompt = () if "--prompt" in bad else ("--prompt", "hello")
    line = one_line_error(cli(command, "--model", tiny_dense, *which, *prompt, *FAST, *bad), 2)
    assert bad[0].split("=")[0] in line


def test_ngram_min_above_max_is_refused(tiny_dense: Path) -> None:
    proc = cli("run", "--model", tiny_dense, "--track", "lookup", "--prompt", "hi", *FAST,
               "--ngram-min", "3", "--ngram-max", "2")
    assert "ngram" in one_line_error(proc, 2)


@pytest.mark.parametrize("content", [b"", b"  \n", b"ok \xff\xfe then"])
@pytest.mark.parametrize("command", ["run", "compare"])
def test_bad_prompt_file_is_refused_in_one_line(
    tiny_dense: Path, tmp_path: Path, command: str, content: bytes
) -> None:
    path = tmp_path / "prompt.txt"
    path.write_bytes(content)
    which = ("--track", "lookup") if command == "run" else ("--tracks", "lookup")
    line = one_line_error(cli(command, "--model", tiny_dense, *which, "--prompt-file", path,
                              *FAST), 2)
    assert path.name in line
    if content.startswith(b"ok"):
        assert "byte 3" in line  # the first bad byte, counted from 0


def test_random_seed_is_drawn_and_recorded(tiny_dense: Path) -> None:
    proc = cli("run", "--model", tiny_dense, "--track", "baseline", "--prompt", "hi",
               "--temp", "0.8", "--seed", "random", "--json", "--no-save", *FAST)
    assert proc.returncode == 0, proc.stderr
    seed = json.loads(proc.stdout)["settings"]["seed"]
    assert isinstance(seed, int) and seed >= 0


# -- 5: a failing CSV loses nothing --------------------------------------------------------


@pytest.mark.parametrize("where", ["directory", "parent_is_file"])
def test_failed_csv_keeps_and_prints_the_comparison(
    tiny_dense: Path, tmp_path: Path, where: str
) -> None:
    csv_path = tmp_path if where == "directory" else tmp_path / "file" / "out.csv"
    (tmp_path / "file").write_text("not a folder", encoding="utf-8")
    prompt = unique_prompt()
    proc = cli("compare", "--model", tiny_dense, "--tracks", "baseline,lookup", "--prompt",
               prompt, "--json", "--no-events", "--csv", csv_path, *FAST)
    assert str(csv_path) in one_line_error(proc, 1)
    runs = json.loads(proc.stdout)["runs"]
    assert [r["track"] for r in runs] == ["baseline", "lookup"]
    kept = saved(prompt)
    assert sorted(r["track"] for r in kept) == ["baseline", "lookup"]
    assert len({r["comparison_id"] for r in kept}) == 1


# -- 8: a full standard output, history --limit --------------------------------------------


def test_inspect_to_a_full_stdout_is_one_line(tiny_dense: Path) -> None:
    with open("/dev/full", "w") as full:
        proc = cli("inspect", tiny_dense, stdout=full)
    assert "standard output" in one_line_error(proc, 1)


@pytest.mark.parametrize("extra", [(), ("--json",), ("--stream",)])
def test_run_to_a_full_stdout_keeps_the_run(tiny_dense: Path, extra: tuple[str, ...]) -> None:
    prompt = unique_prompt()
    with open("/dev/full", "w") as full:
        proc = cli("run", "--model", tiny_dense, "--track", "lookup", "--prompt", prompt,
                   *FAST, *extra, stdout=full)
    one_line_error(proc, 1)
    assert [r["track"] for r in saved(prompt)] == ["lookup"]


def test_compare_and_history_to_a_full_stdout(tiny_dense: Path) -> None:
    prompt = unique_prompt()
    with open("/dev/full", "w") as full:
        proc = cli("compare", "--model", tiny_dense, "--tracks", "lookup", "--prompt", prompt,
                   *FAST, stdout=full)
        one_line_error(proc, 1)
        assert len(saved(prompt)) == 2
        one_line_error(cli("history", "list", stdout=full), 1)


def test_history_limit(tiny_dense: Path) -> None:
    prompt = unique_prompt()
    proc = cli("compare", "--model", tiny_dense, "--tracks", "lookup", "--prompt", prompt,
               "--json", "--no-events", *FAST)
    assert proc.returncode == 0, proc.stderr
    assert "--limit" in one_line_error(cli("history", "list", "--limit", "-1"), 2)
    for limit, n in (("0", 2), ("1", 1), ("5", 2)):
        proc = cli("history", "list", "--prompt", prompt, "--limit", limit, "--json")
        assert len(json.loads(proc.stdout)) == n, limit


# -- the scripted window --------------------------------------------------------------------


def _gui(tmp_path: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", DECODELAB_HOME=str(home))
    # The timeout catches a window that never exits (what a bad prompt file used to do).
    return cli("gui", *args, "--threads", "1", "--max-tokens", "4", "--run", "--exit", env=env,
               timeout=150)


@pytest.mark.parametrize("content", [b"", b"caf\xe9 au lait"])
def test_scripted_window_refuses_a_bad_prompt_file(
    tmp_path: Path, tiny_dense: Path, content: bytes
) -> None:
    path = tmp_path / "prompt.txt"
    path.write_bytes(content)
    proc = _gui(tmp_path, "--model", tiny_dense, "--track", "lookup", "--prompt-file", path)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and "prompt.txt" in proc.stderr


def test_scripted_window_exit_codes(
    tmp_path: Path, tiny_moe: Path, broken_files: dict[str, Path]
) -> None:
    """As the README: a broken model file failed (1), an expert count refused (2)."""
    prompt = tmp_path / "prompt.txt"
    prompt.write_text("one two one two", encoding="utf-8")
    broken = _gui(tmp_path, "--model", broken_files["truncated_data"], "--track", "baseline",
                  "--prompt-file", prompt)
    assert broken.returncode == 1, broken.stderr
    experts = _gui(tmp_path, "--model", tiny_moe, "--track", "moe", "--prompt-file", prompt,
                   "--view", "sweep", "--sweep", "experts=9-8")
    assert experts.returncode == 2, experts.stderr
    assert "Traceback" not in broken.stderr + experts.stderr

"""The command-line contract: exit codes, one-line errors, JSON keys."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

RUN_KEYS = {
    "track",
    "text",
    "n_generated",
    "n_drafted",
    "n_accepted",
    "acceptance_rate",
    "tokens_per_second",
    "prompt_tokens",
    "stop_reason",
    "settings",
    "effective",
    "events",
}


def cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ),
    )


def assert_one_line_error(proc: subprocess.CompletedProcess[str], code: int) -> None:
    assert proc.returncode == code, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr


def test_inspect_json(tiny_moe: Path) -> None:
    proc = cli("inspect", tiny_moe, "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    for key in (
        "architecture",
        "n_vocab",
        "is_recurrent",
        "is_hybrid",
        "speculation_allowed",
        "speculation_reason",
        "is_moe",
        "expert_count",
        "expert_used_count",
    ):
        assert key in data
    assert data["is_moe"] and data["expert_count"] == 8


def test_inspect_with_draft(tiny_dense: Path, tiny_incompatible: Path, tiny_draft: Path) -> None:
    ok = json.loads(cli("inspect", tiny_dense, "--draft", tiny_draft, "--json").stdout)
    assert ok["compatibility"]["compatible"] is True
    proc = cli("inspect", tiny_dense, "--draft", tiny_incompatible, "--json")
    bad = json.loads(proc.stdout)["compatibility"]
    assert bad["compatible"] is False
    assert any(c["name"] == "token texts" and not c["ok"] for c in bad["checks"])
    text = cli("inspect", tiny_dense, "--draft", tiny_incompatible)
    assert "FAIL" in text.stdout and "token 17" in text.stdout


def test_inspect_mamba_text(tiny_mamba: Path) -> None:
    proc = cli("inspect", tiny_mamba)
    assert proc.returncode == 0 and "refused" in proc.stdout


@pytest.mark.parametrize("name", ["missing", "empty", "truncated_data", "absurd_kv_count"])
def test_broken_model_exits_1(broken_files: dict[str, Path], name: str) -> None:
    assert_one_line_error(cli("inspect", broken_files[name]), 1)
    assert_one_line_error(
        cli("run", "--model", broken_files[name], "--track", "baseline", "--prompt", "x"), 1
    )


def test_refusals_exit_2(
    tiny_dense: Path, tiny_mamba: Path, tiny_moe: Path, tiny_incompatible: Path
) -> None:
    base = ("run", "--prompt", "hello", "--max-tokens", "4")
    assert_one_line_error(cli(*base, "--model", tiny_dense, "--track", "medusa"), 2)
    assert_one_line_error(cli(*base, "--model", tiny_mamba, "--track", "lookup"), 2)
    assert_one_line_error(cli(*base, "--model", tiny_moe, "--track", "moe", "--experts", "0"), 2)
    assert_one_line_error(cli(*base, "--model", tiny_moe, "--track", "moe", "--experts", "9"), 2)
    assert_one_line_error(
        cli(*base, "--model", tiny_dense, "--draft", tiny_incompatible, "--track", "draft"), 2
    )
    assert_one_line_error(cli(*base, "--model", tiny_dense, "--track", "draft"), 2)
    assert_one_line_error(cli("run", "--model", tiny_dense), 2)  # no track, no prompt


def test_run_json(tiny_dense: Path) -> None:
    proc = cli(
        "run",
        "--model",
        tiny_dense,
        "--track",
        "lookup",
        "--prompt",
        "a b a b a b",
        "--max-tokens",
        "12",
        "--json",
        "--threads",
        "1",
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert set(data) >= RUN_KEYS
    assert data["n_generated"] == len([e for e in data["events"] if e["kind"] == "token"])
    assert data["effective"]["threads"] == 1


def test_compare_json_and_csv(tiny_dense: Path, tmp_path: Path) -> None:
    out = tmp_path / "cmp.csv"
    proc = cli(
        "compare",
        "--model",
        tiny_dense,
        "--draft",
        tiny_dense,
        "--tracks",
        "baseline,lookup,draft",
        "--prompt",
        "one two three one two three",
        "--max-tokens",
        "16",
        "--json",
        "--no-events",
        "--csv",
        out,
        "--threads",
        "1",
    )
    assert proc.returncode == 0, proc.stderr
    runs = json.loads(proc.stdout)["runs"]
    assert [r["track"] for r in runs] == ["baseline", "lookup", "draft"]
    assert runs[0]["speedup"] == 1.0 and runs[0]["same_text_as_baseline"] is True
    for r in runs[1:]:
        assert r["speedup"] == pytest.approx(r["tokens_per_second"] / runs[0]["tokens_per_second"])
        assert isinstance(r["same_text_as_baseline"], bool)
    rows = list(csv.DictReader(out.open()))
    assert [r["track"] for r in rows] == ["baseline", "lookup", "draft"]

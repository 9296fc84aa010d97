"""Run history: saving, listing, loading, restart, crash safety, comparisons, re-run, CLI."""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import llama_cpp
import pytest

from app.core.compare import ComparedRun, Comparison
from app.core.events import (
    Event,
    RejectionEvent,
    RoundEvent,
    RunRequest,
    RunResult,
    RunSettings,
    TokenEvent,
)
from app.core.history import (
    History,
    RunNotFound,
    make_record,
    record_comparison,
    record_run,
)
from app.core.provenance import hardware_summary, model_identity

REPO = Path(__file__).resolve().parent.parent


def sample_result(track: str = "lookup", text: str = "Grüße\n") -> RunResult:
    """A small run with every kind of event and awkward text (multi-byte, newline, quote)."""
    s = RunSettings(track=track, max_tokens=3, threads=1)
    events: list[Event] = [
        TokenEvent(71, "Grü", 0, "target", None, 1, 0.01),
        RejectionEvent(9, '"x', 1, "lookup", 2),
        RoundEvent(1, 0, 0, 1, None, 0.0, 0.01, 0.01),
        TokenEvent(72, "ße", 1, "accepted", "lookup", 2, 0.02),
        TokenEvent(10, "\n", 2, "target", None, 2, 0.025),
        RoundEvent(2, 2, 1, 2, "lookup", 0.001, 0.012, 0.025),
    ]
    return RunResult(
        track, text, "max_tokens", 5, 3, 2, 1, 1, 0.025, 0.003, 0.001, 0.022,
        s.to_dict(), {"track": track, "threads": 1}, [71, 72, 10], events,
    )  # fmt: skip


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    p = tmp_path / "model.gguf"
    p.write_bytes(os.urandom(3 << 20))  # larger than 2 MiB: head and tail both hashed
    return p


@pytest.fixture
def history(tmp_path: Path) -> History:
    return History(tmp_path / "history")


def save(history: History, model: Path, prompt: str = "hello", track: str = "lookup") -> str:
    s = RunSettings(track=track, threads=1)
    return record_run(sample_result(track), RunRequest(model, None, prompt, s), history)


def test_save_load_and_survive_restart(history: History, model_file: Path) -> None:
    rid = save(history, model_file)
    fresh = History(history.root)  # "restart": nothing kept in memory
    rec = fresh.load(rid)
    assert rec.result == sample_result()
    assert rec.prompt == "hello" and rec.settings.track == "lookup"
    assert rec.target.path == str(model_file.resolve()) and rec.target.size == 3 << 20
    assert rec.target.fingerprint_kind == "fast" and len(rec.target.fingerprint) == 64
    assert [s.id for s in fresh.list()] == [rid]
    assert rec.hardware["llama_cpp_python"] == llama_cpp.__version__
    assert rec.hardware["threads"] == 1


def test_list_filters_newest_first(history: History, model_file: Path, tmp_path: Path) -> None:
    other = tmp_path / "other-model.gguf"
    other.write_bytes(b"x" * 100)
    a = save(history, model_file, "def add(a, b)", "lookup")
    time.sleep(0.01)
    b = save(history, other, "The quick brown fox", "baseline")
    assert [s.id for s in history.list()] == [b, a]
    assert [s.id for s in history.list(model="OTHER-model")] == [b]
    assert [s.id for s in history.list(track="lookup")] == [a]
    assert [s.id for s in history.list(prompt="QUICK")] == [b]
    assert history.list(model="nothing") == []


def test_failed_write_leaves_history_intact(
    history: History, model_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    keep = save(history, model_file)

    def crash(*_a: object) -> None:
        raise OSError("disk pulled out")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        save(history, model_file, "lost")
    monkeypatch.undo()
    assert [s.id for s in History(history.root).list()] == [keep]
    assert sorted(p.name for p in history.root.iterdir()) == [f"{keep}.json"]


def test_killed_writer_and_corrupt_files_are_skipped(
    history: History, model_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    keep = save(history, model_file)
    # A process killed (SIGKILL) between writing its temp file and renaming it.
    script = textwrap.dedent(
        f"""
        import os, signal, sys
        from pathlib import Path
        from app.core.events import RunSettings
        from app.core.events import RunRequest
        from app.core.history import History, record_run
        sys.path.insert(0, {str(REPO / "tests")!r})
        from test_history import sample_result
        os.replace = lambda *a: os.kill(os.getpid(), signal.SIGKILL)
        inputs = RunRequest({str(model_file)!r}, None, "killed", RunSettings(track="lookup"))
        record_run(sample_result(), inputs, History(Path({str(history.root)!r})))
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True)
    assert proc.returncode == -9, proc.stderr.decode()
    assert any(p.name.endswith(".tmp") for p in history.root.iterdir())
    # Files a non-atomic writer or another program might leave behind.
    good = (history.root / f"{keep}.json").read_text(encoding="utf-8")
    (history.root / "20240101-000000-aaaaaa.json").write_text(good[: len(good) // 2])
    (history.root / "20240101-000000-bbbbbb.json").write_bytes(b"\xff\x00garbage")
    (history.root / "20240101-000000-cccccc.json").write_text('{"format": "other"}')
    caplog.set_level(logging.INFO, logger="app.core.history")
    fresh = History(history.root)
    # The killed writer's temp file is gone: its process is dead.
    assert not any(p.name.endswith(".tmp") for p in history.root.iterdir())
    assert [s.id for s in fresh.list()] == [keep]
    assert len([r for r in caplog.records if "skipping" in r.message]) == 3
    assert len(fresh.problems()) == 3
    assert sorted(p.name for p in (history.root / "bad").iterdir()) == [
        "20240101-000000-aaaaaa.json", "20240101-000000-bbbbbb.json",
        "20240101-000000-cccccc.json"]
    caplog.clear()
    fresh.list()  # a bad file is reported once, not at every refresh
    assert not caplog.records and len(fresh.problems()) == 3
    assert fresh.load(keep).result == sample_result()


def test_stale_temp_files_are_swept(history: History) -> None:
    old = history.root / ".x.json.abc.tmp"
    young = history.root / ".y.json.abc.tmp"
    old.write_text("{")
    young.write_text("{")
    os.utime(old, (time.time() - 120, time.time() - 120))  # older than a minute
    History(history.root)
    assert not old.exists() and young.exists()


def test_delete_resolve_and_unknown_ids(history: History, model_file: Path) -> None:
    a = save(history, model_file)
    assert history.resolve(a[:-2]) == a
    with pytest.raises(RunNotFound):
        history.resolve("19990101")
    with pytest.raises(RunNotFound):
        history.load("../../etc/passwd")
    assert history.delete(a) == 1
    assert history.list() == []
    with pytest.raises(RunNotFound):
        history.delete(a)


def test_comparison_group_and_rerun(history: History, model_file: Path) -> None:
    base, other = sample_result("baseline"), sample_result("lookup")
    cmp = Comparison([ComparedRun(base, 1.0, True), ComparedRun(other, 1.5, False, 1, 0.02)])
    settings = RunSettings(track="baseline", max_tokens=3, draft_max=5)
    cid = record_comparison(cmp, RunRequest(model_file, None, "p", settings), history)
    group = History(history.root).load_comparison(cid)
    assert group.complete and group.comparison == cmp
    assert [s.comparison_id for s in history.list()] == [cid, cid]
    again = history.rerun(cid)
    assert again.tracks == ["baseline", "lookup"] and again.request.prompt == "p"
    assert again.request.settings.draft_max == 5
    assert again.request.target == str(model_file.resolve())
    assert again.warnings == []
    model_file.write_bytes(b"changed")
    assert "changed" in history.rerun(group.records[1].id).warnings[0]
    model_file.unlink()
    assert "missing" in history.rerun(cid).warnings[0]
    assert history.delete(cid) == 2 and history.list() == []


def test_identity_is_verified_only_with_a_current_verification_record(tmp_path: Path) -> None:
    from app.core.models import integrity

    p = tmp_path / "pinned.gguf"
    p.write_bytes(b"weights")
    digest = "ab" * 32
    (tmp_path / "pinned.gguf.sha256").write_text(f"{digest}  pinned.gguf\n")
    # An install marker alone vouches for nothing: the file may have changed since.
    assert model_identity(p).fingerprint_kind == "fast"
    integrity.write_record(p, digest)
    ident = model_identity(p)
    assert (ident.fingerprint, ident.fingerprint_kind, ident.size) == (digest, "sha256", 7)


def test_hardware_summary_is_complete() -> None:
    hw = hardware_summary(2)
    assert hw["threads"] == 2 and isinstance(hw["physical_cores"], int)
    assert hw["llama_cpp_python"] == llama_cpp.__version__
    assert "system_info" in hw and "llama_cpp_commit" in hw


def test_record_uses_draft_only_for_draft_tracks(model_file: Path) -> None:
    inputs = RunRequest(model_file, model_file, "p", RunSettings(track="lookup"))
    assert make_record(sample_result("lookup"), inputs).draft is None
    rec = make_record(sample_result("draft"), inputs)
    assert rec.draft is not None and rec.settings.track == "draft"


def _cli(*argv: str) -> int:
    from app.cli_history import add_history_parser

    parser = argparse.ArgumentParser()
    add_history_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["history", *argv])
    return int(args.func(args))


def test_cli_list_show_export_delete(
    model_file: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from app.core import paths

    monkeypatch.setenv("DECODELAB_HOME", str(tmp_path / "home"))
    rid = save(History(), model_file, "cli prompt")
    assert _cli("list", "--json") == 0
    assert [r["id"] for r in json.loads(capsys.readouterr().out)] == [rid]
    assert _cli("show", rid[:-1], "--json") == 0
    assert json.loads(capsys.readouterr().out)["id"] == rid
    assert _cli("show", rid) == 0 and "cli prompt" in capsys.readouterr().out
    out_json, out_csv = tmp_path / "x.json", tmp_path / "x.csv"
    assert _cli("export", rid, "--json", str(out_json), "--csv", str(out_csv)) == 0
    assert json.loads(out_json.read_text())["runs"][0]["record"]["id"] == rid
    assert out_csv.read_text().count("\n") == 2
    assert _cli("delete", rid) == 0
    assert not (paths.data_dir() / "history" / f"{rid}.json").exists()
    with pytest.raises(RunNotFound):
        _cli("show", rid)

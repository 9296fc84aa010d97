"""What a run was shown with survives saving: a comparison's repeats and verdict, a Run-tab
run's speedup and verdict; serialization reads ``repeats`` back; the CLI prints the same
verdict; a run cancelled before its first token is not worth keeping."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from app.core import export
from app.core.events import RunRequest, RunResult, RunSettings
from app.core.history import History, record_comparison, record_run, worth_keeping
from app.core.serialization import RunRecord, Shown, comparison_from_dict
from app.core.verdict import ComparedRun, Comparison, Repeats, judge_run

IDLE = "adaptive drafting judged a verify batch too costly: 1.6 steps for 2 tokens"


def result(track: str, tps: float, drafted: int = 4, notes: list[str] | None = None,
           stop: str = "max_tokens", n: int = 20) -> RunResult:
    s = RunSettings(track=track, max_tokens=n, threads=1)
    return RunResult(track, "x" * n, stop, 5, n, drafted, drafted // 2, n,  # type: ignore[arg-type]
                     n / tps if n else 0.0, 0.1, 0.1, 0.5, s.to_dict(), {}, notes=notes or [])


def repeated() -> Comparison:
    """Three interleaved repeats: the baseline, a lookup run within noise, a draft run
    clearly faster."""
    base = ComparedRun(result("baseline", 10.0), 1.0, True,
                       repeats=Repeats([10.0, 9.0, 11.0], [1.0, 1.0, 1.0]))
    lookup = ComparedRun(result("lookup", 10.4), 1.04, True,
                         repeats=Repeats([10.4, 9.0, 12.0], [1.04, 1.0, 1.09]))
    draft = ComparedRun(result("draft", 15.0), 1.5, False, 3, 0.02,
                        repeats=Repeats([15.0, 14.0, 16.0], [1.5, 1.56, 1.45]))
    return Comparison([base, lookup, draft], 3)


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    p = tmp_path / "model.gguf"
    p.write_bytes(os.urandom(1 << 16))
    return p


def test_serialization_reads_repeats_back() -> None:
    c = repeated()
    back = comparison_from_dict(json.loads(json.dumps(c.to_dict())))
    assert back == c and back.repeats == 3
    assert back.runs[2].repeats == Repeats([15.0, 14.0, 16.0], [1.5, 1.56, 1.45])
    assert back.verdict == c.verdict and c.verdict.best == "draft"


def test_a_saved_comparison_keeps_its_repeats_and_verdict(
    tmp_path: Path, model_file: Path
) -> None:
    c = repeated()
    s = RunSettings(threads=1)
    history = History(tmp_path / "history")
    cid = record_comparison(c, RunRequest(model_file, None, "p", s), history)
    group = History(history.root).load_comparison(cid)  # after a restart
    assert group.comparison == c and group.comparison.repeats == 3
    summaries = history.list(comparison=cid)
    draft = next(x for x in summaries if x.track == "draft")
    assert draft.speedups == [1.5, 1.56, 1.45] and draft.speedup == 1.5
    assert {x.verdict for x in summaries} == {c.verdict.text}
    assert c.verdict.text.startswith("Best: Track 1 · Draft model — 1.50× (1.45–1.56, 3 runs)")
    # Exported and read back: the repeats too.
    export.write_json(group.records, tmp_path / "c.json")
    imported = export.read_json(tmp_path / "c.json")
    assert imported.comparison.repeats == 3
    assert imported.comparison.runs[1].repeats == c.runs[1].repeats
    rows = export.run_rows(group.records)
    assert [(r["speedup_min"], r["speedup_max"], r["repeats"]) for r in rows][2] == \
        (1.45, 1.56, 3)


def test_a_run_tab_run_keeps_the_speedup_and_verdict_it_was_shown_with(
    tmp_path: Path, model_file: Path
) -> None:
    r = result("lookup", 15.6, drafted=0, notes=[IDLE])
    v = judge_run(r, 10.0)
    shown = Shown(1.56, v.text)
    history = History(tmp_path / "history")
    rid = record_run(r, RunRequest(model_file, None, "p", RunSettings(track="lookup")),
                     history, shown)
    record = History(history.root).load(rid)
    assert record.shown == shown
    assert RunRecord.from_dict(json.loads(record.to_json())) == record
    summary = history.list()[0]
    assert summary.speedup == 1.56 and summary.verdict == v.text  # not "—"
    assert summary.drafted_nothing == IDLE and IDLE in v.text
    assert record.compared_run().speedup == 1.56


def test_cli_history_show_prints_the_verdict(
    tmp_path: Path, model_file: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from app.cli import main

    monkeypatch.setenv("DECODELAB_HOME", str(tmp_path / "home"))
    c = repeated()
    cid = record_comparison(c, RunRequest(model_file, None, "p", RunSettings()), History())
    assert main(["history", "show", cid]) == 0
    out = capsys.readouterr().out
    assert "medians of 3 interleaved repeats" in out
    assert f"verdict: {c.verdict.text}" in out
    assert "mean len: tokens per target verification" in out


def test_a_run_cancelled_before_its_first_token_is_not_worth_keeping() -> None:
    assert not worth_keeping(result("lookup", 1.0, stop="cancelled", n=0))
    assert worth_keeping(result("lookup", 10.0, stop="cancelled", n=3))
    assert worth_keeping(result("lookup", 10.0))

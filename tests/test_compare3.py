"""A comparison of three tracks on a tiny model: results, speedups, equality flags, saving."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.core import export
from app.core.compare import compare
from app.core.events import RunRequest, RunSettings
from app.core.history import History, record_comparison
from app.core.session import Session

PROMPT = "red green blue red green blue red green blue red green"


def test_three_tracks(tiny_dense: Path, tiny_draft: Path, tmp_path: Path) -> None:
    session = Session()
    try:
        s = RunSettings(
            track="baseline", max_tokens=20, ctx=512, threads=1, draft_max=4, adaptive=False
        )
        c = compare(session, tiny_dense, tiny_draft, PROMPT, ["lookup", "draft"], s)
    finally:
        session.close()
    assert [r.result.track for r in c.runs] == ["baseline", "lookup", "draft"]
    base = c.runs[0]
    assert base.speedup == 1.0 and base.same_text_as_baseline is True
    for run in c.runs[1:]:
        r = run.result
        assert r.n_generated > 0 and r.stop_reason in ("max_tokens", "eos")
        assert run.speedup == pytest.approx(r.tokens_per_second / base.result.tokens_per_second)
        assert run.same_text_as_baseline == (r.token_ids == base.result.token_ids)
        if not run.same_text_as_baseline:
            assert run.first_difference is not None
    assert c.runs[2].result.n_drafted > 0  # the draft track really drafted

    history = History(tmp_path / "history")
    cid = record_comparison(c, RunRequest(tiny_dense, tiny_draft, PROMPT, s), history)
    group = History(history.root).load_comparison(cid)
    assert group.complete and group.comparison == c
    assert group.records[2].draft is not None and group.records[0].draft is None
    rows = export.run_rows(group.records)
    assert [r["track"] for r in rows] == ["baseline", "lookup", "draft"]
    assert {r["comparison_id"] for r in rows} == {cid}


def test_a_baseline_is_remembered_only_for_runs_of_the_same_speed_settings(
    tmp_path: Path,
) -> None:
    from dataclasses import replace

    from app.core.events import RunSettings
    from app.core.verdict import baseline_key

    model = tmp_path / "m.gguf"
    model.write_bytes(b"x" * 10)
    s = RunSettings(threads=1)
    key = baseline_key(str(model), "p", s)
    # The track, K and source settings do not change what a baseline run measures.
    assert baseline_key(str(model), "p", replace(s, track="lookup", draft_max=4)) == key
    assert baseline_key(str(model), "p", s.with_options(ngram_min=2)) == key
    for other in (replace(s, threads=2), replace(s, ctx=8192), replace(s, gpu_layers=-1),
                  replace(s, chat=True), replace(s, temperature=0.7)):
        assert baseline_key(str(model), "p", other) != key, other
    assert baseline_key(str(model), "q", s) != key
    model.write_bytes(b"y" * 11)  # the model file changed
    assert baseline_key(str(model), "p", s) != key

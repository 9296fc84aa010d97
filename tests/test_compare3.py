"""A comparison of three tracks on a tiny model: results, speedups, equality flags, saving."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.core import export
from app.core.compare import compare
from app.core.events import RunSettings
from app.core.history import History, RunInputs, record_comparison
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
    cid = record_comparison(c, RunInputs(tiny_dense, tiny_draft, PROMPT, s), history)
    group = History(history.root).load_comparison(cid)
    assert group.complete and group.comparison == c
    assert group.records[2].draft is not None and group.records[0].draft is None
    rows = export.run_rows(group.records)
    assert [r["track"] for r in rows] == ["baseline", "lookup", "draft"]
    assert {r["comparison_id"] for r in rows} == {cid}

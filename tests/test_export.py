"""Export: JSON round trip (runs, records, comparisons) and the CSV files."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.cli_output import write_csv
from app.core import export
from app.core.compare import ComparedRun, Comparison
from app.core.events import RejectionEvent, RunRequest, RunResult, RunSettings, TokenEvent
from app.core.history import make_record
from app.core.serialization import FormatError, result_from_dict
from app.core.session import Session

PROMPT = "one two three four one two three four one two three"


@pytest.fixture(scope="module")
def session() -> Iterator[Session]:
    s = Session()
    yield s
    s.close()


@pytest.fixture(scope="module")
def real_run(session: Session, tiny_dense: Path) -> RunResult:
    """A real lookup run: target, accepted and rejected tokens, rounds."""
    s = RunSettings(track="lookup", max_tokens=24, ctx=512, threads=1, adaptive=False)
    return session.run(tiny_dense, None, PROMPT, s)


def test_json_round_trip_of_a_real_run(real_run: RunResult, tmp_path: Path) -> None:
    assert any(isinstance(e, TokenEvent) for e in real_run.events)
    path = tmp_path / "run.json"
    export.write_json(real_run, path)
    back = export.read_json(path)
    assert back.kind == "run" and back.records == [None]
    assert back.results == [real_run]
    # Also straight from `decodelab run --json` output.
    cli_doc = json.loads(json.dumps(real_run.to_dict()))
    assert export.from_json(cli_doc).results == [real_run]
    assert result_from_dict(cli_doc) == real_run


def test_json_round_trip_of_a_record(real_run: RunResult, tiny_dense: Path, tmp_path: Path) -> None:
    rec = make_record(real_run, RunRequest(tiny_dense, None, PROMPT, RunSettings(track="lookup")))
    path = tmp_path / "record.json"
    export.write_json(rec, path)
    back = export.read_json(path)
    assert back.records == [rec]
    assert back.results[0] == real_run


def test_json_round_trip_of_a_comparison(real_run: RunResult, tmp_path: Path) -> None:
    other = RunResult(**{**real_run.__dict__, "track": "baseline", "events": []})
    cmp = Comparison([ComparedRun(other, 1.0, True), ComparedRun(real_run, 1.7, False, 3, 0.05)])
    path = tmp_path / "cmp.json"
    export.write_json(cmp, path)
    back = export.read_json(path)
    assert back.kind == "comparison" and back.comparison == cmp
    # `decodelab compare --json` output reads too.
    assert export.from_json(json.loads(json.dumps(cmp.to_dict()))).comparison == cmp


def test_foreign_json_is_refused(tmp_path: Path) -> None:
    with pytest.raises(FormatError):
        export.from_json({"format": "something-else", "runs": [{}]})
    with pytest.raises(FormatError):
        export.from_json({"runs": [{"track": "x"}]})  # required fields missing
    with pytest.raises(FormatError):
        export.from_json([1, 2])


def test_run_csv_one_row_per_run(real_run: RunResult, tmp_path: Path) -> None:
    cmp = Comparison([ComparedRun(real_run, 1.0, True), ComparedRun(real_run, 1.25, True)])
    path = tmp_path / "runs.csv"
    write_csv(cmp, str(path))  # the CLI's `compare --csv` goes through export
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        rows = list(reader)
    assert reader.fieldnames == export.RUN_CSV_FIELDS
    assert [r["speedup"] for r in rows] == ["1.0", "1.25"]
    assert rows[0]["n_generated"] == str(real_run.n_generated)
    rate = real_run.acceptance_rate
    assert rows[0]["acceptance_rate"] == ("" if rate is None else str(rate))
    assert rows[1]["run"] == "1-lookup" and rows[1]["threads"] == "1"


def test_token_csv_rows(real_run: RunResult, tmp_path: Path) -> None:
    path = tmp_path / "tokens.csv"
    export.write_tokens_csv(real_run, path)
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        rows = list(reader)
    assert reader.fieldnames == export.TOKEN_CSV_FIELDS
    tokens = [e for e in real_run.events if isinstance(e, TokenEvent)]
    rejected = [e for e in real_run.events if isinstance(e, RejectionEvent)]
    assert len(rows) == len(tokens) + len(rejected)
    kept = [r for r in rows if r["origin"] != "rejected"]
    assert [int(r["id"]) for r in kept] == real_run.token_ids
    assert "".join(r["text"] for r in kept) == real_run.text
    assert [float(r["t"]) for r in kept] == [e.t for e in tokens]
    assert {r["origin"] for r in kept} <= {"target", "accepted"}
    for r, e in zip([r for r in rows if r["origin"] == "rejected"], rejected, strict=True):
        assert (int(r["id"]), int(r["position"]), r["source"], r["t"]) == (
            e.id,
            e.position,
            e.source,
            "",
        )
    assert {r["run"] for r in rows} == {"0-lookup"}


def test_token_csv_keeps_awkward_text(tmp_path: Path) -> None:
    from test_history import sample_result

    r = sample_result()
    path = tmp_path / "t.csv"
    export.write_tokens_csv([r, r], path)
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert [x["text"] for x in rows[:4]] == ["Grü", '"x', "ße", "\n"]
    assert [x["origin"] for x in rows[:4]] == ["target", "rejected", "accepted", "target"]
    assert {x["run"] for x in rows} == {"0-lookup", "1-lookup"}

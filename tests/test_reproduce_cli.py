"""``decodelab reproduce`` and the derived self-drafts in ``decodelab models``: exit codes,
refusals with their reason, JSON, kept results and their export, removal of derived files
only."""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import pytest
import tiny_models

import app.cli as cli
from app.cli_reproduce import add_reproduce_parser
from app.core.models.files import derived_drafts

_build = cli.build_parser


def build_parser() -> argparse.ArgumentParser:
    """The app's parser, with ``reproduce`` added if app/cli.py does not add it yet."""
    parser = _build()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    if "reproduce" not in sub.choices:
        add_reproduce_parser(sub)
    return parser


@pytest.fixture(autouse=True)
def own_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DECODELAB_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(cli, "build_parser", build_parser)


@pytest.fixture(scope="module")
def four_blocks(tiny_dir: Path) -> Path:
    return tiny_models.dense_llama(tiny_dir, None, n_layer=4)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


FAST = ("--max-tokens", "8", "--threads", "1", "--ctx", "512")


def test_ssm_spec_on_an_attention_model_is_refused(capsys: pytest.CaptureFixture[str],
                                                   four_blocks: Path) -> None:
    code, out, err = run(capsys, "reproduce", "ssm-spec", "--model", str(four_blocks),
                         "--prompt", "hi", *FAST)
    assert code == 2 and out == ""
    assert err.startswith("decodelab: refused: ") and "attention model" in err
    assert len(err.splitlines()) == 1


def test_layer_skip_on_an_ssm_model_is_refused(capsys: pytest.CaptureFixture[str],
                                               tiny_mamba: Path) -> None:
    for track in ("cas-spec", "clasp-swift", "kangaroo"):
        code, _, err = run(capsys, "reproduce", track, "--model", str(tiny_mamba),
                           "--prompt", "hi", *FAST)
        assert code == 2 and "ssm-spec" in err and "Traceback" not in err
    assert derived_drafts() == []  # refused before deriving anything


@pytest.mark.parametrize("track", ["eagle", "medusa"])
def test_heads_tracks_report_not_reproducible(capsys: pytest.CaptureFixture[str],
                                              four_blocks: Path, track: str) -> None:
    code, out, err = run(capsys, "reproduce", track, "--model", str(four_blocks), "--json")
    assert code == 2 and "not reproducible" in err
    doc = json.loads(out)
    assert doc["reproducible"] is False and doc["heads"]["found"] == []
    assert doc["reason"].startswith("not reproducible: ") and doc["baseline"] is None


def test_bad_depths_are_refused(capsys: pytest.CaptureFixture[str], four_blocks: Path) -> None:
    code, _, err = run(capsys, "reproduce", "cas-spec", "--model", str(four_blocks),
                       "--prompt", "hi", "--depths", "2,4", *FAST)
    assert code == 2 and "not a cut" in err
    code, _, err = run(capsys, "reproduce", "cas-spec", "--model", str(four_blocks),
                       "--prompt", "hi", "--depths", "two", *FAST)
    assert code == 2 and "block counts" in err
    code, _, err = run(capsys, "reproduce", "cas-spec", "--model", str(four_blocks), *FAST)
    assert code == 2 and "--prompt" in err


def test_cas_spec_runs_keeps_and_exports(capsys: pytest.CaptureFixture[str],
                                         four_blocks: Path, tmp_path: Path) -> None:
    code, out, err = run(capsys, "reproduce", "cas-spec", "--model", str(four_blocks),
                         "--prompt", "The quick brown fox", "--depths", "3,1", *FAST, "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert [d["n_blocks"] for d in doc["depths"]] == [1, 3]
    for d in doc["depths"]:
        run_doc = d["run"]
        assert run_doc["track"] == "draft" and run_doc["n_drafted"] > 0
        assert d["acceptance"] == run_doc["n_accepted"] / run_doc["n_drafted"]
        assert sum(d["proposed_by_position"]) == run_doc["n_drafted"]
    assert any(r["low"] == 0.00446 and r["what"] == "acceptance" for r in doc["reported"])
    # Kept, listed, shown and exported.
    code, out, _ = run(capsys, "reproduce", "list", "--json")
    assert code == 0 and [r["id"] for r in json.loads(out)] == [doc["id"]]
    code, out, _ = run(capsys, "reproduce", "show", doc["id"], "--json")
    assert code == 0 and json.loads(out) == doc
    target = tmp_path / "out.csv"
    code, _, _ = run(capsys, "reproduce", "export", doc["id"], str(target))
    rows = list(csv.DictReader(target.open()))
    assert code == 0 and [r["row"] for r in rows] == ["baseline", "depth", "depth"]
    assert [r["n_blocks"] for r in rows[1:]] == ["1", "3"]
    code, _, err = run(capsys, "reproduce", "show", "rep-20200101-000000-000000")
    assert code == 2 and "no reproduction" in err
    # The text form names the depths and the study's figure, beside ours.
    code, out, _ = run(capsys, "reproduce", "kangaroo", "--model", str(four_blocks),
                       "--prompt", "The quick brown fox", "--depths", "2", *FAST, "--no-save")
    assert code == 0 and "0.446 % acceptance" in out and "2 of 4" in out


def test_derived_drafts_are_listed_and_removed_as_derived(
        capsys: pytest.CaptureFixture[str], four_blocks: Path) -> None:
    code, _, _ = run(capsys, "reproduce", "kangaroo", "--model", str(four_blocks),
                     "--prompt", "hi there", "--depths", "1", *FAST, "--no-save")
    assert code == 0
    (draft,) = derived_drafts()
    code, out, _ = run(capsys, "models", "derived", "--json")
    listed = json.loads(out)
    assert code == 0 and [d["name"] for d in listed] == [draft.name]
    assert listed[0]["source"] == str(four_blocks.resolve()) and listed[0]["blocks"] == [0]
    code, out, _ = run(capsys, "models", "list")
    assert code == 0 and "Derived self-drafts (1" in out and draft.name in out
    code, out, _ = run(capsys, "models", "list", "--json")
    assert draft.name not in out  # the pinned list stays the pinned models
    code, _, err = run(capsys, "models", "remove", four_blocks.name, draft.name)
    assert code == 2 and "not a derived self-draft" in err
    assert four_blocks.is_file() and draft.path.is_file()  # nothing removed
    code, out, _ = run(capsys, "models", "remove", draft.name)
    assert code == 0 and not draft.path.exists() and derived_drafts() == []

"""The reproduction experiments on tiny models, through the app's own run path: layer-skip
self-drafts as Track 1 drafts at several depths, SSM speculation naive and with snapshots
(the only place the SSM guard is bypassed), refusals, and the results' JSON."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import tiny_models

from app.core.compare import NEAR_TIE, baseline_margin
from app.core.drafting.base import Proposal
from app.core.errors import RefusedError
from app.core.events import RejectionEvent, RoundEvent, RunResult, RunSettings, TokenEvent
from app.core.llama_backend import LoadedModel
from app.core.models.files import self_drafts_dir
from app.core.reproduce.layerskip import reproduce_settings, run_layer_skip
from app.core.reproduce.plan import STUDY_LAYER_SKIP
from app.core.reproduce.result import DepthRun, Reproduction, by_position
from app.core.reproduce.ssm import run_ssm
from app.core.reproduce.store import Reproductions, export
from app.core.reproduce.verdict import beyond_bound
from app.core.session import Session
from app.core.verdict import first_difference

PROMPT = "def add(a, b):\n    return a + b\n\nThe quick brown fox jumps over the lazy dog."


@pytest.fixture(autouse=True)
def own_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DECODELAB_HOME", str(tmp_path / "home"))


@pytest.fixture
def session() -> Iterator[Session]:
    s = Session()
    yield s
    s.close()


@pytest.fixture(scope="module")
def four_blocks(tiny_dir: Path) -> Path:
    # The synthetic 512-token vocabulary: deriving reads it in milliseconds.
    return tiny_models.dense_llama(tiny_dir, None, n_layer=4)


def settings(max_tokens: int = 24) -> RunSettings:
    return reproduce_settings(RunSettings(max_tokens=max_tokens, ctx=512, threads=1,
                                          draft_max=4))


def check_accounting(r: RunResult) -> None:
    tokens = [e for e in r.events if isinstance(e, TokenEvent)]
    rounds = [e for e in r.events if isinstance(e, RoundEvent)]
    rejected = [e for e in r.events if isinstance(e, RejectionEvent)]
    assert [t.id for t in tokens] == r.token_ids and len(tokens) == r.n_generated
    assert sum(x.proposed for x in rounds) == r.n_drafted
    assert sum(x.accepted for x in rounds) == r.n_accepted
    assert sum(x.generated for x in rounds) == r.n_generated
    assert len(rejected) == r.n_drafted - r.n_accepted or rounds[-1].generated <= \
        rounds[-1].accepted


def assert_lossless(session: Session, target: Path, base: RunResult, other: RunResult,
                    s: RunSettings) -> None:
    diff = first_difference(base.token_ids, other.token_ids)
    if diff is not None:
        margin = baseline_margin(session, target, PROMPT, s, base.token_ids, diff)
        assert margin < NEAR_TIE, f"differs at {diff}, baseline margin {margin:.3f}"


def test_layer_skip_reports_acceptance_per_depth(session: Session, four_blocks: Path) -> None:
    s = settings()
    rep = run_layer_skip(session, "cas-spec", four_blocks, PROMPT, s, [1, 2, 3])
    assert rep.baseline is not None and rep.baseline.n_drafted == 0
    assert [d.n_blocks for d in rep.depths] == [1, 2, 3]
    for d in rep.depths:
        r = d.result
        assert r.track == "draft" and r.effective["draft"] == d.draft
        assert Path(d.draft).parent == self_drafts_dir() and not d.reused
        assert r.n_drafted > 0, f"{d.n_blocks} blocks drafted nothing"
        assert d.acceptance == r.n_accepted / r.n_drafted
        check_accounting(r)
        proposed, accepted = by_position(r)
        rounds = [e for e in r.events if isinstance(e, RoundEvent) and e.proposed]
        assert proposed[0] == len(rounds) and sum(accepted) == r.n_accepted
        assert len(proposed) <= s.draft_max
        paired = d.baseline_tokens_per_second  # the baseline run right before this depth
        assert paired is not None and d.speedup == pytest.approx(r.tokens_per_second / paired)
        assert_lossless(session, four_blocks, rep.baseline, r, s)
        assert (d.first_difference is None) == (r.token_ids == rep.baseline.token_ids)
        assert (d.margin_at_difference is None) == (d.first_difference is None)
    assert rep.depths[0].baseline_tokens_per_second == rep.baseline.tokens_per_second
    assert STUDY_LAYER_SKIP in rep.reported and rep.verdict
    # The same target again: the drafts come from the cache.
    again = run_layer_skip(session, "kangaroo", four_blocks, PROMPT, s, [2])
    assert [d.reused for d in again.depths] == [True]
    assert again.depths[0].draft == rep.depths[1].draft
    assert Reproduction.from_dict(json.loads(json.dumps(rep.to_dict()))) == rep


def test_clasp_swift_keeps_blocks_spread_over_the_depth(session: Session,
                                                        four_blocks: Path) -> None:
    rep = run_layer_skip(session, "clasp-swift", four_blocks, PROMPT, settings(max_tokens=8),
                         [2])
    assert [d.blocks for d in rep.depths] == [(0, 3)]
    assert rep.depths[0].result.n_drafted > 0


def test_each_experiment_refuses_the_other_kind_of_model(
        session: Session, tiny_dense: Path, tiny_mamba: Path) -> None:
    with pytest.raises(RefusedError, match="recurrent or hybrid"):
        run_ssm(session, tiny_dense, PROMPT, settings())
    with pytest.raises(RefusedError, match="ssm-spec"):
        run_layer_skip(session, "cas-spec", tiny_mamba, PROMPT, settings())
    assert session.target is None  # refused before anything was loaded


class ScriptedDrafter:
    """Proposes the baseline's own continuation with one token spoiled per round, at a
    place that moves from round to round: every number of accepted drafts occurs."""

    source = "draft"

    def __init__(self, answer: list[int], n_prompt: int, n_vocab: int) -> None:
        self.answer, self.n_prompt, self.n_vocab = answer, n_prompt, n_vocab
        self.rounds = 0

    def propose(self, history: list[int], limit: int, min_length: int = 1) -> Proposal:
        at = len(history) - self.n_prompt
        tokens = list(self.answer[at:at + limit])
        bad = self.rounds % (limit + 2)
        if bad < len(tokens):
            tokens[bad] = (tokens[bad] + 1) % self.n_vocab
        self.rounds += 1
        return Proposal("draft", tokens, [None] * len(tokens), 0.0, self)

    def observe(self, proposal: Proposal, accepted: int) -> None:
        pass


def test_snapshot_and_replay_is_greedy_identical_naive_rollback_is_reported(
        session: Session, tiny_mamba: Path) -> None:
    s = settings(max_tokens=32)
    base = session.run(tiny_mamba, None, PROMPT, replace(s, track="baseline"))
    n_prompt = base.prompt_tokens

    def scripted(model: LoadedModel) -> ScriptedDrafter:
        return ScriptedDrafter(base.token_ids, n_prompt, model.n_vocab)

    rep = run_ssm(session, tiny_mamba, PROMPT, s, drafters=scripted)
    assert rep.baseline is not None and rep.baseline.token_ids == base.token_ids
    naive, snap = rep.mode("naive"), rep.mode("snapshot")
    assert naive is not None and snap is not None
    # Snapshot-and-replay: the baseline's answer, with rejections at every place.
    r = snap.result
    check_accounting(r)
    assert 0 < r.n_accepted < r.n_drafted
    assert snap.restores > 0 and snap.snapshots >= snap.restores
    assert snap.replayed_tokens > snap.restores  # some replays carried accepted drafts
    assert snap.snapshot_bytes > 0 and snap.failure is None
    assert_lossless(session, tiny_mamba, base, r, s)
    # Naive rollback: llama.cpp refuses, the run goes on without crashing, and the answer
    # leaves the baseline's (or the run stops with llama.cpp's complaint).
    assert naive.refusals > 0 and naive.first_refusal is not None
    assert naive.result.stop_reason in ("max_tokens", "eos", "error")
    assert naive.first_difference is not None or naive.failure is not None
    assert not naive.same_as_baseline
    # The session's target was left clean, and the guard still holds for ordinary runs.
    with pytest.raises(RefusedError):
        session.run(tiny_mamba, None, PROMPT, replace(s, track="lookup"))


def test_ssm_with_a_draft_model_from_the_registry(session: Session, tiny_mamba: Path,
                                                  tiny_draft: Path) -> None:
    rep = run_ssm(session, tiny_mamba, PROMPT, settings(max_tokens=16), draft=tiny_draft)
    naive, snap = rep.mode("naive"), rep.mode("snapshot")
    assert naive is not None and snap is not None and rep.draft == str(tiny_draft)
    assert snap.result.n_drafted > 0 and naive.refusals > 0
    assert rep.baseline is not None
    assert_lossless(session, tiny_mamba, rep.baseline, snap.result, settings(max_tokens=16))


def test_ssm_refuses_an_ssm_draft(session: Session, tiny_mamba: Path) -> None:
    with pytest.raises(RefusedError, match="SSM model too"):
        run_ssm(session, tiny_mamba, PROMPT, settings(max_tokens=4), draft=tiny_mamba)


def test_results_are_kept_exported_and_damage_is_set_aside(
        session: Session, tiny_mamba: Path, tiny_draft: Path, tmp_path: Path) -> None:
    rep = run_ssm(session, tiny_mamba, PROMPT, settings(max_tokens=8), draft=tiny_draft)
    store = Reproductions()
    store.save(rep)
    assert store.load(rep.id) == rep and [r.id for r in store.list()] == [rep.id]
    rows = export(rep, tmp_path / "rep.csv").read_text().splitlines()
    assert rows[0].startswith("id,track") and len(rows) == 1 + 1 + len(rep.ssm)
    assert json.loads(export(rep, tmp_path / "rep.json").read_text())["id"] == rep.id
    bad = store.root / "rep-20260101-000000-abcdef.json"
    bad.write_text('{"format": "decodelab-reproduction", "version": 1, "track": 5}')
    assert [r.id for r in store.list()] == [rep.id]
    assert [p.file for p in store.problems()] == [bad] and not bad.exists()


def test_a_speedup_beyond_what_the_drafts_give_is_called_noise() -> None:
    # Ten rounds of four drafts, one accepted each: 2 answer tokens per verification at
    # best, so 3x can only be the machine's speed changing between the paired runs.
    rounds = [RoundEvent(i, 4, 1, 2, "draft", 0.0, 0.0, 0.0) for i in range(10)]
    run = RunResult("draft", "", "max_tokens", 5, 20, 40, 10, 10, 1.0, 0.0, 0.0, 0.0, {}, {},
                    events=list(rounds))
    depth = DepthRun((0, 1), 4, "d.gguf", 1, 0.0, True, False, run, 3.0, None)
    assert beyond_bound(depth)
    assert not beyond_bound(replace(depth, speedup=1.9))

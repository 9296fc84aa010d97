"""Batch costs remembered across sessions: what a run measured starts the next one.

Costs here are given (``CostModel.observe`` with chosen seconds); the one engine test only
checks that shapes the engine measured were written and read back, never their values.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from given_costs import give_costs

from app.core.adaptive import TRUST, CostModel
from app.core.cost_memory import MAX_TARGETS, CostMemory, target_key
from app.core.events import RunSettings
from app.core.session import Session

STEP = 0.1


def measured(shape: dict[int, float], times: int = TRUST) -> CostModel:
    costs = CostModel(slope=0.13)
    for _ in range(times):
        costs.observe(1, STEP)
        for n, steps in shape.items():
            costs.observe(n, STEP * steps)
    return costs


def test_a_cost_model_remembers_only_sizes_it_measured_often_enough() -> None:
    costs = measured({2: 1.5, 9: 2.7})
    costs.observe(5, STEP * 2.0)  # once: not known well enough to keep
    assert costs.shapes() == pytest.approx({2: 1.5, 9: 2.7})


def test_remembered_shapes_are_believed_at_once_and_live_timings_take_over() -> None:
    fresh = CostModel(slope=0.13)
    fresh.observe(1, STEP)
    # The prior alone: a batch of 2 costs 1.13 steps, far under this CPU's 1.5.
    assert fresh.steps(2, optimistic=True) < 1.2

    costs = CostModel(slope=0.13)
    costs.remember({2: 1.5, 9: 2.7})
    costs.observe(1, STEP)
    assert costs.trusted(2) and costs.trusted(9)
    assert costs.steps(2, optimistic=True) == pytest.approx(1.5)
    assert costs.steps(9, optimistic=True) == pytest.approx(2.7)
    # Unmeasured sizes follow the line through the remembered ones.
    assert 1.5 < costs.steps(5, optimistic=True) < 2.7
    # The machine changed: enough live timings outvote the memory.
    for _ in range(2 * TRUST):
        costs.observe(2, STEP * 1.2)
    assert costs.steps(2) == pytest.approx(1.2)


def test_a_model_started_from_memory_drafts_at_once_and_keeps_its_unit() -> None:
    """No plain rounds first: the first verify batch over its remembered shape is a step's
    cost now; a later slow plain step joins the level instead of rescaling every shape."""
    costs = CostModel(slope=0.13)
    costs.remember({2: 1.5, 9: 2.7})
    assert not costs.wants_step()
    # Before any timing the estimates are in steps, from the memory.
    assert costs.batch(9, optimistic=True) == pytest.approx(2.7)
    costs.observe(9, STEP * 2.7)
    assert costs.batch(1) == pytest.approx(STEP)
    assert costs.batch(2, optimistic=True) == pytest.approx(STEP * 1.5)
    costs.observe(1, 3 * STEP)  # one slow plain step
    assert costs.steps(9) == pytest.approx(2.7) and costs.steps(2) == pytest.approx(1.5)
    assert not costs.wants_step()
    # A fresh model (no memory) still measures its plain steps first.
    assert CostModel().wants_step()


def test_memory_round_trips_per_target_and_keeps_the_latest(tmp_path: Path) -> None:
    memory = CostMemory(tmp_path / "costs.json")
    assert memory.load("a") == {}
    memory.save("a", {2: 1.5, 9: 2.7})
    memory.save("b", {2: 1.9})
    memory.save("a", {2: 1.4})
    assert CostMemory(tmp_path / "costs.json").load("a") == {2: 1.4}
    assert memory.load("b") == {2: 1.9}
    memory.save("c", {})  # nothing measured: nothing written
    assert "c" not in json.loads((tmp_path / "costs.json").read_text())["targets"]


def test_memory_keeps_a_bounded_number_of_targets(tmp_path: Path) -> None:
    memory = CostMemory(tmp_path / "costs.json")
    for i in range(MAX_TARGETS + 5):
        memory.save(f"t{i}", {2: 1.5})
    targets = json.loads((tmp_path / "costs.json").read_text())["targets"]
    assert len(targets) == MAX_TARGETS
    assert "t0" not in targets and f"t{MAX_TARGETS + 4}" in targets


def test_a_broken_memory_file_is_ignored_and_replaced(tmp_path: Path) -> None:
    path = tmp_path / "costs.json"
    memory = CostMemory(path)
    for text in ("{not json", "[1, 2]", '{"version": 99, "targets": {"a": {"2": 1.5}}}',
                 '{"version": 1, "targets": {"a": {"2": "x", "x": 2, "1": 1.0, "3": 0.2}}}'):
        path.write_text(text)
        assert memory.load("a") == {}
    path.write_bytes(b"\xff\xfe garbage")
    assert memory.load("a") == {}
    memory.save("a", {2: 1.5})
    assert memory.load("a") == {2: 1.5}


def test_an_unwritable_memory_costs_nothing_but_the_memory(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("in the way")
    memory = CostMemory(blocker / "costs.json")  # its folder is a file
    memory.save("a", {2: 1.5})  # no exception
    assert memory.load("a") == {}


def test_the_key_tells_apart_files_threads_and_placement(tmp_path: Path) -> None:
    model = tmp_path / "m.gguf"
    model.write_bytes(b"x" * 10)
    keys = {target_key(model, 2), target_key(model, 4), target_key(model, 2, (99, "host:1"))}
    assert len(keys) == 3
    assert target_key(model, 2) == target_key(str(model), 2)
    model.write_bytes(b"x" * 11)  # another file under the same name
    assert target_key(model, 2) not in keys


def test_a_session_with_a_memory_saves_what_it_measured_and_the_next_starts_from_it(
    tmp_path: Path, tiny_dense: Path
) -> None:
    memory = CostMemory(tmp_path / "costs.json")
    s = RunSettings(track="baseline", max_tokens=4, threads=1)
    first = Session(memory)
    # Batch shapes this session "measured" (given; a baseline run times only plain steps,
    # which leave them as they are).
    give_costs(first, measured({2: 1.3, 9: 3.4}))  # type: ignore[arg-type]
    try:
        first.run(tiny_dense, None, "a b c", s)
    finally:
        first.close()
    (key,) = json.loads((tmp_path / "costs.json").read_text())["targets"]
    assert key.startswith(f"{tiny_dense.name}|") and "threads=1" in key
    assert memory.load(key) == pytest.approx({2: 1.3, 9: 3.4})

    second = Session(memory)
    try:
        second.run(tiny_dense, None, "x", s)
        remembered = second.learned_costs()
        assert remembered is not None
        assert remembered.steps(2, optimistic=True) == pytest.approx(1.3, abs=1e-3)
    finally:
        second.close()
    # A session without a memory starts from the prior (tests and benchmarks by default).
    plain = Session()
    try:
        plain.run(tiny_dense, None, "x", s)
        costs = plain.learned_costs()
        assert costs is not None and costs.shapes() == {}
    finally:
        plain.close()


def test_each_expert_count_keeps_its_own_costs(tmp_path: Path, tiny_moe: Path) -> None:
    """Fewer active experts make every batch cheaper in another proportion: Track 2 at
    1 expert must not start from the shapes measured with all of them."""
    memory = CostMemory(tmp_path / "costs.json")
    session = Session(memory)
    give_costs(session, measured({2: 1.3}))  # type: ignore[arg-type]
    try:
        for experts in (1, 2):
            s = RunSettings(track="moe", experts=experts, max_tokens=2, threads=1)
            session.run(tiny_moe, None, "a b", s)
    finally:
        session.close()
    keys = json.loads((tmp_path / "costs.json").read_text())["targets"]
    assert sorted(k.split("|")[3].split(",")[0] for k in keys) == ["experts=1", "experts=2"]


def test_a_run_started_from_memory_drafts_in_its_first_round(
    tmp_path: Path, tiny_dense: Path, tiny_draft: Path
) -> None:
    """The engine asks for plain rounds only while the unit is unknown: a fresh session's
    first adaptive rounds are plain steps, one started from remembered shapes drafts at once."""
    from app.core.events import RoundEvent

    memory = CostMemory(tmp_path / "costs.json")
    saver = Session(memory)
    give_costs(saver, measured({2: 1.3, 5: 2.0, 9: 3.4}))  # type: ignore[arg-type]
    try:
        saver.run(tiny_dense, None, "a b c", RunSettings(track="baseline", max_tokens=2,
                                                           threads=1))
    finally:
        saver.close()
    s = RunSettings(track="draft", max_tokens=12, ctx=512, threads=1)

    def first_round(session: Session) -> RoundEvent:
        try:
            r = session.run(tiny_dense, tiny_draft, "one two three four", s)
        finally:
            session.close()
        return next(e for e in r.events if isinstance(e, RoundEvent))

    assert first_round(Session()).proposed == 0  # measuring a plain step
    assert first_round(Session(memory)).proposed > 0

"""A draft source is one module plus one registry entry: a throw-away source registered in
this process shows up in the tracks, the CLI parser, settings checks, sweeps, the predictor
and history; and the suffix source's id stands in only two files of app/."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.cli import build_parser
from app.core.drafting import registry
from app.core.drafting.base import Proposal
from app.core.drafting.registry import BuildContext, DraftSource, Setting
from app.core.errors import RefusedError
from app.core.events import RunSettings
from app.core.predict import MeasuredCosts, predict
from app.core.serialization import settings_from_dict
from app.core.settings_check import check_settings
from app.core.sweep import default_values, parameters
from app.core.tracks import find_track, get_track, working

APP = Path(__file__).resolve().parents[1] / "app"


class Repeat:
    """Drafts the last token again, ``toy_depth`` times: enough to be verified."""

    def __init__(self, depth: int) -> None:
        self.depth = depth

    def propose(self, history: list[int], limit: int, min_length: int = 1) -> Proposal:
        n = min(limit, self.depth)
        return Proposal("toy", [history[-1]] * n, [None] * n, drafter=self)

    def observe(self, proposal: Proposal, accepted: int) -> None:
        pass


def _build(ctx: BuildContext) -> Repeat:
    return Repeat(ctx.option("toy_depth"))


TOY = DraftSource(
    id="toy", label="toy source", name="Toy", summary="repeats the last token",
    number=None, colour="#ffeeaa", dark_colour="#554400", plot_colour="#aa8800",
    cost="free", needs_draft_model=False, priority=5, build=_build,
    settings=(Setting("toy_depth", "toy depth", "how many repeats", 3, 1, 9, sweep=(1, 2, 3)),),
)


@pytest.fixture
def toy() -> Iterator[DraftSource]:
    registry.register(TOY)
    try:
        yield TOY
    finally:
        registry.unregister("toy")


def test_a_registered_source_brings_its_tracks(toy: DraftSource) -> None:
    ids = {t.id for t in working()}
    assert {"toy", "lookup+toy", "moe+toy"} <= ids
    track = get_track("toy+lookup")  # any order of parts
    assert track.id == "lookup+toy" and track.sources == ("toy", "lookup")  # by priority
    assert "toy" not in {t.id for t in working()} or find_track("toy") is not None


def test_a_registered_source_is_in_the_cli_with_its_range(toy: DraftSource) -> None:
    parser = build_parser()
    args = parser.parse_args(["run", "--model", "m.gguf", "--track", "toy", "--prompt", "hi",
                              "--toy-depth", "5"])
    assert args.toy_depth == 5
    run_help = next(a for a in parser._subparsers._group_actions[0].choices.items()  # type: ignore[union-attr]
                    if a[0] == "run")[1].format_help()
    assert "--toy-depth" in run_help and "1..9" in run_help
    with pytest.raises(SystemExit):
        parser.parse_args(["run", "--model", "m", "--track", "toy", "--prompt", "hi",
                           "--toy-depth", "10"])


def test_a_registered_source_setting_is_checked_swept_and_kept(toy: DraftSource) -> None:
    s = RunSettings(track="toy").with_options(toy_depth=12)
    with pytest.raises(RefusedError, match="toy-depth"):
        check_settings(s)
    ok = RunSettings(track="toy").with_options(toy_depth=4)
    check_settings(ok)
    assert ok.to_dict()["toy_depth"] == 4 and RunSettings().to_dict()["toy_depth"] == 3
    assert settings_from_dict(ok.to_dict()).option("toy_depth") == 4
    assert parameters(get_track("toy")) == ["draft_max", "toy_depth"]
    assert default_values("toy_depth", "unused.gguf", ok) == [1, 2, 3]


def test_the_predictor_takes_the_formula_of_the_cost_kind(toy: DraftSource) -> None:
    costs = MeasuredCosts(batches={1: 1.0, 2: 1.1, 3: 1.2, 5: 1.4, 9: 1.8, 17: 2.6},
                          draft_step=0.5)
    free = predict(costs, 0.8, "toy")
    model = predict(costs, 0.8, "draft")
    assert free.best is not None and model.best is not None
    assert free.best.speedup > model.best.speedup  # the toy's drafts cost no draft step
    assert all(p.draft_steps == 0 for p in free.predictions)


def test_a_registered_source_runs_losslessly(toy: DraftSource, tiny_dense: Path) -> None:
    from app.core.session import Session

    session = Session()
    try:
        s = RunSettings(track="baseline", max_tokens=24, ctx=512, threads=1, adaptive=False)
        base = session.run(tiny_dense, None, "one two one two one two", s)
        toy_run = session.run(tiny_dense, None, "one two one two one two",
                              RunSettings(**{**s.__dict__, "track": "toy"}))
    finally:
        session.close()
    assert toy_run.n_drafted > 0
    assert toy_run.token_ids == base.token_ids


def test_suffix_id_stands_in_at_most_two_files_of_app() -> None:
    """Its module (which names the id) and the registry line (which imports the module)."""
    part = re.compile(r"(^|\+)suffix(\+|$)")
    files = []
    for path in APP.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            named = (isinstance(node, ast.Constant) and isinstance(node.value, str)
                     and part.search(node.value))
            imported = isinstance(node, ast.ImportFrom | ast.Import) and any(
                "suffix" in (a.name, (getattr(node, "module", "") or "").rpartition(".")[2])
                for a in node.names)
            if named or imported:
                files.append(path.relative_to(APP).as_posix())
                break
    assert sorted(files) == ["core/drafting/sources.py", "core/drafting/suffix.py"]

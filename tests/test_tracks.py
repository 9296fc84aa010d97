"""The track registry: ids, deprecated tracks and applicability."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.core.compat import check_draft
from app.core.errors import RefusedError
from app.core.gguf_info import inspect_model
from app.core.tracks import DEPRECATED, availability, get_track, working

CONTRACT_IDS = {
    "baseline",
    "draft",
    "moe",
    "lookup",
    "draft+lookup",
    "moe+lookup",
    "moe+draft",
    "moe+draft+lookup",
}
DEPRECATED_IDS = {"eagle", "medusa", "ssm-spec", "cas-spec", "clasp-swift", "kangaroo"}


def test_registry_has_the_contract_ids() -> None:
    assert {t.id for t in working()} >= CONTRACT_IDS
    assert {t.id for t in DEPRECATED} == DEPRECATED_IDS
    assert {t.number for t in DEPRECATED} == {3, 4, 5, 7, 9, 10}


@pytest.mark.parametrize("track_id", sorted(DEPRECATED_IDS))
def test_deprecated_tracks_are_refused_with_reason_and_alternative(track_id: str) -> None:
    with pytest.raises(RefusedError, match="deprecated") as err:
        get_track(track_id)
    assert "instead" in str(err.value)


def test_unknown_track_is_refused() -> None:
    with pytest.raises(RefusedError, match="unknown track"):
        get_track("warp-drive")


def test_availability_by_model_pair(
    tiny_dense: Path, tiny_moe: Path, tiny_mamba: Path, tiny_incompatible: Path
) -> None:
    dense, moe, mamba = (inspect_model(p) for p in (tiny_dense, tiny_moe, tiny_mamba))
    bad = inspect_model(tiny_incompatible)
    assert availability(get_track("baseline"), dense) is None
    assert availability(get_track("lookup"), dense) is None
    assert "no draft" in (availability(get_track("draft"), dense) or "")
    assert "not an MoE" in (availability(get_track("moe"), dense) or "")
    assert availability(get_track("moe+lookup"), moe) is None
    for track in working():
        reason = availability(track, mamba)
        assert (reason is None) == (not track.speculates and not track.moe)
    reason = availability(get_track("draft"), dense, bad, check_draft(dense, bad))
    assert reason is not None and "token texts" in reason

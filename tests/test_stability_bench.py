"""The stability benchmark's judgement (benchmarks/stability.py), on given figures."""

from __future__ import annotations

from typing import Any

import pytest

from benchmarks.stability import Config, judge, report


def _records(base: list[float], adaptive: list[float], fixed: list[float]) -> list[dict[str, Any]]:
    out = []
    for rep, b in enumerate(base):
        for c, tps in ((Config("draft", True, 8), adaptive[rep]),
                       (Config("draft", False, 8), fixed[rep])):
            out.append({"prompt": "p", "repeat": rep, "config": c.name, "track": c.track,
                        "adaptive": c.adaptive, "k": c.k, "speedup": tps / b,
                        "tokens_per_second": tps, "baseline_tokens_per_second": b,
                        "baseline_after_tokens_per_second": b})
    return out


def test_an_adaptive_run_far_below_fixed_k_fails_worst() -> None:
    runs = {Config("draft", True, 8): [1.6, 1.6, 1.3], Config("draft", False, 8): [1.6] * 3}
    ((_, v),) = judge(runs, "draft")
    assert v["worst_vs_best_fixed"] == pytest.approx(1.3 / 1.6)
    assert (v["worst_ok"], v["median_ok"], v["floor_ok"]) == (False, True, True)


def test_baseline_noise_fails_speedups_but_not_tokens_per_second(
        capsys: pytest.CaptureFixture[str]) -> None:
    """Adaptive and fixed drafting at the same steady 16 tokens/s; one repeat's baseline
    ran fast. On speedups that repeat fails 'worst'; on tokens/s nothing does."""
    records = _records([10.0, 10.0, 13.0], [16.0] * 3, [16.0] * 3)
    (verdict,) = report(records, ["draft"])
    assert verdict["worst_ok"] is False
    assert verdict["tokens_per_second"]["worst_ok"] is True
    out = capsys.readouterr().out
    assert "on speedups: adaptive configurations judged: 1, failing: 1" in out
    assert "on tokens/s: adaptive configurations judged: 1, failing: 0" in out


def test_old_files_without_the_track_keys_are_read() -> None:
    records = _records([10.0], [15.0], [16.0])
    for rec in records:
        for key in ("track", "adaptive", "k", "baseline_after_tokens_per_second"):
            del rec[key]
    (verdict,) = report(records, ["draft"])
    assert verdict["median_vs_best_fixed"] == pytest.approx(15 / 16)

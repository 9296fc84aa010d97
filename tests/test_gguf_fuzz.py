"""Fuzz tier: a mutated GGUF header parses or is a ModelFileError, in bounded memory.

Hypothesis draws the mutations of benchmarks/fuzz_gguf.py (byte flips anywhere or in a
structural field, counts, lengths, types, dimensions and offsets set to extremes, keys
re-typed or added, truncations) on the tiny models' headers and, when it is installed, on
SmolLM2's (its header only, on a sparse file of the model's size). Reproducible (derandomized)
and short; time is not asserted here (the long run, `python -m benchmarks.fuzz_gguf`, holds
each case to a second).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.core.gguf_info import ModelInfo
from benchmarks.gguf_mutations import (
    KINDS,
    Mutation,
    Seed,
    check_case,
    load_seed,
    peak_growth,
    tiny_paths,
    write_case,
)

MAX_PEAK = 200 * 2**20

mutations = st.builds(
    Mutation,
    kind=st.sampled_from(KINDS),
    where=st.integers(0, 2**32 - 1),
    value=st.integers(0, 2**32 - 1),
)


def fuzz_settings(max_examples: int) -> settings:
    return settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


@pytest.fixture(scope="module")
def tiny_seeds(tiny_dir: Path) -> list[Seed]:
    return [load_seed(p) for p in tiny_paths(tiny_dir)]


@pytest.fixture(scope="module")
def smollm2_seed(smollm2_path: Path) -> Seed:
    return load_seed(smollm2_path)


@pytest.fixture(scope="module")
def case_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def check_mutated(seed: Seed, mutation: Mutation, folder: Path) -> None:
    """Parsed or ModelFileError (``check_case`` raises Crash otherwise), the peak memory
    rising by less than MAX_PEAK."""
    data, size = mutation.apply(seed)
    path = folder / "case.gguf"
    write_case(path, data, size)
    with peak_growth() as peak:
        check_case(path)
    assert peak[0] < MAX_PEAK, f"{mutation.describe(seed)}: peak memory +{peak[0]} bytes"


def test_the_seeds_parse(tiny_seeds: list[Seed], case_dir: Path) -> None:
    for seed in tiny_seeds:
        path = case_dir / "seed.gguf"
        write_case(path, seed.data, seed.file_size)
        assert isinstance(check_case(path), ModelInfo), seed.name


@fuzz_settings(max_examples=300)
@given(index=st.integers(0, 3), mutation=mutations)
def test_mutated_tiny_headers(
    tiny_seeds: list[Seed], case_dir: Path, index: int, mutation: Mutation
) -> None:
    check_mutated(tiny_seeds[index % len(tiny_seeds)], mutation, case_dir)


@fuzz_settings(max_examples=25)
@given(mutation=mutations)
def test_mutated_smollm2_header(smollm2_seed: Seed, case_dir: Path, mutation: Mutation) -> None:
    check_mutated(smollm2_seed, mutation, case_dir)

"""Fuzz the GGUF header reader: every mutated header parses or raises ModelFileError, fast.

Seeds are the headers of the tiny generated models, a GGUF holding every value type, and
the installed pinned models. Only a seed's header region is read and written; the mutated
file is extended (sparsely) to the original size, so the reader sees the tensor data where
it expects it without a byte of weights being copied. Each case applies one mutation (a
byte flip anywhere or inside a structural field, a count/length/type/dimension/offset set
to an extreme value, a key re-typed or added, a truncation) and runs ``inspect_model``.

    nice -n 10 .venv/bin/python -m benchmarks.fuzz_gguf --cases 100000 --seed 1

Reported: cases, how many parsed or were refused, crashes (anything but ModelFileError, or
a message longer than 500 characters or of more than one line; the first few are saved
with their reproduction), the slowest case (CPU time), the largest rise of the peak memory
in one case (``peak_growth``) and the process's peak RSS. Exit code 1 when a case crashed,
took more CPU time than --deadline or raised the peak memory by more than --max-mb.

The mutation engine (``Seed``, ``Mutation``, ``check_case``: benchmarks/gguf_mutations.py)
is shared with tests/test_gguf_fuzz.py, where Hypothesis draws the mutations.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from app.core.errors import ModelFileError
from app.core.gguf_info import ModelInfo
from benchmarks.gguf_mutations import (
    Crash,
    Mutation,
    Seed,
    check_case,
    installed_paths,
    load_seed,
    peak_growth,
    random_mutation,
    tiny_paths,
    write_case,
)

# ------------------------------------------------------------------ the long run


@dataclass
class Report:
    cases: int = 0
    parsed: int = 0
    refused: int = 0
    crashes: int = 0
    over_deadline: int = 0
    over_memory: int = 0
    peak_growth: int = 0  # the largest rise of the peak memory in one case, bytes
    peak_growth_case: str = ""
    slowest: float = 0.0  # CPU seconds: what the case costs, whatever else the machine runs
    slowest_case: str = ""
    slowest_wall: float = 0.0
    per_seed: dict[str, int] = field(default_factory=dict)


def _save(out: Path, n: int, seed: Seed, m: Mutation, data: bytes, size: int, why: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    write_case(out / f"crash-{n}.gguf", data, size)
    (out / f"crash-{n}.txt").write_text(
        f"seed: {seed.name}\nmutation: {m!r}\n  {m.describe(seed)}\nfile size: {size}\n\n{why}\n",
        encoding="utf-8",
    )


def fuzz(seeds: list[Seed], real: list[Seed], cases: int, rng: random.Random, work: Path,
         out: Path, deadline: float, real_share: float, max_growth: int, keep: int = 5,
         progress: Callable[[Report], None] | None = None) -> Report:
    rep = Report()
    case = work / "case.gguf"
    for i in range(cases):
        pool = real if real and (not seeds or rng.random() < real_share) else seeds
        seed = pool[rng.randrange(len(pool))]
        m = random_mutation(seed, rng)
        data, size = m.apply(seed)
        write_case(case, data, size)
        result: ModelInfo | ModelFileError | None = None
        with peak_growth() as grown:
            t0, c0 = time.perf_counter(), time.process_time()
            try:
                result = check_case(case)
            except Crash:
                rep.crashes += 1
                if rep.crashes <= keep:
                    _save(out, rep.crashes, seed, m, data, size, traceback.format_exc())
            dt, wall = time.process_time() - c0, time.perf_counter() - t0
        name = f"{seed.name}: {m.describe(seed)}"
        if grown[0] > rep.peak_growth:
            rep.peak_growth, rep.peak_growth_case = grown[0], name
        if grown[0] > max_growth:
            rep.over_memory += 1
        rep.slowest_wall = max(rep.slowest_wall, wall)
        rep.cases += 1
        rep.per_seed[seed.name] = rep.per_seed.get(seed.name, 0) + 1
        if isinstance(result, ModelInfo):
            rep.parsed += 1
        elif isinstance(result, ModelFileError):
            rep.refused += 1
        if dt > rep.slowest:
            rep.slowest, rep.slowest_case = dt, name
        if dt > deadline:
            rep.over_deadline += 1
        if progress is not None and (i + 1) % 10000 == 0:
            progress(rep)
    return rep


def _rss_mb() -> float:
    # ru_maxrss is in KiB on Linux (bytes on macOS).
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.splitlines()[0] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--cases", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=0, help="random seed (the run is reproducible)")
    ap.add_argument("--model", action="append", default=[], metavar="PATH",
                    help="a valid GGUF to mutate (repeatable); default: the tiny models and "
                         "the installed pinned models")
    ap.add_argument("--real-share", type=float, default=0.005,
                    help="share of cases on the real models' headers (each parses 10**5 "
                         "tokens: 50-500 ms); default 0.005")
    ap.add_argument("--deadline", type=float, default=1.0,
                    help="CPU seconds one case may take (CPU, not wall time: other processes "
                         "on the machine do not count)")
    ap.add_argument("--max-mb", type=float, default=200.0,
                    help="MB by which one case may raise the peak memory")
    ap.add_argument("--out", type=Path,
                    default=Path(tempfile.gettempdir()) / "decodelab-fuzz-gguf",
                    help="folder for the first crashes' files and reproductions")
    args = ap.parse_args(argv)

    t_setup = time.perf_counter()
    if args.model:
        seeds, real = [load_seed(p) for p in args.model], []
    else:
        from app.core.paths import cache_dir

        tiny_dir = cache_dir() / "fuzz-gguf"
        seeds = [load_seed(p) for p in tiny_paths(tiny_dir)]
        real = [load_seed(p) for p in installed_paths()]
    for s in seeds + real:
        print(f"seed {s.name}: header {len(s.data)} bytes of {s.file_size}, "
              f"{len(s.fields)} fields, {len(s.kvs)} keys", flush=True)
    base_rss = _rss_mb()
    print(f"set-up {time.perf_counter() - t_setup:.1f} s, RSS {base_rss:.0f} MB", flush=True)

    def progress(rep: Report) -> None:
        print(f"  {rep.cases} cases, {rep.crashes} crashes, slowest {rep.slowest * 1e3:.0f} ms "
              f"CPU, peak RSS {_rss_mb():.0f} MB", flush=True)

    t0 = time.perf_counter()
    shm = "/dev/shm" if os.path.isdir("/dev/shm") else None  # memory, not disk
    with tempfile.TemporaryDirectory(prefix="fuzz-gguf-", dir=shm) as work:
        rep = fuzz(seeds, real, args.cases, random.Random(args.seed), Path(work), args.out,
                   args.deadline, args.real_share, int(args.max_mb * 2**20), progress=progress)
    elapsed = time.perf_counter() - t0
    peak = _rss_mb()
    print(f"cases {rep.cases} in {elapsed:.0f} s ({rep.cases / elapsed:.0f}/s): "
          f"parsed {rep.parsed}, ModelFileError {rep.refused}, crashes {rep.crashes}")
    print("per seed: " + ", ".join(f"{k} {v}" for k, v in rep.per_seed.items()))
    print(f"slowest case {rep.slowest * 1e3:.1f} ms CPU ({rep.slowest_case}); "
          f"over {args.deadline:g} s: {rep.over_deadline}; slowest wall time "
          f"{rep.slowest_wall * 1e3:.0f} ms")
    print(f"peak RSS {peak:.0f} MB (after set-up {base_rss:.0f} MB); largest rise in one case "
          f"{rep.peak_growth / 2**20:.1f} MB ({rep.peak_growth_case}); "
          f"over {args.max_mb:g} MB: {rep.over_memory}")
    if rep.crashes:
        print(f"first crashes saved in {args.out}")
    ok = not (rep.crashes or rep.over_deadline or rep.over_memory)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())

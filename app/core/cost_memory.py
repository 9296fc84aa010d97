"""What a verify batch costs on this machine, kept across runs and processes.

Adaptive drafting weighs drafts against the cost of a target batch of n tokens in plain
steps (``CostModel``). That shape is a property of the model file, the thread count and
the CPU, but a fresh process learned it again from noisy timings in every run, and its
first estimates decided the run: on the F16 target here a batch of 2 costs 1.3-1.6 steps
where the prior from the model's bytes says 1.13, and live adaptive lookup drafted 20-40 %
more than it would on known costs (benchmarks/RESULTS.md, session 8). The shapes a run
measured are written here when it ends, and the next session's cost model starts from them.

Only shapes (batch cost over step cost) are kept, never seconds: the machine's speed drifts
by the minute and every run measures its own step (a model started from remembered shapes
from its first verify batches, each over its remembered shape). A file that cannot be read
or written costs nothing but the memory: runs never fail because of it.
"""

from __future__ import annotations

import json
import logging
import platform
from pathlib import Path
from typing import Any

from app.core.paths import data_dir
from app.core.store import atomic_write_text

log = logging.getLogger(__name__)

VERSION = 1
# Targets remembered at most: the least recently saved are dropped first.
MAX_TARGETS = 64


def cpu_name() -> str:
    """The CPU model, so that a data folder moved to another machine starts afresh."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def target_key(path: str | Path, threads: int, load: tuple[object, ...] = ()) -> str:
    """One target as the costs see it: its file (name and size), threads, and the rest of
    how it was loaded (experts, where its layers run)."""
    p = Path(path)
    try:
        size = p.stat().st_size
    except OSError:
        size = -1
    how = ",".join(str(x) for x in load)
    return f"{p.name}|{size}|threads={threads}|{how}|{cpu_name()}"


class CostMemory:
    """Per target key, batch size -> cost in plain steps (JSON in the data folder)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.warning("batch costs not remembered: %s unreadable (%s)", self.path, exc)
            return {}
        if not isinstance(data, dict) or data.get("version") != VERSION:
            return {}
        targets = data.get("targets")
        return targets if isinstance(targets, dict) else {}

    def load(self, key: str) -> dict[int, float]:
        entry = self._read().get(key)
        if not isinstance(entry, dict):
            return {}
        shapes: dict[int, float] = {}
        for n, value in entry.items():
            try:
                size, steps = int(n), float(value)
            except (TypeError, ValueError):
                continue
            if size > 1 and 1.0 <= steps < 1000.0:  # a batch never costs less than a step
                shapes[size] = steps
        return shapes

    def save(self, key: str, shapes: dict[int, float]) -> None:
        if not shapes:
            return
        targets = self._read()
        targets.pop(key, None)
        targets[key] = {str(n): round(v, 4) for n, v in sorted(shapes.items())}
        while len(targets) > MAX_TARGETS:
            targets.pop(next(iter(targets)))
        text = json.dumps({"version": VERSION, "targets": targets}, indent=1)
        try:
            atomic_write_text(self.path, text)  # creates the folder too
        except OSError as exc:
            log.warning("batch costs not remembered: cannot write %s (%s)", self.path, exc)


def default_memory() -> CostMemory:
    """The app's own memory, in the data folder (created when first written)."""
    return CostMemory(data_dir(create=False) / "batch_costs.json")

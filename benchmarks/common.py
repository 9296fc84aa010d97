"""Shared helpers of the benchmark scripts (not part of the app)."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
from pathlib import Path

import llama_cpp

from app.core.llama_backend import LoadedModel, LoadOptions
from app.core.models.library import resolve_model
from app.core.session import render_prompt

PROMPTS_DIR = Path(
    os.environ.get("DECODELAB_PROMPTS", Path(__file__).resolve().parents[2] / "shared" / "prompts")
)
PROMPT_NAMES = ("code_edit", "summarize", "novel_code", "prose")
# This project's own benchmark prompts (a refactor, an extraction, a translation of code, a
# long summary), written apart from the shared ones.
OWN_PROMPTS = Path(__file__).resolve().parent / "prompts"


def prompt_text(name: str) -> str:
    """A shared prompt by name, or one of OWN_PROMPTS."""
    shared = PROMPTS_DIR / f"{name}.txt"
    path = shared if shared.is_file() else OWN_PROMPTS / f"{name}.txt"
    return path.read_text(encoding="utf-8")


def templated(model_spec: str, name: str) -> str:
    """The prompt wrapped in the model's chat template, as the raw text both we and
    llama.cpp's tools tokenize (special tokens parsed, no second template)."""
    path = resolve_model(model_spec)
    model = LoadedModel(path, LoadOptions(n_ctx=4096, threads=1))
    try:
        ids = render_prompt(model, prompt_text(name), chat=True, system=None)
        return b"".join(model.piece(t) if t != model.info.bos_id else b"" for t in ids).decode(
            "utf-8", "replace"
        )
    finally:
        model.close()


def warm_page_cache(*paths: str | None) -> None:
    """Read model files once so the first timed run does not pay for the disk."""
    for path in paths:
        if path:
            with open(path, "rb") as fh:
                while fh.read(64 << 20):
                    pass


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def machine_summary() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        ram = int(Path("/proc/meminfo").read_text().split()[1]) // 1024 // 1024
    except (OSError, ValueError, IndexError):
        ram = 0
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
        ).stdout.strip()
    except OSError:
        commit = "?"
    return (
        f"{cpu}, {os.cpu_count()} logical cores, {ram} GiB RAM; Python "
        f"{platform.python_version()}, llama-cpp-python {llama_cpp.__version__}; "
        f"DecodeLab commit {commit}"
    )

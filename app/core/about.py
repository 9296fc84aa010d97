"""What the About box shows and copies for a bug report: versions, build, CPU, folders.

Guarantees: :func:`gather` never raises - anything this platform, this llama.cpp build or
this install cannot tell is left out (None, or "unknown" for a version) - and needs no Qt
(the window adds the Qt versions through ``extra_versions``). :meth:`AboutInfo.as_text` is
plain text, one fact a line.
"""

from __future__ import annotations

import contextlib
import os
import platform
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from app import __version__
from app.core import paths, provenance

BUILD_INFO_FILE = "BUILD-INFO.txt"
# Set by the packaged app's runtime hook (packaging/rthooks/pyi_rth_ggml_backends.py): the
# llama.cpp CPU library it loaded ("haswell", "sse42", ...), "built-in" for a build with its
# CPU code inside libggml, "none" if no CPU backend could be loaded.
CPU_BACKEND_ENV = "DECODELAB_GGML_CPU_BACKEND"
OVERRIDE_ENVS = ("DECODELAB_HOME", "DECODELAB_MODELS_DIR")


@dataclass(frozen=True)
class AboutInfo:
    """The facts, in the order they are shown."""

    versions: list[tuple[str, str]]  # (what, version): DecodeLab first
    system: list[tuple[str, str]]  # OS, CPU, llama.cpp's CPU backend, overrides
    system_info: str | None  # llama_print_system_info(): the CPU features llama.cpp uses
    folders: list[tuple[str, Path]]  # (what, folder): models, history, logs, settings
    build_info: str | None  # BUILD-INFO.txt of a packaged app
    build_info_path: Path | None = None
    frozen: bool = False

    def as_text(self) -> str:
        """Everything as plain text, for a bug report."""
        lines = [f"{what}: {value}" for what, value in self.versions]
        lines += [f"{what}: {value}" for what, value in self.system]
        if self.system_info:
            lines.append(f"llama.cpp system info: {self.system_info}")
        lines.append("Folders:")
        lines += [f"  {what}: {folder}" for what, folder in self.folders]
        if self.build_info:
            lines.append(f"Build ({self.build_info_path or BUILD_INFO_FILE}):")
            lines += [f"  {line}" for line in self.build_info.splitlines() if line.strip()]
        else:
            lines.append("Build: " + ("packaged, no " + BUILD_INFO_FILE if self.frozen
                                      else "from source (not a packaged app)"))
        return "\n".join(lines) + "\n"


def gather(extra_versions: Sequence[tuple[str, str]] = ()) -> AboutInfo:
    """The facts for this process; ``extra_versions`` (e.g. Qt's) follow Python's."""
    frozen = bool(getattr(sys, "frozen", False))
    versions = [
        ("DecodeLab", __version__),
        ("llama-cpp-python", _llama_cpp_python_version()),
        ("llama.cpp", llama_cpp_build()),
        ("Python", f"{platform.python_version()} ({platform.python_implementation()}, "
                   f"{'packaged' if frozen else sys.executable})"),
        *extra_versions,
    ]
    system = [("OS", platform.platform())]
    if (cpu := _cpu_name()) is not None:
        system.append(("CPU", cpu))
    if backend := os.environ.get(CPU_BACKEND_ENV):
        system.append((f"llama.cpp CPU backend ({CPU_BACKEND_ENV})", backend))
    system += [(name, value) for name in OVERRIDE_ENVS if (value := os.environ.get(name))]
    build_path = build_info_path() if frozen else None
    build = None
    if build_path is not None:
        with contextlib.suppress(OSError, UnicodeDecodeError):
            build = build_path.read_text(encoding="utf-8-sig").strip() or None
    return AboutInfo(versions, system, _system_info(), folders(), build, build_path, frozen)


def folders() -> list[tuple[str, Path]]:
    """Where DecodeLab keeps models, run history, logs and settings (see app.core.paths)."""
    out: list[tuple[str, Path]] = []
    for what, where in (
        ("models", paths.models_dir),
        ("history", _history_dir),
        ("logs", paths.log_dir),
        ("settings", paths.config_dir),
    ):
        with contextlib.suppress(OSError):  # an unwritable folder: leave it out
            out.append((what, where()))
    return out


def _history_dir() -> Path:
    from app.core.history import HISTORY_DIR  # the folder History() uses by default

    folder = paths.data_dir() / HISTORY_DIR
    folder.mkdir(parents=True, exist_ok=True)  # so that it opens before the first run
    return folder


def build_info_path() -> Path | None:
    """The packaged app's BUILD-INFO.txt: next to the executable (Linux, Windows onedir),
    beside the ``_internal`` folder, or in a macOS .app's Contents/Resources."""
    exe_dir = Path(sys.executable).resolve().parent
    candidates = [exe_dir / BUILD_INFO_FILE, exe_dir.parent / "Resources" / BUILD_INFO_FILE]
    if meipass := getattr(sys, "_MEIPASS", None):
        candidates.append(Path(meipass).parent / BUILD_INFO_FILE)
    return next((p for p in candidates if p.is_file()), None)


def llama_cpp_build() -> str:
    """llama.cpp's version, with ggml's version and commit where the build exports them."""
    parts = []
    with contextlib.suppress(Exception):  # an old build without llama_version()
        import llama_cpp

        parts.append(bytes(llama_cpp.llama_version()).decode("utf-8", "replace"))
    if ggml := provenance._ggml_call("ggml_version"):
        parts.append(f"ggml {ggml}")
    if commit := provenance._ggml_call("ggml_commit"):
        parts.append(f"commit {commit}")
    return ", ".join(parts) or "unknown"


def _llama_cpp_python_version() -> str:
    try:
        import llama_cpp
    except Exception as exc:  # a broken install still gets an About box
        return f"not loadable ({exc})"
    return str(getattr(llama_cpp, "__version__", "unknown"))


def _system_info() -> str | None:
    info = provenance._system_info()  # "CPU : SSE3 = 1 | AVX = 1 | ... |"
    if not info:
        return None
    return " ".join(info.split()).strip(" |") or None


def _cpu_name() -> str | None:
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as fh:
        for line in fh:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or None

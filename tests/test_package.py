"""The built package: the frozen program and the .deb (issue 6).

Runs only when `make package` (packaging/build_linux.sh) has left an artefact in dist/:
the onedir bundle dist/decodelab/decodelab and/or dist/decodelab_<version>_<arch>.deb.
Otherwise every test here is skipped. The frozen program gets a throw-away DECODELAB_HOME
and the offscreen Qt platform, exactly as packaging/smoke_test.sh does.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

pytestmark = pytest.mark.package

ROOT = Path(__file__).resolve().parents[1]
DIST = ROOT / "dist"
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
NAME, VERSION = PROJECT["name"], PROJECT["version"]
# On Windows the console program (decodelab.exe is windowed: it has no stdout)
FROZEN = DIST / NAME / (f"{NAME}-cli.exe" if sys.platform == "win32" else NAME)
DEBS = sorted(DIST.glob(f"{NAME}_{VERSION}_*.deb"))

needs_bundle = pytest.mark.skipif(not FROZEN.is_file(), reason=f"no built bundle at {FROZEN}")
needs_deb = pytest.mark.skipif(not DEBS or shutil.which("dpkg-deb") is None,
                               reason="no built .deb in dist/ (or no dpkg-deb)")


@pytest.fixture(scope="module")
def frozen_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    home = tmp_path_factory.mktemp("frozen-home")
    runtime = home / "xdg-runtime"
    runtime.mkdir(mode=0o700)
    env = dict(os.environ)
    env.update(DECODELAB_HOME=str(home), XDG_RUNTIME_DIR=str(runtime), LANG="C.UTF-8",
               QT_QPA_PLATFORM="offscreen", DECODELAB_REPORT_BACKEND="1")
    return env


@pytest.fixture(scope="module")
def prompt_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("prompt") / "prompt.txt"
    path.write_text("def add(a, b):\n    return a + b\n\nRename add to plus.\n", encoding="utf-8")
    return path


def frozen(env: dict[str, str], *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([str(FROZEN), *args], env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()[:24]
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", data[16:24])


@needs_bundle
def test_frozen_version(frozen_env: dict[str, str]) -> None:
    result = frozen(frozen_env, "--version", timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"decodelab {VERSION}"


@needs_bundle
def test_bundle_carries_llama_cpp_and_resources() -> None:
    internal = FROZEN.parent / "_internal"
    libs = {p.name for p in (internal / "llama_cpp" / "lib").iterdir()}
    assert any(n.startswith(("libllama.", "llama.")) for n in libs), libs
    assert (internal / "resources" / "icons" / "decodelab.svg").is_file()
    assert (internal / "resources" / "style.qss").is_file()
    assert not list(FROZEN.parent.rglob("*.gguf")), "a model was bundled"


@needs_bundle
def test_bundle_says_how_it_was_built() -> None:
    # next to the executable, where Help > About (app/core/about.py) reads it
    info = (FROZEN.parent / "BUILD-INFO.txt").read_text(encoding="utf-8-sig")
    assert f"version: {VERSION}" in info
    assert "llama-cpp-python: " in info and "llama.cpp build: " in info


@needs_bundle
def test_frozen_inspect(frozen_env: dict[str, str], tiny_dense: Path) -> None:
    result = frozen(frozen_env, "inspect", str(tiny_dense), "--json")
    assert result.returncode == 0, result.stderr
    assert '"llama"' in result.stdout


@needs_bundle
def test_frozen_run_baseline(
    frozen_env: dict[str, str], tiny_dense: Path, prompt_file: Path
) -> None:
    result = frozen(frozen_env, "run", "--model", str(tiny_dense), "--track", "baseline",
                    "--max-tokens", "8", "--prompt-file", str(prompt_file))
    assert result.returncode == 0, result.stderr
    # a portable build names the CPU variant it loaded; a native one has it built in
    assert "ggml CPU backend: none" not in result.stderr


@needs_bundle
def test_frozen_gui_screenshot(
    frozen_env: dict[str, str], tiny_dense: Path, prompt_file: Path, tmp_path: Path
) -> None:
    shot = tmp_path / "frozen-gui.png"
    result = frozen(frozen_env, "gui", "--model", str(tiny_dense), "--track", "baseline",
                    "--prompt-file", str(prompt_file), "--run", "--screenshot", str(shot),
                    "--exit", timeout=240)
    assert result.returncode == 0, result.stderr
    assert shot.is_file(), result.stderr
    width, height = png_size(shot)
    assert width >= 640 and height >= 400
    # an empty or one-colour window compresses to a few KB
    assert shot.stat().st_size > 8192


@needs_deb
def test_deb_layout_and_metadata(tmp_path: Path) -> None:
    deb = DEBS[-1]
    listing = subprocess.run(["dpkg-deb", "-c", str(deb)], capture_output=True, text=True,
                             check=True).stdout
    for entry in (f"./opt/{NAME}/{NAME}", f"./usr/bin/{NAME} -> /opt/{NAME}/{NAME}",
                  f"./usr/share/applications/{NAME}.desktop",
                  f"./usr/share/icons/hicolor/scalable/apps/{NAME}.svg",
                  f"./usr/share/icons/hicolor/256x256/apps/{NAME}.png"):
        assert entry in listing, entry
    assert "root/root" in listing and ".gguf" not in listing

    def field(name: str) -> str:
        return subprocess.run(["dpkg-deb", "-f", str(deb), name], capture_output=True,
                              text=True, check=True).stdout.strip()

    assert field("Package") == NAME and field("Version") == VERSION
    depends = field("Depends")
    assert depends.startswith("libc6 (>= 2.3")
    for dep in ("libgl1", "libegl1", "libfontconfig1", "libxkbcommon0",
                "libdbus-1-3", "fonts-dejavu-core | fonts-liberation2"):
        assert dep in depends, dep
    assert "libxcb-cursor0" in field("Recommends")

    if shutil.which("desktop-file-validate"):
        subprocess.run(["dpkg-deb", "-x", str(deb), str(tmp_path)], check=True)
        desktop = tmp_path / "usr/share/applications" / f"{NAME}.desktop"
        check = subprocess.run(["desktop-file-validate", str(desktop)], capture_output=True,
                               text=True, check=False)
        assert check.returncode == 0, check.stdout + check.stderr

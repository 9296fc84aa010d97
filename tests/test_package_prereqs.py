"""`make package`'s prerequisite check (packaging/check_prereqs.sh).

With a tool missing, `build_linux.sh` and `make package` stop before building anything and
print one line that names every missing tool and the one `apt-get install` that fixes them
all; README's "Installers" section shows the full list as that same line.

A tool is taken away by running with a PATH of symlinks to every program on the real PATH
but that one: nothing on the machine is uninstalled. The scripts run from a copy in a
temporary folder, so even a broken check could not start a build in the checkout.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BASH = shutil.which("bash") or "/bin/bash"
# Safety net only: the check answers in about a second; a build would run for many minutes.
LIMIT_S = 120


def path_without(tmp_path: Path, *tools: str) -> str:
    """A PATH (one folder of symlinks) with every program of the real PATH but `tools`."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    seen = set(tools)
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            # the first of a name on PATH wins, as in the shell
            if entry.name in seen or not entry.is_file() or not os.access(entry.path, os.X_OK):
                continue
            seen.add(entry.name)
            (bin_dir / entry.name).symlink_to(entry.path)
    return str(bin_dir)


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A throwaway copy of the Makefile and the packaging scripts the check involves."""
    copy = tmp_path / "checkout"
    (copy / "packaging").mkdir(parents=True)
    for name in ("build_linux.sh", "check_prereqs.sh"):
        shutil.copy2(ROOT / "packaging" / name, copy / "packaging" / name)
    shutil.copy2(ROOT / "Makefile", copy / "Makefile")
    return copy


def run(cmd: list[str], cwd: Path, path: str, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k not in {"CC", "CXX", "PYTHON", "SKIP_DEB"}}
    full_env.update(PATH=path, DECODELAB_PKG_WHEELS=str(cwd / "wheels"),
                    DECODELAB_LOCK=str(cwd / "no-such.lock"), **env)
    proc = subprocess.Popen(cmd, cwd=cwd, env=full_env, text=True, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = proc.communicate(timeout=LIMIT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail(f"{cmd} was still running after {LIMIT_S} s: the check did not stop it")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def the_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    return lines[0]


def apt_packages(line: str) -> list[str]:
    match = re.search(r"apt-get install ([^;]+)", line)
    assert match, line
    return match.group(1).split()


def assert_nothing_built(checkout: Path, stdout: str) -> None:
    assert "==>" not in stdout  # build_linux.sh announces every step with "==>"
    assert not (checkout / "build").exists()
    assert not (checkout / ".venv").exists()
    assert not (checkout / "wheels").exists()


@pytest.mark.parametrize(
    ("tools", "package"),
    [
        (("desktop-file-validate",), "desktop-file-utils"),
        (("cmake",), "cmake"),
        (("cc", "gcc", "clang"), "build-essential"),
        (("objdump",), "binutils"),
    ],
)
def test_a_missing_tool_stops_build_linux_before_anything_is_built(
    checkout: Path, tmp_path: Path, tools: tuple[str, ...], package: str
) -> None:
    result = run([BASH, "packaging/build_linux.sh"], checkout, path_without(tmp_path, *tools))
    assert result.returncode == 1, result.stderr
    line = the_line(result.stderr)
    assert tools[0] in line
    assert package in apt_packages(line)
    assert_nothing_built(checkout, result.stdout)


def test_one_apt_get_line_names_every_missing_package(checkout: Path, tmp_path: Path) -> None:
    path = path_without(tmp_path, "cmake", "desktop-file-validate", "readelf")
    result = run([BASH, "packaging/build_linux.sh"], checkout, path)
    assert result.returncode == 1, result.stderr
    line = the_line(result.stderr)
    for tool in ("cmake", "desktop-file-validate", "readelf"):
        assert tool in line
    assert {"cmake", "desktop-file-utils", "binutils"} <= set(apt_packages(line))
    assert_nothing_built(checkout, result.stdout)


def test_make_package_checks_before_setup(checkout: Path, tmp_path: Path) -> None:
    """`make package` on a fresh clone: the check runs before `setup` compiles anything."""
    if shutil.which("make") is None:
        pytest.skip("no make on this machine")
    result = run(["make", "package"], checkout, path_without(tmp_path, "cmake"))
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if "apt-get install" in line]
    assert len(lines) == 1, result.stderr
    assert "cmake" in apt_packages(lines[0])
    assert_nothing_built(checkout, result.stdout)


def test_skip_deb_needs_no_deb_tools(checkout: Path, tmp_path: Path) -> None:
    path = path_without(tmp_path, "dpkg-deb", "desktop-file-validate")
    result = run([BASH, "packaging/build_linux.sh", "--check-only"], checkout, path,
                 SKIP_DEB="1")
    if result.returncode == 1:
        line = the_line(result.stderr)
        assert "dpkg-deb" not in line and "desktop-file" not in line
        pytest.skip(f"this machine lacks other prerequisites: {line}")
    assert result.returncode == 0, result.stderr
    assert not (checkout / "build").exists()


def test_dpkg_deb_is_named_when_missing(checkout: Path, tmp_path: Path) -> None:
    path = path_without(tmp_path, "dpkg-deb")
    result = run([BASH, "packaging/build_linux.sh"], checkout, path)
    assert result.returncode == 1, result.stderr
    assert "dpkg-deb" in the_line(result.stderr)
    assert_nothing_built(checkout, result.stdout)


def test_everything_present_passes(checkout: Path) -> None:
    result = run([BASH, "packaging/build_linux.sh", "--check-only"], checkout,
                 os.environ.get("PATH", ""))
    if result.returncode == 1:
        pytest.skip(f"this machine lacks prerequisites: {the_line(result.stderr)}")
    assert result.returncode == 0, result.stderr
    assert not (checkout / "build").exists()


def test_readmes_show_every_package_the_check_can_ask_for() -> None:
    listed = subprocess.run([BASH, str(ROOT / "packaging" / "check_prereqs.sh"),
                             "--list-packages"], capture_output=True, text=True, check=True)
    line = f"apt-get install {listed.stdout.strip()}\n"
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    installers = readme.split("## Installers", 1)[1].split("\n## ", 1)[0]
    assert line.replace("\n", "`") in installers
    assert line in (ROOT / "packaging" / "README.md").read_text(encoding="utf-8")

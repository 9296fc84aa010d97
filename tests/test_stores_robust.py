"""Stored files never break the app: damaged history records and library files are set
aside with their reason, writes are atomic and leave no temp file on a full disk, leftovers
of killed writers are swept, an unusable home is one line, a failing log file one line."""

from __future__ import annotations

import errno
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from test_history import sample_result, save

from app import cli
from app.core import llama_log, paths, store
from app.core.errors import DecodeLabError
from app.core.events import RunRequest, RunSettings
from app.core.history import BAD_DIR, History, make_record
from app.core.models.library import Library
from app.core.store import LogFileHandler, StorageError, atomic_write_text, read_json
from app.ui.settings import GuiSettings

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DECODELAB_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    p = tmp_path / "model.gguf"
    p.write_bytes(b"weights" * 1000)
    return p


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """An edit of a record dict: put ``value`` at the dotted ``path``."""

    def edit(d: Any) -> None:
        *parents, last = path.split(".")
        for key in parents:
            d = d[int(key)] if key.isdigit() else d[key]
        d[last] = value

    return edit


SENTINEL = 4242.4242  # replaced in the JSON text by a literal json.dumps cannot write

# (name, edit of the record dict, or None: the file is ``literal``; literal replacing
# SENTINEL, or None; a key word the reason must contain)
BAD_RECORDS: list[tuple[str, Any, str | None, str]] = [
    ("created_huge", _set("created_unix", 1e300), None, "created_unix"),
    ("created_infinity", _set("created_unix", SENTINEL), "Infinity", "Infinity"),
    ("n_generated_text", _set("result.n_generated", "3"), None, "n_generated"),
    ("track_list", _set("result.track", ["x"]), None, "track"),
    # A well-formed id of an unregistered source (a removed plug-in) is kept; a value that
    # cannot be a track id is not.
    ("track_unknown", _set("result.track", "warp drive!"), None, "track"),
    ("comparison_id_number", _set("comparison", {"id": 5, "index": 0, "size": 1,
                                                 "speedup": None,
                                                 "same_text_as_baseline": None}),
     None, "comparison.id"),
    ("event_time_nan", _set("result.events.0.t", SENTINEL), "NaN", "NaN"),
    ("settings_huge", _set("settings.max_tokens", 10**30), None, "max_tokens"),
    ("token_ids_text", _set("result.token_ids", ["a"]), None, "token_ids"),
    ("deep_array", None, "[" * 200_000 + "]" * 200_000, "nested"),
    ("wrong_id", _set("id", "20240101-000000-ffffff"), None, "id"),
]


def _write_bad(root: Path, good_id: str, name: str, edit: Any, literal: str | None) -> Path:
    d = json.loads((root / f"{good_id}.json").read_text(encoding="utf-8"))
    bad_id = f"20240101-000000-{sum(map(ord, name)) * 7919 % 0xFFFFFF:06x}"
    d["id"] = bad_id
    if edit is None:
        text = literal or ""
    else:
        edit(d)
        text = json.dumps(d)
        if literal is not None:
            text = text.replace(str(SENTINEL), literal)
    bad = root / f"{bad_id}.json"
    bad.write_text(text, encoding="utf-8")
    return bad


@pytest.mark.parametrize("name,edit,literal,word", BAD_RECORDS, ids=[r[0] for r in BAD_RECORDS])
def test_wrong_typed_record_is_set_aside_and_the_rest_still_works(
    home: Path, model_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    name: str, edit: Any, literal: str | None, word: str,
) -> None:
    good = save(History(), model_file, "good prompt")
    root = paths.data_dir() / "history"
    bad = _write_bad(root, good, name, edit, literal)

    history = History()
    assert [s.id for s in history.list()] == [good]
    [problem] = history.problems()
    assert problem.file == bad and word in problem.reason
    assert problem.moved_to == root / BAD_DIR / bad.name and problem.moved_to.is_file()
    assert not bad.exists()

    # The command line: list (one line per set-aside file on stderr), show, export.
    bad2 = _write_bad(root, good, name + "2", edit, literal)
    assert cli.main(["history", "list"]) == 0
    out, err = capsys.readouterr()
    assert good in out and bad2.stem not in out
    assert [line for line in err.splitlines() if bad2.name in line] == err.splitlines()
    assert (root / BAD_DIR / bad2.name).is_file()
    assert cli.main(["history", "show", good]) == 0 and "good prompt" in capsys.readouterr().out
    out_json = tmp_path / "x.json"
    assert cli.main(["history", "export", good, "--json", str(out_json)]) == 0
    assert json.loads(out_json.read_text())["runs"][0]["record"]["id"] == good


def test_record_of_a_newer_version_is_skipped_but_left_in_place(
    home: Path, model_file: Path
) -> None:
    good = save(History(), model_file)
    root = paths.data_dir() / "history"
    newer = _write_bad(root, good, "newer", _set("version", 99), None)
    history = History()
    assert [s.id for s in history.list()] == [good]
    [problem] = history.problems()
    assert "newer" in problem.reason and problem.moved_to is None and newer.is_file()


def test_deep_json_is_a_value_error_not_a_recursion_error(tmp_path: Path) -> None:
    f = tmp_path / "deep.json"
    f.write_text("[" * 200_000 + "]" * 200_000)
    with pytest.raises(ValueError, match="nested"):
        read_json(f)
    f.write_text(json.dumps({"a": "[" * 1000, "b": '\\"[' * 100}))
    assert read_json(f) == {"a": "[" * 1000, "b": '\\"[' * 100}  # in strings: not nesting


@pytest.mark.parametrize(
    "content",
    ["[" * 200_000 + "]" * 200_000, '{"folders": [1]}', '{"recent": "m.gguf"}',
     '{"version": true, "folders": []}', '{"folders": ["a\\u0000b"]}', '{"folders": [""]}'],
    ids=["deep", "folder-number", "recent-text", "version-bool", "nul-path", "empty-path"],
)
def test_wrong_typed_library_is_set_aside_with_its_reason(home: Path, content: str) -> None:
    file = paths.config_dir() / "library.json"
    file.write_text(content, encoding="utf-8")
    library = Library.load()
    assert library.folders == [] and library.recent == []
    assert library.set_aside is not None and library.set_aside.file == file
    moved = library.set_aside.moved_to
    assert moved is not None and moved.name.startswith("library.json.bad-")
    assert moved.read_text(encoding="utf-8") == content and not file.exists()


def _fail_with(monkeypatch: pytest.MonkeyPatch, name: str, code: int) -> None:
    def fail(*_a: object) -> None:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(store.os, name, fail)


@pytest.mark.parametrize("call,code,word", [
    ("write", errno.ENOSPC, "disk full"), ("fsync", errno.ENOSPC, "disk full"),
    ("write", errno.EROFS, "read-only"), ("replace", errno.EACCES, "permission"),
])
def test_atomic_write_on_a_failing_disk_leaves_the_old_file_and_no_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, call: str, code: int, word: str
) -> None:
    target = tmp_path / "store" / "file.json"
    atomic_write_text(target, "old")
    with monkeypatch.context() as m:
        _fail_with(m, call, code)
        with pytest.raises(StorageError) as info:
            atomic_write_text(target, "new" * 1000)
    assert isinstance(info.value, DecodeLabError) and isinstance(info.value, OSError)
    message = str(info.value)
    assert "\n" not in message and str(target) in message and word in message
    assert [p.name for p in target.parent.iterdir()] == ["file.json"]
    assert target.read_text() == "old"


def test_every_store_on_a_full_disk(
    home: Path, model_file: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    history, library = History(), Library.load()
    settings = GuiSettings.load()
    inputs = RunRequest(model_file, None, "p", RunSettings(track="lookup"))
    record = make_record(sample_result(), inputs)
    with monkeypatch.context() as m:
        _fail_with(m, "write", errno.ENOSPC)
        with pytest.raises(StorageError, match="disk full"):
            history.save(record)
        with pytest.raises(StorageError, match="disk full"):
            library.add_recent(model_file)
        caplog.set_level(logging.WARNING, logger="app.ui.settings")
        settings.save()  # closing the window must not fail: a logged warning
    assert any("disk full" in r.getMessage() for r in caplog.records)
    assert [p for p in home.rglob("*") if p.is_file()] == []  # no temp file, nothing half


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.mark.parametrize("store_name", ["history", "settings", "library"])
def test_orphan_temp_files_are_swept_at_start(home: Path, store_name: str) -> None:
    folder = paths.data_dir() / "history" if store_name == "history" else paths.config_dir()
    folder.mkdir(parents=True, exist_ok=True)
    name = {"history": "20240101-000000-aaaaaa.json", "settings": "gui.json",
            "library": "library.json"}[store_name]
    dead = folder / f".{name}.{_dead_pid()}.0a1b2c3d.tmp"
    old = folder / f".{name}.{os.getpid()}.0a1b2c3e.tmp"
    live = folder / f".{name}.{os.getpid()}.0a1b2c3f.tmp"
    for p in (dead, old, live):
        p.write_text("{")
    os.utime(old, (time.time() - 120, time.time() - 120))
    {"history": History, "settings": GuiSettings.load, "library": Library.load}[store_name]()
    assert not dead.exists() and not old.exists()
    assert live.exists()  # may belong to a writer that is still running


def test_home_under_a_file_is_one_line_for_history_and_gui(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("DECODELAB_HOME", str(blocker / "sub"))
    with pytest.raises(StorageError, match="a-file"):
        paths.data_dir()
    assert cli.main(["history", "list"]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and str(blocker / "sub") in err
    env = {**os.environ, "DECODELAB_HOME": str(blocker / "sub")}
    proc = subprocess.run([sys.executable, "-m", "app", "gui"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert len(proc.stderr.strip().splitlines()) == 1 and "a-file" in proc.stderr


def test_models_list_works_with_an_uncreatable_models_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("DECODELAB_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DECODELAB_MODELS_DIR", str(blocker / "models"))
    assert cli.main(["models", "list"]) == 0
    assert "smollm2-135m" in capsys.readouterr().out
    with pytest.raises(StorageError, match="a-file"):
        paths.models_dir()


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs Linux's /dev/full")
def test_log_file_on_a_full_disk_says_so_once_and_stops(
    capsys: pytest.CaptureFixture[str]
) -> None:
    handler = LogFileHandler(Path("/dev/full"), max_bytes=0, backup_count=0)
    logger = logging.getLogger("decodelab.test.full-disk")
    logger.propagate = False
    logger.addHandler(handler)
    llama = logging.getLogger("llama.cpp")
    llama.addHandler(handler)
    try:
        for i in range(30):
            logger.warning("record %d", i)
        llama_log._on_log(4, b"an error from llama.cpp\n", None)  # type: ignore[arg-type]
    finally:
        logger.removeHandler(handler)
        llama.removeHandler(handler)
        handler.close()
    err = capsys.readouterr().err
    assert handler.failed
    assert len(err.strip().splitlines()) == 1 and "log file" in err and "disk full" in err
    assert "Logging error" not in err and "Traceback" not in err


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs Linux's /dev/full")
def test_log_failure_while_stderr_is_muted_is_said_once_it_is_back(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # llama-cpp-python points stderr at the null device while it loads a model.
    handler = LogFileHandler(Path("/dev/full"), max_bytes=0, backup_count=0)
    record = logging.LogRecord("llama.cpp", logging.INFO, __file__, 1, "loading", None, None)
    with open(os.devnull, "w") as null, monkeypatch.context() as m:
        m.setattr(sys, "stderr", null)
        handler.handle(record)
    assert handler.failed and capsys.readouterr().err == ""
    handler.handle(record)
    handler.handle(record)
    handler.close()
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "disk full" in err


def _unreadable(m: pytest.MonkeyPatch) -> None:
    """Reading any folder fails with EACCES (root ignores chmod, so it is injected)."""

    def refuse(*_a: object) -> None:
        raise PermissionError(errno.EACCES, "Permission denied")

    m.setattr(os, "scandir", refuse)


def test_unreadable_history_folder_is_one_line_in_the_cli_and_empty_in_the_window(
    home: Path, model_file: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rid = save(History(), model_file)
    root = paths.data_dir() / "history"
    with monkeypatch.context() as m:
        _unreadable(m)
        assert cli.main(["history", "list"]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and str(root) in err and "permission denied" in err
        assert cli.main(["history", "show", rid]) == 1
        assert str(root) in capsys.readouterr().err
        history = History()  # what the window's history tab does: empty, and says why
        assert history.list() == [] and [p.file for p in history.problems()] == [root]
    assert [s.id for s in history.list()] == [rid]  # readable again

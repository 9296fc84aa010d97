"""A model whose layers are on llama.cpp RPC workers: ``HostedModel``, the same interface as
``LoadedModel`` with the decoding in a child process, because llama.cpp aborts the process
that loses a worker (unreachable, or dead mid-run), and that must not be the app.
``open_model`` picks the right one for a ``LoadOptions``.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
import re
import signal
import threading
from collections.abc import Iterator, Sequence
from multiprocessing import shared_memory
from multiprocessing import spawn as mp_spawn
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import llama_cpp
import llama_cpp._internals as llama_internals
import numpy as np

from app.core import llama_log, rpc, rpc_native
from app.core.errors import DecodeLabError, ModelFileError, RefusedError
from app.core.gguf_info import ModelInfo, inspect_model
from app.core.llama_backend import (
    PATCHING,
    ContextFull,
    DecodeAborted,
    LoadedModel,
    LoadOptions,
    validate_expert_count,
)
from app.core.rpc import DevicePlacement, WorkerLost


def open_model(path: str | Path, options: LoadOptions, info: ModelInfo | None = None
               ) -> LoadedModel:
    """The model loaded in this process or, with layers on workers, in a child process."""
    if options.devices:
        return HostedModel(path, options, info)
    return LoadedModel(path, options, info)


class _SharedFlag(threading.Event):
    """A cancel flag the parent sets in shared memory, read by llama.cpp's abort callback."""

    def __init__(self, cell: Any) -> None:
        super().__init__()
        self.cell = cell

    def is_set(self) -> bool:
        return bool(self.cell.value)


class HostedModel(LoadedModel):
    """A ``LoadedModel`` whose decoding runs in a child process: llama.cpp aborts the process
    that loses a worker (unreachable, or dead mid-run), and that must not be the app.

    Here: the vocabulary (a vocabulary-only load), tokens and pieces. There: the model with
    its layers on the workers, the context and the KV cache. Logits come back through shared
    memory (a view valid until the next eval, as for a ``LoadedModel``); the child's
    llama.cpp log is relayed to this process's ``llama.cpp`` logger. If the child ends, the
    call in progress and every later one raise ``WorkerLost`` naming the worker."""

    def __init__(self, path: str | Path, options: LoadOptions, info: ModelInfo | None = None):
        self.path = str(path)
        self.info = info or inspect_model(path)
        self.options = options
        rpc_native.require_rpc()
        rpc.check_placement(options.devices, options.split, options.gpu_layers)
        if options.expert_used_count is not None:
            validate_expert_count(self.info, options.expert_used_count)
        # Before llama.cpp sees an endpoint: an unreachable one would abort (or hang) it.
        workers = rpc.probe_all(list(options.devices))
        if options.gpu_layers < 0:
            rpc.check_memory(workers, options.split, self.info.file_size)
        llama_log.install()
        params = llama_cpp.llama_model_default_params()
        params.vocab_only = True  # no weights, no context: tokens and pieces only
        try:
            self._vocab_model = llama_internals.LlamaModel(
                path_model=self.path, params=params, verbose=False)
        except (ValueError, RuntimeError) as exc:
            detail = llama_log.last_error() or str(exc)
            raise ModelFileError(self.path, f"llama.cpp could not read it: {detail}") from exc
        self.model = self._vocab_model.model
        self.vocab = self._vocab_model.vocab
        self.n_vocab = int(llama_cpp.llama_vocab_n_tokens(self.vocab))
        self._piece_buf = ctypes.create_string_buffer(256)
        self._pieces: dict[int, bytes] = {}
        self.abort_event = threading.Event()
        self._abortable = False
        self.n_past = 0
        self.changes = 0  # as LoadedModel.changes
        self._lost: DecodeLabError | None = None
        self._logits: list[shared_memory.SharedMemory] = []  # the last one is in use
        self._rows = 0
        mp = multiprocessing.get_context("spawn")  # no fork: threads, Qt, llama.cpp state
        self._cancel = mp.RawValue(ctypes.c_byte, 0)
        self._conn, child_end = mp.Pipe()
        self._proc = mp.Process(target=_host, args=(child_end, self.path, options, self._cancel),
                                name="decodelab-hosted-model", daemon=True)
        _start_lean(self._proc)
        child_end.close()
        try:
            meta = self._ask(("load",))[1]
        except BaseException:
            self.close()
            raise
        self.n_ctx, self.n_batch = meta["n_ctx"], meta["n_batch"]
        self._batch_cap = max(self.n_batch, 64)
        self.threads, self.threads_batch = meta["threads"], meta["threads_batch"]
        self.expert_used_count = meta["expert_used_count"]
        self.is_recurrent, self.is_hybrid = meta["is_recurrent"], meta["is_hybrid"]
        self.placement = [DevicePlacement(**d) for d in meta["placement"]]

    # -- the conversation with the child ---------------------------------------------------
    def _ask(self, request: tuple[Any, ...]) -> tuple[Any, ...]:
        if self._lost is not None:
            raise self._lost  # every call after the loss: the same one-line error
        try:
            self._conn.send(request)
            while True:
                # poll returns as soon as the reply (or the end of the pipe) is there.
                if self._conn.poll(0.05):
                    reply: tuple[Any, ...] = self._conn.recv()
                    if reply[0] == "lost":
                        self._fail(reply[1])
                    for level, line in reply[-1]:
                        llama_log.logger.log(level, line)
                    break
                if self._abortable and self.abort_event.is_set():
                    self._cancel.value = 1
                if not self._proc.is_alive() and not self._conn.poll(0):
                    self._fail("")
        except (EOFError, OSError):
            self._fail("")
        kind = reply[0]
        if kind in ("ok", "ready"):
            return reply
        if kind == "aborted":
            self.n_past = reply[1]
            raise DecodeAborted()
        if kind == "full":
            self.n_past = reply[2]
            raise ContextFull(reply[1])
        if kind == "refused":
            raise RefusedError(reply[1])
        if kind == "file":
            raise ModelFileError(self.path, reply[1])
        if kind == "worker":
            raise rpc.WorkerError(reply[1], reply[2])
        raise DecodeLabError(reply[1])

    def _fail(self, said: str) -> None:
        """The child is gone: name the worker(s) no longer listening, or all of them if
        llama.cpp said it lost one (``said``: its abort message)."""
        self._proc.join(timeout=2)
        gone = rpc.unreachable(self.options.devices)
        why = "no longer listening" if gone else "the connection dropped"
        detail = said.rsplit(": ", 1)[-1].strip() if said else ""
        if gone or said:
            self._lost = WorkerLost(", ".join(gone or self.options.devices),
                                    f"lost during the run: {why}"
                                    + (f" (llama.cpp: {detail})" if detail else ""))
        else:  # not a worker: the process was killed, ran out of memory, ...
            self._lost = DecodeLabError(f"the process driving the target on the workers ended "
                                        f"(exit code {self._proc.exitcode}); see the log")
        raise self._lost

    # -- the LoadedModel interface -----------------------------------------------------------
    def tokenize(self, text: str, add_bos: bool, special: bool = True) -> list[int]:
        return list(self._vocab_model.tokenize(text.encode("utf-8"), add_bos, special))

    @contextlib.contextmanager
    def abortable(self, cancel: threading.Event) -> Iterator[None]:
        self.abort_event, self._abortable = cancel, True
        try:
            yield
        finally:
            self.abort_event, self._abortable = threading.Event(), False

    def eval(self, tokens: Sequence[int], n_logits: int) -> np.ndarray:
        if not tokens:
            raise ValueError("nothing to evaluate")
        if self.n_past + len(tokens) > self.n_ctx:
            raise ContextFull(f"context of {self.n_ctx} tokens is full")
        if not 0 <= n_logits <= min(len(tokens), self._batch_cap):
            raise ValueError(f"cannot return {n_logits} logit rows for {len(tokens)} tokens")
        grown = None
        if n_logits > self._rows:
            # Old buffers stay mapped until close: a caller may still hold a view into one.
            self._rows = 1 << max(3, (n_logits - 1).bit_length())
            self._logits.append(shared_memory.SharedMemory(
                create=True, size=self._rows * self.n_vocab * 4))
            grown = self._logits[-1].name
        self._cancel.value = int(self._abortable and self.abort_event.is_set())
        self.changes += 1
        reply = self._ask(("eval", list(tokens), n_logits, self._abortable, grown))
        self.n_past = reply[1]
        buf = self._logits[-1].buf if self._logits else None
        if n_logits == 0 or buf is None:
            return np.empty((0, self.n_vocab), dtype=np.float32)
        return np.ndarray((n_logits, self.n_vocab), dtype=np.float32, buffer=buf)

    def _drop_tail(self, n_keep: int) -> None:
        self.changes += 1
        self.n_past = self._ask(("trim", n_keep))[1]

    def reset(self) -> None:
        self.changes += 1
        self.n_past = self._ask(("reset",))[1]

    @property
    def lost(self) -> bool:
        return self._lost is not None or not self._proc.is_alive()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            if self._proc.is_alive() and self._lost is None:
                self._conn.send(("close",))
            self._proc.join(timeout=5)
        with contextlib.suppress(Exception):
            if self._proc.is_alive():
                self._proc.kill()
                self._proc.join(timeout=5)
        with contextlib.suppress(Exception):
            self._conn.close()
        for shm in self._logits:
            with contextlib.suppress(Exception):
                shm.close()
            with contextlib.suppress(Exception):
                shm.unlink()
        self._logits = []
        with contextlib.suppress(Exception):
            self._vocab_model.close()


_WORKER_BUFFER = re.compile(r"RPC\d+\[([^\]]+)\](?:.*? of size (\d+))?")


def _short_of_memory(lines: list[tuple[int, str]]) -> tuple[str, str] | None:
    """(endpoint, problem) if llama.cpp failed to allocate a buffer on a worker."""
    for level, line in lines:
        m = _WORKER_BUFFER.search(line)
        if level >= logging.ERROR and m and "allocate" in line:
            size = f" of {rpc.gib(int(m[2]))}" if m[2] else ""
            return m[1], (f"too little memory for the layers placed there (llama.cpp could not "
                          f"allocate a buffer{size}): free memory there, start it with a larger "
                          "--mem, give it a smaller --rpc-split share, or keep more layers on "
                          "this machine with --gpu-layers")
    return None


def _start_lean(proc: multiprocessing.process.BaseProcess) -> None:
    """Start a spawned process without it importing the parent's main module: that is what
    multiprocessing does, and a script not written for it (no ``if __name__ ==
    "__main__"``) would run again in the child, the window's would import Qt. The child
    needs only this module, which it imports to find its target."""
    original = mp_spawn.get_preparation_data

    def lean(name: str) -> dict[str, Any]:
        data: dict[str, Any] = original(name)
        data.pop("init_main_from_path", None)
        data.pop("init_main_from_name", None)
        return data

    with PATCHING:
        mp_spawn.get_preparation_data = lean
        try:
            proc.start()
        finally:
            mp_spawn.get_preparation_data = original


class _Relay(logging.Handler):
    """The child's llama.cpp log lines, handed back with each reply."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[tuple[int, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append((record.levelno, record.getMessage()))

    def take(self) -> list[tuple[int, str]]:
        lines, self.lines = self.lines, []
        return lines


def _host(conn: Connection, path: str, options: LoadOptions, cancel: Any) -> None:
    """The child process of a ``HostedModel``: load, then answer until told to close or the
    parent is gone. A lost worker makes llama.cpp abort this process: the abort callback
    tells the parent why first (and replaces llama.cpp's backtrace dump)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl+C is the parent's: it cancels a run

    def on_abort(message: bytes | None) -> None:
        with contextlib.suppress(Exception):
            conn.send(("lost", (message or b"").decode("utf-8", "replace").strip(), []))

    keep = rpc_native.ABORT_CALLBACK(on_abort)
    rpc_native.set_abort_callback(keep)
    relay = _Relay()
    llama_log.logger.addHandler(relay)
    llama_log.logger.setLevel(logging.INFO)
    llama_log.logger.propagate = False  # the parent logs what it relays
    conn.recv()  # "load"
    try:
        model = LoadedModel(path, options)
    except (DecodeLabError, RefusedError) as exc:
        kind = "refused" if isinstance(exc, RefusedError) else "file"
        problem = exc.problem if isinstance(exc, ModelFileError) else str(exc)
        lines = relay.take()
        short = _short_of_memory(lines)
        conn.send(("worker", *short, lines) if short else (kind, problem, lines))
        return
    conn.send(("ready", {
        "n_ctx": model.n_ctx, "n_batch": model.n_batch, "threads": model.threads,
        "threads_batch": model.threads_batch, "expert_used_count": model.expert_used_count,
        "is_recurrent": model.is_recurrent, "is_hybrid": model.is_hybrid,
        "placement": [p.to_dict() for p in model.placement]}, relay.take()))
    flag = _SharedFlag(cancel)
    logits: shared_memory.SharedMemory | None = None
    while True:
        try:
            request = conn.recv()
        except (EOFError, OSError):
            break
        op = request[0]
        if op == "close":
            break
        reply: tuple[Any, ...]
        try:
            if op == "eval":
                _, tokens, n_logits, abortable, grown = request
                if grown:
                    logits = shared_memory.SharedMemory(name=grown)
                with model.abortable(flag) if abortable else contextlib.nullcontext():
                    rows = model.eval(tokens, n_logits)
                if n_logits and logits is not None:
                    out = np.ndarray(rows.shape, dtype=np.float32, buffer=logits.buf)
                    out[...] = rows
                reply = ("ok", model.n_past)
            elif op == "trim":
                model.trim(request[1])
                reply = ("ok", model.n_past)
            else:  # "reset"
                model.reset()
                reply = ("ok", model.n_past)
        except DecodeAborted:
            reply = ("aborted", model.n_past)
        except ContextFull as exc:
            reply = ("full", str(exc), model.n_past)
        except RefusedError as exc:
            reply = ("refused", str(exc))
        except Exception as exc:  # one line to the parent, which raises it there
            reply = ("error", f"{type(exc).__name__}: {exc}")
        conn.send((*reply, relay.take()))
    model.close()

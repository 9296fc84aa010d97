"""A loaded GGUF model and its context, driven through llama.cpp's low-level API.

``Llama`` loads the model, owns the tokenizer and the chat template; decoding goes through
our own batch so that a verification asks for logits only on the rows it needs and the KV
cache can be trimmed back after a rejection. One thread drives one ``LoadedModel``.

A model with layers on llama.cpp RPC workers (``LoadOptions.devices``) is a ``HostedModel``
(hosted_model.py): the same interface, decoding in a child process, because llama.cpp aborts
the process that loses a worker. ``hosted_model.open_model`` picks the right one.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import logging
import os
import re
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import llama_cpp
import llama_cpp._internals as llama_internals
import numpy as np

from app.core import llama_log, rpc, rpc_native
from app.core.errors import DecodeLabError, ModelFileError, RefusedError
from app.core.gguf_info import ModelInfo, inspect_model
from app.core.rpc import DevicePlacement
from app.core.settings_check import VERIFY_BATCH

DECODE_OK, DECODE_NO_SLOT, DECODE_ABORTED = 0, 1, 2
_NO_ABORT = llama_cpp.ggml_abort_callback()  # a NULL callback: nothing to poll


class DecodeAborted(Exception):
    """llama_decode stopped because the abort callback asked it to (a cancel)."""


class ContextFull(Exception):
    """No room left in the KV cache for the batch."""


def physical_cores() -> int:
    """Physical cores (llama.cpp's own default): hyper-threads slow a memory-bound decode."""
    try:
        cores = set()
        block: dict[str, str] = {}
        with open("/proc/cpuinfo") as fh:
            for line in [*fh, ""]:
                if not line.strip():
                    if "core id" in block:
                        cores.add((block.get("physical id"), block["core id"]))
                    block = {}
                elif ":" in line:
                    k, v = line.split(":", 1)
                    block[k.strip()] = v.strip()
        if cores:
            return len(cores)
    except OSError:
        pass
    return max(1, (os.cpu_count() or 2) // 2)


log = logging.getLogger("app.core.llama_backend")


@dataclass
class LoadOptions:
    n_ctx: int = 4096
    n_batch: int = VERIFY_BATCH  # a verification batch must fit: see settings_check
    threads: int | None = None
    threads_batch: int | None = None
    expert_used_count: int | None = None
    # Layers llama.cpp offloads (-1 all): to the GPU, or with ``devices`` to the workers.
    gpu_layers: int = 0
    # llama.cpp RPC workers ("host:port") that hold the offloaded layers, and their shares
    # of them (one per worker; empty: in proportion to their free memory, llama.cpp's rule).
    devices: tuple[str, ...] = ()
    split: tuple[float, ...] = ()


def round_ctx(n_ctx: int) -> int:
    """llama.cpp rounds n_ctx up to a multiple of 256 while Llama sizes from the request."""
    return max(256, (n_ctx + 255) // 256 * 256)


class LoadedModel:
    """A model, its context and a reusable batch. Not thread-safe: one driver thread."""

    def __init__(self, path: str | Path, options: LoadOptions, info: ModelInfo | None = None):
        self.path = str(path)
        self.info = info or inspect_model(path)
        self.options = options
        overrides: dict[str, bool | int | float | str] = {}
        count = options.expert_used_count
        if count is not None:
            validate_expert_count(self.info, count)
            overrides[f"{self.info.architecture}.expert_used_count"] = int(count)
        self.expert_used_count = count if count is not None else self.info.expert_used_count
        self.threads = options.threads or physical_cores()
        self.threads_batch = options.threads_batch or self.threads
        n_ctx = round_ctx(min(options.n_ctx, self.info.context_length or options.n_ctx))
        llama_log.install()
        # The workers' devices, NULL-terminated, for llama_model_params.devices: llama.cpp
        # keeps the pointer, so the array lives as long as the model.
        workers = [d for ep in options.devices for d in rpc_native.add_server(ep)]
        self._devices = (ctypes.c_void_p * (len(workers) + 1))(*[d.handle for d in workers])
        self.placement: list[DevicePlacement] = []
        try:
            placed = _model_params(self._devices if workers else None)
            with placed, _LoadLog(bool(workers)) as load_log:
                self.llama = llama_cpp.Llama(
                    self.path,
                    n_ctx=n_ctx,
                    n_batch=options.n_batch,
                    n_ubatch=options.n_batch,
                    n_threads=self.threads,
                    n_threads_batch=self.threads_batch,
                    n_gpu_layers=options.gpu_layers,
                    tensor_split=list(options.split) or None,
                    kv_overrides=overrides or None,
                    logits_all=False,
                    # llama.cpp's own tools default to flash attention where the CPU backend
                    # supports it: the same kernels make the comparison with them fair.
                    flash_attn=True,
                    verbose=False,
                )
        except (ValueError, RuntimeError) as exc:
            detail = llama_log.last_error() or str(exc)
            raise ModelFileError(self.path, f"llama.cpp could not load it: {detail}") from exc
        if workers:
            n_layers = int(llama_cpp.llama_model_n_layer(self.llama.model)) + 1  # + output
            self.placement = _placement(load_log.lines, workers, n_layers)
        self.ctx = self.llama.ctx
        self.model = self.llama.model
        self.vocab = llama_cpp.llama_model_get_vocab(self.model)
        self.n_vocab = int(llama_cpp.llama_vocab_n_tokens(self.vocab))
        self.n_ctx = int(llama_cpp.llama_n_ctx(self.ctx))
        self.n_batch = options.n_batch
        self.is_recurrent = bool(llama_cpp.llama_model_is_recurrent(self.model))
        self.is_hybrid = bool(llama_cpp.llama_model_is_hybrid(self.model))
        self._batch = llama_cpp.llama_batch_init(max(self.n_batch, 64), 0, 1)
        self._batch_cap = max(self.n_batch, 64)
        self._piece_buf = ctypes.create_string_buffer(256)
        self._pieces: dict[int, bytes] = {}
        # llama_decode polls this during long batches: setting it cancels a prefill.
        self.abort_event = threading.Event()
        self._abort_cb = llama_cpp.ggml_abort_callback(lambda _data: self.abort_event.is_set())
        self.n_past = 0
        # Counts every change of the cache (decode, trim, reset): whoever records what the
        # cache holds (drafting.base.hold) can tell that someone changed it since.
        self.changes = 0
        self._warm_up()

    def _warm_up(self) -> None:
        """One untimed decode, then an empty cache, as llama.cpp's own tools do after a load.

        The first decode touches every weight page of the mapped file (and allocates the
        compute buffers): without this the first run after a load paid for that in its own
        timings, so whichever configuration ran first after a model was loaded started at a
        disadvantage (how much was not separated from other effects: benchmarks/RESULTS.md,
        session 9). All experts of an MoE are touched (``llama_set_warmup``), not only
        those one token routes to."""
        vocab = self.vocab
        tokens = [t for t in (llama_cpp.llama_vocab_bos(vocab), llama_cpp.llama_vocab_eos(vocab))
                  if t >= 0] or [0]
        llama_cpp.llama_set_warmup(self.ctx, True)
        try:
            self._decode(tokens, True)
            llama_cpp.llama_synchronize(self.ctx)
        except DecodeLabError as exc:  # a model that cannot decode fails on its first run
            log.debug("warm-up decode failed: %s", exc)
        finally:
            llama_cpp.llama_set_warmup(self.ctx, False)
            self.reset()

    # -- tokens -------------------------------------------------------------------------
    def tokenize(self, text: str, add_bos: bool, special: bool = True) -> list[int]:
        return list(self.llama.tokenize(text.encode("utf-8"), add_bos=add_bos, special=special))

    def piece(self, token: int) -> bytes:
        cached = self._pieces.get(token)
        if cached is not None:
            return cached
        n = llama_cpp.llama_token_to_piece(self.vocab, token, self._piece_buf, 256, 0, False)
        if n < 0:
            buf = ctypes.create_string_buffer(-n)
            n = llama_cpp.llama_token_to_piece(self.vocab, token, buf, -n, 0, False)
            raw = buf.raw[:n]
        else:
            raw = self._piece_buf.raw[:n]
        self._pieces[token] = raw
        return raw

    def is_eog(self, token: int) -> bool:
        return bool(llama_cpp.llama_vocab_is_eog(self.vocab, token))

    # -- decoding -----------------------------------------------------------------------
    @contextlib.contextmanager
    def abortable(self, cancel: threading.Event) -> Iterator[None]:
        """Let ``cancel`` interrupt llama_decode inside this block (for long prefills).

        The callback runs hundreds of times per decode, each a trip into Python, so it is
        installed only around batches long enough to need it.
        """
        self.abort_event = cancel
        llama_cpp.llama_set_abort_callback(self.ctx, self._abort_cb, None)
        try:
            yield
        finally:
            llama_cpp.llama_set_abort_callback(self.ctx, _NO_ABORT, None)
            self.abort_event = threading.Event()

    def eval(self, tokens: Sequence[int], n_logits: int) -> np.ndarray:
        """Append ``tokens`` at ``n_past``; return logits of the last ``n_logits`` tokens.

        The returned array is a view into llama.cpp's buffer, valid until the next eval.
        """
        if not tokens:
            raise ValueError("nothing to evaluate")
        if self.n_past + len(tokens) > self.n_ctx:
            raise ContextFull(f"context of {self.n_ctx} tokens is full")
        if not 0 <= n_logits <= min(len(tokens), self._batch_cap):
            raise ValueError(f"cannot return {n_logits} logit rows for {len(tokens)} tokens")
        # Everything before the logit rows goes in full chunks; the rows themselves come
        # last, in one chunk, so that llama.cpp's output buffer holds all of them.
        first_logit = len(tokens) - n_logits
        # A prefill on RPC workers: llama_decode returns once the graph is sent, and nothing
        # waits for the workers' compute (llama_synchronize only flushes the send queue), so
        # a 336-token prefill returned in 6 ms and its 2.6 s landed in the first answer
        # token's timing. Reading the last token's logits back makes the wait part of it.
        wait_rows = 1 if n_logits == 0 and self.options.devices else 0
        end = first_logit - wait_rows
        for start in range(0, end, self._batch_cap):
            self._decode(tokens[start : min(start + self._batch_cap, end)], False)
        if n_logits == 0:
            if wait_rows:
                self._decode(tokens[end:], True)
                llama_cpp.llama_get_logits(self.ctx)  # waits for the rows, so for the compute
            else:
                llama_cpp.llama_synchronize(self.ctx)  # the same wait for local backends
            return np.empty((0, self.n_vocab), dtype=np.float32)
        self._decode(tokens[first_logit:], True)
        ptr = llama_cpp.llama_get_logits(self.ctx)
        return np.ctypeslib.as_array(ptr, shape=(n_logits, self.n_vocab))

    def _decode(self, chunk: Sequence[int], want_logits: bool) -> None:
        b = self._batch
        for i, tok in enumerate(chunk):
            b.token[i] = tok
            b.pos[i] = self.n_past + i
            b.n_seq_id[i] = 1
            b.seq_id[i][0] = 0
            b.logits[i] = want_logits
        b.n_tokens = len(chunk)
        self.changes += 1
        rc = llama_cpp.llama_decode(self.ctx, b)
        if rc == DECODE_ABORTED:
            # A partly decoded batch may have left cells behind: drop them.
            self._drop_tail(self.n_past)
            raise DecodeAborted()
        if rc == DECODE_NO_SLOT:
            raise ContextFull(f"no KV slot for {len(chunk)} tokens at {self.n_past}")
        if rc != DECODE_OK:
            raise DecodeLabError(f"llama_decode failed with code {rc}")
        self.n_past += len(chunk)

    def trim(self, n_keep: int) -> None:
        """Drop every cached position >= n_keep. Refused for memories that cannot do it."""
        if n_keep >= self.n_past:
            return
        self._drop_tail(n_keep)

    def _drop_tail(self, n_keep: int) -> None:
        self.changes += 1
        mem = llama_cpp.llama_get_memory(self.ctx)
        if not llama_cpp.llama_memory_seq_rm(mem, 0, n_keep, -1):
            raise RefusedError(
                f"{self.info.file_name}: llama.cpp cannot roll back this model's memory "
                "(recurrent state); speculation is impossible"
            )
        self.n_past = n_keep

    def reset(self) -> None:
        self.changes += 1
        mem = llama_cpp.llama_get_memory(self.ctx)
        llama_cpp.llama_memory_clear(mem, True)
        self.n_past = 0

    @property
    def lost(self) -> bool:
        """Whether the model can no longer decode (a hosted model that lost a worker)."""
        return False

    def close(self) -> None:
        with contextlib.suppress(Exception):
            llama_cpp.llama_batch_free(self._batch)
        with contextlib.suppress(Exception):
            self.llama.close()


def validate_expert_count(info: ModelInfo, count: int) -> None:
    """llama.cpp aborts the process on a bad count: refuse it here instead."""
    if not info.is_moe:
        raise RefusedError(
            f"{info.file_name} is not a Mixture-of-Experts model: expert count cannot be set"
        )
    if not 1 <= count <= info.expert_count:
        raise RefusedError(
            f"expert count {count} out of range: {info.file_name} has "
            f"{info.expert_count} experts (allowed 1…{info.expert_count})"
        )


# -- layers on llama.cpp RPC workers --------------------------------------------------------

PATCHING = threading.Lock()  # one library function swapped at a time


@functools.cache
def has_amx_kernels() -> bool:
    """Was the loaded llama.cpp built with its AMX kernels? They crash on the first decode
    on some Sapphire Rapids machines (ggml-org/llama.cpp#20824; seen on this project's CI
    machines), and a model only uses them through llama.cpp's "extra" weight buffers."""
    try:
        found = "AMX" in llama_cpp.llama_print_system_info().decode(errors="replace")
    except (AttributeError, OSError):
        return False
    if found:
        log.warning(
            "llama.cpp was built with AMX kernels, which crash on some CPUs: its extra "
            "weight buffers are off (slower Q4 kernels); `make setup` builds without AMX")
    return found


@contextlib.contextmanager
def _model_params(devices: ctypes.Array[ctypes.c_void_p] | None) -> Iterator[None]:
    """For one ``Llama(...)`` in this thread, set ``llama_model_params.devices`` and, where
    llama.cpp has AMX kernels, turn its extra weight buffers off (AMX and repacking alike:
    slower Q4 kernels on those builds, but no crash; ``make setup`` builds without AMX).

    ``Llama`` takes neither (its ``rpc_servers`` is ignored) and builds its params inside
    its constructor: for that call, the model wrapper it constructs is swapped for one that
    sets the fields first. Other threads constructing models meanwhile are not touched."""
    no_extra = has_amx_kernels()
    if devices is None and not no_extra:
        yield
        return
    original = llama_internals.LlamaModel
    owner = threading.get_ident()
    address = ctypes.addressof(devices) if devices is not None else None

    class _Placed(original):  # type: ignore[misc, valid-type]
        def __init__(self, *, path_model: str, params: Any, verbose: bool = True) -> None:
            if threading.get_ident() == owner:
                if address is not None:
                    params.devices = address
                if no_extra:
                    params.use_extra_bufts = False
            super().__init__(path_model=path_model, params=params, verbose=verbose)

    with PATCHING:
        llama_internals.LlamaModel = _Placed  # type: ignore[misc]
        try:
            yield
        finally:
            llama_internals.LlamaModel = original  # type: ignore[misc]


_LAYER_LINE = re.compile(r"layer\s+(\d+) assigned to device ([^,\s]+)")
_BUFFER_LINE = re.compile(r"load_tensors:\s+(\S+) model buffer size =\s+([\d.]+) MiB")


class _LoadLog(logging.Handler):
    """llama.cpp's own account of a load: which device got each layer (a debug line) and the
    weights each buffer holds. Lowers the ``llama.cpp`` logger's level for the load only."""

    def __init__(self, active: bool) -> None:
        super().__init__(logging.DEBUG)
        self.active = active
        self.lines: list[str] = []
        self._level = logging.NOTSET

    def emit(self, record: logging.LogRecord) -> None:
        line = record.getMessage()
        if "assigned to device" in line or "model buffer size" in line:
            self.lines.append(line)

    def __enter__(self) -> _LoadLog:
        if self.active:
            self._level = llama_log.logger.level
            llama_log.logger.setLevel(logging.DEBUG)
            llama_log.logger.addHandler(self)
        return self

    def __exit__(self, *_exc: object) -> None:
        if self.active:
            llama_log.logger.removeHandler(self)
            llama_log.logger.setLevel(self._level)


def _placement(lines: list[str], workers: list[rpc_native.Device],
               n_layers: int) -> list[DevicePlacement]:
    """Where llama.cpp put each layer, read from its load log, with each device's memory."""
    device_of: dict[int, str] = {}
    weights: dict[str, float] = {}
    for line in lines:
        if m := _LAYER_LINE.search(line):
            device_of[int(m[1])] = m[2]
        elif m := _BUFFER_LINE.search(line):
            # "RPC0[host:port]" is a worker's buffer; "CPU_Mapped", "CPU_REPACK" are local.
            where = m[1][m[1].find("[") + 1 : -1] if m[1].endswith("]") else rpc.LOCAL
            weights[where] = weights.get(where, 0.0) + float(m[2])
    out = []
    for name, endpoint, device in [("CPU", rpc.LOCAL, None), *[(d.name, d.description, d)
                                                               for d in workers]]:
        held = sorted(i for i, n in device_of.items() if n == name and i < n_layers)
        memory = device.memory() if device is not None else None
        out.append(DevicePlacement(
            endpoint, name, len(held), held[0] if held else None, held[-1] if held else None,
            round(weights.get(endpoint, 0.0) * 2**20),
            memory.free if memory else None, memory.total if memory else None))
    return out

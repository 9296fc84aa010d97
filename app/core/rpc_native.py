"""llama.cpp's RPC backend through ctypes: the parts of libggml llama-cpp-python does not
bind — whether the build has the backend, the devices a worker serves (client side:
``add_server``; worker side: ``serving_devices``, ``start_server``), their memory, and the
abort hook. The protocol-level side (endpoints, probes over a plain socket, placement) is
rpc.py, which never loads llama.cpp.
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from app.core.errors import DecodeLabError
from app.core.rpc import NO_RPC, DeviceMemory, WorkerError

_DEV_CPU, _DEV_ACCEL, _DEV_META = 0, 3, 4  # enum ggml_backend_dev_type

_vp = ctypes.c_void_p
_START_SERVER = ctypes.CFUNCTYPE(None, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_size_t,
                                 ctypes.c_size_t, ctypes.POINTER(_vp))
_ADD_SERVER = ctypes.CFUNCTYPE(_vp, ctypes.c_char_p)
ABORT_CALLBACK = ctypes.CFUNCTYPE(None, ctypes.c_char_p)


class _Ggml:
    """The parts of libggml llama-cpp-python does not bind: backend registry and devices."""

    def __init__(self) -> None:
        from llama_cpp._ggml import libggml  # libggml, with libggml-base among its dependencies

        lib = self.lib = libggml
        for name, res, args in [
            ("ggml_backend_reg_by_name", _vp, [ctypes.c_char_p]),
            ("ggml_backend_reg_count", ctypes.c_size_t, []),
            ("ggml_backend_load_all", None, []),
            ("ggml_backend_reg_get_proc_address", _vp, [_vp, ctypes.c_char_p]),
            ("ggml_backend_reg_dev_count", ctypes.c_size_t, [_vp]),
            ("ggml_backend_reg_dev_get", _vp, [_vp, ctypes.c_size_t]),
            ("ggml_backend_dev_count", ctypes.c_size_t, []),
            ("ggml_backend_dev_get", _vp, [ctypes.c_size_t]),
            ("ggml_backend_dev_type", ctypes.c_int, [_vp]),
            ("ggml_backend_dev_name", ctypes.c_char_p, [_vp]),
            ("ggml_backend_dev_description", ctypes.c_char_p, [_vp]),
            ("ggml_backend_dev_memory", None, [_vp, ctypes.POINTER(ctypes.c_size_t),
                                               ctypes.POINTER(ctypes.c_size_t)]),
            ("ggml_set_abort_callback", _vp, [ABORT_CALLBACK]),
        ]:
            fn = getattr(lib, name)
            fn.restype, fn.argtypes = res, args
        if not lib.ggml_backend_reg_count():
            lib.ggml_backend_load_all()  # a build with loadable backends (GGML_BACKEND_DL)
        self.reg = lib.ggml_backend_reg_by_name(b"RPC")

    def proc(self, name: str) -> int:
        address = self.lib.ggml_backend_reg_get_proc_address(self.reg, name.encode())
        if not address:
            raise DecodeLabError(f"llama.cpp's RPC backend has no {name}")
        return int(address)


_ggml: list[_Ggml] = []


def _lib() -> _Ggml:
    if not _ggml:
        _ggml.append(_Ggml())
    return _ggml[0]


def supports_rpc() -> bool:
    """Whether this llama-cpp-python was built with the RPC backend."""
    try:
        import llama_cpp

        return bool(llama_cpp.llama_supports_rpc()) and bool(_lib().reg)
    except (ImportError, OSError, AttributeError):
        return False


def require_rpc() -> None:
    """DecodeLabError (exit 1: the installation, not the request) without the RPC backend."""
    if not supports_rpc():
        raise DecodeLabError(NO_RPC)


@dataclass(frozen=True)
class Device:
    """A ggml device: ``handle`` goes into ``llama_model_params.devices``."""

    handle: int
    name: str  # llama.cpp's device name: "CPU", "RPC0", ...
    description: str  # an RPC device's description is its endpoint

    def memory(self) -> DeviceMemory:
        """Free and total bytes (for an RPC device: ggml_backend_rpc_get_device_memory over
        this process's connection to the worker)."""
        free, total = ctypes.c_size_t(), ctypes.c_size_t()
        _lib().lib.ggml_backend_dev_memory(self.handle, ctypes.byref(free), ctypes.byref(total))
        return DeviceMemory(free.value, total.value)


def _device(handle: int) -> Device:
    lib = _lib().lib
    return Device(int(handle), lib.ggml_backend_dev_name(handle).decode(),
                  lib.ggml_backend_dev_description(handle).decode())


def add_server(endpoint: str) -> list[Device]:
    """The worker's devices, as llama.cpp's client sees them (kept for the process's life).

    llama.cpp aborts the process if the worker cannot be reached: ``probe`` it first."""
    require_rpc()
    reg = _ADD_SERVER(_lib().proc("ggml_backend_rpc_add_server"))(endpoint.encode())
    if not reg:
        raise WorkerError(endpoint, "serves no device")
    lib = _lib().lib
    return [_device(lib.ggml_backend_reg_dev_get(reg, i))
            for i in range(lib.ggml_backend_reg_dev_count(reg))]


def serving_devices() -> list[Device]:
    """What a worker on this machine serves, as llama.cpp's rpc-server chooses: every GPU,
    else the CPU."""
    lib = _lib().lib
    handles = [lib.ggml_backend_dev_get(i) for i in range(lib.ggml_backend_dev_count())]
    gpus = [h for h in handles
            if lib.ggml_backend_dev_type(h) not in (_DEV_CPU, _DEV_ACCEL, _DEV_META)]
    return [_device(h) for h in (gpus or [h for h in handles
                                          if lib.ggml_backend_dev_type(h) == _DEV_CPU][:1])]


def start_server(endpoint: str, devices: Sequence[Device], threads: int,
                 cache_dir: str | None) -> None:
    """Serve ``devices`` on ``endpoint``: blocks inside llama.cpp for good (returns only if
    it cannot listen). Python signal handlers do not run meanwhile: call it from a thread."""
    require_rpc()
    array = (_vp * len(devices))(*[d.handle for d in devices])
    start = _START_SERVER(_lib().proc("ggml_backend_rpc_start_server"))
    start(endpoint.encode(), cache_dir.encode() if cache_dir else None, threads,
          len(devices), array)


def set_abort_callback(callback: Any) -> None:
    """Have llama.cpp call ``callback`` (an ``ABORT_CALLBACK``) with its message before it
    aborts the process, instead of printing a backtrace; the caller keeps it alive."""
    _lib().lib.ggml_set_abort_callback(callback)

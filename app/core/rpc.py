"""llama.cpp's RPC backend: workers on other machines that hold and compute a model's layers.

A worker (``decodelab worker``) serves its devices with ggml's own RPC server; a client adds
each worker's devices to ``llama_model_params.devices`` and llama.cpp places layers on them.
llama-cpp-python binds neither side (its ``rpc_servers`` argument is accepted and ignored),
so ``rpc_native`` reaches ``libggml`` through ctypes; this module speaks the protocol itself
and never loads llama.cpp.

llama.cpp aborts the whole process when a worker cannot be reached, answers with another
protocol version or drops the connection. So every endpoint is checked here first, in plain
Python with timeouts (``probe``: TCP connect, the protocol's HELLO, device count and memory),
before llama.cpp is given it; a model placed on workers then runs in a child process
(``hosted_model.HostedModel``), whose abort ends that process and not the app.

The protocol has no authentication: a worker must listen on loopback, a private network or
the end of an SSH tunnel, never on an open network.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
import threading
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

from app.core.errors import DecodeLabError, RefusedError

DEFAULT_PORT = 50052
# What llama.cpp's ggml-rpc.h says in llama-cpp-python 0.3.36 (RPC_PROTO_*_VERSION); a worker
# must speak the same major version and no newer minor one (its own check in
# negotiate_hello). The library exports no way to read it: tests check it against a worker.
PROTOCOL = (7, 0, 0)
# Connect, handshake and memory query of one worker; workers are probed in parallel, so an
# unreachable one is reported within this time whatever their number.
PROBE_TIMEOUT = 3.0
REBUILD_HINT = ("rebuild with: CMAKE_ARGS=-DGGML_RPC=on pip install --force-reinstall "
                "--no-cache-dir llama-cpp-python==0.3.36")
NO_RPC = f"this llama-cpp-python was built without the RPC backend (remote workers); {REBUILD_HINT}"

# The wire format (ggml-rpc.cpp): request = command byte, u64 size, payload; reply = u64
# size, payload. All little-endian, packed.
_CMD_GET_DEVICE_MEMORY = 11
_CMD_HELLO = 14
_CMD_DEVICE_COUNT = 15
_CONN_CAPS = 24  # RPC_CONN_CAPS_SIZE: all zero = plain TCP, no RDMA


class WorkerError(DecodeLabError):
    """A worker cannot be used: unreachable, busy, another protocol version, too little
    memory, or lost during a run. The message names the endpoint."""

    def __init__(self, endpoint: object, problem: str) -> None:
        super().__init__(f"worker {endpoint}: {problem}")
        self.endpoint = str(endpoint)
        self.problem = problem


# -- endpoints ------------------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class Endpoint:
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def is_loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False


def parse_endpoint(text: str, default_port: int | None = None) -> Endpoint:
    """``HOST:PORT`` (``HOST`` alone with a default port); RefusedError saying what is wrong.

    ggml's RPC transport is IPv4 only (AF_INET, gethostbyname): IPv6 literals are refused
    here rather than failing inside llama.cpp."""
    raw = text.strip()
    if not raw:
        raise RefusedError("empty worker address: expected HOST:PORT")
    if raw.startswith("[") or raw.count(":") > 1:
        raise RefusedError(f"{raw}: IPv6 addresses are not supported by llama.cpp's RPC "
                           "backend; use an IPv4 address or a host name")
    host, sep, port_text = raw.rpartition(":")
    if not sep:
        if default_port is None:
            raise RefusedError(f"{raw}: expected HOST:PORT (e.g. 192.168.1.20:{DEFAULT_PORT})")
        host, port_text = raw, str(default_port)
    if not host or any(c.isspace() for c in host):
        raise RefusedError(f"{raw}: expected HOST:PORT with a host name or IPv4 address")
    try:
        port = int(port_text)
    except ValueError:
        raise RefusedError(f"{raw}: port {port_text!r} is not a number") from None
    if not 1 <= port <= 65535:
        raise RefusedError(f"{raw}: port {port} is out of range 1…65535")
    return Endpoint(host, port)


def parse_endpoints(items: str | Iterable[str]) -> list[Endpoint]:
    """Endpoints from ``"A:1,B:2"`` or a list of such strings; a repeated one is refused
    (llama.cpp would place two devices on one connection)."""
    parts = items.split(",") if isinstance(items, str) else [p for i in items for p in i.split(",")]
    found: list[Endpoint] = []
    for part in parts:
        if not part.strip():
            continue
        ep = parse_endpoint(part)
        if ep in found:
            raise RefusedError(f"worker {ep} is given twice")
        found.append(ep)
    if not found:
        raise RefusedError("no worker address given: expected HOST:PORT[,HOST:PORT…]")
    return found


def check_placement(endpoints: Sequence[str], split: Sequence[float], layers: int) -> None:
    """Refuse a placement that cannot be meant: bad addresses, a split that does not give one
    share per worker, or workers that would hold no layer."""
    if not endpoints:
        if split:
            raise RefusedError("rpc-split needs workers (--rpc)")
        return
    eps = parse_endpoints(endpoints)
    if split:
        if len(split) != len(eps):
            raise RefusedError(f"rpc-split gives {len(split)} shares for {len(eps)} workers: "
                               "give one per worker, in the order of --rpc")
        if any(not s >= 0 for s in split) or not sum(split) > 0:
            raise RefusedError("rpc-split: shares must be numbers >= 0, not all 0")
    if layers == 0:
        raise RefusedError("gpu-layers 0 keeps every layer of the target on this machine: "
                           "with workers give the number of layers they hold, or -1 for all")


# -- probing a worker (plain Python: never blocks or aborts) ----------------------------------


@dataclass(frozen=True)
class DeviceMemory:
    free: int
    total: int


@dataclass(frozen=True)
class WorkerStatus:
    """What a worker said when probed."""

    endpoint: str
    version: tuple[int, int, int]
    devices: tuple[DeviceMemory, ...]
    seconds: float  # connect + handshake + queries: roughly a few network round trips

    @property
    def free(self) -> int:
        return sum(d.free for d in self.devices)

    @property
    def total(self) -> int:
        return sum(d.total for d in self.devices)

    def summary(self) -> str:
        n = len(self.devices)
        return (f"reachable · RPC {'.'.join(map(str, self.version))} · {n} device"
                f"{'s' if n != 1 else ''} · {gib(self.free)} free of {gib(self.total)} · "
                f"answered in {self.seconds * 1000:.0f} ms")


def gib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def probe(endpoint: Endpoint | str, timeout: float = PROBE_TIMEOUT) -> WorkerStatus:
    """Connect, shake hands, read device count and memory; WorkerError within ``timeout``.

    A worker serves one client at a time: one that is busy with another client accepts the
    connection but does not answer, which is reported as such."""
    ep = parse_endpoint(endpoint) if isinstance(endpoint, str) else endpoint
    start = time.monotonic()
    address = _resolve(ep, timeout)
    try:
        sock = socket.create_connection((address, ep.port), timeout=timeout)
    except TimeoutError:
        raise WorkerError(ep, f"no answer within {timeout:g} s (wrong address, machine off, or "
                              "a firewall drops the port)") from None
    except ConnectionRefusedError:
        raise WorkerError(ep, "connection refused: no worker listens on that port (start one "
                              "there with: decodelab worker)") from None
    except OSError as exc:
        raise WorkerError(ep, f"cannot connect: {exc.strerror or exc}") from None
    with sock:
        sock.settimeout(max(0.5, timeout - (time.monotonic() - start)))
        try:
            version = _hello(sock)
            if version[0] != PROTOCOL[0] or version[1] > PROTOCOL[1]:
                raise WorkerError(ep, f"speaks RPC protocol {_v(version)}, this build "
                                      f"{_v(PROTOCOL)}: install the same llama-cpp-python "
                                      "version on both machines")
            (count,) = struct.unpack("<I", _call(sock, _CMD_DEVICE_COUNT, b"", 4))
            devices = tuple(DeviceMemory(*struct.unpack("<QQ", _call(
                sock, _CMD_GET_DEVICE_MEMORY, struct.pack("<I", i), 16))) for i in range(count))
        except TimeoutError:
            raise WorkerError(ep, "connected, but no answer: a worker serves one client at a "
                                  "time and this one may be busy with another") from None
        except (OSError, EOFError, struct.error, ValueError):
            raise WorkerError(ep, "closed the connection during the handshake: not a "
                                  "llama.cpp RPC worker, or another protocol version") from None
    if not devices:
        raise WorkerError(ep, "serves no device")
    return WorkerStatus(str(ep), version, devices, time.monotonic() - start)


def _resolve(ep: Endpoint, timeout: float) -> str:
    """The host's IPv4 address, looked up on a daemon thread: a socket timeout does not
    bound a name lookup, which can take many seconds when no DNS server answers."""
    try:
        return str(ipaddress.IPv4Address(ep.host))
    except ValueError:
        pass
    found: list[str | BaseException] = []
    done = threading.Event()

    def lookup() -> None:
        try:
            found.append(socket.gethostbyname(ep.host))  # what llama.cpp's client uses
        except OSError as exc:
            found.append(exc)
        done.set()

    threading.Thread(target=lookup, name=f"resolve {ep.host}", daemon=True).start()
    if not done.wait(timeout):
        raise WorkerError(ep, f"the name {ep.host} was not resolved within {timeout:g} s")
    if isinstance(found[0], BaseException):
        exc = found[0]
        raise WorkerError(ep, f"unknown host ({getattr(exc, 'strerror', None) or exc})")
    return found[0]


def probe_all(endpoints: Sequence[Endpoint | str],
              timeout: float = PROBE_TIMEOUT) -> list[WorkerStatus]:
    """Probe every worker at once; one WorkerError naming each that failed."""
    if not endpoints:
        return []
    with ThreadPoolExecutor(max_workers=min(16, len(endpoints))) as pool:
        futures = [pool.submit(probe, ep, timeout) for ep in endpoints]
    found: list[WorkerStatus] = []
    errors: list[WorkerError] = []
    for f in futures:
        exc = f.exception()
        if isinstance(exc, WorkerError):
            errors.append(exc)
        elif exc is not None:
            raise exc
        else:
            found.append(f.result())
    if errors:
        first = errors[0]
        first.args = ("; ".join(str(e) for e in errors),)  # still one line, each named
        raise first
    return found


def check_memory(workers: Sequence[WorkerStatus], split: Sequence[float], need: int) -> None:
    """Refuse before loading when a worker's share of ``need`` bytes (the model file, when
    every layer goes to the workers) exceeds its free memory: llama.cpp shares layers by
    ``split``, or by free memory. Weights only: cache and buffers come on top."""
    shares = list(split) or [w.free for w in workers]
    total = sum(shares)
    for w, share in zip(workers, shares, strict=True):
        mine = int(need * share / total) if total else need
        if mine > w.free:
            raise WorkerError(w.endpoint, f"{gib(w.free)} free, and the layers placed there "
                              f"need about {gib(mine)}: free memory there, give it a smaller "
                              "--rpc-split share, or keep layers on this machine with "
                              "--gpu-layers")


class WorkerLost(WorkerError):
    """A worker was lost while a model placed on it was in use (it died, or the connection
    dropped): the model must be loaded again; what was generated before stands."""


def unreachable(endpoints: Sequence[str], timeout: float = 1.0) -> list[str]:
    """Those of ``endpoints`` where nothing accepts a connection any more."""
    if not endpoints:
        return []
    with ThreadPoolExecutor(max_workers=min(16, len(endpoints))) as pool:
        ok = list(pool.map(lambda ep: reachable(ep, timeout), endpoints))
    return [ep for ep, up in zip(endpoints, ok, strict=True) if not up]


def reachable(endpoint: str, timeout: float = 1.0) -> bool:
    """Whether something accepts TCP connections there (a busy worker does too)."""
    try:
        ep = parse_endpoint(endpoint)
        with socket.create_connection((ep.host, ep.port), timeout=timeout):
            return True
    except (OSError, RefusedError):
        return False


def _v(version: Sequence[int]) -> str:
    return ".".join(map(str, version))


def _recv(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError("connection closed")
        buf += chunk
    return bytes(buf)


def _call(sock: socket.socket, cmd: int, payload: bytes, reply_size: int) -> bytes:
    sock.sendall(bytes([cmd]) + struct.pack("<Q", len(payload)) + payload)
    (size,) = struct.unpack("<Q", _recv(sock, 8))
    if size != reply_size:
        raise ValueError(f"reply of {size} bytes, expected {reply_size}")
    return _recv(sock, size)


def _hello(sock: socket.socket) -> tuple[int, int, int]:
    reply = _call(sock, _CMD_HELLO, bytes(_CONN_CAPS), 4 + _CONN_CAPS)
    return reply[0], reply[1], reply[2]


# -- where the layers are ----------------------------------------------------------------------

LOCAL = "local"


@dataclass(frozen=True)
class DevicePlacement:
    """The layers of a model that one device holds, as llama.cpp placed them at load time.

    llama.cpp counts the output layer as one more layer (index ``n_layer``); the input
    embedding always stays on this machine."""

    endpoint: str  # the worker's "host:port", or "local"
    device: str  # llama.cpp's name for it: "CPU", "RPC0", ...
    layers: int
    first_layer: int | None
    last_layer: int | None
    weights_bytes: int  # model weights it holds (llama.cpp's "model buffer size")
    free_bytes: int | None = None  # the device's memory when the model was loaded
    total_bytes: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self, n_layers: int) -> str:
        where = "this machine" if self.endpoint == LOCAL else self.endpoint
        if not self.layers:
            span = "no layers"
        elif self.first_layer == self.last_layer:
            span = f"layer {self.first_layer}"
        else:
            span = f"layers {self.first_layer}–{self.last_layer}"
        out = " (with the output layer)" if self.last_layer == n_layers - 1 else ""
        return f"{span}{out} on {where}"


def describe_placement(devices: Sequence[DevicePlacement]) -> str:
    """One line: where a model's layers run ("all on this machine" when no worker holds any)."""
    if not any(d.endpoint != LOCAL and d.layers for d in devices):
        return "all layers on this machine"
    n_layers = sum(d.layers for d in devices)
    return "; ".join(d.describe(n_layers) for d in devices if d.layers)

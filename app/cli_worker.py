"""``decodelab worker``: lend this machine's memory and CPU (or GPUs) to DecodeLab on another
machine, as a llama.cpp RPC worker. The installed package is the worker: no second program.

llama.cpp's server blocks inside C, where Python's signal handlers do not run: it serves
from a daemon thread while the main thread waits for Ctrl+C or SIGTERM and then ends the
process. Its own messages (printed to file descriptor 1) are read through a pipe and
translated; the version and memory printed are what a client will see, read by probing the
worker once it listens.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import os
import signal
import socket
import sys
import threading
import time
from typing import IO, Any

from app.core import rpc, rpc_native
from app.core.errors import DecodeLabError, RefusedError

EXIT_OK, EXIT_FAILED, EXIT_REFUSED = 0, 1, 2
LISTEN_TIMEOUT = 20.0  # from starting the server to answering its own probe
NO_AUTH = ("llama.cpp's RPC protocol has no authentication and no encryption: anyone who "
           "can reach this port can fill this machine's memory and make it compute")


def add_worker_parser(sub: Any) -> None:
    """The ``worker`` subcommand (``sub`` is the CLI's subparsers)."""
    p = sub.add_parser("worker", help="serve this machine to DecodeLab elsewhere "
                                      "(llama.cpp RPC worker)",
                       description="Hold and compute layers of a model for DecodeLab on "
                                   f"another machine (its --rpc HOST:PORT). {NO_AUTH}.")
    add_arguments(p)
    p.set_defaults(func=cmd_worker)


def _ranged(name: str, lo: int, hi: int) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"{value} is out of range {lo}…{hi}")
        return value

    parse.__name__ = name
    return parse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1",
                   help="IPv4 address to listen on (default 127.0.0.1: this machine only; "
                        "others need --allow-remote)")
    p.add_argument("--port", type=_ranged("port", 1, 65535), default=rpc.DEFAULT_PORT)
    p.add_argument("--threads", type=_ranged("threads", 1, 512), metavar="N",
                   help="CPU threads for the layers held here (default: physical cores)")
    p.add_argument("--mem", type=_ranged("mem", 1, 2**31 - 1), metavar="MB",
                   help="most memory clients may fill (weights, cache, buffers); past it "
                        "their load fails with an error naming this worker (Linux)")
    p.add_argument("--cache", metavar="DIR",
                   help="keep received weights in DIR: the same model loads faster next time")
    p.add_argument("--allow-remote", action="store_true",
                   help="listen on an address other machines can reach (only on a private "
                        "network you trust)")


def listen_endpoint(host: str, port: int, allow_remote: bool) -> rpc.Endpoint:
    """Where to listen; RefusedError for an address llama.cpp's server cannot bind (IPv4
    only) and for a non-loopback one without ``allow_remote``."""
    name = "127.0.0.1" if host == "localhost" else host
    try:
        address = ipaddress.IPv4Address(name)
    except ValueError:
        raise RefusedError(f"--host {host}: give an IPv4 address (llama.cpp's RPC server "
                           "listens on IPv4 only), e.g. 127.0.0.1 or 192.168.1.20") from None
    endpoint = rpc.Endpoint(str(address), port)
    if not endpoint.is_loopback and not allow_remote:
        raise RefusedError(
            f"--host {host} lets other machines connect, and {NO_AUTH}; add --allow-remote "
            "on a private network you trust, or keep 127.0.0.1 and reach it through an SSH "
            f"tunnel (ssh -L {port}:127.0.0.1:{port} THIS-MACHINE)")
    return endpoint


def _check_free(endpoint: rpc.Endpoint) -> None:
    """Bind the address for a moment: llama.cpp's own failure to listen is one bare line."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as llama.cpp's server does
        try:
            s.bind((endpoint.host, endpoint.port))
        except OSError as exc:
            raise DecodeLabError(f"cannot listen on {endpoint}: {exc.strerror or exc}") from None


def _limit_memory(mb: int, threads: int) -> None:
    """Cap the process's data segment at what it uses now plus ``mb`` (and room for its
    threads' stacks): llama.cpp's server has no memory option, but its allocations fail
    past the cap and the client's load fails with them."""
    import resource

    try:
        with open("/proc/self/status") as fh:
            used = next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmData:"))
    except (OSError, StopIteration, ValueError):
        raise RefusedError("--mem needs Linux (it caps the process's data segment)") from None
    stacks = (threads + 2) * 8 * 2**20 + 32 * 2**20  # compute threads not started yet
    limit = used + mb * 2**20 + stacks
    _soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_DATA, (limit, hard))


class _ServerOutput:
    """llama.cpp's server prints to file descriptor 1: send that through a pipe, translated,
    and keep this command's own lines on the real standard output."""

    def __init__(self) -> None:
        sys.stdout.flush()
        real = os.dup(1)
        read_end, write_end = os.pipe()
        os.dup2(write_end, 1)
        os.close(write_end)
        self.out: IO[str] = os.fdopen(real, "w", buffering=1, encoding="utf-8",
                                      errors="replace")
        sys.stdout = self.out
        self._pipe = os.fdopen(read_end, "rb", buffering=0)
        self.quiet = 0  # client connections not to report (the worker's own probes)
        self._lock = threading.Lock()
        threading.Thread(target=self._relay, name="worker-output", daemon=True).start()

    def say(self, text: str) -> None:
        with self._lock:
            self.out.write(text + "\n")
            self.out.flush()

    def _relay(self) -> None:
        banner = ("Starting RPC server", "  endpoint", "  local cache", "Devices:",
                  "  transport")
        for raw in iter(self._pipe.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip()
            stamp = time.strftime("%H:%M:%S")
            if line == "Accepted client connection":
                if not self.quiet:
                    self.say(f"{stamp} client connected")
            elif line == "Client connection closed":
                if self.quiet:
                    self.quiet -= 1
                else:
                    self.say(f"{stamp} client disconnected")
            elif not line.startswith(banner) and not (line.startswith("  ") and "MiB" in line):
                self.say(line)


class _Stop(Exception):
    pass


def _stop(_signum: int, _frame: object) -> None:
    raise _Stop()


def cmd_worker(args: argparse.Namespace) -> int:
    endpoint = listen_endpoint(args.host, args.port, args.allow_remote)
    rpc_native.require_rpc()
    _check_free(endpoint)
    from app.core.llama_backend import physical_cores

    threads = args.threads or physical_cores()
    devices = rpc_native.serving_devices()
    if not devices:
        raise DecodeLabError("llama.cpp finds no device to serve on this machine")
    cache = None
    if args.cache:
        try:
            os.makedirs(args.cache, exist_ok=True)
        except OSError as exc:
            raise DecodeLabError(f"--cache {args.cache}: {exc.strerror or exc}") from None
        cache = os.path.abspath(args.cache)
    if args.mem:
        _limit_memory(args.mem, threads)
    if not endpoint.is_loopback:
        print(f"decodelab worker: warning: listening on {endpoint}. {NO_AUTH}. Use it only "
              "on a private network you trust, or keep 127.0.0.1 and connect through an "
              "SSH tunnel.", file=sys.stderr, flush=True)
    output = _ServerOutput()
    server = threading.Thread(target=rpc_native.start_server, name="rpc-server", daemon=True,
                              args=(str(endpoint), devices, threads, cache))
    server.start()
    code = EXIT_FAILED
    try:
        # Both stop it, even if the shell that started it in the background ignores SIGINT.
        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
        status = _await_listening(endpoint, server, output)
        if status is None:
            print(f"decodelab: error: llama.cpp's RPC server could not listen on {endpoint}",
                  file=sys.stderr, flush=True)
            return EXIT_FAILED
        _print_ready(output, endpoint, status, devices, threads, args.mem, cache)
        while server.is_alive():
            server.join(0.5)
        print("decodelab: error: llama.cpp's RPC server stopped", file=sys.stderr, flush=True)
    except (KeyboardInterrupt, _Stop):
        output.say("worker stopped")
        code = EXIT_OK
    finally:
        with contextlib.suppress(Exception):
            output.out.flush()
            sys.stderr.flush()
        # The server thread is still inside llama.cpp: leave without running the library's
        # exit-time destructors under it.
        os._exit(code)
    return code


def _await_listening(endpoint: rpc.Endpoint, server: threading.Thread,
                     output: _ServerOutput) -> rpc.WorkerStatus | None:
    """Probe the worker (as a client would) until it answers, or None if it never listens."""
    local = rpc.Endpoint("127.0.0.1" if endpoint.host == "0.0.0.0" else endpoint.host,
                         endpoint.port)
    deadline = time.monotonic() + LISTEN_TIMEOUT
    while server.is_alive() and time.monotonic() < deadline:
        output.quiet += 1
        try:
            return rpc.probe(local, timeout=2.0)
        except rpc.WorkerError:
            output.quiet -= 1  # refused: nothing was accepted
            time.sleep(0.05)
    return None


def _print_ready(output: _ServerOutput, endpoint: rpc.Endpoint, status: rpc.WorkerStatus,
                 devices: list[rpc_native.Device], threads: int, mem: int | None,
                 cache: str | None) -> None:
    where = ("loopback: only programs on this machine can connect" if endpoint.is_loopback
             else "reachable from other machines")
    backend = ", ".join(f"{d.name} ({d.description})" for d in devices)
    memory = f"{rpc.gib(status.free)} free of {rpc.gib(status.total)}"
    if mem:
        memory += f"; clients may fill at most {mem} MiB"
    address = f"THIS-MACHINE:{endpoint.port}" if endpoint.host == "0.0.0.0" else str(endpoint)
    for line in [
        f"decodelab worker: llama.cpp RPC server, protocol {'.'.join(map(str, status.version))}",
        f"  endpoint  {endpoint} ({where})",
        f"  backend   {backend}, {threads} thread{'s' if threads != 1 else ''}",
        f"  memory    {memory}",
        f"  cache     {cache or 'off'}",
        f"ready: use it with  decodelab run --rpc {address} …   (Ctrl+C stops the worker)",
    ]:
        output.say(line)


def main(argv: list[str] | None = None) -> int:
    """``python -m app.cli_worker``: the same command without the rest of the CLI."""
    parser = argparse.ArgumentParser(prog="decodelab worker")
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return cmd_worker(args)
    except RefusedError as exc:
        print(f"decodelab: refused: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    except DecodeLabError as exc:
        print(f"decodelab: error: {exc}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())

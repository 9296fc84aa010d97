"""Remote workers without a worker: endpoint parsing, placement checks, the command line's
options, and the probe against things that are not a usable worker (a closed port, a
server that never answers, one that speaks another protocol version)."""

from __future__ import annotations

import argparse
import socket
import struct
import threading
import time
from collections.abc import Iterator

import pytest

from app.cli_rpc import add_rpc_arguments, placement
from app.cli_worker import listen_endpoint
from app.core import rpc
from app.core.errors import RefusedError


@pytest.mark.parametrize(("text", "host", "port"), [
    ("127.0.0.1:50052", "127.0.0.1", 50052),
    (" gpu-box.lan:1 ", "gpu-box.lan", 1),
    ("10.0.0.7:65535", "10.0.0.7", 65535),
])
def test_endpoints_parse(text: str, host: str, port: int) -> None:
    assert rpc.parse_endpoint(text) == rpc.Endpoint(host, port)


@pytest.mark.parametrize(("text", "says"), [
    ("", "empty"),
    ("127.0.0.1", "HOST:PORT"),
    ("127.0.0.1:0", "out of range"),
    ("127.0.0.1:70000", "out of range"),
    ("127.0.0.1:http", "not a number"),
    ("[::1]:50052", "IPv6"),
    ("::1", "IPv6"),
    (":50052", "host"),
])
def test_bad_endpoints_are_refused_saying_why(text: str, says: str) -> None:
    with pytest.raises(RefusedError, match=says):
        rpc.parse_endpoint(text)


def test_a_host_alone_takes_the_default_port_where_allowed() -> None:
    assert rpc.parse_endpoint("box", rpc.DEFAULT_PORT) == rpc.Endpoint("box", rpc.DEFAULT_PORT)


def test_endpoint_lists() -> None:
    assert [str(e) for e in rpc.parse_endpoints("a:1, b:2,")] == ["a:1", "b:2"]
    assert [str(e) for e in rpc.parse_endpoints(["a:1", "b:2,c:3"])] == ["a:1", "b:2", "c:3"]
    with pytest.raises(RefusedError, match="twice"):
        rpc.parse_endpoints("a:1,a:1")
    with pytest.raises(RefusedError, match="no worker"):
        rpc.parse_endpoints(" , ")


def test_loopback() -> None:
    assert rpc.Endpoint("127.0.0.1", 1).is_loopback
    assert rpc.Endpoint("127.3.4.5", 1).is_loopback
    assert rpc.Endpoint("localhost", 1).is_loopback
    assert not rpc.Endpoint("0.0.0.0", 1).is_loopback
    assert not rpc.Endpoint("192.168.1.2", 1).is_loopback
    assert not rpc.Endpoint("gpu-box", 1).is_loopback


def test_placement_checks() -> None:
    rpc.check_placement([], [], 0)
    rpc.check_placement(["a:1", "b:2"], [3, 1], -1)
    rpc.check_placement(["a:1"], [], 5)
    with pytest.raises(RefusedError, match="one per worker"):
        rpc.check_placement(["a:1", "b:2"], [1], -1)
    with pytest.raises(RefusedError, match="not all 0"):
        rpc.check_placement(["a:1", "b:2"], [0, 0], -1)
    with pytest.raises(RefusedError, match="needs workers"):
        rpc.check_placement([], [1], 0)
    with pytest.raises(RefusedError, match="gpu-layers 0"):
        rpc.check_placement(["a:1"], [], 0)


def _status(endpoint: str, free: int) -> rpc.WorkerStatus:
    return rpc.WorkerStatus(endpoint, rpc.PROTOCOL, (rpc.DeviceMemory(free, free * 2),), 0.0)


def test_memory_check_shares_the_model_as_llama_cpp_does() -> None:
    gib = 2**30
    a, b = _status("a:1", 3 * gib), _status("b:2", 1 * gib)
    rpc.check_memory([a, b], [], 4 * gib)  # by free memory: 3 + 1 GiB, it fits
    with pytest.raises(rpc.WorkerError, match=r"worker b:2: 1\.0 GiB free.*about 2\.0 GiB"):
        rpc.check_memory([a, b], [1, 1], 4 * gib)  # equal shares: 2 GiB on b
    with pytest.raises(rpc.WorkerError, match="worker a:1"):
        rpc.check_memory([a, b], [], 5 * gib)


def test_placement_is_described_in_one_line() -> None:
    local = rpc.DevicePlacement(rpc.LOCAL, "CPU", 2, 0, 1, 100)
    first = rpc.DevicePlacement("a:1", "RPC0", 2, 2, 3, 200, 10, 20)
    last = rpc.DevicePlacement("b:2", "RPC1", 1, 4, 4, 300, 10, 20)
    text = rpc.describe_placement([local, first, last])
    assert text == ("layers 0–1 on this machine; layers 2–3 on a:1; "
                    "layer 4 (with the output layer) on b:2")
    assert rpc.describe_placement([]) == "all layers on this machine"
    assert rpc.DevicePlacement(**first.to_dict()) == first


def _parsed(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser(exit_on_error=False)
    p.add_argument("--gpu-layers", type=int, default=0)
    add_rpc_arguments(p)
    return p.parse_args(list(argv))


def test_rpc_options_become_the_placement() -> None:
    assert placement(_parsed()) == {"rpc": [], "rpc_split": [], "gpu_layers": 0}
    assert placement(_parsed("--gpu-layers", "-1")) == {"rpc": [], "rpc_split": [],
                                                        "gpu_layers": -1}
    # With workers and no --gpu-layers, every layer goes to them.
    assert placement(_parsed("--rpc", "a:1,b:2")) == {
        "rpc": ["a:1", "b:2"], "rpc_split": [], "gpu_layers": -1}
    assert placement(_parsed("--rpc", "a:1,b:2", "--rpc-split", "3,1", "--gpu-layers", "10")) \
        == {"rpc": ["a:1", "b:2"], "rpc_split": [3.0, 1.0], "gpu_layers": 10}
    with pytest.raises(RefusedError, match="one per worker"):
        placement(_parsed("--rpc", "a:1,b:2", "--rpc-split", "1"))
    with pytest.raises(RefusedError, match="needs --rpc"):
        placement(_parsed("--rpc-split", "1"))


@pytest.mark.parametrize("argv", [("--rpc", "a"), ("--rpc", "a:1,a:1"), ("--rpc", "[::1]:5"),
                                  ("--rpc-split", "x"), ("--rpc-split", "0,0"),
                                  ("--rpc-split", "-1,2")])
def test_bad_rpc_options_are_refused(argv: tuple[str, ...]) -> None:
    with pytest.raises(argparse.ArgumentError):
        _parsed(*argv)


def test_the_worker_listens_on_loopback_unless_told_otherwise() -> None:
    assert listen_endpoint("127.0.0.1", 5, False) == rpc.Endpoint("127.0.0.1", 5)
    assert listen_endpoint("localhost", 5, False) == rpc.Endpoint("127.0.0.1", 5)
    assert listen_endpoint("0.0.0.0", 5, True) == rpc.Endpoint("0.0.0.0", 5)
    with pytest.raises(RefusedError, match="--allow-remote"):
        listen_endpoint("0.0.0.0", 5, False)
    with pytest.raises(RefusedError, match="--allow-remote"):
        listen_endpoint("192.168.1.2", 5, False)
    with pytest.raises(RefusedError, match="IPv4"):
        listen_endpoint("gpu-box", 5, True)


# -- the probe against what is not a usable worker ---------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_closed_port_is_reported_at_once_naming_it() -> None:
    endpoint = f"127.0.0.1:{_free_port()}"
    start = time.monotonic()
    with pytest.raises(rpc.WorkerError, match=f"worker {endpoint}: connection refused"):
        rpc.probe(endpoint)
    assert time.monotonic() - start < 5.0
    assert rpc.unreachable([endpoint]) == [endpoint]


@pytest.fixture
def fake_server() -> Iterator[tuple[socket.socket, list[bytes]]]:
    """A listening socket whose behaviour each test gives (accepts in a daemon thread)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    replies: list[bytes] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                if replies:
                    conn.recv(1 + 8 + 24)
                    conn.sendall(replies[0])
                    conn.recv(1)  # until the client hangs up
                else:  # a busy worker: takes the bytes, never answers
                    while conn.recv(1024):
                        pass

    threading.Thread(target=serve, daemon=True).start()
    yield server, replies
    server.close()


def test_a_worker_that_never_answers_is_reported_as_busy(
        fake_server: tuple[socket.socket, list[bytes]]) -> None:
    server, _ = fake_server
    endpoint = f"127.0.0.1:{server.getsockname()[1]}"
    start = time.monotonic()
    with pytest.raises(rpc.WorkerError, match="busy with another"):
        rpc.probe(endpoint, timeout=1.0)
    assert time.monotonic() - start < 5.0


def test_another_protocol_version_is_refused_naming_both(
        fake_server: tuple[socket.socket, list[bytes]]) -> None:
    server, replies = fake_server
    replies.append(struct.pack("<Q", 28) + bytes([6, 1, 0, 0]) + bytes(24))
    endpoint = f"127.0.0.1:{server.getsockname()[1]}"
    with pytest.raises(rpc.WorkerError, match=r"speaks RPC protocol 6\.1\.0, this build 7\.0\.0"):
        rpc.probe(endpoint)


def test_probing_several_names_every_one_that_failed() -> None:
    a, b = f"127.0.0.1:{_free_port()}", f"127.0.0.1:{_free_port()}"
    with pytest.raises(rpc.WorkerError) as caught:
        rpc.probe_all([a, b])
    assert f"worker {a}:" in str(caught.value) and f"worker {b}:" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_an_unknown_host_is_reported_within_5_s() -> None:
    start = time.monotonic()
    said = r"worker no-such-host\.invalid:5: .*(unknown|resolved)"
    with pytest.raises(rpc.WorkerError, match=said):
        rpc.probe("no-such-host.invalid:5", timeout=2.0)
    assert time.monotonic() - start < 5.0

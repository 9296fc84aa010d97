"""Remote workers for real: ``decodelab worker`` processes on loopback ports holding the
target's layers, driven by the same Session as a local run.

Each worker is a real process of this package (``python -m app worker`` once the command
line has it, ``python -m app.cli_worker`` before). Nothing here depends on timing except
the two bounds the feature promises (a closed port and a busy worker are reported within
5 s); a worker is killed between two steps of a run from the run's own event sink.
"""

from __future__ import annotations

import argparse
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import tiny_models

from app.core import rpc, rpc_native
from app.core.compare import NEAR_TIE, baseline_margin, first_difference
from app.core.events import Event, RunSettings, TokenEvent
from app.core.hosted_model import open_model
from app.core.llama_backend import DecodeAborted, LoadOptions
from app.core.session import Session

pytestmark = pytest.mark.skipif(not rpc_native.supports_rpc(), reason=rpc.NO_RPC)

PROMPT = "def fibonacci(n):"
READY_WITHIN = 120.0  # a loaded machine starts Python and llama.cpp slowly


def worker_argv() -> list[str]:
    """How to start a worker: the CLI's subcommand if it has one, else the module."""
    from app.cli import build_parser

    parser = build_parser()
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if subs and "worker" in subs[0].choices:
        return [sys.executable, "-m", "app", "worker"]
    return [sys.executable, "-m", "app.cli_worker"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Worker:
    """A ``decodelab worker`` process on a free loopback port, ready when constructed."""

    def __init__(self, *extra: str) -> None:
        self.port = free_port()
        self.endpoint = f"127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [*worker_argv(), "--port", str(self.port), "--threads", "1", *extra],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self.ready = threading.Event()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        deadline = time.monotonic() + READY_WITHIN
        while not self.ready.wait(0.1):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.proc.kill()
                said = self.proc.stderr.read() if self.proc.stderr else ""
                pytest.fail(f"worker did not start: {said}")

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
            if line.startswith("ready"):
                self.ready.set()

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=30)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        code = self.proc.wait(timeout=30)
        self.reader.join(timeout=30)  # its last lines
        return code


@pytest.fixture(scope="module")
def workers() -> Any:
    pair = [Worker(), Worker()]
    yield pair
    for w in pair:
        w.stop()


def settings(track: str = "baseline", **kw: Any) -> RunSettings:
    return RunSettings(**{"track": track, "max_tokens": 24, "adaptive": False, "draft_max": 4,
                          **kw})


def on_workers(s: RunSettings, workers: list[Worker], **kw: Any) -> RunSettings:
    return replace(s, rpc=[w.endpoint for w in workers], rpc_split=[1.0] * len(workers),
                   **{"gpu_layers": -1, **kw})


def run(s: RunSettings, target: Path, draft: Path | None = None, **kw: Any) -> Any:
    session = Session()
    try:
        return session.run(target, draft, PROMPT, s, **kw)
    finally:
        session.close()


def test_the_worker_says_what_it_serves(workers: list[Worker]) -> None:
    w = workers[0]
    text = "\n".join(w.lines)
    version = ".".join(map(str, rpc.PROTOCOL))
    assert f"protocol {version}" in text
    assert w.endpoint in text and "loopback" in text
    assert "backend   CPU" in text and "memory" in text
    # The protocol version written in rpc.py is the one this build speaks.
    status = rpc.probe(w.endpoint)
    assert status.version == rpc.PROTOCOL
    assert status.total >= status.free > 0


@pytest.mark.parametrize("track", ["baseline", "draft"])
def test_split_across_two_workers_gives_the_local_text(
        workers: list[Worker], tiny_dense: Path, tiny_draft: Path, track: str) -> None:
    local = run(settings(track), tiny_dense, tiny_draft)
    remote = run(on_workers(settings(track), workers), tiny_dense, tiny_draft)
    assert remote.token_ids == local.token_ids
    assert remote.text == local.text
    assert (remote.n_drafted, remote.n_accepted) == (local.n_drafted, local.n_accepted)
    if track == "draft":
        assert remote.n_drafted > 0
    # The placement read back from llama.cpp: both workers hold layers, none stays here.
    devices = remote.effective["devices"]
    by_place = {d["endpoint"]: d for d in devices}
    assert [by_place[w.endpoint]["layers"] > 0 for w in workers] == [True, True]
    assert by_place[rpc.LOCAL]["layers"] == 0
    assert sum(d["layers"] for d in devices) == 3  # tiny_dense: 2 blocks + the output layer
    for w in workers:
        d = by_place[w.endpoint]
        assert d["weights_bytes"] > 0 and d["total_bytes"] >= d["free_bytes"] > 0
    assert local.effective["devices"] == []


def test_will_it_pay_measures_a_remote_target_with_its_round_trips(
        workers: list[Worker], tiny_dense: Path) -> None:
    from app.core import predict
    from app.core.hosted_model import open_model
    from app.core.llama_backend import LoadOptions

    model = open_model(tiny_dense, LoadOptions(n_ctx=512, threads=1, gpu_layers=-1,
                                               devices=tuple(w.endpoint for w in workers),
                                               split=(1.0, 1.0)))
    try:
        report = predict.will_it_pay(model, None, alpha=0.7, source="lookup")
    finally:
        model.close()
    assert report.costs is not None and report.costs.workers == 2
    assert set(report.costs.batches) >= {1, 5, 9} and report.costs.step > 0
    assert "2 remote workers" in report.explanation

def test_gpu_layers_keeps_the_others_here(workers: list[Worker], tiny_dense: Path) -> None:
    local = run(settings(), tiny_dense)
    remote = run(on_workers(settings(), workers, gpu_layers=1), tiny_dense)
    assert remote.token_ids == local.token_ids
    layers = {d["endpoint"]: (d["layers"], d["first_layer"]) for d in remote.effective["devices"]}
    # llama.cpp offloads the last layers: the one on the workers is the output layer.
    assert layers[rpc.LOCAL] == (2, 0)
    assert sorted(layers[w.endpoint] for w in workers) == [(0, None), (1, 2)]


def test_a_closed_port_is_an_error_naming_it_within_5_s(tiny_dense: Path) -> None:
    endpoint = f"127.0.0.1:{free_port()}"
    session = Session()
    try:
        start = time.monotonic()
        with pytest.raises(rpc.WorkerError, match=f"worker {endpoint}: connection refused"):
            session.run(tiny_dense, None, PROMPT, settings(rpc=[endpoint], gpu_layers=-1))
        assert time.monotonic() - start < 5.0
        # This process is fine: the same session runs locally next.
        assert session.run(tiny_dense, None, PROMPT, settings()).n_generated > 0
    finally:
        session.close()


def test_a_busy_worker_is_reported_within_5_s(workers: list[Worker], tiny_dense: Path) -> None:
    first = Session()
    try:
        first.run(tiny_dense, None, PROMPT, on_workers(settings(max_tokens=2), workers[:1]))
        start = time.monotonic()
        with pytest.raises(rpc.WorkerError, match=f"worker {workers[0].endpoint}: .*busy"):
            open_model(tiny_dense, LoadOptions(gpu_layers=-1, devices=(workers[0].endpoint,)))
        assert time.monotonic() - start < 5.0
    finally:
        first.close()


def test_a_cancel_stops_a_remote_prefill(workers: list[Worker], tiny_dense: Path) -> None:
    model = open_model(tiny_dense, LoadOptions(gpu_layers=-1, devices=(workers[0].endpoint,)))
    try:
        ids = model.tokenize(PROMPT * 10, add_bos=True)
        cancel = threading.Event()
        cancel.set()
        with pytest.raises(DecodeAborted), model.abortable(cancel):
            model.eval(ids, 0)
        assert model.n_past == 0
        assert model.eval(ids, 1).shape == (1, model.n_vocab)  # and it goes on
    finally:
        model.close()


def test_a_worker_lost_mid_run_ends_the_call_not_the_app(tiny_dense: Path) -> None:
    keep, victim = Worker(), Worker()
    try:
        model = open_model(tiny_dense, LoadOptions(
            gpu_layers=-1, devices=(keep.endpoint, victim.endpoint), split=(1.0, 1.0)))
        try:
            ids = model.tokenize(PROMPT, add_bos=True)
            model.eval(ids, 1)
            victim.kill()
            with pytest.raises(rpc.WorkerLost, match=f"worker {victim.endpoint}: lost during"):
                model.eval([ids[-1]], 1)
            assert model.lost
            with pytest.raises(rpc.WorkerLost, match=victim.endpoint):
                model.reset()
        finally:
            model.close()
        # The surviving worker serves the next client.
        assert rpc.probe(keep.endpoint).version == rpc.PROTOCOL
    finally:
        keep.stop()
        victim.stop()


def test_a_worker_lost_mid_run_keeps_the_partial_answer(tiny_dense: Path) -> None:
    keep, victim = Worker(), Worker()
    session = Session()
    try:
        local = run(settings(), tiny_dense)
        seen: list[int] = []

        def kill_after_five(event: Event) -> None:
            if isinstance(event, TokenEvent):
                seen.append(event.id)
                if len(seen) == 5:
                    victim.kill()

        s = on_workers(settings(), [keep, victim])
        result = session.run(tiny_dense, None, PROMPT, s, on_event=kill_after_five)
        assert result.stop_reason == "error"
        assert result.error is not None and victim.endpoint in result.error
        assert "\n" not in result.error
        assert result.token_ids == seen == local.token_ids[:5]
        # The next run loads the target again, on a worker that is there.
        again = Worker()
        try:
            redo = session.run(tiny_dense, None, PROMPT,
                               replace(s, rpc=[keep.endpoint, again.endpoint]))
            assert redo.token_ids == local.token_ids
        finally:
            again.stop()
    finally:
        session.close()
        keep.stop()
        victim.stop()


def test_a_worker_without_the_memory_says_so(tiny_dir: Path,
                                             tokenizer_source: Path | None) -> None:
    # The shapes of tests/ui's tiny_slow (a cached file): its output layer alone is 96 MiB.
    big = tiny_models.dense_llama(tiny_dir, tokenizer_source, seed=3, n_layer=6, n_embd=512,
                                  n_head=8, n_head_kv=4, n_ff=1536)
    small = Worker("--mem", "1")
    try:
        with pytest.raises(rpc.WorkerError, match=f"worker {small.endpoint}: too little memory"):
            open_model(big, LoadOptions(gpu_layers=-1, devices=(small.endpoint,)))
    finally:
        small.stop()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_the_worker_stops_cleanly(sig: int) -> None:
    w = Worker()
    assert w.stop(sig) == 0
    assert w.lines[-1] == "worker stopped"
    assert rpc.unreachable([w.endpoint]) == [w.endpoint]


def test_other_machines_need_allow_remote() -> None:
    port = str(free_port())
    refused = subprocess.run([*worker_argv(), "--host", "0.0.0.0", "--port", port],
                             capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2
    assert "--allow-remote" in refused.stderr and "authentication" in refused.stderr
    assert refused.stderr.count("\n") == 1 and refused.stdout == ""


def test_allowed_remote_listening_warns() -> None:
    w = Worker("--host", "0.0.0.0", "--allow-remote")
    try:
        assert rpc.probe(w.endpoint).version == rpc.PROTOCOL
    finally:
        assert w.stop() == 0
    assert w.proc.stderr is not None
    warning = w.proc.stderr.read()
    assert "warning" in warning and "no authentication" in warning


@pytest.mark.integration
def test_qwen_split_across_two_workers(workers: list[Worker],
                                       qwen_pair: tuple[Path, Path]) -> None:
    """The same text as the local baseline, up to near-ties: a worker's weights are not
    repacked for this CPU's fastest kernels as local ones are, so the last digits of a
    logit may differ and flip a near-tie (as batched against single-token evaluation)."""
    target, draft = qwen_pair
    base_s = RunSettings(track="baseline", max_tokens=16)
    local = run(base_s, target)
    session, remote_session = Session(), Session()  # the target loads on the workers once
    try:
        for track in ("baseline", "draft"):
            s = replace(base_s, track=track, adaptive=False, draft_max=4)
            remote = remote_session.run(target, draft, PROMPT, on_workers(s, workers))
            assert all(d["layers"] for d in remote.effective["devices"]
                       if d["endpoint"] != rpc.LOCAL)
            diff = first_difference(local.token_ids, remote.token_ids)
            if diff is not None:
                margin = baseline_margin(session, target, PROMPT, base_s, local.token_ids, diff)
                assert margin < NEAR_TIE, f"{track} differs at {diff}, margin {margin:.3f}"
    finally:
        session.close()
        remote_session.close()


def test_no_stray_processes() -> None:
    """Every hosted model's child process has ended (they are daemons of this one)."""
    import multiprocessing

    assert [p.name for p in multiprocessing.active_children()
            if p.name == "decodelab-hosted-model"] == []

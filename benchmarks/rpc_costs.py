"""What remote workers cost, and what speculation buys back: the target local, on 1 worker
and on 2 workers (loopback), optionally behind an added network latency.

For each setting and repeat (settings interleaved, so a slow minute of the shared machine
hits all alike): the cost of one target step and of a verify batch of 5 and 9 tokens
(``app.core.predict.measure``: fastest of its passes), then tokens/s of baseline, Track 1
(draft model) and Track 8 (prompt lookup) with the app's defaults (adaptive drafting).
Reported: medians over repeats, speedups paired within a repeat and setting, and the
predictor's speedup at K = 4 and 8 from that setting's costs. For latencies not measured, the
predictor's figures with the latency added to every target call (one round trip per worker).

Added latency is a userspace relay in front of each worker (``DelayProxy``): ``tc netem``
on the loopback device would delay every program's loopback traffic on the machine.
Workers keep received weights in a cache folder, so the target is loaded again for each
setting and repeat without sending its weights again.

    .venv/bin/python -m benchmarks.rpc_costs --target qwen2.5-coder-1.5b \\
        --draft qwen2.5-coder-0.5b --prompt code_edit --repeats 3 --max-tokens 64 --delays 0,5
"""

from __future__ import annotations

import argparse
import contextlib
import os
import queue
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, replace
from typing import Any

from app.core import predict
from app.core.events import RunSettings
from app.core.models.library import resolve_model
from app.core.session import Session
from benchmarks.common import machine_summary, median, templated, warm_page_cache

TRACKS = ("baseline", "draft", "lookup")


class DelayProxy:
    """A TCP relay that holds every chunk ``delay`` seconds in each direction: a round trip
    through it takes 2 × ``delay`` longer, as over a network."""

    def __init__(self, target_port: int, delay: float) -> None:
        self.target, self.delay = ("127.0.0.1", target_port), delay
        self.server = socket.create_server(("127.0.0.1", 0))
        self.endpoint = f"127.0.0.1:{self.server.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            for s in (client, upstream):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for src, dst in ((client, upstream), (upstream, client)):
                chunks: queue.Queue[tuple[float, bytes]] = queue.Queue()
                threading.Thread(target=self._receive, args=(src, chunks), daemon=True).start()
                threading.Thread(target=self._send, args=(chunks, dst), daemon=True).start()

    def _receive(self, src: socket.socket, chunks: queue.Queue[tuple[float, bytes]]) -> None:
        try:
            while chunk := src.recv(1 << 20):
                chunks.put((time.perf_counter() + self.delay, chunk))
        except OSError:
            pass
        chunks.put((0.0, b""))

    def _send(self, chunks: queue.Queue[tuple[float, bytes]], dst: socket.socket) -> None:
        while True:
            due, chunk = chunks.get()
            if not chunk:
                with contextlib.suppress(OSError):
                    dst.shutdown(socket.SHUT_WR)
                return
            wait = due - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            try:
                dst.sendall(chunk)
            except OSError:
                return


def start_worker(threads: int, cache: str) -> tuple[subprocess.Popen[str], int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    proc = subprocess.Popen([sys.executable, "-m", "app.cli_worker", "--port", str(port),
                             "--threads", str(threads), "--cache", cache],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("ready"):
            break
    else:
        raise SystemExit(f"worker on port {port} did not start")
    threading.Thread(target=lambda: proc.stdout and proc.stdout.read(), daemon=True).start()
    return proc, port


@dataclass
class Setting:
    name: str
    workers: int
    delay_ms: float
    endpoints: list[str]


def one_pass(setting: Setting, target: str, draft: str, prompt: str,
             base: RunSettings, tracks: tuple[str, ...] = TRACKS) -> dict[str, Any]:
    """Load, measure costs, run the tracks once each, unload."""
    placed = replace(base, rpc=setting.endpoints, gpu_layers=-1 if setting.endpoints else 0)
    session = Session()
    try:
        t_model = session.load_target(target, placed)
        d_model = session.load_draft(draft, placed)
        costs = predict.measure(t_model, d_model, sizes=(1, 5, 9))
        runs = {track: session.run(target, draft, prompt, replace(placed, track=track))
                for track in tracks}
    finally:
        session.close()
    return {"costs": costs, "tps": {t: r.tokens_per_second for t, r in runs.items()},
            "alpha": predict.observed_alpha(runs["draft"].events) if "draft" in runs else None,
            "text": {t: r.token_ids for t, r in runs.items()}}


def predicted(costs: predict.MeasuredCosts, alpha: float, k: int, added: float = 0.0) -> float:
    """Track 1's predicted speedup at K with ``added`` seconds on every target call."""
    step, verify = costs.step + added, costs.verify(k) + added
    return predict.speedup(alpha, k, costs.draft_step or 0.0, verify, step)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--target", default="qwen2.5-coder-1.5b")
    ap.add_argument("--draft", default="qwen2.5-coder-0.5b")
    ap.add_argument("--prompt", default="code_edit")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--delays", default="0", help="added round-trip latency in ms, e.g. 0,1,5")
    ap.add_argument("--costs-only", action="store_true",
                    help="measure the step and batch costs, run no track")
    args = ap.parse_args()
    tracks = () if args.costs_only else TRACKS

    target, draft = str(resolve_model(args.target)), str(resolve_model(args.draft))
    prompt = templated(target, args.prompt)
    warm_page_cache(target, draft)
    cache = tempfile.mkdtemp(prefix="decodelab-rpc-cache-")
    procs_ports = [start_worker(args.threads, cache) for _ in range(2)]
    ports = [p for _, p in procs_ports]
    settings = [Setting("local", 0, 0.0, [])]
    for ms in (float(d) for d in args.delays.split(",")):
        for n in (1, 2):
            eps = ([f"127.0.0.1:{p}" for p in ports[:n]] if ms == 0 else
                   [DelayProxy(p, ms / 2000).endpoint for p in ports[:n]])
            label = f"{n} worker{'s' if n > 1 else ''}" + (f" +{ms:g} ms" if ms else "")
            settings.append(Setting(label, n, ms, eps))
    base = RunSettings(max_tokens=args.max_tokens, threads=args.threads, ctx=4096)
    print(f"# {machine_summary()}")
    print(f"# target {args.target}, draft {args.draft}, prompt {args.prompt}, "
          f"{args.max_tokens} tokens, {args.threads} threads (client and each worker), "
          f"{args.repeats} repeats (medians), workers on loopback; load average "
          f"{os.getloadavg()[0]:.2f} at the start (2 cores)")
    passes: dict[str, list[dict[str, Any]]] = defaultdict(list)
    try:
        for r in range(args.repeats):
            for s in settings:
                p = one_pass(s, target, draft, prompt, base, tracks)
                passes[s.name].append(p)
                c = p["costs"]
                print(f"  repeat {r + 1} {s.name:<16} step {c.step * 1000:7.1f} ms  "
                      + "  ".join(f"{t} {v:5.2f}" for t, v in p["tps"].items()),
                      file=sys.stderr, flush=True)
    finally:
        for proc, _ in procs_ports:
            proc.terminate()
            proc.wait(timeout=30)
    report(settings, passes, tracks)
    return 0


def report(settings: list[Setting], passes: dict[str, list[dict[str, Any]]],
           tracks: tuple[str, ...] = TRACKS) -> None:
    print(f"\n{'setting':<16}{'step ms':>9}{'verify5':>9}{'verify9':>9}{'v5/step':>8}"
          f"{'v9/step':>8}{'base t/s':>9}{'T1 t/s':>8}{'T1 x':>6}{'T8 t/s':>8}{'T8 x':>6}"
          f"{'vs local':>9}{'pred K4':>8}{'pred K8':>8}")
    local_base = [p["tps"].get("baseline", 0.0) for p in passes["local"]]
    alpha_all = [p["alpha"] for ps in passes.values() for p in ps if p["alpha"] is not None]
    alpha = median(alpha_all) if alpha_all else predict.DEFAULT_ALPHA
    how = "observed in the Track 1 runs" if alpha_all else "assumed"
    for s in settings:
        ps = passes[s.name]
        cost = {n: median([p["costs"].batches[n] for p in ps]) for n in (1, 5, 9)}
        nan = float("nan")
        tps = {t: median([p["tps"][t] for p in ps]) if t in tracks else nan for t in TRACKS}
        paired = {t: median([p["tps"][t] / p["tps"]["baseline"] for p in ps])
                  if t in tracks else nan for t in TRACKS}
        vs_local = median([p["tps"]["baseline"] / b for p, b in zip(ps, local_base, strict=True)]
                          ) if tracks else nan
        costs = predict.MeasuredCosts(cost, median([p["costs"].draft_step for p in ps]))
        print(f"{s.name:<16}{cost[1] * 1e3:9.1f}{cost[5] * 1e3:9.1f}{cost[9] * 1e3:9.1f}"
              f"{cost[5] / cost[1]:8.2f}{cost[9] / cost[1]:8.2f}{tps['baseline']:9.2f}"
              f"{tps['draft']:8.2f}{paired['draft']:6.2f}{tps['lookup']:8.2f}"
              f"{paired['lookup']:6.2f}{vs_local:9.2f}{predicted(costs, alpha, 4):8.2f}"
              f"{predicted(costs, alpha, 8):8.2f}")
    same = all(p["text"].get("baseline") == passes["local"][0]["text"].get("baseline")
               for ps in passes.values() for p in ps)
    print(f"# T1 x, T8 x: tokens/s over the same setting's baseline, paired by repeat; "
          f"'vs local': baseline tokens/s over the local one; pred: Track 1's predicted "
          f"speedup at acceptance {alpha:.2f} ({how}); greedy baseline text identical "
          f"everywhere: {'yes' if same else 'no (near-ties: remote weights are not repacked)'}")
    measured = {s.delay_ms for s in settings}
    print("\n# predictor, latency added to every target call (one round trip per worker):")
    print(f"{'setting':<16}{'added ms':>9}{'step ms':>9}{'v9/step':>8}{'pred K4':>8}"
          f"{'pred K8':>8}")
    for s in settings:
        if s.delay_ms or not s.workers:
            continue
        ps = passes[s.name]
        cost = {n: median([p["costs"].batches[n] for p in ps]) for n in (1, 5, 9)}
        costs = predict.MeasuredCosts(cost, median([p["costs"].draft_step for p in ps]))
        for ms in (1.0, 5.0, 20.0):
            tag = " (measured above)" if ms in measured else ""
            added = s.workers * ms / 1000
            print(f"{s.name:<16}{ms:9.0f}{(cost[1] + added) * 1e3:9.1f}"
                  f"{(cost[9] + added) / (cost[1] + added):8.2f}"
                  f"{predicted(costs, alpha, 4, added):8.2f}"
                  f"{predicted(costs, alpha, 8, added):8.2f}{tag}")
    print(f"# load average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    sys.exit(main())

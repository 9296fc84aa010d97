"""How long does the GUI event loop stall while a long generation streams into the window?

Opens the real window (offscreen unless QT_QPA_PLATFORM says otherwise), runs one long
generation, and meanwhile a 5 ms QTimer records the gap between its ticks. A stall is the
gap minus 5 ms. Prints the longest stall and the 99th percentile. Not a test: numbers
depend on the machine.

    python benchmarks/gui_latency.py                       # a tiny generated model, 1800 tokens
    python benchmarks/gui_latency.py --model smollm2-135m --track lookup --max-tokens 1000
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("DECODELAB_HOME", tempfile.mkdtemp(prefix="decodelab-bench-"))

TICK_MS = 5


def tiny_model() -> Path:
    import platformdirs

    sys.path.insert(0, str(ROOT / "tests"))
    import tiny_models

    cache = Path(platformdirs.user_cache_dir("decodelab")) / "tiny-models"
    return tiny_models.dense_llama(cache, tiny_models.find_smollm2())


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="GGUF path or pinned name (default: a tiny model)")
    parser.add_argument("--track", default="lookup")
    parser.add_argument("--max-tokens", type=int, default=1800)
    parser.add_argument("--prompt", default="code_edit", help="sample prompt kind")
    parser.add_argument("--threads", type=int, default=0, help="llama.cpp threads (0: auto)")
    parser.add_argument("--raw", action="store_true", help="no chat template")
    args = parser.parse_args()

    from PySide6.QtCore import QEventLoop, QTimer

    from app.core.models.library import resolve_model
    from app.ui.app import configure_logging, make_application
    from app.ui.main_window import MainWindow
    from app.ui.resources import SAMPLE_PROMPTS
    from app.ui.settings import GuiSettings

    configure_logging()
    app = make_application()
    model = resolve_model(args.model) if args.model else tiny_model()
    window = MainWindow(
        GuiSettings(file=Path(os.environ["DECODELAB_HOME"]) / "gui.json"), restore=False
    )
    window.show()

    def spin_until(done: object, timeout: float) -> None:
        end = time.monotonic() + timeout
        while not done() and time.monotonic() < end:  # type: ignore[operator]
            app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 50)
            time.sleep(0.005)

    window.state.set_target(str(model))
    spin_until(lambda: not window.lane.busy, 60)
    if not window.tracks.select(args.track):
        print(
            f"track {args.track} is not available: {window.tracks.reason(args.track, full=True)}",
            file=sys.stderr,
        )
        return 2
    sample = next(s for s in SAMPLE_PROMPTS if s.kind == args.prompt)
    window.prompt.text.setPlainText(sample.text())
    window.prompt.chat.setChecked(not args.raw)  # the chat template, as the GUI defaults
    window.tracks.settings.max_tokens.setValue(args.max_tokens)
    window.tracks.settings.threads.setValue(args.threads)

    gaps: list[float] = []
    at: list[float] = []
    last = [time.perf_counter()]

    def tick() -> None:
        now = time.perf_counter()
        gaps.append((now - last[0]) * 1000 - TICK_MS)
        at.append(last[0] - t0)
        last[0] = now

    timer = QTimer()
    timer.setInterval(TICK_MS)
    timer.timeout.connect(tick)
    results: list[object] = []
    loop = QEventLoop()
    window.run_ended.connect(lambda r: (results.append(r), loop.quit()))
    t0 = last[0] = time.perf_counter()
    timer.start()
    if not window.start_run():
        print("could not start:", window.error_banner.message(), file=sys.stderr)
        return 1
    loop.exec()
    timer.stop()
    wall = time.perf_counter() - t0
    result = results[0] if results else None
    window.close()
    if result is None:
        print("the run failed:", window.error_banner.message(), file=sys.stderr)
        return 1
    stalls = [max(0.0, g) for g in gaps]
    print(f"model        {Path(model).name}")
    print(f"track        {args.track}")
    print(
        f"tokens       {result.n_generated} in {wall:.2f} s wall "  # type: ignore[attr-defined]
        f"({result.tokens_per_second:.1f} tok/s generation)"
    )  # type: ignore[attr-defined]
    print(f"timer ticks  {len(gaps)} (every {TICK_MS} ms asked)")
    print(f"stall max    {max(stalls, default=0):.1f} ms")
    print(f"stall p99    {percentile(stalls, 99):.1f} ms")
    print(f"stall p50    {percentile(stalls, 50):.1f} ms")
    worst = sorted(range(len(stalls)), key=stalls.__getitem__, reverse=True)[:3]
    print("longest at   " + ", ".join(f"{stalls[i]:.0f} ms at {at[i]:.2f} s" for i in worst)
          + f" (run: {wall:.2f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

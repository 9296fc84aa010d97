"""What does the window cost the run it measures? The GUI thread's CPU share during a run.

Runs the real scripted window (``decodelab gui --model M --track T --prompt-file F --run
--exit``, offscreen) N times, each in a fresh process, and samples ``time.thread_time()`` on
the GUI thread when the run starts, at its first token and when it ends. Prints per run and
as medians: the GUI thread's CPU seconds per second of the run (the figure the run summary
shows as "GUI time during the run") and per second of generation, and tokens/s. With
``--vs-cli`` each window run is paired with a ``decodelab run`` of the same request
(alternating) and the window/CLI tokens/s ratio is printed. ``--profile`` prints where the
GUI thread's time went during generation (cProfile: Qt's C++ work shows under the Python
call that started it, e.g. a paintEvent). Not a test: the numbers depend on the machine and
its load; the CPU share is the robust figure. The default prompt (the shared novel_code
prompt) makes SmolLM2 write all 512 tokens.

    python benchmarks/gui_cost.py --runs 3                       # SmolLM2, baseline, 512 tokens
    python benchmarks/gui_cost.py --track lookup --vs-cli --runs 5
    python benchmarks/gui_cost.py --runs 1 --profile
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED_PROMPTS = Path(os.environ.get("DECODELAB_PROMPTS", ROOT.parent / "shared" / "prompts"))
DEFAULT_PROMPT = next((p for p in (SHARED_PROMPTS / "novel_code.txt",
                                   ROOT / "resources" / "prompts" / "new_code.txt")
                       if p.is_file()), ROOT / "resources" / "prompts" / "new_code.txt")


def _environment() -> dict[str, str]:
    """A throw-away home (no remembered window, no history of the user's), the user's
    downloaded models, the offscreen platform."""
    from app.core.paths import default_models_dir

    env = dict(os.environ)
    env.setdefault("QT_QPA_PLATFORM", "offscreen")
    env["DECODELAB_HOME"] = tempfile.mkdtemp(prefix="decodelab-guicost-")
    env.setdefault("DECODELAB_MODELS_DIR", str(default_models_dir()))
    return env


def _draft(a: argparse.Namespace) -> list[str]:
    return ["--draft", a.draft] if a.draft else []


def _gui_args(a: argparse.Namespace) -> list[str]:
    return ["gui", "--model", a.model, *_draft(a), "--track", a.track, "--prompt-file",
            a.prompt_file, "--max-tokens", str(a.max_tokens), "--threads", str(a.threads),
            "--run", "--exit"]


def child(a: argparse.Namespace) -> int:
    """One scripted window in this process; prints one JSON line with its measurements."""
    import cProfile
    import pstats

    from PySide6.QtCore import QTimer

    from app.cli import build_parser
    from app.ui.app import ScriptedSession, configure_logging, install_excepthook, make_application
    from app.ui.main_window import MainWindow
    from app.ui.settings import GuiSettings

    args = build_parser().parse_args(_gui_args(a))
    args.size = a.size  # the window's --size, whether or not the CLI offers it yet
    log_file = configure_logging()
    app = make_application()
    install_excepthook(log_file)
    window = MainWindow(GuiSettings(file=Path(os.environ["DECODELAB_HOME"]) / "gui.json"),
                        log_file=str(log_file), restore=False)
    window.show()
    marks: dict[str, tuple[float, float]] = {}
    profile = cProfile.Profile() if a.profile else None

    def mark(name: str) -> None:
        marks.setdefault(name, (time.perf_counter(), time.thread_time()))
        if profile is not None and name == "first":
            profile.enable()
        if profile is not None and name == "end":
            profile.disable()

    runs = window.runs
    runs.run_started.connect(lambda: mark("start"))
    runs.first_token.connect(lambda: mark("first"))
    runs.run_ended.connect(lambda _result: mark("end"))
    session = ScriptedSession(window, args)
    QTimer.singleShot(0, session.start)
    # The same size whether or not this version of the window knows --size.
    width, height = (int(v) for v in a.size.lower().split("x"))
    QTimer.singleShot(0, lambda: window.resize(width, height))
    code = app.exec()
    window.shutdown()
    result = runs.last_result
    if result is None or "end" not in marks or "first" not in marks:
        print(json.dumps({"error": window.error_banner.message() or f"exit {code}"}))
        return 1
    (w0, c0), (w1, c1), (w2, c2) = marks["start"], marks["first"], marks["end"]
    line = getattr(window.summary, "gui_time", None)  # the window's own figure, if it has one
    print(json.dumps({
        "tokens": result.n_generated, "tps": result.tokens_per_second,
        "run_s": w2 - w0, "gui_cpu_s": c2 - c0, "gen_s": w2 - w1, "gui_gen_cpu_s": c2 - c1,
        "summary": line.text() if line is not None else None,
    }))
    if profile is not None:
        stats = pstats.Stats(profile, stream=sys.stderr)
        stats.sort_stats("tottime").print_stats(30)
    return 0


def _cli_tps(a: argparse.Namespace, env: dict[str, str]) -> float:
    cmd = [sys.executable, "-m", "app", "run", "--model", a.model, *_draft(a), "--track", a.track,
           "--prompt-file", a.prompt_file, "--max-tokens", str(a.max_tokens),
           "--threads", str(a.threads), "--json", "--no-events", "--no-save"]
    # The chat template as in the window: an explicit flag while the CLI has one.
    helptext = subprocess.run([sys.executable, "-m", "app", "run", "--help"], cwd=ROOT, env=env,
                              capture_output=True, text=True, check=False).stdout
    if re.search(r"--chat\b", helptext):
        cmd.append("--chat")
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"decodelab run failed: {out.stderr.strip()[-400:]}")
    data = json.loads(out.stdout)
    result = data.get("result", data)
    return float(result["tokens_per_second"])


def _window(a: argparse.Namespace, env: dict[str, str]) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", *sys.argv[1:]]
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    if a.profile:
        sys.stderr.write(out.stderr)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        raise SystemExit(f"the window run failed: {out.stderr.strip()[-600:]}")
    data: dict[str, Any] = json.loads(lines[-1])
    if "error" in data:
        raise SystemExit(f"the window run failed: {data['error']}")
    return data


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="smollm2-135m", help="GGUF path or pinned name")
    p.add_argument("--draft", help="draft model (Track 1)")
    p.add_argument("--track", default="baseline")
    p.add_argument("--max-tokens", type=int, default=512)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--prompt-file", default=str(DEFAULT_PROMPT))
    p.add_argument("--size", default="1280x720", help="window size (WxH)")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--vs-cli", action="store_true", help="alternate with `decodelab run`")
    p.add_argument("--profile", action="store_true", help="cProfile the GUI thread")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        return child(a)
    env = _environment()
    rows: list[dict[str, Any]] = []
    cli: list[float] = []
    for i in range(a.runs):
        d = _window(a, env)
        rows.append(d)
        share, gen_share = d["gui_cpu_s"] / d["run_s"], d["gui_gen_cpu_s"] / d["gen_s"]
        line = (f"run {i + 1}: {d['tokens']} tokens, {d['tps']:.1f} tok/s in the window; GUI "
                f"thread {d['gui_cpu_s']:.3f} s CPU in {d['run_s']:.2f} s = {100 * share:.1f} %"
                f" of the run, {100 * gen_share:.1f} % of generation, "
                f"{1000 * d['gui_gen_cpu_s'] / max(1, d['tokens']):.2f} ms per token")
        if a.vs_cli:
            cli.append(_cli_tps(a, env))
            line += f"; CLI {cli[-1]:.1f} tok/s"
        print(line + (f"; summary: {d['summary']!r}" if d.get("summary") else ""), flush=True)
    med = statistics.median
    print(f"median GUI-thread share: {100 * med(r['gui_cpu_s'] / r['run_s'] for r in rows):.1f} %"
          f" of the run, {100 * med(r['gui_gen_cpu_s'] / r['gen_s'] for r in rows):.1f} % of "
          f"generation; window {med(r['tps'] for r in rows):.1f} tok/s")
    if cli:
        ratios = [r["tps"] / c for r, c in zip(rows, cli, strict=True)]
        print(f"window / CLI tokens/s: median {med(ratios):.3f} "
              f"({', '.join(f'{x:.3f}' for x in ratios)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

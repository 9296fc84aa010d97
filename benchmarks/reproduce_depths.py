"""Layer-skip self-drafting (Tracks 7, 9, 10) measured on a real model: per prompt and depth,
acceptance, acceptance by draft position, tokens/s and speedup against the baseline, the
time and disk the derived self-draft costs; beside the study's 0.446 % (CAS-Spec).

Each prompt is one ``app.core.reproduce.layerskip`` experiment (one baseline, then one
Track 1 run per depth, fixed drafting with K drafts per round, p-min 0), kept in the
reproductions folder like the app's. Derivation is timed when the draft is made; later
prompts reuse the cached drafts. With ``--screenshot`` the evidence view of the last
experiment is saved as a PNG (offscreen, 1280x720).

    .venv/bin/python -m benchmarks.reproduce_depths --model qwen2.5-coder-1.5b \
        --prompts code_edit,novel_code --max-tokens 64 --threads 2 \
        --screenshot resources/screenshots/reproduce.png
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from app.core.events import RunSettings
from app.core.models.library import resolve_model
from app.core.reproduce.layerskip import reproduce_settings, run_layer_skip
from app.core.reproduce.result import Reproduction, by_position
from app.core.reproduce.store import Reproductions
from app.core.session import Session
from app.core.sizes import human_size
from benchmarks.common import machine_summary, prompt_text


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.2f} %"


def table(rep: Reproduction, prompt: str) -> list[str]:
    b = rep.baseline
    lines = [f"### {rep.target_name}, prompt `{prompt}` ({rep.track})", "",
             f"baseline: {b.n_generated if b else 0} tokens at "
             f"{b.tokens_per_second if b else 0:.2f} tok/s", "",
             "| blocks | drafted | accepted | acceptance | by position | tok/s | paired baseline "
             "tok/s | speedup | same answer | draft size | derived in |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for d in rep.depths:
        r = d.result
        proposed, accepted = by_position(r)
        pos = " / ".join(f"{100 * a / p:.0f}" if p else "—" for p, a in zip(proposed, accepted,
                                                                              strict=True))
        same = "yes" if d.first_difference is None else f"from {d.first_difference}" + (
            f" (margin {d.margin_at_difference:.2g})" if d.margin_at_difference is not None
            else "")
        made = "cached" if d.reused else f"{d.derive_seconds:.1f} s"
        lines.append(f"| {d.n_blocks} of {d.of_blocks} | {r.n_drafted} | {r.n_accepted} | "
                     f"{_pct(d.acceptance)} | {pos} % | {r.tokens_per_second:.2f} | "
                     f"{d.baseline_tokens_per_second or 0:.2f} | {d.speedup or 0:.2f}× | "
                     f"{same} | {human_size(d.draft_size)} | {made} |")
    lines += ["", "reported, not measured here: " + "; ".join(r.text() for r in rep.reported),
              "", rep.verdict, ""]
    return lines


def screenshot(rep: Reproduction, path: Path) -> None:
    """The evidence view of ``rep`` at 1280x720, offscreen."""
    import os

    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtWidgets import QApplication

    from app.ui.lane import Lane
    from app.ui.reproduce_view import ReproduceView
    from app.ui.state import WorkbenchState

    app = QApplication.instance() or QApplication([])
    lane = Lane()
    try:
        view = ReproduceView(lane, WorkbenchState(lane), lambda: "not running here")
        view.resize(1280, 720)
        view.context_line.setText(f"{rep.target_name} · {rep.settings.get('max_tokens')} "
                                  f"tokens · prompt “{' '.join(rep.prompt.split())[:60]}…”")
        view.show_reproduction(rep)
        view.show()
        for _ in range(5):
            app.processEvents()
        path.parent.mkdir(parents=True, exist_ok=True)
        view.grab().save(str(path))
        view.close()
    finally:
        lane.shutdown()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="qwen2.5-coder-1.5b")
    ap.add_argument("--track", default="cas-spec",
                    choices=("cas-spec", "clasp-swift", "kangaroo"))
    ap.add_argument("--prompts", default="code_edit,novel_code")
    ap.add_argument("--depths", default="", help="e.g. 2,7,14,21 (default: L/4, L/2, 3L/4, 2)")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--draft-max", type=int, default=4)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--no-chat", action="store_true", help="the raw prompt, no chat template")
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--screenshot", type=Path, help="save the last evidence view as a PNG")
    args = ap.parse_args()
    target = resolve_model(args.model)
    depths = [int(d) for d in args.depths.split(",") if d] or None
    s = reproduce_settings(RunSettings(max_tokens=args.max_tokens, draft_max=args.draft_max,
                                       threads=args.threads, chat=not args.no_chat))
    print(f"machine: {machine_summary()}\n")
    session, reps, out = Session(), [], []
    try:
        for name in [p for p in args.prompts.split(",") if p]:
            t0 = time.perf_counter()
            rep = run_layer_skip(session, args.track, target, prompt_text(name), s, depths,
                                 lambda step: print(f"  [{step.done}/{step.total}] {step.text}",
                                                    flush=True)
                                 if "%" not in step.text else None)
            Reproductions().save(rep)
            reps.append(rep)
            took = time.perf_counter() - t0
            lines = [*table(rep, name), f"(experiment took {took:.0f} s, kept as {rep.id})", ""]
            print("\n".join(lines), flush=True)
            out.append({"prompt": name, **rep.to_dict(with_events=False)})
    finally:
        session.close()
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n")
    if args.screenshot and reps:
        screenshot(reps[-1], args.screenshot)
        print(f"screenshot: {args.screenshot}")


if __name__ == "__main__":
    main()

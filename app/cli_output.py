"""Human-readable output of the command line (JSON output lives with the data classes)."""

from __future__ import annotations

import statistics
import sys

from app.cli_common import OutputError
from app.core.compat import Compatibility
from app.core.events import Event, RunResult, TokenEvent
from app.core.gguf_info import ModelInfo
from app.core.labels import MEAN_ACCEPTED_LENGTH_HELP, stop_label
from app.core.metrics import mean_accepted_length
from app.core.verdict import Comparison, idle_reason


def _mb(n: int) -> str:
    return f"{n / 1e6:,.1f} MB"


def print_inspect(info: ModelInfo, compat: Compatibility | None) -> None:
    rows = [
        ("file", info.path),
        ("name", info.name),
        ("architecture", info.architecture),
        ("parameters", f"{info.size_label} ({info.n_params:,})"),
        ("file size", _mb(info.file_size)),
        ("quantization", f"{info.quantization} (most bytes in {info.dominant_tensor_type})"),
        ("context length", str(info.context_length)),
        ("vocabulary", f"{info.n_vocab} ({info.tokenizer_model}/{info.tokenizer_pre})"),
        ("BOS / EOS", f"{info.bos_id} / {info.eos_id} (add BOS: {info.add_bos})"),
        ("chat template", "yes" if info.has_chat_template else "no"),
        (
            "experts",
            f"{info.expert_used_count} of {info.expert_count} active" if info.is_moe else "not MoE",
        ),
        (
            "recurrent",
            "recurrent"
            if info.is_recurrent
            else "hybrid"
            if info.is_hybrid
            else "no (attention only)",
        ),
        (
            "speculation",
            ("allowed: " if info.speculation_allowed else "refused: ") + info.speculation_reason,
        ),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    if compat is not None:
        print()
        print(f"draft {compat.summary().split(':')[0].upper()}")
        for c in compat.checks:
            print(f"  [{'ok' if c.ok else 'FAIL'}] {c.name}: {c.detail}")


class StreamSink:
    """Prints answer tokens as they come. If standard output fails, streaming stops and the
    run goes on (to be kept in the history); ``error`` says what failed."""

    def __init__(self) -> None:
        self.error: OutputError | None = None

    def __call__(self, event: Event) -> None:
        if self.error is not None or not isinstance(event, TokenEvent):
            return
        try:
            sys.stdout.write(event.text)
            sys.stdout.flush()
        except OutputError as exc:
            self.error = exc
        except OSError as exc:
            self.error = OutputError(exc)


def stream_sink() -> StreamSink:
    return StreamSink()


def _fmt(v: float | None, spec: str = ".2f") -> str:
    return "-" if v is None else format(v, spec)


def print_result(r: RunResult, streamed: bool, verdict: str | None = None) -> None:
    """The answer (unless it was streamed), then its figures on standard error; ``verdict``:
    the speedup and verdict it was shown with (a saved run), if any."""
    if not streamed:
        print(r.text)
    print()
    mean = mean_accepted_length(r.events)
    print(
        f"[{r.track}] {r.n_generated} tokens in {r.generation_seconds:.2f} s "
        f"({r.tokens_per_second:.2f} tokens/s), stop: {r.stop_reason}; "
        f"drafted {r.n_drafted}, accepted {r.n_accepted} "
        f"(acceptance {_fmt(r.acceptance_rate, '.1%')}, mean accepted length "
        f"{_fmt(mean)}{' ' + _MEAN_NOTE if mean is not None else ''}); "
        f"prompt {r.prompt_tokens} tokens in {r.prefill_seconds:.2f} s",
        file=sys.stderr,
    )
    idle = idle_reason(r)
    if idle is not None:  # the notes say why: said once, as the reason
        print(f"[{r.track}] drafted nothing: {idle}", file=sys.stderr)
    else:
        for note in r.notes:
            print(f"[{r.track}] note: {note}", file=sys.stderr)
    if verdict:
        print(f"[{r.track}] speedup: {verdict}", file=sys.stderr)


_MEAN_NOTE = "= accepted drafts + 1 bonus token per verify"


def print_comparison(c: Comparison) -> None:
    """The table of a comparison; with repeats, medians and each track's speedup range
    (lowest-highest of its paired speedups); then the verdict (``verdict.judge``: no best
    within noise), why a track drafted nothing, and the runs' notes."""
    spread = c.repeats > 1
    rng = f" {'range':>11}" if spread else ""
    head = (
        f"{'track':<18} {'tok/s':>8} {'speedup':>8}{rng} {'accept':>7} {'mean len':>8} "
        f"{'same':>5}  note"
    )
    if spread:
        print(f"medians of {c.repeats} interleaved repeats (range: lowest-highest speedup)")
    print(head)
    print("-" * len(head))
    for run in c.runs:
        r = run.result
        note = "drafted nothing" if idle_reason(r) is not None else ""
        if r.stop_reason not in ("eos", "max_tokens"):
            note = ", ".join(filter(None, [note, stop_label(r.stop_reason).lower()]))
        if run.first_difference is not None:
            note = ", ".join(filter(None, [note, f"differs at token {run.first_difference}"]))
            if run.baseline_margin is not None:
                note += (
                    f" (baseline margin {run.baseline_margin:.3f}: "
                    f"{'near-tie' if run.near_tie else 'NOT a near-tie'})"
                )
        same = (
            "-"
            if run.same_text_as_baseline is None
            else ("yes" if run.same_text_as_baseline else "no")
        )
        tps = r.tokens_per_second
        cells = ""
        if spread:
            reps = run.repeats
            low = min(reps.speedups) if reps and reps.speedups else None
            high = max(reps.speedups) if reps and reps.speedups else None
            if reps and reps.tokens_per_second:
                tps = statistics.median(reps.tokens_per_second)
            cells = f" {_fmt(low) + '-' + _fmt(high):>11}"
        print(
            f"{r.track:<18} {tps:>8.2f} {_fmt(run.speedup, '.2f'):>8}{cells} "
            f"{_fmt(r.acceptance_rate, '.0%'):>7} {_fmt(mean_accepted_length(r.events)):>8} "
            f"{same:>5}  {note}"
        )
    print(f"mean len: {MEAN_ACCEPTED_LENGTH_HELP}")
    if len(c.runs) > 1:
        print(f"verdict: {c.verdict.text}")
    for run in c.runs:
        idle = idle_reason(run.result)
        if idle is not None:
            print(f"drafted nothing [{run.result.track}]: {idle}")
            continue
        for text in run.result.notes:
            print(f"note [{run.result.track}]: {text}")


def write_csv(c: Comparison, path: str) -> None:
    """One row per run: the run CSV of app.core.export is the one definition of it."""
    from app.core.export import write_runs_csv

    write_runs_csv(c, path)

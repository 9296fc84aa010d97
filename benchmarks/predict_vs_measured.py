"""Predicted against measured speedup of Track 1 (draft model) and Track 8 (prompt lookup).

For each target, prompt, source and fixed K (adaptive drafting off) the script runs the
baseline and the track through the app's own ``Session`` (greedy, interleaved repeats,
medians), measures the pair's costs with ``app.core.predict.measure`` right after each
repeat (so at the context length the runs reached: the prompt plus the answer), and
compares the measured speedup with three predictions:

``pred``  the issue's formula, ``app.core.predict.predict`` at the acceptance ``alpha``
          observed in the measured runs: every round drafts K tokens and yields
          E = (1 - alpha^(K+1)) / (1 - alpha) tokens for K draft steps plus one verification
          batch of K+1 (prompt lookup: drafting is free).
          ``alpha`` is ``predict.observed_alpha``: accepted drafts / (accepted drafts + first
          rejections), the per-token acceptance chance the formula assumes (drafts after a
          round's first rejection were never tried and do not count).
``pred_r`` the same formula applied round by round to the draft lengths the run actually
          proposed. Fixed-K rounds are often shorter than K: prompt lookup proposes nothing
          when no n-gram matches (the round is a plain step: one token for one step) and
          fewer than K tokens when the match runs out; the draft model stops at the first
          token below ``draft_p_min`` confidence (but always drafts one). A round with n
          drafts yields E(alpha, n) tokens for a verify batch of n+1 plus, for the draft
          model, n draft steps (n+1 when it stopped before its limit: the low-confidence
          token was computed too). The last rounds are also capped by the tokens left.
          pred_r = t_step * sum E(alpha, n_r) / sum cost(n_r). This is the honest predictor
          when drafts are shorter than K: the plain formula credits rounds with drafts that
          were never proposed.
``pred_c`` (diagnostic) the tokens each round really yielded over the same round costs as
          pred_r: no acceptance model at all. What is left of err_c is the cost model's
          share (costs measured in isolation against costs inside a run, Python work per
          round, noise); err_r - err_c is the acceptance model's (one i.i.d. alpha per
          token against the run's real runs of accepted tokens).
``a_inv`` (diagnostic) the alpha for which E(alpha, K) equals the run's measured tokens per
          round: what the plain formula would have to believe to match the yield.
          ``alpha - a_inv`` shows how much the short and empty rounds cost. The plain
          formula at a_inv is in the JSON (``predicted_inverse``) but not in the table: it
          still charges K drafts per round, so with short rounds it errs the other way.

Also reported: mean drafts per round (``d/rnd``) and the share of rounds without any draft
(``empty``). Errors are (pred - meas) / meas. Not modelled anywhere: Python work per
round (acceptance, events, lookup's index: the prompt-lookup "free" drafting is a few
hundred microseconds per round) and noise; ``measure`` keeps the fastest of its samples.

    .venv/bin/python -m benchmarks.predict_vs_measured \
        --targets qwen2.5-coder-1.5b-f16,qwen2.5-coder-1.5b --draft qwen2.5-coder-0.5b \
        --prompts code_edit --ks 2,4,8 --repeats 3 --max-tokens 128 --json predict.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from app.core.events import Event, RoundEvent, RunResult, RunSettings
from app.core.models.library import resolve_model
from app.core.predict import (
    MeasuredCosts,
    expected_tokens,
    measure,
    monotone,
    observed_alpha,
    predict,
)
from app.core.session import Session
from benchmarks.common import machine_summary, median, templated, warm_page_cache

SOURCES = ("draft", "lookup")
COST_BUDGET_SECONDS = 20.0


# -- pure parts (tested without models) ---------------------------------------------------


@dataclass
class Round:
    proposed: int
    limit: int  # drafts the round was allowed: min(K, tokens left - 1)
    generated: int


def rounds_of(events: Iterable[Event], k: int, max_tokens: int) -> list[Round]:
    """Every verification round of a run (with or without drafts) and its draft limit."""
    out, done = [], 0
    for e in events:
        if isinstance(e, RoundEvent):
            out.append(Round(e.proposed, max(0, min(k, max_tokens - done - 1)), e.generated))
            done += e.generated
    return out


def combine_costs(samples: Sequence[MeasuredCosts]) -> MeasuredCosts:
    """Per batch size (and for the draft step) the median over several measurements."""
    sizes = set.intersection(*(set(c.batches) for c in samples))
    batches = monotone({n: statistics.median(c.batches[n] for c in samples) for n in sizes})
    drafts = [c.draft_step for c in samples if c.draft_step is not None]
    return MeasuredCosts(
        batches,
        statistics.median(drafts) if drafts else None,
        sum(c.seconds_spent for c in samples),
        any(c.noisy for c in samples),
    )


def predict_plain(costs: MeasuredCosts, alpha: float, source: str, k: int) -> float:
    """The app's own prediction for K (``predict.predict``)."""
    return predict(costs, alpha, source, "observed", max_k=k).predictions[k - 1].speedup


def cost_of_round(costs: MeasuredCosts, source: str, r: Round) -> float:
    """Predicted cost of a round with ``r.proposed`` drafts: the verify batch of n+1 plus,
    for the draft model, n draft steps (n+1 if it stopped before its limit)."""
    n = r.proposed
    steps = n + (1 if n < r.limit else 0) if source == "draft" and r.limit > 0 else 0
    return costs.verify(n) + steps * (costs.draft_step or 0.0)


def predict_rounds(
    costs: MeasuredCosts, alpha: float, source: str, rounds: Sequence[Round]
) -> float:
    """The formula round by round, on the draft lengths actually proposed."""
    tokens = sum(expected_tokens(alpha, r.proposed) for r in rounds)
    seconds = sum(cost_of_round(costs, source, r) for r in rounds)
    return tokens / seconds * costs.step if seconds > 0 else float("nan")


def predict_costs_only(costs: MeasuredCosts, source: str, rounds: Sequence[Round]) -> float:
    """The tokens each round really yielded over its predicted cost: no acceptance model
    at all, so what is left of the error is the cost model's (and Python's) share."""
    tokens = sum(r.generated for r in rounds)
    seconds = sum(cost_of_round(costs, source, r) for r in rounds)
    return tokens / seconds * costs.step if seconds > 0 else float("nan")


def inverse_alpha(tokens_per_round: float, k: int) -> float:
    """The alpha for which E(alpha, k) equals ``tokens_per_round`` (clipped to [0, 1])."""
    if tokens_per_round <= 1.0:
        return 0.0
    if tokens_per_round >= k + 1:
        return 1.0
    lo, hi = 0.0, 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if expected_tokens(mid, k) < tokens_per_round else (lo, mid)
    return (lo + hi) / 2


def error(pred: float, meas: float) -> float:
    return (pred - meas) / meas if meas > 0 else float("nan")


def compare(
    costs: MeasuredCosts,
    source: str,
    k: int,
    base_runs: Sequence[RunResult],
    runs: Sequence[RunResult],
    max_tokens: int,
) -> dict[str, Any]:
    """One table row: acceptance and round statistics of ``runs`` (pooled over repeats),
    the three predictions and the measured speedup (ratio of median tokens/s)."""
    events = [e for r in runs for e in r.events]
    alpha = observed_alpha(events)
    rounds = [x for r in runs for x in rounds_of(r.events, k, max_tokens)]
    n_rounds = len(rounds) or 1
    tokens_per_round = sum(x.generated for x in rounds) / n_rounds
    base_tps = median([r.tokens_per_second for r in base_runs])
    tps = median([r.tokens_per_second for r in runs])
    meas = tps / base_tps if base_tps > 0 else float("nan")
    a = alpha if alpha is not None else 0.0
    a_inv = inverse_alpha(tokens_per_round, k)
    pred = predict_plain(costs, a, source, k)
    pred_r = predict_rounds(costs, a, source, rounds)
    pred_i = predict_plain(costs, a_inv, source, k)
    pred_c = predict_costs_only(costs, source, rounds)
    return {
        "source": source,
        "k": k,
        "alpha": alpha,
        "alpha_inverse": a_inv,
        "rounds": len(rounds),
        "drafts_per_round": sum(x.proposed for x in rounds) / n_rounds,
        "empty_fraction": sum(x.proposed == 0 for x in rounds) / n_rounds,
        "tokens_per_round": tokens_per_round,
        "predicted": pred,
        "predicted_rounds": pred_r,
        "predicted_inverse": pred_i,
        "predicted_costs_only": pred_c,
        "measured": meas,
        "error": error(pred, meas),
        "error_rounds": error(pred_r, meas),
        "error_inverse": error(pred_i, meas),
        "error_costs_only": error(pred_c, meas),
        "baseline_tps": [r.tokens_per_second for r in base_runs],
        "track_tps": [r.tokens_per_second for r in runs],
        "same_tokens": all(r.token_ids == base_runs[0].token_ids for r in runs),
        "draft_seconds_per_round": sum(r.draft_seconds for r in runs) / n_rounds,
    }


# -- running ------------------------------------------------------------------------------


@dataclass
class Config:
    ks: list[int]
    sources: list[str]
    repeats: int = 3
    max_tokens: int = 128
    threads: int = 2
    ctx: int = 4096
    p_min: float | None = None  # None: RunSettings' default

    def base(self) -> RunSettings:
        s = RunSettings(max_tokens=self.max_tokens, threads=self.threads, ctx=self.ctx)
        return s if self.p_min is None else s.with_options(draft_p_min=self.p_min)


def bench_target(
    session: Session,
    target: str,
    draft: str | None,
    prompts: dict[str, str],
    cfg: Config,
    log: Callable[[str], None] = lambda _m: None,
) -> tuple[MeasuredCosts, list[dict[str, Any]]]:
    """Interleaved runs of one target on every prompt, costs measured after each repeat
    (at the context the runs reached), and one row per prompt, source and K."""
    base = cfg.base()
    configs: list[tuple[str, int, RunSettings, str | None]] = [
        (
            src,
            k,
            replace(base, track=src, draft_max=k, adaptive=False),
            draft if src == "draft" else None,
        )
        for src in cfg.sources
        for k in cfg.ks
    ]
    results: dict[tuple[str, str, int], list[RunResult]] = {}
    samples: list[MeasuredCosts] = []
    for name, text in prompts.items():
        for rep in range(cfg.repeats):
            todo = [("baseline", 0, replace(base, track="baseline"), None), *configs]
            for src, k, s, d in todo:
                r = session.run(target, d, text, s)
                if r.error or r.stop_reason in ("error", "cancelled"):
                    raise RuntimeError(f"{name} {src} K={k}: {r.stop_reason} {r.error or ''}")
                results.setdefault((name, src, k), []).append(r)
                log(f"  [{rep}] {name} {src} K={k}: {r.tokens_per_second:.2f} tok/s, "
                    f"alpha {observed_alpha(r.events) or 0:.2f}, {r.n_generated} tokens")
            t = session.load_target(target, base)
            dm = session.load_draft(draft, base) if draft and "draft" in cfg.sources else None
            c = measure(t, dm, sizes=range(1, max(cfg.ks) + 2), budget_seconds=COST_BUDGET_SECONDS)
            samples.append(c)
            log(f"  [{rep}] costs: step {c.step * 1000:.1f} ms, draft "
                f"{(c.draft_step or 0) * 1000:.1f} ms, at context {t.n_past}"
                f"{' (noisy)' if c.noisy else ''}")
    costs = combine_costs(samples)
    rows = []
    for name in prompts:
        base_runs = results[(name, "baseline", 0)]
        for src, k, _s, _d in configs:
            row = compare(costs, src, k, base_runs, results[(name, src, k)], cfg.max_tokens)
            rows.append({"prompt": name, **row})
    return costs, rows


def fmt(x: float | None, spec: str) -> str:
    return "nan" if x is None else format(x, spec)


HEADER = (
    f"{'target':<24}{'prompt':<11}{'source':<7}{'K':>3}{'alpha':>7}{'a_inv':>7}{'d/rnd':>7}"
    f"{'empty':>7}{'pred':>7}{'pred_r':>8}{'pred_c':>8}{'meas':>7}{'err':>8}{'err_r':>8}"
    f"{'err_c':>8}"
)


def row_line(target: str, r: dict[str, Any]) -> str:
    return (
        f"{target:<24}{r['prompt']:<11}{r['source']:<7}{r['k']:>3}"
        f"{fmt(r['alpha'], '.3f'):>7}{r['alpha_inverse']:7.3f}{r['drafts_per_round']:7.2f}"
        f"{r['empty_fraction']:7.0%}{r['predicted']:7.2f}{r['predicted_rounds']:8.2f}"
        f"{r['predicted_costs_only']:8.2f}{r['measured']:7.2f}{r['error']:+8.1%}"
        f"{r['error_rounds']:+8.1%}{r['error_costs_only']:+8.1%}"
    )


def costs_line(target: str, c: MeasuredCosts, ks: Sequence[int]) -> str:
    verify = ", ".join(f"{k + 1}: {c.verify(k) / c.step:.2f}" for k in ks)
    draft = f", draft step {c.draft_step / c.step:.3f} of a step" if c.draft_step else ""
    noisy = " (noisy)" if c.noisy else ""
    return (f"# costs {target}: step {c.step * 1000:.1f} ms, verify batch in steps {{{verify}}}"
            f"{draft}{noisy}")


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--targets", default="qwen2.5-coder-1.5b-f16,qwen2.5-coder-1.5b")
    ap.add_argument("--draft", default="qwen2.5-coder-0.5b")
    ap.add_argument("--sources", default=",".join(SOURCES), help="draft,lookup")
    ap.add_argument("--prompts", default="code_edit")
    ap.add_argument("--ks", default="2,4,8")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ctx", type=int, default=4096)
    ap.add_argument("--p-min", type=float, help="draft_p_min of the draft model (default: "
                    "the app's); 0 makes Track 1 draft exactly K every round")
    ap.add_argument("--json", help="write costs and rows to this file")
    args = ap.parse_args()

    sources = args.sources.split(",")
    if unknown := set(sources) - set(SOURCES):
        ap.error(f"unknown sources {sorted(unknown)}")
    cfg = Config(
        [int(k) for k in args.ks.split(",")], sources, args.repeats, args.max_tokens,
        args.threads, args.ctx, args.p_min,
    )
    if min(cfg.ks) < 1:
        ap.error("K must be >= 1")
    draft = str(resolve_model(args.draft)) if "draft" in sources else None
    targets = {spec: str(resolve_model(spec)) for spec in args.targets.split(",")}
    print(f"# {machine_summary()}")
    print(f"# draft {args.draft if draft else None}, prompts {args.prompts}, K {args.ks}, "
          f"fixed K (adaptive off), draft_p_min {cfg.base().option('draft_p_min')}, greedy, "
          f"{args.max_tokens} tokens, {args.threads} threads, {args.repeats} repeats (medians)")
    out: dict[str, Any] = {"machine": machine_summary(), "args": vars(args), "targets": {}}
    lines = []
    for spec, target in targets.items():
        warm_page_cache(target, draft)
        prompts = {name: templated(target, name) for name in args.prompts.split(",")}
        session = Session()
        try:
            costs, rows = bench_target(
                session, target, draft, prompts, cfg,
                lambda m: print(m, file=sys.stderr, flush=True),
            )
        finally:
            session.close()
        print(costs_line(spec, costs, cfg.ks), flush=True)
        lines += [row_line(spec, r) for r in rows]
        out["targets"][spec] = {"path": target, "costs": costs.to_dict(), "rows": rows}
    print(HEADER)
    print("\n".join(lines))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())

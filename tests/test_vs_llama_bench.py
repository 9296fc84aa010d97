"""benchmarks.vs_llama_cpp: pairing of ours with llama.cpp's tools, and the table's ratios."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from app.core.events import RunSettings
from benchmarks.vs_llama_cpp import plan, print_table, run_tool, stop_args, their_time_split


def test_each_configuration_runs_next_to_its_llama_cpp_counterpart() -> None:
    args = argparse.Namespace(skip_theirs=False, adaptive_only=False, tracks="draft,lookup")
    steps = plan(args, [4], RunSettings(), "t.gguf", "d.gguf", Path("/bin"), "2", [], "p")
    assert [label for label, _ in steps] == [
        "ours baseline", "llama-completion",
        "ours draft K=4", "llama-speculative-simple K=4",
        "ours lookup K=4", "llama-lookup K=4",
        "ours draft adaptive", "ours lookup adaptive",
    ]
    settings, draft = steps[2][1]  # type: ignore[misc]
    assert (settings.track, settings.draft_max, settings.adaptive, draft) == (
        "draft", 4, False, "d.gguf")
    only = plan(argparse.Namespace(skip_theirs=True, adaptive_only=True, tracks="draft,lookup"),
                [4], RunSettings(),
                "t.gguf", "d.gguf", Path("/bin"), "2", [], "p")
    assert [label for label, _ in only] == [
        "ours baseline", "ours draft adaptive", "ours lookup adaptive"]
    lookup = plan(argparse.Namespace(skip_theirs=False, adaptive_only=False, tracks="lookup"),
                  [8], RunSettings(), "t.gguf", "d.gguf", Path("/bin"), "2", [], "p")
    assert [label for label, _ in lookup] == [
        "ours baseline", "llama-completion", "ours lookup K=8", "llama-lookup K=8",
        "ours lookup adaptive"]


def test_paired_speedup_cancels_a_drift_between_repeats(capsys: pytest.CaptureFixture[str]
                                                        ) -> None:
    # The machine ran twice as fast in the second repeat: each repeat's own ratio is 1.5,
    # the ratio of medians is not.
    rows = {("p", "ours baseline"): [4.0, 8.0, 8.0], ("p", "ours lookup K=4"): [6.0, 12.0, 6.0],
            ("p", "llama-completion"): [4.0, 10.0, 8.0]}
    print_table(["p"], rows, {})
    out = capsys.readouterr().out.splitlines()
    lookup = next(line for line in out if "ours lookup K=4" in line).split()
    assert lookup[-4:-1] == ["6.00", "0.75", "1.50"]  # tok/s, ratio of medians, paired
    pairing = next(line for line in out if "ours baseline / llama-completion" in line)
    assert "1.00   (each repeat: 1.00, 0.80, 1.00)" in pairing


def test_run_tool_reads_speed_and_draft_counts() -> None:
    script = ("echo 'decoded 128 tokens in 10.00 seconds, speed: 12.80 t/s' >&2; "
              "echo 'n_drafted = 100'; echo 'n_accept  = 55'")
    found = run_tool(["sh", "-c", script])
    assert found == {"tps": 12.8, "printed_tps": 12.8, "n_decoded": 128.0, "seconds": 10.0,
                     "n_drafted": 100.0, "n_accept": 55.0}
    # llama-lookup ran past the 120 tokens asked for: counted at 120, in the same time.
    assert run_tool(["sh", "-c", script], 120)["tps"] == pytest.approx(12.0)
    with pytest.raises(RuntimeError, match="no speed"):
        run_tool(["sh", "-c", "echo nothing"])


def test_time_split_of_a_tool_takes_the_targets_perf_print() -> None:
    # llama-speculative-simple prints the draft's perf first, then the target's; a decode
    # of several tokens (prompt included) counts as "prompt eval".
    script = ("echo 'encoded  340 tokens in    3.000 seconds, speed: 113.000 t/s' >&2; "
              "echo 'decoded 128 tokens in 10.00 seconds, speed: 12.80 t/s' >&2; "
              "echo 't_draft      = 500.00 ms, 3.00 us per token'; "
              "echo 'prompt eval time =  900.00 ms /   340 tokens'; "
              "echo '       eval time =  1000.00 ms /    90 runs'; "
              "echo 'prompt eval time =  9000.00 ms /   400 tokens'; "
              "echo '       eval time =  2000.00 ms /    20 runs'")
    found = run_tool(["sh", "-c", script])
    assert (found["eval_ms"], found["eval_runs"], found["batch_ms"], found["draft_ms"]) == (
        2000.0, 20.0, 9000.0, 500.0)
    assert their_time_split(found) == (
        " [target decode 8.00 s (20 single-token calls 2.00 s), draft 0.50 s, rest 1.50 s]")
    # llama-completion prints no "decoded" line: its speed comes from the eval line.
    only_eval = "echo '       eval time =  1000.00 ms /    10 runs'"
    assert run_tool(["sh", "-c", only_eval])["tps"] == pytest.approx(10.0)


def test_the_tools_stop_where_ours_does() -> None:
    # Both speculative tools stop only once past -n: asked for one fewer, they end on the
    # round that reaches the count ours stops at; llama-completion's speed is per decode.
    steps = dict(plan(argparse.Namespace(skip_theirs=False, adaptive_only=False,
                                         tracks="draft,lookup"),
                      [4], RunSettings(max_tokens=128), "t.gguf", "d.gguf", Path("/bin"), "2",
                      [], "p"))
    assert stop_args(128) == ["-n", "127"]
    for label, n in [("llama-completion", "128"), ("llama-speculative-simple K=4", "127"),
                     ("llama-lookup K=4", "127")]:
        job = steps[label]
        assert isinstance(job, list) and job[job.index("-n") + 1] == n


def test_llama_lookups_untimed_prompt_token_is_added_to_its_time() -> None:
    # llama-lookup decodes the prompt's last token before its timer starts; ours does it in
    # the first timed round. One of its own single-token decodes (mean 0.15 s) is added.
    script = ("echo 'decoded 131 tokens in 10.00 seconds, speed: 13.10 t/s' >&2; "
              "echo '       eval time =   300.00 ms /     2 runs'")
    found = run_tool(["sh", "-c", script], 128, last_prompt_token_untimed=True)
    assert found["untimed_s"] == pytest.approx(0.15)
    assert found["tps"] == pytest.approx(128 / 10.15)
    assert found["printed_tps"] == pytest.approx(13.1)
    assert run_tool(["sh", "-c", script], 128, False)["tps"] == pytest.approx(12.8)
    assert run_tool(["sh", "-c", script], 128)["tps"] == pytest.approx(12.8)  # "sh": not it
    with pytest.raises(RuntimeError, match="no eval time"):
        run_tool(["sh", "-c", "echo 'decoded 131 tokens in 10.00 seconds, speed: 13.10 t/s'"],
                 128, last_prompt_token_untimed=True)


def test_llama_lookup_is_recognised_by_its_name(tmp_path: Path) -> None:
    tool = tmp_path / "llama-lookup"
    tool.write_text("#!/bin/sh\necho 'decoded 131 tokens in 10.00 seconds, speed: 13.10 t/s'\n"
                    "echo '       eval time =   300.00 ms /     2 runs'\n")
    tool.chmod(0o755)
    assert run_tool([str(tool)], 128)["tps"] == pytest.approx(128 / 10.15)

"""benchmarks/evaluation_time.py: the default run's held-out evaluation timed three ways (minires with batch
norm's one evaluation pass, with the NumPy passes, PyTorch); the README quotes its committed output."""
import re

import pytest

from conftest import REPO, load_benchmark, one_line, run_keeping_threads

REPORT = "results/cpu/2026-12-05-amd-epyc-evaluation-time.txt"
TINY = ["--rounds", "1", "--train-size", "16", "--test-size", "16"]


def test_it_times_the_three_and_says_the_two_minires_evaluations_agree(torch_oracle, capsys):
    module = load_benchmark("evaluation_time")
    assert run_keeping_threads(torch_oracle, module.main, TINY) == 0
    out = capsys.readouterr().out
    assert "the two minires evaluations gave the same loss and error" in out
    assert [name for name, _ in re.findall(r"^  (.+?) +s: [\d.]+ \(median ([\d.]+)\)$", out, re.M)] == [
        "minires, one pass", "minires, NumPy passes", "PyTorch"]


def test_two_minires_evaluations_that_differ_stop_it(torch_oracle, monkeypatch):
    module = load_benchmark("evaluation_time")
    monkeypatch.setattr(module, "two_passes", lambda trainer: (0.0, 0.0))
    with pytest.raises(SystemExit, match="the two minires evaluations differ"):
        run_keeping_threads(torch_oracle, module.main, TINY)


def test_the_readme_quotes_the_committed_output():
    text = (REPO / REPORT).read_text()
    medians = dict(re.findall(r"^  (.+?) +s: [\d., ]+ \(median ([\d.]+)\)$", text, re.M))
    assert set(medians) == {"minires, one pass", "minires, NumPy passes", "PyTorch"}
    assert "the two minires evaluations gave the same loss and error" in text
    assert (f"the default run's evaluation of its 2,000 test images took {medians['minires, one pass']} s (median of "
            f"5 rounds) against {medians['minires, NumPy passes']} s with the NumPy passes and PyTorch's "
            f"{medians['PyTorch']} s ([output]({REPORT}))") in one_line("README.md")

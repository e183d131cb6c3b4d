"""benchmarks/step_memory.py: the peak step memory of each case of the grid, each in a fresh process (a tiny
run: the machinery, not the numbers)."""
import pytest

from conftest import load_benchmark


def test_each_case_of_the_grid_gets_a_row(capsys):
    module = load_benchmark("step_memory")
    rows = module.grid(["resnet20"], [2, 4], [1], with_torch=False)
    assert [row[:3] for row in rows] == [("resnet20", 2, 1), ("resnet20", 4, 1)]
    assert all(row[3] > 0 and row[4] is None and row[5] is None for row in rows)


def test_a_model_pytorch_would_build_differently_is_refused(capsys):
    module = load_benchmark("step_memory")
    with pytest.raises(SystemExit) as exit_:
        module.main(["--models", "resnet18"])
    assert exit_.value.code == 2 and "'resnet18' is not a CIFAR ResNet" in capsys.readouterr().err


def test_the_readme_quotes_the_committed_grid():
    """"the peak memory of a step, 0.99-1.01x PyTorch's": the range of the committed grid's ratios, all
    eight cases (two nets, two batch sizes, one thread and two)."""
    import re
    from conftest import REPO, one_line
    report = "results/cpu/2026-12-05-amd-epyc-step-memory-images.txt"   # the latest build
    ratios = [float(r) for r in re.findall(r"^resnet\d+, batch \d+, \d thread\(s\) \| [\d.]+ \| [\d.]+ \| ([\d.]+)$",
                                           (REPO / report).read_text(), re.M)]
    assert len(ratios) == 8
    readme = one_line("README.md")
    assert f"the peak memory of a step, {min(ratios):.2f}-{max(ratios):.2f}x PyTorch's" in readme
    assert f"[output]({report})" in readme

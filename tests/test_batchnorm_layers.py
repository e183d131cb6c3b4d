"""benchmarks/batchnorm_layers.py: minires' batch norm and PyTorch's on ResNet-20's activation shapes (a tiny
run: the machinery, not the speed), and the README's ranges from its committed output."""
import re

from conftest import REPO, load_benchmark, one_line, run_keeping_threads

REPORT = "results/cpu/2026-12-05-amd-epyc-batchnorm-layers.txt"


def test_each_shape_gets_both_directions_of_both_frameworks(torch_oracle, capsys):
    module = load_benchmark("batchnorm_layers")
    assert run_keeping_threads(torch_oracle, module.main, ["--batch", "2", "--threads", "1", "--repeat", "1"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("batch 2, 1 thread(s), minires ") and len(out) == 4
    for line, (channels, size) in zip(out[1:], module.RESNET20_ACTIVATIONS):
        assert line.startswith(f"  {channels} channels {size}x{size}: forward ")
        assert all(float(r) > 0 for r in re.findall(r"\(([\d.]+)\)", line))


def test_the_readme_quotes_the_committed_ranges():
    text = (REPO / REPORT).read_text()
    forward = [float(r) for r in re.findall(r"forward \d+ vs \d+ \(([\d.]+)\)", text)]
    backward = [float(r) for r in re.findall(r"backward \d+ vs \d+ \(([\d.]+)\)", text)]
    assert len(forward) == len(backward) == 12                  # 3 shapes x (batch 32, 128) x (1, 2 threads)
    readme = one_line("README.md")
    assert (f"minires' forward takes {min(forward):.2f}-{max(forward):.2f}x the time of PyTorch's (on NCHW data, as "
            f"its reference net runs it), its backward {min(backward):.2f}-{max(backward):.2f}x") in readme
    assert f"[output]({REPORT})" in readme
    assert "its backward" in readme and "further behind as the layers get smaller" in readme
    for block in range(4):                                      # each batch and thread count: 16, 32, 64 channels
        ratios = backward[3 * block:3 * block + 3]
        assert ratios == sorted(ratios), ratios

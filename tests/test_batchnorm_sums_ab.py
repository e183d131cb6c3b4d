"""benchmarks/batchnorm_sums_ab.py: batch norm's two sums kernels against the general one they replaced,
alone and in training steps (a tiny run: the machinery, not the speed), and the README's account of the
committed run."""
import re

import numpy as np
import pytest

from conftest import REPO, load_benchmark, one_line

pytest.importorskip("numba")
REPORT = "results/cpu/2026-12-05-amd-epyc-batchnorm-sums-ab.txt"


def test_both_kernel_sets_run_alone_and_in_steps_give_the_same_bits_and_the_default_comes_back(capsys):
    from minires.bench.cpu import set_threads
    from minires.cpu import get_num_threads
    from minires.cpu import batchnorm
    module = load_benchmark("batchnorm_sums_ab")
    default = batchnorm._kernels
    used = set()
    real = {way: dict(kernels) for way, kernels in module.KERNELS.items()}
    for way, kernels in module.KERNELS.items():
        kernels.update({name: (lambda *a, _f=f, _way=way: (used.add(_way), _f(*a))[1]) for name, f in kernels.items()})
    ours = get_num_threads()
    try:
        assert module.main(["--batch", "4", "--threads", "2", "--rounds", "1", "--repeat", "2"]) == 0
    finally:
        for way, kernels in real.items():
            module.KERNELS[way].update(kernels)
        set_threads(ours)
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "batch norm's sums alone, one thread, batch 4, channels-last rows, median of 2 calls:"
    assert [" ".join(line.split()[:4]) for line in out[1:7]] == [
        f"{way} {c} channels {s}x{s}" for c, s in ((16, 32), (32, 16), (64, 8)) for way in ("forward", "backward")]
    assert all(line.endswith("same bits: yes") for line in out[1:7])
    assert out[7].startswith("resnet20 batch 4, 2 thread(s), ")
    assert [line.split()[0] for line in out[8:10]] == ["general", "special"] and float(out[10].split("step ")[1]) > 0
    assert used == {"general", "special"}
    assert batchnorm._kernels is default


def test_the_general_kernel_called_the_old_way_gives_the_new_kernels_bits():
    """The comparison is fair only if the two compute the same thing: float64 data, where a sum in another
    order would show, and a NaN, a -0.0 and an infinity among the gradients."""
    module = load_benchmark("batchnorm_sums_ab")
    rng = np.random.default_rng(3)
    x, gy = rng.standard_normal((2, 11, 40)) * 5 + 3
    gy[0, :3] = np.nan, -0.0, np.inf
    centre = rng.standard_normal(40)
    for name, arguments in (("shifted_sums", (x, centre)), ("gradient_sums", (gy, x, centre))):
        outs = []
        for kernels in (module.KERNELS["general"], module.KERNELS["special"]):
            out = np.zeros((2, 40))
            kernels[name](*arguments, out[0], out[1])
            outs.append(out.tobytes())
        assert outs[0] == outs[1], name


def readme_account(text: str) -> str:
    """The README's sentence about the committed run, its numbers read from the run's output."""
    runs = text.split("# env ")[1:]
    batches = [int(re.search(r"--batch (\d+)", run).group(1)) for run in runs]
    assert batches == [32, 32, 32, 128]
    assert "same bits: NO" not in text and text.count("same bits: yes") == 24

    def alone(way, batch):
        ratios = [float(r) for run, b in zip(runs, batches) if b == batch
                  for r in re.findall(rf"^  {way} .* special / general ([\d.]+)", run, re.M)]
        return f"{min(ratios):.3f}-{max(ratios):.3f}"
    steps = [re.search(r"special / general: step ([\d.]+)", run).group(1) for run in runs]
    return (f"alone on one thread, on ResNet-20's three batch-norm shapes at batch 32 (three runs), {alone('forward', 32)}x the "
            f"general kernel's time forward and {alone('backward', 32)}x backward; at batch 128 {alone('forward', 128)}x forward and "
            f"{alone('backward', 128)}x backward; in ResNet-20 steps on two threads, {', '.join(steps[:2])} and {steps[2]}x at "
            f"batch 32 (three runs) and {steps[3]}x at batch 128")


def test_the_readme_quotes_the_committed_ab():
    assert readme_account((REPO / REPORT).read_text()) in one_line("README.md")

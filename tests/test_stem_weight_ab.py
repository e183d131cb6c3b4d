"""benchmarks/stem_weight_ab.py: the stem's weight gradient from row columns against the column matrix, alone
and in training steps (a tiny run: the machinery, not the speed), and the README's account of the committed run."""
import re

import numpy as np
import pytest

from conftest import REPO, load_benchmark, one_line

pytest.importorskip("numba")
REPORT = "results/cpu/2026-12-05-amd-epyc-stem-weight-ab.txt"


def test_both_routes_run_alone_and_in_steps_and_the_rows_come_back(capsys):
    from minires import backend
    from minires.bench.cpu import set_threads
    from minires.cpu import get_num_threads
    module = load_benchmark("stem_weight_ab")
    conv = backend.lookup("conv2d", np.zeros(1), "numba-rows")[1]
    used = []
    real = {route: getattr(conv, f"_weight_by_{route}") for route in module.ROUTES}
    ours = get_num_threads()
    with pytest.MonkeyPatch.context() as patch:
        for route, method in real.items():
            patch.setattr(type(conv), f"_weight_by_{route}",
                          lambda self, *a, _route=route, _f=getattr(type(conv), f"_weight_by_{route}"): used.append(_route) or _f(self, *a))
        try:
            assert module.main(["--batch", "4", "--threads", "2", "--rounds", "1", "--repeat", "2"]) == 0
        finally:
            set_threads(ours)
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "the stem's weight gradient alone, batch 4, 2 thread(s), median of 2 calls:"
    assert [line.split()[0] for line in out[1:3]] == ["columns", "rows"] and out[3].startswith("  rows / columns ")
    assert out[4].startswith("resnet20 batch 4, 2 thread(s), ")
    assert [line.split()[0] for line in out[5:7]] == ["columns", "rows"] and float(out[7].split("step ")[1]) > 0
    assert {"columns", "rows"} <= set(used)
    assert "_weight_by_rows" not in conv.__dict__                      # the default route is back


def test_both_routes_give_the_references_weight_gradient():
    """Either route, in float64, is the reference's weight gradient of the stem's geometry."""
    from minires import backend
    from minires.cpu.conv import channels_last_empty
    from minires.functional.conv import Im2colConv2d
    module = load_benchmark("stem_weight_ab")
    conv = backend.lookup("conv2d", np.zeros(1), "numba-rows")[1]
    rng = np.random.default_rng(2)
    x = rng.standard_normal((5, 3, 8, 8))
    gy = channels_last_empty((5, 16, 8, 8), np.float64)
    gy[...] = rng.standard_normal(gy.shape)
    expected = Im2colConv2d.backward_weight(np.ascontiguousarray(gy), x, (16, 3, 3, 3), (1, 1), (1, 1))
    try:
        for route in module.ROUTES:
            module.use_route(conv, route)
            np.testing.assert_allclose(conv.backward_weight(gy, x, (16, 3, 3, 3), (1, 1), (1, 1)), expected, atol=1e-12)
    finally:
        module.use_route(conv, "rows")


def readme_account(text: str) -> str:
    """The README's account of the committed run, its numbers read from the run's output."""
    runs = text.split("# env ")[1:]
    settings = [tuple(int(v) for v in re.search(r"--batch (\d+) --threads (\d+)", run).groups()) for run in runs]
    assert settings == [(32, 2)] * 3 + [(128, 2), (32, 1)] + [(128, 2)] * 2
    alone = [float(re.search(r"rows / columns ([\d.]+)\n", run).group(1)) for run in runs]
    steps = [re.search(r"rows / columns: step ([\d.]+)", run).group(1) for run in runs]
    saved = [(float(re.search(r"columns +([\d.]+) ms", run).group(1)) - float(re.search(r"rows +([\d.]+) ms", run).group(1)))
             / float(re.search(r"columns +step +([\d.]+) ms", run).group(1)) for run in runs]   # of a step, alone
    start, end = re.search(r"(\d\d:\d\d) UTC start", text).group(1), re.findall(r"# end (\d\d:\d\d) UTC", text)[-1]
    return (f", {start}-{end} UTC, idle machine ([output]({REPORT})): alone, {min(alone):.2f}-{max(alone):.2f}x the "
            f"time of the columns' route (batch 32 and 128, one thread and two); in ResNet-20 steps {steps[0]}x, "
            f"{steps[1]}x and {steps[2]}x at batch 32 on two threads, {steps[3]}x, {steps[5]}x and {steps[6]}x at "
            f"batch 128, {steps[4]}x at batch 32 on one thread: the gain, {100 * min(saved):.1f}-{100 * max(saved):.1f}% of a "
            "step from the times alone, is below what the steps resolve here")


def test_the_readme_quotes_the_committed_ab():
    assert readme_account((REPO / REPORT).read_text()) in one_line("README.md")

"""benchmarks/conv_routes_ab.py: numba-rows' routes from row columns against the column matrix, for the stem's
weight gradient and for the strided convs, alone and in training steps (a tiny run: the machinery, not the
speed), and the README's account of the committed runs."""
import re

import numpy as np
import pytest

from conftest import REPO, load_benchmark, one_line

pytest.importorskip("numba")
REPORT = "results/cpu/2026-12-05-amd-epyc-conv-routes-ab.txt"


def rows_conv():
    from minires import backend
    return backend.lookup("conv2d", np.zeros(1), "numba-rows")[1]


@pytest.mark.parametrize("convs, methods", [("stem", ("_weight_by_columns", "_weight_by_rows")),
                                            ("strided", ("_correlate_by_rows", "_weight_by_columns"))])
def test_both_routes_run_alone_and_in_steps_and_the_rows_come_back(capsys, convs, methods):
    """Each route's own method is called (the stem: each weight gradient; strided: the rows for every conv,
    the columns' weight gradient for the strided ones), and the default is back after."""
    from minires.bench.cpu import set_threads
    from minires.cpu import get_num_threads
    module, conv = load_benchmark("conv_routes_ab"), rows_conv()
    used = []
    ours = get_num_threads()
    with pytest.MonkeyPatch.context() as patch:
        for name in methods:
            method = getattr(type(conv), name)
            patch.setattr(type(conv), name, lambda self, *a, _name=name, _f=method: used.append(_name) or _f(self, *a))
        try:
            assert module.main(["--convs", convs, "--batch", "4", "--threads", "2", "--rounds", "1", "--repeat", "2"]) == 0
        finally:
            set_threads(ours)
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"{module.WHAT[convs]} alone, batch 4, 2 thread(s), median of 2 calls:"
    assert [line.split()[0] for line in out[1:3]] == ["columns", "rows"] and out[3].startswith("  rows / columns ")
    assert out[4].startswith("resnet20 batch 4, 2 thread(s), ")
    assert [line.split()[0] for line in out[5:7]] == ["columns", "rows"] and float(out[7].split("step ")[1]) > 0
    assert set(methods) <= set(used)
    assert not {"_weight_by_rows", "_by_rows"} & set(conv.__dict__)           # the default routes are back


@pytest.mark.parametrize("convs", ["stem", "strided"])
def test_both_routes_give_the_references_gradients(convs):
    """Either route, in float64, gives the reference's output and gradients for the group's geometry."""
    from minires.functional.conv import Im2colConv2d
    module, conv = load_benchmark("conv_routes_ab"), rows_conv()
    rng = np.random.default_rng(2)
    try:
        for c_in, c_out, _, stride in module.SHAPES[convs]:
            args = ((stride, stride), (1, 1))
            x, w = rng.standard_normal((5, c_in, 8, 8)), rng.standard_normal((c_out, c_in, 3, 3))
            gy = rng.standard_normal(Im2colConv2d.forward(x, w, *args).shape)
            expected = [Im2colConv2d.forward(x, w, *args), Im2colConv2d.backward_weight(gy, x, w.shape, *args)]
            for route in module.ROUTES:
                module.use_route(conv, convs, route)
                mine = [conv.forward(x, w, *args), conv.backward_weight(gy, x, w.shape, *args)]
                for a, b in zip(mine, expected):
                    np.testing.assert_allclose(a, b, atol=1e-12)
    finally:
        module.use_route(conv, convs, "rows")


def readme_account(text: str, convs: str) -> str:
    """The README's account of the committed runs of ``convs``, its numbers read from their output."""
    runs = [run for run in text.split("# env ")[1:] if f"--convs {convs} " in run]
    settings = [tuple(int(v) for v in re.search(r"--batch (\d+) --threads (\d+)", run).groups()) for run in runs]
    assert settings == [(32, 2)] * 3 + [(128, 2)] * 3 + [(32, 1)]
    alone = [float(re.search(r"rows / columns ([\d.]+)\n", run).group(1)) for run in runs]
    steps = [re.search(r"rows / columns: step ([\d.]+)", run).group(1) for run in runs]
    saved = [(float(re.search(r"columns +([\d.]+) ms", run).group(1)) - float(re.search(r"rows +([\d.]+) ms", run).group(1)))
             / float(re.search(r"columns +step +([\d.]+) ms", run).group(1)) for run in runs]   # of a step, alone
    assert max(1 - float(r) for r in steps) > 2 * max(saved)      # "more than the time saved alone"
    return (f"alone, {min(alone):.2f}-{max(alone):.2f}x the time of the columns' route (batch 32 and 128, one thread "
            f"and two); in ResNet-20 steps {', '.join(steps[:2])} and {steps[2]}x at batch 32 on two threads, "
            f"{', '.join(steps[3:5])} and {steps[5]}x at batch 128, {steps[6]}x at batch 32 on one thread, where "
            f"the time saved alone is {100 * min(saved):.1f}% to {100 * max(saved):.1f}% of a step")


@pytest.mark.parametrize("convs", ["stem", "strided"])
def test_the_readme_quotes_the_committed_ab(convs):
    text = (REPO / REPORT).read_text()
    start, end = re.search(r"(\d\d:\d\d) UTC start", text).group(1), re.findall(r"# end (\d\d:\d\d) UTC", text)[-1]
    readme = one_line("README.md")
    assert f"{start}-{end} UTC, idle machine ([output]({REPORT}))" in readme
    assert readme_account(text, convs) in readme


BENCH_RUNS = [f"results/cpu/2026-12-05-amd-epyc-2-threads-batch32-conv-rows-run{i}.md" for i in (1, 2, 3)]


def bench_ratio(text: str, case: str) -> float:
    """The ``x torch`` of numba-rows' row ``case`` in a ``minires bench cpu`` report."""
    return float(re.search(rf"^(?:conv|step)  {re.escape(case)} +numba-rows +fp32 +\S+ +\S+ +\S+ +([\d.]+)", text, re.M).group(1))


def test_the_readme_quotes_the_bench_after_the_row_routes():
    """"The same bench three times after them": the stem's, the strided convs', all convs' and the step's ratios
    of the three committed reports, and the first run's slow PyTorch conv against the report of 07:05."""
    texts = [(REPO / run).read_text() for run in BENCH_RUNS]

    def spread(case):
        values = sorted(bench_ratio(t, case) for t in texts)
        return f"{values[0]:.2f}-{values[-1]:.2f}x"
    stem = [f"{bench_ratio(t, 'conv1 3->16 @32'):.2f}x" for t in texts]
    torch_16 = [float(re.search(r"^conv  16->16 @32 +torch +fp32 +\S+ +\S+ +([\d.]+)", (REPO / r).read_text(), re.M).group(1))
                for r in (BENCH_RUNS[0], "results/cpu/2026-12-05-amd-epyc-2-threads-batch32-numba-rows.md")]
    times = [re.search(r"^# minires bench cpu, 2026-12-05 (\d\d:\d\d) UTC", t).group(1) for t in texts]
    links = ", ".join(f"[{i}]({run})" for i, run in enumerate(BENCH_RUNS, 1))
    when = times[0] if times[0] == times[-1] else f"{times[0]}-{times[-1]}"
    assert (f"The same bench three times after them, {when} UTC (outputs {links}): the stem "
            f"{stem[0]}, {stem[1]} and {stem[2]} (the first run's PyTorch convs slow: its 16->16 conv took "
            f"{torch_16[0]:.2f} ms against {torch_16[1]:.2f} at 07:05), the strided convs {spread('16->32 @32 s2')} "
            f"and {spread('32->64 @16 s2')}, all 19 convs {spread('resnet20: all 19 convs')}, the step "
            f"{spread('resnet20 batch 32')}") in one_line("README.md")

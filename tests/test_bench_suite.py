"""The benchmark machinery in a tiny mode on the CPU, so it cannot rot (no timing asserts)."""
import re

import numpy as np
import pytest

from minires import backend
from minires.bench import reference, suite
from minires.bench.cost import ConvShape
from minires.bench.table import format_table
from minires.cli import main

TINY = [ConvShape("tiny", (2, 3, 6, 6), (4, 3, 3, 3)), ConvShape("tiny s2", (2, 4, 6, 6), (5, 4, 3, 3), stride=2, count=2)]


def _torch_reference_or_none():
    return reference.load()[0]


def test_conv_rows_cover_every_shape_and_implementation_plus_totals():
    torch_ref = _torch_reference_or_none()
    rows = suite.conv_rows("cpu", ["numpy"], TINY, repeat=1, warmup=0, torch_ref=torch_ref, network="tiny net")
    impls = ["numpy"] + (["torch"] if torch_ref else [])
    assert sorted((r[1], r[2]) for r in rows) == sorted(
        [(c.name, i) for c in TINY for i in impls] + [("tiny net: all 3 convs", i) for i in impls])
    for row in rows:
        assert len(row) == len(suite.HEADERS)
        assert row[6] == pytest.approx(row[4] + row[5])  # total = forward + backward
    text = format_table(suite.HEADERS, rows)
    assert text.splitlines()[0].split() == [w for h in suite.HEADERS for w in h.split()]


def test_step_rows_time_a_training_step():
    pytest.importorskip("minires.optim")
    torch_ref = _torch_reference_or_none()
    rows = suite.step_rows("cpu", ["numpy"], ["resnet20"], batch=2, repeat=1, warmup=0, torch_ref=torch_ref)
    assert [r[2] for r in rows] == (["torch"] if torch_ref else []) + ["numpy"]
    assert all(r[0] == "step" and r[6] > 0 for r in rows)


def test_the_pytorch_reference_resnet20_has_the_papers_parameter_count():
    torch_ref = _torch_reference_or_none()
    if torch_ref is None:
        pytest.skip("PyTorch (the optional oracle) is not installed")
    assert sum(p.numel() for p in torch_ref.cifar_resnet(3).parameters()) == 269_722  # PAPER.md, option A


def test_table_aligns_text_left_and_numbers_right():
    lines = format_table(["name", "ms"], [["a", 1.5], ["longer", None]]).splitlines()
    assert lines == ["name      ms", "------  ----", "a       1.50", "longer     -"]


def test_bench_list_and_a_clear_error_without_a_gpu(capsys):
    assert main(["bench", "list"]) == 0
    assert "conv2d" in capsys.readouterr().out
    if not backend.cuda_available():
        assert main(["bench", "gpu"]) == 1
        assert "no usable GPU" in capsys.readouterr().err


def test_conv_inputs_are_laid_out_like_the_implementations_outputs():
    from minires.bench.measure import laid_out_like
    template = np.zeros((2, 5, 3, 4)).transpose(0, 3, 1, 2)                 # NHWC memory
    a = np.arange(2 * 4 * 6 * 6, dtype=float).reshape(2, 4, 6, 6)
    copy = laid_out_like(template, a)
    np.testing.assert_array_equal(copy, a)
    assert copy.transpose(0, 2, 3, 1).flags.c_contiguous


def test_gpu_targets_are_judged_on_the_best_fp32_row_of_each_kind():
    from minires.bench.gpu import target_lines

    def row(part, case, impl, math, ratio):
        return [part, case, impl, math, None, None, 1.0, ratio, None, None, None]

    rows = [row("conv", "resnet20: all 19 convs", "torch", "fp32", 1.0),
            row("conv", "resnet20: all 19 convs", "cupy", "fp32", 2.51),
            row("conv", "resnet20: all 19 convs", "cupy-tiled", "fp32", 3.95),
            row("conv", "resnet20: all 19 convs", "cupy", "tf32", 1.5),    # TF32 rows are not the headline
            row("conv", "16->16 @32", "cupy", "fp32", 1.2),                # one layer is not the network
            row("step", "resnet20 batch 128", "cupy", "fp32", 1.9),
            row("step", "resnet56 batch 128", "cupy", "fp32", 3.1)]
    conv, step = target_lines(rows)
    assert conv.endswith("best is cupy at 2.51x, missed by 1.25x")
    assert step.endswith("best is cupy at 1.90x, met")
    assert all(line.endswith("cannot tell (no PyTorch reference or no rows)") for line in target_lines([]))


def test_gpu_target_verdict_agrees_with_the_ratio_it_shows():
    """A ratio of 2.004 misses a target of <= 2x, and is shown as 2.004x, not as 2.00x beside 'missed' (nor
    rounded down into 'met'); 2.006 shows as 2.01x; 1.996 meets it and shows which side it is on."""
    from minires.bench.gpu import TARGET, target_lines
    def lines(conv_ratio, step_ratio):
        return target_lines([["conv", "resnet20: all 19 convs", "cupy", "fp32", None, None, 1.0, conv_ratio, None,
                               None, None],
                              ["step", "resnet20 batch 128", "cupy", "fp32", None, None, 1.0, step_ratio, None, None,
                               None]])
    conv, step = lines(TARGET + 0.004, TARGET + 0.006)
    assert conv.endswith(f"best is cupy at {TARGET + 0.004:.3f}x, missed by 1.00x")
    assert step.endswith(f"best is cupy at {TARGET + 0.006:.2f}x, missed by 1.00x")
    conv, step = lines(TARGET - 0.004, TARGET)
    assert conv.endswith(f"best is cupy at {TARGET - 0.004:.3f}x, met") and step.endswith(f"at {TARGET:.2f}x, met")


def _fake_cupy(monkeypatch):
    """Just what the GPU report's header reads of CuPy, so it can be built without a GPU."""
    from types import SimpleNamespace
    runtime = SimpleNamespace(getDeviceProperties=lambda index: {"name": b"Fake Card"},
                              runtimeGetVersion=lambda: 13020, driverGetVersion=lambda: 13000)
    monkeypatch.setattr(backend, "cupy_or_none", lambda: SimpleNamespace(cuda=SimpleNamespace(runtime=runtime),
                                                                         __version__="0.0"))


def test_gpu_header_states_the_flop_count_the_rows_use(monkeypatch):
    """The stem's row counts no backward-data (cost.ConvShape.directions) and a step row counts the
    convs' FLOPs only: the header may not say "all three conv directions" of every row."""
    from argparse import Namespace

    from minires.bench import gpu
    from minires.bench.cost import cifar_resnet_convs
    _fake_cupy(monkeypatch)
    stem = cifar_resnet_convs(3, 1)[0]
    assert stem.flops() == 2 * 2 * stem.macs()                                  # what the rows use
    args = Namespace(batch=2, repeat=1, warmup=0, models=["resnet20"], out="results/gpu", skip_tests=False)
    header = " ".join(gpu._header(args, "not run", ["torch x"]))
    assert "all three conv directions" not in header
    assert "no backward-data for the first conv" in header and "step rows: the convs' FLOPs only" in header


@pytest.mark.parametrize("skip_tests", [False, True])
def test_gpu_header_command_is_the_command_that_ran(monkeypatch, skip_tests):
    import argparse

    from minires import bench
    from minires.bench import gpu

    def parse(argv):
        parser = argparse.ArgumentParser()
        bench.add_arguments(parser)
        return parser.parse_args(argv)

    _fake_cupy(monkeypatch)
    argv = ["gpu", "--batch", "8", "--repeat", "2", "--warmup", "1", "--models", "resnet32",
            "--out", "elsewhere"] + ["--skip-tests"] * skip_tests
    header = gpu._header(parse(argv), "not run", ["torch x"])
    command = next(line for line in header if line.startswith("- command: "))
    assert parse(command.removeprefix("- command: python -m minires.bench ").split()) == parse(argv)


def test_an_implementation_or_model_named_twice_is_measured_once():
    """``--impls numpy numpy`` printed each shape's row twice but one total; ``--models`` twice, two rows."""
    pytest.importorskip("minires.optim")
    rows = suite.conv_rows("cpu", ["numpy", "numpy"], TINY, repeat=1, warmup=0, network="tiny net")
    assert [(r[1], r[2]) for r in rows] == [(c.name, "numpy") for c in TINY] + [("tiny net: all 3 convs", "numpy")]
    steps = suite.step_rows("cpu", ["numpy", "numpy"], ["resnet20", "resnet20"], batch=2, repeat=1, warmup=0)
    assert [(r[1], r[2]) for r in steps] == [("resnet20 batch 2", "numpy")]


@pytest.mark.parametrize("gpu", [False, True], ids=["cpu only", "with a GPU"])
def test_bench_list_says_where_each_implementation_runs_and_which_is_the_default(monkeypatch, capsys, gpu):
    """With a GPU, ``numba`` (CPU) and ``numba-cuda`` sat in one unlabelled list, the defaults unnamed."""
    monkeypatch.setattr(backend, "cuda_available", lambda: gpu)
    assert main(["bench", "list"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    cpu_default = backend.lookup("conv2d", np.zeros(1))[0]
    cpu_part = lines["conv2d"].split("; ")[0]
    assert cpu_part.split(None, 1)[1].startswith("cpu: ") and f"{cpu_default} (default)" in cpu_part
    assert "numba-cuda" not in cpu_part and cpu_part.count("(default)") == 1
    if gpu:
        cuda_part = lines["conv2d"].split("; ")[1]
        listed = [name.removesuffix(" (default)") for name in cuda_part.removeprefix("cuda: ").split(", ")]
        assert cuda_part.startswith("cuda: ") and listed == backend.available("conv2d", "cuda")
        assert "cupy" in listed and cuda_part.count("(default)") == 1
    else:
        assert "; cuda" not in lines["conv2d"]


@pytest.mark.parametrize("cupy_tf32", [None, "1"])
def test_gpu_report_says_which_math_cupy_ran_when_it_cannot_switch(monkeypatch, tmp_path, capsys, cupy_tf32):
    """CuPy's TF32 switch is internal API: without it, CuPy runs its default math, which CUPY_TF32=1
    makes TF32 — in the fp32 headline rows too, which the report used to leave unsaid."""
    from minires.bench import gpu
    _fake_cupy(monkeypatch)
    monkeypatch.setattr(backend, "cuda_available", lambda: True)
    monkeypatch.setattr(gpu, "set_tf32", lambda enabled, torch_ref: False)
    monkeypatch.setattr(gpu, "conv_rows", lambda *args, **kwargs: [])
    monkeypatch.setattr(gpu, "step_rows", lambda *args, **kwargs: [])
    if cupy_tf32 is None:
        monkeypatch.delenv("CUPY_TF32", raising=False)
    else:
        monkeypatch.setenv("CUPY_TF32", cupy_tf32)
    assert main(["bench", "gpu", "--skip-tests", "--out", str(tmp_path)]) == 0
    report = capsys.readouterr().out
    default = "TF32" if cupy_tf32 else "fp32"
    for math in ("fp32", "tf32"):
        assert (f"this CuPy could not set its TF32 mode: its {math} rows ran in CuPy's default math, "
                f"{default} (CUPY_TF32={cupy_tf32 or 'unset'})") in report


def test_ratio_verdicts_docstring_examples_are_what_it_returns():
    """Each example of ratio_verdict's docstring, ``<verdict>`` (against a ``target`` of T), is its output."""
    from minires.bench.suite import ratio_verdict
    doc = " ".join(ratio_verdict.__doc__.split())
    examples = re.findall(r"``(([\d.]+)x, [^`]+)`` \(?against (?:a ``target`` of )?(\d+)", doc)
    assert len(examples) == 3
    for verdict, ratio, target in examples:
        assert ratio_verdict(float(ratio), float(target)) == verdict

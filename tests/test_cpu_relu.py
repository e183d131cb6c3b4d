"""The one-pass Numba ReLU, forward and backward (minires.cpu.relu, ``numba``), against the NumPy reference, bit for bit."""
import subprocess
import sys
import platform
from pathlib import Path

import numpy as np
import pytest

from minires import backend
from minires.cpu import pointwise, relu
from minires.functional.elementwise import NumpyAddReLU, NumpyReLU
from conftest import channels_last, every_other_column

pytest.importorskip("numba")


def with_edge_values(gy, y):
    """gy with NaN, infinities and negatives where y is 0 (the product's -0.0 and NaN must survive) and
    where it is positive."""
    gy, y = gy.copy(), y.copy()
    flat_gy, flat_y = gy.reshape(-1), y.reshape(-1)
    flat_y[:8] = [0, 0, 0, 0, 1, 1, -0.0, 2]
    flat_gy[:8] = [np.nan, np.inf, -np.inf, -3, np.nan, -np.inf, -1, 5]
    return gy, y


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("y_layout", [np.ascontiguousarray, channels_last, every_other_column],
                         ids=["y-NCHW", "y-channels-last", "y-strided"])
@pytest.mark.parametrize("gy_layout", [np.ascontiguousarray, channels_last], ids=["gy-NCHW", "gy-channels-last"])
@pytest.mark.parametrize("route", ["minires-pool", "numba-region"])
def test_backward_is_the_references_product_to_the_bit(split, monkeypatch, dtype, y_layout, gy_layout, route):
    """On 1 and 3 threads, the slices run on minires' pool (split at every size here), or, where the
    pass is too small for the pool and Numba's threads are on TBB, as one Numba region: the reference's
    bits either way."""
    from minires.cpu import numba_layer, threads
    monkeypatch.setattr(numba_layer, "threading_layer", lambda: "tbb" if route == "numba-region" else "omp")
    monkeypatch.setattr(numba_layer, "MIN_REGION_PASS", 0)          # these arrays are tiny
    if route == "numba-region":
        monkeypatch.setattr(threads, "MIN_PARALLEL_PASS", 1 << 40)        # every pass too small for the pool
    from minires.kernels import relu_cpu
    regions, kernel = [], relu_cpu.relu_gradient_split
    monkeypatch.setattr(relu_cpu, "relu_gradient_split", lambda *args: (regions.append(1), kernel(*args))[1])
    rng = np.random.default_rng(0)
    x, gy = (rng.standard_normal((7, 3, 4, 5)).astype(dtype) for _ in range(2))
    gy, y = with_edge_values(gy, NumpyReLU.forward(x))
    y, gy = y_layout(y), gy_layout(gy)
    gx = relu.NumbaReLU.backward(gy, y)
    expected = NumpyReLU.backward(gy, y)
    assert len(regions) == (route == "numba-region" and split > 1)          # the region runs on TBB only
    assert gx.dtype == dtype and gx.shape == y.shape
    assert gx.tobytes() == np.ascontiguousarray(expected).tobytes()        # NaN, -0.0 and all
    assert np.isnan(gx.reshape(-1)[0]) == np.isnan(expected.reshape(-1)[0])
    if y_layout is channels_last:                                           # the activations' layout, whatever gy's
        assert gx.transpose(0, 2, 3, 1).flags.c_contiguous


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layout", [np.ascontiguousarray, channels_last, every_other_column],
                         ids=["NCHW", "channels-last", "strided"])
@pytest.mark.parametrize("route", ["minires-pool", "numba-region"])
def test_forward_is_np_maximum_to_the_bit(split, monkeypatch, dtype, layout, route):
    """NaN stays NaN (its sign too), -0.0 becomes 0.0, infinities pass or become 0, as in ``np.maximum(x, 0)``, on the
    pool's slices or in one Numba region; channels-last input gives channels-last output."""
    from minires.cpu import numba_layer, threads
    monkeypatch.setattr(numba_layer, "threading_layer", lambda: "tbb" if route == "numba-region" else "omp")
    monkeypatch.setattr(numba_layer, "MIN_REGION_PASS", 0)          # these arrays are tiny
    if route == "numba-region":
        monkeypatch.setattr(threads, "MIN_PARALLEL_PASS", 1 << 40)
    from minires.kernels import relu_cpu
    regions, kernel = [], relu_cpu.relu_split
    monkeypatch.setattr(relu_cpu, "relu_split", lambda *args: (regions.append(1), kernel(*args))[1])
    x = np.random.default_rng(3).standard_normal((7, 3, 4, 5)).astype(dtype)
    x.reshape(-1)[:6] = [np.nan, -0.0, 0.0, np.inf, -np.inf, -np.nan]
    x = layout(x)
    y = relu.NumbaReLU.forward(x)
    expected = NumpyReLU.forward(x)
    assert len(regions) == (route == "numba-region" and split > 1)
    assert y.dtype == dtype and y.shape == x.shape
    assert np.ascontiguousarray(y).tobytes() == np.ascontiguousarray(expected).tobytes()
    assert np.isnan(y[0, 0, 0, 0]) and y[0, 0, 0, 1] == 0 and not np.signbit(y[0, 0, 0, 1])   # NaN; -0.0 -> 0.0
    if layout is channels_last:
        assert y.transpose(0, 2, 3, 1).flags.c_contiguous


@pytest.mark.parametrize("shape, dtype", [((7,), np.float32), ((), np.float64), ((3, 4), np.float16),
                                          ((0, 3, 4, 5), np.float32)], ids=["1-D", "0-d", "float16", "no-images"])
def test_what_the_kernel_does_not_take_gets_the_numpy_passes(shape, dtype):
    rng = np.random.default_rng(1)
    y, gy = (np.asarray(rng.standard_normal(shape), dtype=dtype) for _ in range(2))
    np.testing.assert_array_equal(relu.NumbaReLU.forward(y), NumpyReLU.forward(y))
    y = np.maximum(y, 0)
    np.testing.assert_array_equal(relu.NumbaReLU.backward(gy, y), NumpyReLU.backward(gy, y))
    wider = gy.astype(np.float64)                                  # dtypes that differ: the NumPy passes too
    np.testing.assert_array_equal(relu.NumbaReLU.backward(wider, y), pointwise.ThreadedReLU.backward(wider, y))


def test_add_relu_keeps_the_numpy_forward_and_the_one_pass_backward(split):
    """The fused add + ReLU adds and takes the maximum in one NumPy pass per slice (no Numba kernel)."""
    a, b, gy = (np.random.default_rng(2).standard_normal((7, 3, 4, 5)) for _ in range(3))
    y = relu.NumbaAddReLU.forward(a, b)
    np.testing.assert_array_equal(y, NumpyAddReLU.forward(a, b))
    np.testing.assert_array_equal(relu.NumbaAddReLU.backward(gy, y), NumpyReLU.backward(gy, y))


def test_numba_is_the_default_and_can_be_switched_off():
    for op in ("relu", "add_relu"):
        assert backend.lookup(op, np.zeros((1, 1)))[0] == "numba"
        with backend.using(op, "numpy-threads"):
            assert backend.lookup(op, np.zeros((1, 1)))[0] == "numpy-threads"


def test_without_numba_relu_batch_norm_and_add_fall_back_to_numpy():
    code = ("import sys; sys.modules['numba'] = None\n"
            "import numpy as np, minires\n"
            "from minires import backend\n"
            "ops = ('relu', 'add_relu', 'batch_norm', 'add')\n"
            "print(*(backend.lookup(op, np.zeros((1, 1)))[0] for op in ops), "
            "*('numba' in backend.available(op) for op in ops))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["numpy-threads", "numpy-threads", "numpy-threads", "numpy"] + ["False"] * 4


def test_the_kernel_releases_the_gil_and_runs_serially():
    """minires' threads run it side by side only if it releases the GIL; ``parallel`` would start a
    second thread pool, and ``fastmath`` could drop the NaN of NaN * 0."""
    from minires.kernels import relu_cpu
    for kernel in (relu_cpu.relu, relu_cpu.relu_gradient):
        options = kernel.targetoptions
        assert options["nogil"] and not options.get("parallel") and not options.get("fastmath"), options


VECTORISED = r"""
import re, numpy as np
from kernels import relu_cpu as k
for dtype in (np.float32, np.float64):
    y = np.ones(64, dtype)
    k.relu(y, np.empty_like(y))
    k.relu_gradient(y, y, np.empty_like(y))
for kernel, packed in ((k.relu, "(?:max|cmp\\w*)p"), (k.relu_gradient, "mulp")):
    for signature, asm in kernel.inspect_asm().items():
        print(kernel.__name__ + "-" + str(signature[0].dtype), len(re.findall(r"\bv?" + packed + r"[sd]\s", asm)))
"""


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="reads x86 assembly")
def test_llvm_vectorises_the_kernel_loop(tmp_path):
    """kernels/relu_cpu.py: "LLVM vectorises the loop": the kernels' machine code, for float32 and float64, has
    packed comparisons or maxima (forward) and products (backward). Compiled afresh in a child process with its own cache folder (Numba cannot show cached code)."""
    import os
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path), PYTHONPATH=str(root))
    out = subprocess.run([sys.executable, "-c", VECTORISED], capture_output=True, text=True, env=env, check=True,
                         cwd=root).stdout.split("\n")
    counts = dict(line.split() for line in out if line)
    assert set(counts) == {f"{kernel}-{dtype}" for kernel in ("relu", "relu_gradient") for dtype in ("float32", "float64")}
    assert all(int(n) > 0 for n in counts.values()), counts


AB_REPORT = "results/cpu/2026-12-04-amd-epyc-relu-ab.txt"
FORWARD_AB_REPORT = "results/cpu/2026-12-05-amd-epyc-relu-ab.txt"      # the forward a Numba kernel too


def test_the_readme_quotes_the_committed_ab_of_the_relu_kernel():
    """The README's times of the ReLU kernels in a ResNet-20 step, and their ratios and the step's, are the
    committed A/B outputs', batch 32 and 128, one thread and two: the one-pass backward's, and the
    forward kernel's after it."""
    import re
    from conftest import REPO, one_line
    report = (REPO / AB_REPORT).read_text()
    kernels = [float(ms) for ms in re.findall(r"relu kernels +([\d.]+) ms", report)]
    steps = [float(r) for r in re.findall(r"B / A: step ([\d.]+)", report)]
    kernel_ratios = [float(r) for r in re.findall(r"kernels ([\d.]+)$", report, re.M)]
    assert len(kernels) == 8 and len(steps) == len(kernel_ratios) == 4     # (b32, b128) x (1, 2 threads)
    (a1, b1, a2, b2, a3, b3, a4, b4) = kernels
    readme = one_line("README.md")
    assert (f"went from {a1} to {b1} ms at batch 32 and {a3} to {b3} ms at batch 128 on one thread, {a2} to {b2} "
            f"and {a4} to {b4} ms on two ({min(kernel_ratios):.3f}-{max(kernel_ratios):.3f}x; the step "
            f"{min(steps):.3f}-{max(steps):.3f}x)") in readme
    assert f"([output]({AB_REPORT}))" in readme
    report = (REPO / FORWARD_AB_REPORT).read_text()
    kernels = [float(ms) for ms in re.findall(r"relu kernels +([\d.]+) ms", report)]
    steps = [float(r) for r in re.findall(r"B / A: step ([\d.]+)", report)]
    kernel_ratios = [float(r) for r in re.findall(r"kernels ([\d.]+)$", report, re.M)]
    assert len(kernels) == 8 and len(steps) == len(kernel_ratios) == 4
    (a1, b1, a2, b2, a3, b3, a4, b4) = kernels
    assert (f"([output]({FORWARD_AB_REPORT})): ReLU's share went from {a1} to {b1} ms at batch 32 and {a3} to {b3} ms "
            f"at batch 128 on one thread, {a2} to {b2} and {a4} to {b4} ms on two ({min(kernel_ratios):.3f}-"
            f"{max(kernel_ratios):.3f}x; the step {min(steps):.3f}-{max(steps):.3f}x). The NumPy passes' {a2} ms") in readme

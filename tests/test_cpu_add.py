"""The add split over the threads (minires.cpu.add, ``numba``) against NumPy's ``a + b``, bit for bit, and
its use by the residual add and by autograd's sum of a tensor's gradients."""
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from minires import backend
from conftest import channels_last, every_other_column

pytest.importorskip("numba")
from minires.cpu.add import NumbaAdd  # noqa: E402


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layout", [np.ascontiguousarray, channels_last], ids=["NCHW", "channels-last"])
@pytest.mark.parametrize("route", ["minires-pool", "numba-region"])
def test_the_split_add_is_numpys_to_the_bit(split, monkeypatch, dtype, layout, route):
    """On 1 and 3 threads, on the pool's slices or in one Numba region: NumPy's sums (NaN, infinities,
    -0.0 + -0.0 and all), in the inputs' memory order."""
    from minires.cpu import numba_layer, threads
    monkeypatch.setattr(numba_layer, "threading_layer", lambda: "tbb" if route == "numba-region" else "omp")
    if route == "numba-region":
        monkeypatch.setattr(threads, "MIN_PARALLEL_PASS", 1 << 40)
    from minires.kernels import add_cpu
    regions, kernel = [], add_cpu.add_split
    monkeypatch.setattr(add_cpu, "add_split", lambda *args: (regions.append(1), kernel(*args))[1])
    rng = np.random.default_rng(4)
    a, b = (rng.standard_normal((7, 3, 4, 5)).astype(dtype) for _ in range(2))
    a.reshape(-1)[:4], b.reshape(-1)[:4] = [np.nan, np.inf, -0.0, np.inf], [1.0, -np.inf, -0.0, 2.0]
    a, b = layout(a), layout(b)
    y = NumbaAdd.forward(a, b)
    assert len(regions) == (route == "numba-region" and split > 1)
    assert y.dtype == dtype and np.ascontiguousarray(y).tobytes() == np.ascontiguousarray(a + b).tobytes()
    assert np.signbit(y[0, 0, 0, 2]) and np.isnan(y[0, 0, 0, 1])          # -0.0 + -0.0, inf - inf
    if layout is channels_last:
        assert y.transpose(0, 2, 3, 1).flags.c_contiguous


@pytest.mark.parametrize("case", ["broadcast", "mixed dtypes", "mixed layouts", "strided", "1-D", "float16",
                                  "no images"])
def test_what_the_kernel_does_not_take_is_numpys_add(monkeypatch, case):
    from minires.kernels import add_cpu
    monkeypatch.setattr(add_cpu, "add", lambda *args: pytest.fail("took the kernel"))
    rng = np.random.default_rng(5)
    a, b = (rng.standard_normal((3, 4, 5, 6)).astype(np.float32) for _ in range(2))
    a, b = {"broadcast": (a, b[:1]), "mixed dtypes": (a, b.astype(np.float64)), "mixed layouts": (a, channels_last(b)),
            "strided": (every_other_column(a), every_other_column(b)), "1-D": (a.reshape(-1), b.reshape(-1)),
            "float16": (a.astype(np.float16), b.astype(np.float16)), "no images": (a[:0], b[:0])}[case]
    y = NumbaAdd.forward(a, b)
    expected = a + b
    assert y.dtype == expected.dtype and y.shape == expected.shape and np.array_equal(y, expected)


def test_numba_is_the_default_the_reference_serves_cupy_and_can_be_switched_back():
    assert backend.lookup("add", np.zeros((1, 1)))[0] == "numba"
    from minires.functional.elementwise import NumpyAdd
    entry = backend._REGISTRY["add"]
    assert entry.default["cuda"] == "cupy" and entry.impls["cupy"] == (NumpyAdd, "cuda")     # CuPy arrays' own +
    with backend.using("add", "numpy"):
        assert backend.lookup("add", np.zeros((1, 1)))[0] == "numpy"


def test_the_residual_add_and_autograds_sum_of_gradients_use_the_registry(monkeypatch):
    """A ResNet block's output (branch + shortcut) is the registry's add, and so is the sum of the two
    gradients of its input (the shortcut's and the branch's); with create_graph the sum stays a Tensor."""
    from minires import Tensor, autograd
    calls = []
    real = NumbaAdd.forward
    monkeypatch.setattr(NumbaAdd, "forward", staticmethod(lambda a, b: (calls.append(a.shape), real(a, b))[1]))
    x = Tensor(np.random.default_rng(6).standard_normal((2, 3, 4, 4)).astype(np.float32), requires_grad=True)
    branch = (x * 2.0).relu()
    y = branch + x
    assert calls == [(2, 3, 4, 4)]
    y.sum().backward()
    assert calls == [(2, 3, 4, 4)] * 2
    np.testing.assert_array_equal(x.grad.data, (x.data > 0) * np.float32(2) + 1)
    x.grad = None
    (grad,) = autograd.grad(((x * 2.0) + x).sum(), [x], create_graph=True)
    assert isinstance(grad, Tensor) and np.allclose(grad.data, 3)


def test_the_kernel_releases_the_gil_and_runs_serially():
    from minires.kernels import add_cpu
    options = add_cpu.add.targetoptions
    assert options["nogil"] and not options.get("parallel") and not options.get("fastmath"), options


VECTORISED = r"""
import re, numpy as np
from kernels import add_cpu as k
for dtype in (np.float32, np.float64):
    a = np.ones(64, dtype)
    k.add(a, a, np.empty_like(a))
for signature, asm in k.add.inspect_asm().items():
    print(signature[0].dtype, len(re.findall(r"\bv?addp[sd]\s", asm)))
"""


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="reads x86 assembly")
def test_llvm_vectorises_the_kernel_loop(tmp_path):
    """kernels/add_cpu.py: "LLVM vectorises the loop": packed additions in its machine code, float32 and float64."""
    import os
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path), PYTHONPATH=str(root))
    out = subprocess.run([sys.executable, "-c", VECTORISED], capture_output=True, text=True, env=env, check=True,
                         cwd=root).stdout.split("\n")
    counts = dict(line.split() for line in out if line)
    assert set(counts) == {"float32", "float64"} and all(int(n) > 0 for n in counts.values()), counts

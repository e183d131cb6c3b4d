"""Every Numba CUDA kernel, run by Numba's CUDA simulator on the CPU, against the NumPy reference.

The simulator has to be chosen before ``numba.cuda`` is first imported, and cannot be undone, so
the kernels run in a child process: this file, run as a script with ``NUMBA_ENABLE_CUDASIM=1``.
The child only runs the kernels and saves their outputs; this process computes the NumPy
reference and compares. The rest of the test session keeps the real ``numba.cuda`` (the GPU
tests need it). The simulator is slow, so the shapes are tiny, but they cover batch 1, stride 2,
padding, odd and rectangular sizes, 1x1 kernels, and more than one tile in each GEMM dimension
(which also makes backward-weight split its reduction).
"""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from minires.functional.conv import Im2colConv2d
from minires.gpu.numba_kernels import NumbaConv2d, NumbaTiledConv2d

CASES = {  # name: (x_shape, w_shape, stride, padding)
    "single-pixel": ((1, 1, 1, 1), (1, 1, 1, 1), (1, 1), (0, 0)),
    "batch1-same-padding": ((1, 3, 5, 5), (4, 3, 3, 3), (1, 1), (1, 1)),
    "stride2-odd-size": ((2, 2, 7, 6), (3, 2, 3, 3), (2, 2), (1, 1)),
    "rectangular-mixed": ((2, 3, 6, 5), (2, 3, 3, 2), (2, 1), (0, 2)),
    "projection-1x1-stride2": ((3, 2, 4, 4), (5, 2, 1, 1), (2, 2), (0, 0)),
    "several-tiles": ((1, 2, 9, 9), (66, 2, 1, 1), (1, 1), (0, 0)),
}
FLOAT32_CASE = "stride2-odd-size"
IMPLS = {"numba-cuda": NumbaConv2d, "numba-cuda-tiled": NumbaTiledConv2d}
DIRECTIONS = ("forward", "backward_data", "backward_weight")


def case_inputs(name, dtype):
    """The same random (x, w, gy) in the child and in the parent."""
    x_shape, w_shape, stride, padding = CASES[name]
    rng = np.random.default_rng(sorted(CASES).index(name))
    x, w = rng.standard_normal(x_shape).astype(dtype), rng.standard_normal(w_shape).astype(dtype)
    out_hw = [(x_shape[2 + i] + 2 * padding[i] - w_shape[2 + i]) // stride[i] + 1 for i in range(2)]
    gy = rng.standard_normal((x_shape[0], w_shape[0], *out_hw)).astype(dtype)
    return x, w, gy


def run_direction(impl, direction, x, w, gy, stride, padding):
    if direction == "forward":
        return impl.forward(x, w, stride, padding)
    if direction == "backward_data":
        return impl.backward_data(gy, w, x.shape, stride, padding)
    return impl.backward_weight(gy, x, w.shape, stride, padding)


def runs():
    """(case, dtype, impl, direction) for every check."""
    for case in CASES:
        for dtype in ("float64", "float32") if case == FLOAT32_CASE else ("float64",):
            for impl in IMPLS:
                for direction in DIRECTIONS:
                    yield case, dtype, impl, direction


def _key(case, dtype, impl, direction):
    return f"{case}|{dtype}|{impl}|{direction}"


def _child(out_path):
    """Run every kernel in the simulator; save the results to ``out_path`` (.npz)."""
    from numba import config
    assert config.ENABLE_CUDASIM, "run with NUMBA_ENABLE_CUDASIM=1 (as the fixture does)"
    results = {}
    for case, dtype, impl_name, direction in runs():
        x, w, gy = case_inputs(case, dtype)
        outputs = run_direction(IMPLS[impl_name], direction, x, w, gy, *CASES[case][2:])
        results[_key(case, dtype, impl_name, direction)] = outputs
    np.savez(out_path, **results)


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    pytest.importorskip("numba_cuda")
    import minires
    out = tmp_path_factory.mktemp("cudasim") / "results.npz"
    root = str(Path(minires.__file__).resolve().parent.parent)
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1",
               PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))
    child = subprocess.run([sys.executable, __file__, str(out)], env=env, capture_output=True, text=True,
                           timeout=300)
    assert child.returncode == 0, f"the simulator run failed:\n{child.stdout}\n{child.stderr}"
    return dict(np.load(out))


@pytest.mark.parametrize("case,dtype,impl,direction", list(runs()))
def test_numba_cuda_kernel_matches_numpy_reference(simulated, case, dtype, impl, direction):
    x, w, gy = case_inputs(case, "float64")
    expected = run_direction(Im2colConv2d, direction, x, w, gy, *CASES[case][2:])
    actual = simulated[_key(case, dtype, impl, direction)]
    assert actual.dtype == np.dtype(dtype) and actual.shape == expected.shape
    rtol = 1e-12 if dtype == "float64" else 1e-5
    scale = np.abs(expected).max()
    np.testing.assert_allclose(actual, expected, rtol=0, atol=rtol * scale)


if __name__ == "__main__":
    _child(sys.argv[1])

"""Every Numba CUDA kernel, run by Numba's CUDA simulator on the CPU, against the NumPy reference.

The simulator has to be chosen before ``numba.cuda`` is first imported, and cannot be undone, so
the kernels run in a child process: this file, run as a script with ``NUMBA_ENABLE_CUDASIM=1``.
The child only runs the kernels and saves their outputs; this process computes the NumPy
reference and compares. The rest of the test session keeps the real ``numba.cuda`` (the GPU
tests need it). The shapes are the tiny ones of ``conv_cases.py``.
"""
import itertools
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conv_cases import CASES, assert_matches_reference, case_inputs, run_direction, runs

from minires.gpu.numba_kernels import NumbaConv2d, NumbaTiledConv2d

IMPLS = {"numba-cuda": NumbaConv2d, "numba-cuda-tiled": NumbaTiledConv2d}


def _key(case, dtype, impl, direction):
    return f"{case}|{dtype}|{impl}|{direction}"


def _child(out_path):
    """Run every kernel in the simulator; save the results to ``out_path`` (.npz)."""
    from numba import config
    assert config.ENABLE_CUDASIM, "run with NUMBA_ENABLE_CUDASIM=1 (as the fixture does)"
    results = {}
    for (case, dtype, direction), impl_name in itertools.product(runs(), IMPLS):
        x, w, gy = case_inputs(case, dtype)
        outputs = run_direction(IMPLS[impl_name], direction, x, w, gy, *CASES[case][2:])
        results[_key(case, dtype, impl_name, direction)] = outputs
    np.savez(out_path, **results)


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    pytest.importorskip("numba_cuda", reason="numba-cuda is not installed: pip install -e '.[tutorials]' (or '.[gpu]')")
    import minires
    out = tmp_path_factory.mktemp("cudasim") / "results.npz"
    root = str(Path(minires.__file__).resolve().parent.parent)
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1",
               PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))
    child = subprocess.run([sys.executable, __file__, str(out)], env=env, capture_output=True, text=True,
                           timeout=300)
    assert child.returncode == 0, f"the simulator run failed:\n{child.stdout}\n{child.stderr}"
    return dict(np.load(out))


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("case,dtype,direction", list(runs()))
def test_numba_cuda_kernel_matches_numpy_reference(simulated, case, dtype, direction, impl):
    assert_matches_reference(simulated[_key(case, dtype, impl, direction)], case, dtype, direction)


if __name__ == "__main__":
    _child(sys.argv[1])

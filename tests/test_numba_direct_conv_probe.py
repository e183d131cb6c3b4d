"""benchmarks/numba_direct_conv.py, the probe behind the README's account of why minires has no Numba
direct convolution: both of its builds compute the 3x3 convolution (PyTorch's, as the oracle), so
the times it prints are times of a correct kernel."""
import importlib.util
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("numba", reason="the probe compiles Numba kernels: pip install -e '.[numba]'")
SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "numba_direct_conv.py"


@pytest.mark.parametrize("constant_channels", [True, False])
def test_the_probes_kernel_is_the_convolution(torch_oracle, constant_channels):
    spec = importlib.util.spec_from_file_location("numba_direct_conv", SCRIPT)
    probe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(probe)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 8, 6, 8), dtype=np.float32)             # width 8: whole blocks of 4 pixels
    w = rng.standard_normal((8, 8, 3, 3), dtype=np.float32)
    x_padded = np.zeros((2, 8, 10, 8), np.float32)
    x_padded[:, 1:-1, 1:-1] = x.transpose(0, 2, 3, 1)
    y = np.empty((2, 6, 8, 8), np.float32)
    probe.direct_conv(8 if constant_channels else None)(x_padded, np.ascontiguousarray(w.transpose(2, 3, 1, 0)), y)
    expected = torch_oracle.nn.functional.conv2d(torch_oracle.from_numpy(x), torch_oracle.from_numpy(w), padding=1)
    np.testing.assert_allclose(y.transpose(0, 3, 1, 2), expected.numpy(), rtol=1e-4, atol=1e-4)

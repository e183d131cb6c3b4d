"""benchmarks/numpy_winograd.py, the probe behind the README's account of why minires has no Winograd
convolution: its F(2x2, 3x3) is the 3x3 convolution (minires' readable NumPy conv in float64 as the
reference), so the times it prints are times of a correct convolution."""
import numpy as np
import pytest
from conftest import load_benchmark

import minires as mr


@pytest.mark.parametrize("per", [1, 2, 5])
def test_the_probes_winograd_is_the_convolution(per):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 3, 6, 8))                               # 3 -> 4 channels, a ragged last chunk
    w = rng.standard_normal((4, 3, 3, 3))
    y = load_benchmark("numpy_winograd").winograd_conv(np.ascontiguousarray(x.transpose(0, 2, 3, 1)), w, per)
    with mr.backend.using("conv2d", "numpy"):
        expected = mr.functional.conv2d(mr.tensor(x), mr.tensor(w), padding=1).numpy()
    np.testing.assert_allclose(y.transpose(0, 3, 1, 2), expected, rtol=1e-12, atol=1e-12)


def test_the_probe_refuses_what_f2x2_cannot_tile():
    with pytest.raises(ValueError, match="even sizes and 3x3 kernels"):
        load_benchmark("numpy_winograd").winograd_conv(np.zeros((1, 5, 6, 2)), np.zeros((2, 2, 3, 3)), 1)


def test_the_intermediate_is_as_large_as_the_docstring_says(monkeypatch):
    """"an intermediate M four times the size of the output": the 16 GEMMs' product against the output."""
    probe = load_benchmark("numpy_winograd")
    products, matmul = [], np.matmul
    monkeypatch.setattr(np, "matmul", lambda a, b: products.append(matmul(a, b)) or products[-1])
    y = probe.winograd_conv(np.zeros((2, 8, 6, 3)), np.zeros((5, 3, 3, 3)), per=2)
    ratio = products[0].size / y[:2].size
    assert len(products) == 1 and ratio == 4
    assert "an intermediate M four times the size of the output" in " ".join(probe.__doc__.split())

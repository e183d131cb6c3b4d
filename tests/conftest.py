"""Shared test helpers: the optional PyTorch oracle and a scale-aware closeness check."""
import numpy as np
import pytest


@pytest.fixture(scope="session")
def torch_oracle():
    """The ``torch`` module; the test skips when PyTorch (an optional oracle) is not installed."""
    return pytest.importorskip("torch")


def assert_close(actual, expected, rtol):
    """Every element within ``rtol`` of the largest expected magnitude.

    Scaling by the largest entry (not elementwise) keeps entries that should be near zero, such as
    gradients that cancel, from demanding digits that float64 cannot give.
    """
    actual = np.asarray(actual.detach().numpy() if hasattr(actual, "detach") else actual, dtype=np.float64)
    expected = np.asarray(expected.detach().numpy() if hasattr(expected, "detach") else expected, dtype=np.float64)
    assert actual.shape == expected.shape, f"shapes differ: {actual.shape} vs {expected.shape}"
    scale = float(np.abs(expected).max(initial=0.0))
    np.testing.assert_allclose(actual, expected, rtol=0, atol=rtol * max(scale, np.finfo(np.float64).tiny))

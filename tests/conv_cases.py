"""Tiny convolution problems shared by the kernel tests that run GPU code on the CPU (Numba's
simulator, the CUDA C emulation): small, because both are slow, yet covering batch 1, stride 2,
padding, odd and rectangular sizes, 1x1 kernels, and more than one tile in each GEMM dimension
(which also makes backward-weight split its reduction)."""
import numpy as np

CASES = {  # name: (x_shape, w_shape, stride, padding)
    "single-pixel": ((1, 1, 1, 1), (1, 1, 1, 1), (1, 1), (0, 0)),
    "batch1-same-padding": ((1, 3, 5, 5), (4, 3, 3, 3), (1, 1), (1, 1)),
    "stride2-odd-size": ((2, 2, 7, 6), (3, 2, 3, 3), (2, 2), (1, 1)),
    "rectangular-mixed": ((2, 3, 6, 5), (2, 3, 3, 2), (2, 1), (0, 2)),
    "projection-1x1-stride2": ((3, 2, 4, 4), (5, 2, 1, 1), (2, 2), (0, 0)),
    "several-tiles": ((1, 2, 9, 9), (66, 2, 1, 1), (1, 1), (0, 0)),
}
FLOAT32_CASE = "stride2-odd-size"
DIRECTIONS = ("forward", "backward_data", "backward_weight")


def case_inputs(name, dtype):
    """The same random (x, w, gy) for a case, wherever it is asked for."""
    x_shape, w_shape, stride, padding = CASES[name]
    rng = np.random.default_rng(sorted(CASES).index(name))
    x, w = rng.standard_normal(x_shape).astype(dtype), rng.standard_normal(w_shape).astype(dtype)
    out_hw = [(x_shape[2 + i] + 2 * padding[i] - w_shape[2 + i]) // stride[i] + 1 for i in range(2)]
    gy = rng.standard_normal((x_shape[0], w_shape[0], *out_hw)).astype(dtype)
    return x, w, gy


def run_direction(impl, direction, x, w, gy, stride, padding):
    """One direction of a conv2d implementation (the registry's contract)."""
    if direction == "forward":
        return impl.forward(x, w, stride, padding)
    if direction == "backward_data":
        return impl.backward_data(gy, w, x.shape, stride, padding)
    return impl.backward_weight(gy, x, w.shape, stride, padding)


def runs():
    """(case, dtype, direction) for every check: all cases in float64, one also in float32."""
    for case in CASES:
        for dtype in ("float64", "float32") if case == FLOAT32_CASE else ("float64",):
            for direction in DIRECTIONS:
                yield case, dtype, direction


def assert_matches_reference(actual, case, dtype, direction):
    """``actual`` against the NumPy reference computed in float64 from the same inputs."""
    from minires.functional.conv import Im2colConv2d
    x, w, gy = case_inputs(case, "float64")
    expected = run_direction(Im2colConv2d, direction, x, w, gy, *CASES[case][2:])
    assert actual.dtype == np.dtype(dtype) and actual.shape == expected.shape
    tolerance = 1e-12 if dtype == "float64" else 1e-5
    np.testing.assert_allclose(actual, expected, rtol=0, atol=tolerance * np.abs(expected).max())

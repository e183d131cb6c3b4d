"""The GPU kernels' index math and launch geometry, checked on the CPU (no GPU, no Numba needed).

The functions in ``kernels/conv2d_index.py`` are the very ones the Numba CUDA kernels compile,
and ``kernels/conv2d.cu`` spells them in C; here they rebuild every convolution direction as an
explicit matrix product and must reproduce the NumPy reference.
"""
import math
import re
import types

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minires import backend
from minires.functional.conv import Im2colConv2d, im2col
from minires.gpu import launch
from minires.kernels import conv2d_index as index
from minires.kernels import source_path
from minires.kernels.conv2d_index import ConvGeometry

DIRECTIONS = ("forward", "backward_data", "backward_weight")


@st.composite
def convolutions(draw):
    """(x_shape, w_shape, stride, padding) with at least one output pixel."""
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    padding = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    h = draw(st.integers(max(1, kh - 2 * padding[0]), 7))
    w = draw(st.integers(max(1, kw - 2 * padding[1]), 7))
    n, c_in, c_out = draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 4))
    return (n, c_in, h, w), (c_out, c_in, kh, kw), stride, padding


def _random_problem(conv, seed=0):
    x_shape, w_shape, stride, padding = conv
    rng = np.random.default_rng(seed)
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    gy = rng.standard_normal(Im2colConv2d.forward(x, w, stride, padding).shape)
    return x, w, gy, ConvGeometry.of(x_shape, w_shape, stride, padding)


def _gather(source, index_of, rows, cols, g):
    """The matrix ``M[r][c] = source[index_of(r, c, g)]`` (0 where the index is -1)."""
    flat = source.ravel()
    matrix = np.zeros((rows, cols))
    for r in range(rows):
        for c in range(cols):
            i = index_of(r, c, g)
            matrix[r, c] = flat[i] if i >= 0 else 0.0
    return matrix


# ----------------------------------------------------------------------------- index math
@pytest.mark.parametrize("stride", [1, 2, 3])
@pytest.mark.parametrize("pad", [0, 1, 2])
def test_output_index_inverts_input_index(stride, pad):
    taps, in_size = 3, 8
    out_size = (in_size + 2 * pad - taps) // stride + 1
    pairs_forward = {(o, t, index.input_index(o, t, stride, pad, in_size))
                     for o in range(out_size) for t in range(taps)}
    pairs_backward = {(index.output_index(i, t, stride, pad, out_size), t, i)
                      for i in range(in_size) for t in range(taps)}
    valid_forward = {p for p in pairs_forward if p[2] >= 0}
    valid_backward = {p for p in pairs_backward if p[0] >= 0}
    assert valid_forward == valid_backward
    # every (output, tap) in range reads either a real pixel or padding at o*s - p + t
    assert all((o * stride - pad + t) in range(in_size) for o, t, i in valid_forward)


@settings(max_examples=15, deadline=None)
@given(convolutions())
def test_im2col_index_builds_the_reference_column_matrix(conv):
    x, _, _, g = _random_problem(conv)
    rows, cols = g.c_in * g.kh * g.kw, g.n * g.out_h * g.out_w
    expected = im2col(x, (g.kh, g.kw), (g.stride_h, g.stride_w), (g.pad_h, g.pad_w))  # (n, rows, pixels)
    expected = expected.transpose(1, 0, 2).reshape(rows, cols)
    np.testing.assert_array_equal(_gather(x, index.im2col_value_index, rows, cols, g), expected)


@settings(max_examples=15, deadline=None)
@given(convolutions())
def test_col2im_gather_gives_the_reference_input_gradient(conv):
    x, w, gy, g = _random_problem(conv)
    gcol = w.reshape(g.c_out, -1).T @ gy.transpose(1, 0, 2, 3).reshape(g.c_out, -1)
    gx = np.array([index.col2im_value(gcol.ravel(), p, g) for p in range(x.size)]).reshape(x.shape)
    expected = Im2colConv2d.backward_data(gy, w, x.shape, (g.stride_h, g.stride_w), (g.pad_h, g.pad_w))
    np.testing.assert_allclose(gx, expected, rtol=1e-12, atol=1e-12)


@settings(max_examples=15, deadline=None)
@given(convolutions(), st.sampled_from(DIRECTIONS))
def test_implicit_gemm_index_functions_reproduce_each_direction(conv, direction):
    x, w, gy, g = _random_problem(conv)
    stride, padding = (g.stride_h, g.stride_w), (g.pad_h, g.pad_w)
    sources, expected = {
        "forward": ((w, x), Im2colConv2d.forward(x, w, stride, padding)),
        "backward_data": ((w, gy), Im2colConv2d.backward_data(gy, w, x.shape, stride, padding)),
        "backward_weight": ((gy, x), Im2colConv2d.backward_weight(gy, x, w.shape, stride, padding)),
    }[direction]
    m, n, k = g.gemm_shape(direction)
    a = _gather(sources[0], getattr(index, f"{direction}_a_index"), m, k, g)
    b = _gather(sources[1], getattr(index, f"{direction}_b_index"), k, n, g)
    c_index = getattr(index, f"{direction}_c_index")
    out = np.full(expected.size, np.nan)
    product = a @ b
    for row in range(m):
        for col in range(n):
            out[c_index(row, col, g)] = product[row, col]
    np.testing.assert_allclose(out.reshape(expected.shape), expected, rtol=1e-12, atol=1e-12)


def test_geometry_matches_the_reference_output_shape():
    x_shape, w_shape, stride, padding = (2, 3, 9, 8), (5, 3, 3, 2), (2, 3), (1, 0)
    g = ConvGeometry.of(x_shape, w_shape, stride, padding)
    y = Im2colConv2d.forward(np.zeros(x_shape), np.zeros(w_shape), stride, padding)
    assert (g.n, g.c_out, g.out_h, g.out_w) == y.shape


# ----------------------------------------------------------------------------- launch geometry
@settings(max_examples=25, deadline=None)
@given(st.integers(1, 5000), st.integers(1, 5000), st.integers(1, 4))
def test_tiled_grid_covers_the_result_exactly_once(m, n, chunks):
    grid, block = launch.tiled_grid(m, n, chunks)
    assert block == (index.BLOCK_SIDE, index.BLOCK_SIDE, 1)
    assert block[0] * index.MICRO == index.TILE_N and block[1] * index.MICRO == index.TILE_M
    assert (grid[0] - 1) * index.TILE_N < n <= grid[0] * index.TILE_N
    assert (grid[1] - 1) * index.TILE_M < m <= grid[1] * index.TILE_M
    assert grid[2] == chunks


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 600), st.integers(1, 600), st.integers(1, 200_000), st.integers(1, 2000))
def test_split_k_cuts_the_reduction_into_non_empty_slab_aligned_chunks(m, n, k, target):
    chunks, k_chunk = launch.split_k(m, n, k, target)
    assert k_chunk % index.TILE_K == 0
    assert (chunks - 1) * k_chunk < k <= chunks * k_chunk  # covers k, no empty chunk
    tiles = math.ceil(m / index.TILE_M) * math.ceil(n / index.TILE_N)
    if tiles * math.ceil(k / index.TILE_K) >= 2 * target:  # enough work to reach the target
        assert chunks * tiles >= target / 2


def test_split_k_chunks_sum_to_the_full_product():
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((20, 1000)), rng.standard_normal((1000, 30))
    chunks, k_chunk = launch.split_k(20, 30, 1000, target_blocks=8)
    assert chunks > 1
    partials = [a[:, c * k_chunk:(c + 1) * k_chunk] @ b[c * k_chunk:(c + 1) * k_chunk] for c in range(chunks)]
    np.testing.assert_allclose(sum(partials), a @ b, rtol=1e-12)


def test_blocks_for_covers_every_item():
    assert [launch.blocks_for(s, 256) for s in (1, 256, 257, 10_000)] == [1, 1, 2, 40]


def test_sizes_beyond_32_bit_indexing_are_refused_with_the_op_name_and_a_fix_that_works_on_a_gpu():
    """The fix named is one a GPU user can take (impl='numpy' was: a CPU implementation, which the
    registry refuses for data on the GPU)."""
    from minires.gpu.conv_algorithms import geometry
    with pytest.raises(ValueError, match=r"conv2d: input has .*; use a smaller batch, or run this op on "
                                         r"the CPU \(\.to\('cpu'\)\)$"):
        geometry("conv2d", (2**16, 2**8, 16, 16), (1, 2**8, 1, 1), (1, 1), (0, 0))
    launch.check_int32("conv2d", launch.SMALLER_BATCH, input=2**31 - 1)


def test_a_column_matrix_beyond_32_bit_indexing_is_refused_only_where_it_is_stored():
    """A 31x31 kernel over a 1500x1500 image: 961 * 1500^2 > 2^31 - 1 column-matrix entries, the
    other arrays small. The im2col kernels write that matrix; the implicit GEMM never stores it and
    indexes only the arrays (so it runs, here with a launch that only records)."""
    from minires.gpu.conv_algorithms import ImplicitGemm
    from minires.gpu.cupy_kernels import CupyConv2d
    x, w = np.zeros((1, 1, 1500, 1500), np.float32), np.zeros((1, 1, 31, 31), np.float32)
    with pytest.raises(ValueError, match=r"conv2d: column_matrix has 2162250000 elements.*a smaller batch, or a "
                                         r"tiled implementation \(impl='cupy-tiled'\)"):
        CupyConv2d.forward(x, w, (1, 1), (15, 15))
    launched = []

    class RecordingTiled(ImplicitGemm):
        @staticmethod
        def launch(direction, *args):
            launched.append(direction)

    RecordingTiled.forward(x, w, (1, 1), (15, 15))
    assert launched == ["forward"]


def test_a_weight_beyond_32_bit_indexing_is_refused_even_when_the_other_arrays_are_small():
    """A 1x1 conv of one 1x1 image: input, output and column matrix have 46341 elements, the weight
    46341^2 > 2^31 - 1, which the kernels' int weight index (m * c_in*kh*kw + k) would overflow. A
    smaller batch would not help."""
    from minires.gpu.conv_algorithms import geometry
    with pytest.raises(ValueError, match=r"conv2d: weight has 2147488281 elements.*; run this op on the CPU"):
        geometry("conv2d", (1, 46341, 1, 1), (46341, 46341, 1, 1), (1, 1), (0, 0))


def test_a_parameter_beyond_32_bit_indexing_is_sent_to_the_gpu_array_path_not_to_numpy():
    from minires.gpu import cupy_kernels
    huge = types.SimpleNamespace(dtype=np.dtype(np.float32), size=2**31,
                                 flags=types.SimpleNamespace(c_contiguous=True))
    with pytest.raises(ValueError, match=r"sgd: parameter has 2147483648 elements.*backend\.use\('sgd', 'cupy-ops'\)"):
        cupy_kernels.sgd_update(huge, huge, None, 0.1, 0.0, 0.0, 0.0, False)
    assert "cupy-ops" in backend.available("sgd", device="cuda") or not backend.cuda_available()
    assert backend._entry("sgd").impls["cupy-ops"][1] == "cuda"


# ----------------------------------------------------------------------------- C and Python agree
def _defines(source):
    return {name: int(value) for name, value in re.findall(r"#define (\w+) (\d+)", source_path(source).read_text())}


def test_cuda_c_tiling_constants_match_the_python_launch_geometry():
    defines = _defines("conv2d.cu")
    for name in ("TILE_M", "TILE_N", "TILE_K", "MICRO", "BLOCK_SIDE"):
        assert defines[name] == getattr(index, name), name
    assert _defines("batchnorm.cu")["THREADS"] == launch.THREADS


def test_cuda_c_geometry_arguments_come_in_the_python_field_order():
    text = source_path("conv2d.cu").read_text()
    struct = re.search(r"struct Geometry \{\s*int ([^;]+);", text).group(1)
    params = re.search(r"#define GEOMETRY_PARAMS ([^\n]+\\\n[^\n]+)", text).group(1)
    assert [f.strip() for f in struct.split(",")] == list(ConvGeometry._fields)
    assert re.findall(r"int (\w+)", params) == list(ConvGeometry._fields)


# ----------------------------------------------------------------------------- registry
def test_gpu_implementations_are_registered_for_cuda_and_listed_only_with_a_gpu():
    x = np.zeros((1, 1, 3, 3), dtype=np.float32)
    for op, name in [("conv2d", "cupy"), ("conv2d", "cupy-tiled"), ("batch_norm", "cupy"),
                     ("relu", "cupy"), ("add_relu", "cupy")]:
        with pytest.raises(ValueError, match="runs on cuda but the data is on cpu"):
            backend.lookup(op, x, name)
        assert (name in backend.available(op)) == backend.cuda_available()
        assert name not in backend.available(op, device="cpu") and "numpy" in backend.available(op, device="cpu")


@pytest.mark.parametrize("name", ["cupy", "cupy-tiled"])
def test_choosing_a_cuda_implementation_without_a_gpu_says_what_is_missing(monkeypatch, name):
    """It used to be accepted, and every conv then ran on the CPU's default without a word."""
    monkeypatch.setattr(backend, "cuda_available", lambda: False)
    before = backend.defaults("cuda")
    with pytest.raises(RuntimeError, match=rf"conv2d: implementation '{name}' runs on cuda but CuPy .*"
                                           r"pip install 'minires\[gpu\]'.*choose one of \['numpy'"):
        backend.use("conv2d", name)
    with pytest.raises(RuntimeError, match="runs on cuda but"):
        backend.using("conv2d", name).__enter__()
    assert backend.defaults("cuda") == before


def test_cupy_kernels_called_without_cupy_say_what_to_install(monkeypatch):
    """Each kernel family, called directly (as a student might), names the missing CuPy and the extra,
    not an AttributeError on None."""
    from minires.gpu import cupy_kernels
    monkeypatch.setattr(backend, "cupy_or_none", lambda: None)
    x, w = np.ones((1, 1, 3, 3), np.float32), np.ones((1, 1, 1, 1), np.float32)
    calls = [lambda: cupy_kernels.CupyReLU.forward(x), lambda: cupy_kernels.CupyConv2d.forward(x, w, (1, 1), (0, 0)),
             lambda: cupy_kernels.CupyTiledConv2d.forward(x, w, (1, 1), (0, 0)),
             lambda: cupy_kernels.CupyBatchNorm.forward_train(x, None, None, 1e-5),
             lambda: cupy_kernels.sgd_update(w, w, None, 0.1, 0.9, 0.0, 0.0, False)]
    for call in calls:
        with pytest.raises(RuntimeError, match=r"need CuPy: pip install 'minires\[gpu\]'"):
            call()


def test_choosing_a_cuda_default_leaves_the_cpu_default_alone(monkeypatch):
    monkeypatch.setattr(backend, "cuda_available", lambda: True)  # as on a GPU machine
    cpu_default = backend.lookup("conv2d", np.zeros(1))[0]
    with backend.using("conv2d", "cupy-tiled"):
        assert backend.lookup("conv2d", np.zeros(1))[0] == cpu_default


def test_a_numba_cuda_that_cannot_compile_under_this_numpy_is_named_with_the_fix():
    """Seen on the first GPU run: numba-cuda 0.30.4 under NumPy 2.5 fails deep inside Numba with an
    AttributeError; minires says which versions and what to do."""
    pytest.importorskip("numba_cuda", reason="numba-cuda not installed: pip install -e '.[gpu]'")
    from minires.gpu.numba_kernels import incompatibility_message
    message = incompatibility_message(AttributeError("module 'numpy' has no attribute 'row_stack'"))
    assert f"NumPy {np.__version__}" in message and "numba-cuda 0." in message
    assert "pip install 'numpy<2.5'" in message and "'cupy', the default" in message
    assert "numpy<2.5" not in incompatibility_message(AttributeError("'Foo' object has no attribute 'bar'"))


def test_after_numba_fails_inside_itself_every_launch_fails_at_once(monkeypatch):
    """The first failing compile names the versions; the launches after it fail with the same message
    without compiling again (on the H200, Hypothesis's retries of a 1 s failing compile took minutes)."""
    pytest.importorskip("numba_cuda", reason="numba-cuda not installed: pip install -e '.[gpu]'")
    from minires.gpu import numba_kernels
    monkeypatch.setattr(numba_kernels, "_cannot_compile", None)
    compiles = []

    for _ in range(3):
        with pytest.raises(RuntimeError, match=r"needs NumPy < 2\.5") as failure:
            numba_kernels.run(_kernel_failing_in("numba_cuda/numba/cuda/typing.py", compiles), 1, 32, np.zeros(4))
    assert len(compiles) == 1 and "row_stack" in str(failure.value)


def _kernel_failing_in(file_name: str, calls: list):
    """A stand-in for a Numba kernel whose launch raises numba-cuda 0.30.4's AttributeError from code that
    Python places in ``file_name`` (for the traceback, as if that file had raised it)."""
    namespace = {"calls": calls}
    exec(compile("def compile_and_run(*args):\n    calls.append(args)\n"
                 "    raise AttributeError(\"module 'numpy' has no attribute 'row_stack'\")\n",
                 f"/site-packages/{file_name}", "exec"), namespace)

    class Kernel:
        def __getitem__(self, launch_configuration):
            return namespace["compile_and_run"]
    return Kernel()


def test_an_attribute_error_outside_numba_is_not_taken_for_numba_failing(monkeypatch):
    """A launch that fails in minires' or the caller's code is that error, as it is: not 'Numba could not
    compile', and the launches after it still run."""
    pytest.importorskip("numba_cuda", reason="numba-cuda not installed: pip install -e '.[gpu]'")
    from minires.gpu import numba_kernels
    monkeypatch.setattr(numba_kernels, "_cannot_compile", None)
    calls = []
    for _ in range(2):
        with pytest.raises(AttributeError, match="row_stack"):
            numba_kernels.run(_kernel_failing_in("minires/gpu/launch.py", calls), 1, 32, np.zeros(4))
    assert len(calls) == 2 and numba_kernels._cannot_compile is None

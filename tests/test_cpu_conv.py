"""The fast CPU conv2d paths (numpy-fast, numpy-rows, numpy-columns, numpy-padded-rows, numba) against the NumPy reference, on drawn shapes."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minires as mr
import minires.functional as F
from minires import backend
from minires.cpu.conv import ChunkedIm2colGemm, NumbaRowsIm2colGemm, numpy_col2im, numpy_im2col, numpy_row_im2col
from minires.functional.conv import Im2colConv2d
from conftest import channels_last

NEEDS_NUMBA = pytest.mark.skipif("numba" not in backend.available("conv2d"),
                                 reason="Numba is not installed: pip install -e '.[numba]'")
FAST = ["numpy-fast", "numpy-rows", "numpy-columns", "numpy-padded-rows", pytest.param("numba", marks=NEEDS_NUMBA),
        pytest.param("numba-rows", marks=NEEDS_NUMBA)]


def implementation(name, chunk_bytes):
    """The registered implementation ``name`` with a given chunk size."""
    registered = backend.lookup("conv2d", np.zeros(1), name)[1]
    if isinstance(registered, NumbaRowsIm2colGemm):
        return NumbaRowsIm2colGemm(chunk_bytes)
    return ChunkedIm2colGemm(registered.im2col, registered.col2im, chunk_bytes, registered.row_im2col, registered.every_conv)


@st.composite
def problems(draw):
    """A conv2d problem (kernel fits the padded input), a chunk size and a dtype."""
    kernel = draw(st.sampled_from([(1, 1), (3, 3), (2, 3), (5, 5)]))
    stride = draw(st.sampled_from([(1, 1), (2, 2), (2, 1), (1, 2), (3, 3)]))   # vertical 1: row columns
    padding = draw(st.sampled_from([(0, 0), (1, 1), (2, 2), (0, 1)]))
    hw = tuple(draw(st.integers(max(1, kernel[a] - 2 * padding[a]), 9)) for a in (0, 1))
    shapes = dict(n=draw(st.integers(1, 5)), c=draw(st.integers(1, 6)), o=draw(st.integers(1, 5)), hw=hw)
    # chunk sizes from "one image per chunk" to "the whole batch at once"
    return dict(shapes, kernel=kernel, stride=stride, padding=padding,
                chunk_bytes=draw(st.sampled_from([1, 300, 2000, 2 ** 20])),
                dtype=draw(st.sampled_from(["float32", "float64"])), seed=draw(st.integers(0, 2 ** 16)),
                channels_last=draw(st.booleans()))


def arrays(p):
    rng = np.random.default_rng(p["seed"])
    x = rng.standard_normal((p["n"], p["c"]) + p["hw"]).astype(p["dtype"])
    x = channels_last(x) if p["channels_last"] else x
    w = rng.standard_normal((p["o"], p["c"]) + p["kernel"]).astype(p["dtype"])
    y_shape = Im2colConv2d.forward(x, w, p["stride"], p["padding"]).shape
    gy = rng.standard_normal(y_shape).astype(p["dtype"])
    return x, w, gy


@pytest.mark.parametrize("name", FAST)
@settings(max_examples=25, deadline=None)
@given(p=problems())
def test_agrees_with_the_reference(name, p):
    x, w, gy = arrays(p)
    fast, ref = implementation(name, p["chunk_bytes"]), Im2colConv2d
    s, pad = p["stride"], p["padding"]
    rtol = 1e-5 if p["dtype"] == "float32" else 1e-12
    pairs = [(fast.forward(x, w, s, pad), ref.forward(x, w, s, pad)),
             (fast.backward_data(gy, w, x.shape, s, pad), ref.backward_data(gy, w, x.shape, s, pad)),
             (fast.backward_weight(gy, x, w.shape, s, pad), ref.backward_weight(gy, x, w.shape, s, pad))]
    pairs += zip(fast.backward(gy, x, w, s, pad), [expected for _, expected in pairs[1:]])   # both at once
    for mine, expected in pairs:
        assert mine.dtype == expected.dtype and mine.shape == expected.shape
        scale = max(1.0, float(np.abs(expected).max()))
        np.testing.assert_allclose(mine, expected, rtol=0, atol=rtol * scale)


@pytest.mark.parametrize("name", FAST)
def test_gradcheck_through_the_op(name):
    rng = np.random.default_rng(1)
    x = mr.Tensor(rng.standard_normal((3, 2, 6, 5)), requires_grad=True)
    w = mr.Tensor(rng.standard_normal((4, 2, 3, 3)), requires_grad=True)
    b = mr.Tensor(rng.standard_normal(4), requires_grad=True)
    assert mr.gradcheck(lambda x, w, b: F.conv2d(x, w, b, stride=2, padding=1, impl=name), [x, w, b])


@pytest.mark.parametrize("name", FAST)
@pytest.mark.parametrize("stride", [(2, 2), (1, 1)])
def test_non_contiguous_inputs(name, stride):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 5, 7, 3)).transpose(0, 3, 1, 2)   # (2, 3, 5, 7), channels last in memory
    w = rng.standard_normal((2, 6, 3, 3))[:, ::2]                 # (2, 3, 3, 3), every other channel
    args = (stride, (1, 1))
    y_shape = Im2colConv2d.forward(x, w, *args).shape
    gy = rng.standard_normal(y_shape)[..., ::-1]                   # negative strides
    fast = backend.lookup("conv2d", x, name)[1]
    expected_gx = Im2colConv2d.backward_data(gy, w, x.shape, *args)
    expected_gw = Im2colConv2d.backward_weight(gy, x, w.shape, *args)
    np.testing.assert_allclose(fast.forward(x, w, *args), Im2colConv2d.forward(x, w, *args), atol=1e-12)
    np.testing.assert_allclose(fast.backward_data(gy, w, x.shape, *args), expected_gx, atol=1e-12)
    np.testing.assert_allclose(fast.backward_weight(gy, x, w.shape, *args), expected_gw, atol=1e-12)
    for mine, expected in zip(fast.backward(gy, x, w, *args), (expected_gx, expected_gw)):
        np.testing.assert_allclose(mine, expected, atol=1e-12)


@pytest.mark.parametrize("name", FAST)
@pytest.mark.parametrize("padding", [(0, 0), (1, 1), (2, 1), (3, 3)])
def test_stride_one_backward_data_both_routes(name, padding):
    """Stride 1 with padding < kernel runs backward-data as a flipped-kernel convolution; padding 3
    on a 3x3 kernel (or any stride) goes through col2im. Both must equal the reference."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 3, 6, 5))
    w = rng.standard_normal((4, 3, 3, 3))
    gy = rng.standard_normal(Im2colConv2d.forward(x, w, (1, 1), padding).shape)
    fast = backend.lookup("conv2d", x, name)[1]
    np.testing.assert_allclose(fast.backward_data(gy, w, x.shape, (1, 1), padding),
                               Im2colConv2d.backward_data(gy, w, x.shape, (1, 1), padding), atol=1e-12)


@pytest.mark.parametrize("stride, rows, every_conv", [((2, 2), None, False), ((1, 1), None, False),
                                                     ((1, 1), numpy_row_im2col, False), ((2, 2), numpy_row_im2col, True),
                                                     ((1, 1), numpy_row_im2col, True)])
def test_threads_split_the_chunks_and_add_them_in_order(monkeypatch, stride, rows, every_conv):
    """Chunks go to 1 or 3 threads (more than this machine may have, and an odd share); every
    direction agrees with the reference. Backward-weight adds the chunks' partial sums in chunk
    order: with one image per chunk the chunks are the same on any thread count, and so are the bits.
    The same for the column matrix and for the row columns (``rows``) of stride 1, or of every conv."""
    from minires.cpu import threads as cpu_threads
    monkeypatch.setattr(cpu_threads, "MIN_PARALLEL_SIZE", 0)   # split even these small arrays
    rng = np.random.default_rng(5)
    x, w = rng.standard_normal((7, 3, 6, 6)), rng.standard_normal((2, 3, 3, 3))   # C >= O: backward shares its columns
    fast = ChunkedIm2colGemm(numpy_im2col, numpy_col2im, chunk_bytes=1, row_im2col=rows, every_conv=every_conv)   # an image a chunk
    args, before, results = (stride, (1, 1)), cpu_threads.get_num_threads(), []
    gy = rng.standard_normal(Im2colConv2d.forward(x, w, *args).shape)
    try:
        for threads in (1, 3):
            cpu_threads.set_num_threads(threads)
            results.append([fast.forward(x, w, *args), fast.backward_data(gy, w, x.shape, *args),
                            fast.backward_weight(gy, x, w.shape, *args), *fast.backward(gy, x, w, *args)])
    finally:
        cpu_threads.set_num_threads(before)
    reference = [Im2colConv2d.forward(x, w, *args), Im2colConv2d.backward_data(gy, w, x.shape, *args),
                 Im2colConv2d.backward_weight(gy, x, w.shape, *args)]
    reference += reference[1:]                                            # backward: both at once
    for mine, expected in zip(results[1], reference):
        np.testing.assert_allclose(mine, expected, atol=1e-12)
    assert all(np.array_equal(a, b) for a, b in zip(*results))


def test_outputs_are_channels_last_and_feed_the_next_conv():
    """forward and backward-data hand back NCHW arrays whose memory is NHWC (the GEMM's own rows, no
    transpose); fed such arrays, the conv still agrees with the reference."""
    rng = np.random.default_rng(6)
    x, w1 = rng.standard_normal((3, 4, 7, 7)), rng.standard_normal((5, 4, 3, 3))
    w2 = rng.standard_normal((2, 5, 3, 3))
    fast = backend.lookup("conv2d", x, "numpy-fast")[1]
    for args in [((1, 1), (1, 1)), ((2, 2), (1, 1))]:
        y = fast.forward(x, w1, *args)
        assert y.transpose(0, 2, 3, 1).flags.c_contiguous and not y.flags.c_contiguous
        gx = fast.backward_data(y, w1, x.shape, *args)
        assert gx.transpose(0, 2, 3, 1).flags.c_contiguous
        np.testing.assert_allclose(gx, Im2colConv2d.backward_data(np.ascontiguousarray(y), w1, x.shape, *args),
                                   atol=1e-10)
        np.testing.assert_allclose(fast.forward(y, w2, (1, 1), (1, 1)),
                                   Im2colConv2d.forward(np.ascontiguousarray(y), w2, (1, 1), (1, 1)), atol=1e-10)
        np.testing.assert_allclose(fast.backward_weight(y, x, w1.shape, *args),
                                   Im2colConv2d.backward_weight(np.ascontiguousarray(y), x, w1.shape, *args),
                                   atol=1e-10)


def test_numpy_movers_match_the_definition():
    """im2col entry by entry from the formula; col2im is its adjoint: <col2im(G), x> = <G, im2col(x)>."""
    from minires.kernels.conv2d_index import ConvGeometry
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 5, 4))
    g = ConvGeometry.of(x.shape, (1, 3, 3, 2), (2, 1), (1, 1))
    col = np.empty((g.n * g.out_h * g.out_w, g.kh * g.kw * g.c_in))
    numpy_im2col(x, g, col)
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    for b, i, j, p, q, c in np.ndindex(g.n, g.out_h, g.out_w, g.kh, g.kw, g.c_in):
        assert col[(b * g.out_h + i) * g.out_w + j, (p * g.kw + q) * g.c_in + c] == padded[b, c, 2 * i + p, j + q]
    gcol, gx = rng.standard_normal(col.shape), np.empty_like(x)
    numpy_col2im(gcol, g, gx)
    assert np.isclose(np.vdot(gx, x), np.vdot(gcol, col))
    g = ConvGeometry.of(x.shape, (1, 3, 3, 2), (1, 2), (1, 1))          # row columns: vertical stride 1
    rows = np.empty((g.n, g.h + 2, g.out_w, g.kw * g.c_in))
    numpy_row_im2col(x, g, rows)
    for b, r, j, q, c in np.ndindex(g.n, g.h + 2, g.out_w, g.kw, g.c_in):
        assert rows[b, r, j, q * g.c_in + c] == padded[b, c, r, 2 * j + q]


@settings(max_examples=60, deadline=None)
@given(p=problems())
def test_row_columns_match_the_definition_in_both_layouts(p):
    """Every entry of the row columns, from channels-last x (copied straight from x, the border columns
    apart) or NCHW x (through the padded copy), is the padded input's value the formula names."""
    from minires.kernels.conv2d_index import ConvGeometry
    x, w, _ = arrays(p)
    g = ConvGeometry.of(x.shape, w.shape, (1, p["stride"][1]), p["padding"])
    rows = np.full((g.n, g.h + 2 * g.pad_h, g.out_w, g.kw * g.c_in), np.nan, dtype=x.dtype)
    numpy_row_im2col(x, g, rows)
    padded = np.pad(x, ((0, 0), (0, 0), (g.pad_h, g.pad_h), (g.pad_w, g.pad_w)))
    expected = np.stack([padded[:, :, :, j * g.stride_w:j * g.stride_w + g.kw] for j in range(g.out_w)], axis=2)
    np.testing.assert_array_equal(rows, expected.transpose(0, 3, 2, 4, 1).reshape(rows.shape))   # [b, r, j, (q, c)]


def test_copying_the_rows_from_x_gives_the_padded_copys_bits():
    """numpy-fast and numpy-padded-rows fill the same row columns, so a conv's outputs and gradients
    are the same to the last bit (the README says the direct copy keeps training runs' numbers)."""
    rng = np.random.default_rng(6)
    x = channels_last(rng.standard_normal((4, 5, 9, 7)).astype(np.float32))
    w = rng.standard_normal((4, 5, 3, 3)).astype(np.float32)           # C >= O: one set of rows for both gradients
    gy = channels_last(rng.standard_normal((4, 4, 9, 7)).astype(np.float32))
    direct, padded = (backend.lookup("conv2d", x, name)[1] for name in ("numpy-fast", "numpy-padded-rows"))
    args = ((1, 1), (1, 1))
    for mine, theirs in [(direct.forward(x, w, *args), padded.forward(x, w, *args)),
                         *zip(direct.backward(gy, x, w, *args), padded.backward(gy, x, w, *args))]:
        assert np.ascontiguousarray(mine).tobytes() == np.ascontiguousarray(theirs).tobytes()


def test_the_cpu_default_is_numba_rows_where_numba_is_installed_else_numpy_fast():
    # numba (the parallel movers) stays opt-in: its threads collapse on shared cores (see minires.cpu)
    name, _ = backend.lookup("conv2d", np.zeros((1, 1, 1, 1)))
    assert name == ("numba-rows" if "numba" in backend.available("conv2d") else "numpy-fast")


def force_the_numba_region(patch: pytest.MonkeyPatch):
    """numba-rows then runs its Numba kernel whatever layer Numba's threads run on (off TBB it is
    only slower than minires' pool, not wrong)."""
    from minires.cpu import numba_layer
    patch.setattr(numba_layer, "threading_layer", lambda: "tbb")


@pytest.fixture
def numba_region(monkeypatch):
    force_the_numba_region(monkeypatch)


@NEEDS_NUMBA
@pytest.mark.parametrize("threads", [1, 2, 3])
@settings(max_examples=15, deadline=None)
@given(p=problems())
def test_numba_rows_gives_numpy_rows_bits(threads, p):
    """The one-region kernel runs numpy-rows' chunks and products in the same order: every output
    has the same bits (the weight gradient alone, from the row columns of x, too), on 1, 2 and 3
    threads, each chunk size, both dtypes and layouts."""
    from minires.cpu import threads as cpu_threads
    x, w, gy = arrays(p)
    s, pad = p["stride"], p["padding"]
    region, fast = NumbaRowsIm2colGemm(p["chunk_bytes"]), implementation("numpy-rows", p["chunk_bytes"])
    before = cpu_threads.get_num_threads()
    try:
        cpu_threads.set_num_threads(threads)
        with pytest.MonkeyPatch.context() as patch:
            force_the_numba_region(patch)
            patch.setattr(cpu_threads, "MIN_PARALLEL_SIZE", 0)      # split even these small batches
            pairs = [(region.forward(x, w, s, pad), fast.forward(x, w, s, pad)),
                     *zip(region.backward(gy, x, w, s, pad), fast.backward(gy, x, w, s, pad)),
                     (region.backward_weight(gy, x, w.shape, s, pad), fast.backward_weight(gy, x, w.shape, s, pad))]
    finally:
        cpu_threads.set_num_threads(before)
    for mine, theirs in pairs:
        assert mine.dtype == theirs.dtype and np.array_equal(mine, theirs)


@NEEDS_NUMBA
@settings(max_examples=40, deadline=None)
@given(p=problems())
def test_the_gathered_col2im_has_numpy_col2ims_bits(p):
    """numba-rows' col2im (the serial Numba gather) adds each pixel's taps in numpy_col2im's order, from
    zero: the same bits, for every geometry, both dtypes; into channels-last memory only (NCHW gx, and
    float16, take numpy_col2im itself)."""
    from minires.cpu.conv import channels_last_empty, column_matrix_shape, gather_col2im
    from minires.kernels.conv2d_index import ConvGeometry
    x, w, _ = arrays(p)
    g = ConvGeometry.of(x.shape, w.shape, p["stride"], p["padding"])
    gcol = np.random.default_rng(p["seed"]).standard_normal(column_matrix_shape(g)(g.n)).astype(p["dtype"])
    gcol.reshape(-1)[:2] = [-0.0, np.nan][:gcol.size]
    for make in (lambda: channels_last_empty(x.shape, gcol.dtype), lambda: np.empty(x.shape, gcol.dtype)):
        mine, theirs = make(), make()
        gather_col2im(gcol, g, mine)
        numpy_col2im(gcol, g, theirs)
        assert mine.tobytes() == theirs.tobytes()
    half, half_gx = gcol.astype(np.float16), channels_last_empty(x.shape, np.float16)
    gather_col2im(half, g, half_gx)
    expected = channels_last_empty(x.shape, np.float16)
    numpy_col2im(half, g, expected)
    assert half_gx.tobytes() == expected.tobytes()


@NEEDS_NUMBA
def test_numba_rows_on_an_empty_batch(numba_region):
    x, w = np.zeros((0, 3, 5, 5), np.float32), np.ones((4, 3, 3, 3), np.float32)
    region = NumbaRowsIm2colGemm()
    assert region.forward(x, w, (1, 1), (1, 1)).shape == (0, 4, 5, 5)
    gx, gw = region.backward(np.zeros((0, 4, 5, 5), np.float32), x, w, (1, 1), (1, 1))
    assert gx.shape == x.shape and np.array_equal(gw, np.zeros_like(w))


@NEEDS_NUMBA
@pytest.mark.parametrize("why", ["no BLAS to call", "a side of 1", "another layer", "an empty batch"])
def test_numba_rows_runs_numpy_fasts_code_where_its_kernel_cannot_run(monkeypatch, why):
    """Without a GEMM it can call (NumPy on another BLAS), where NumPy's matmul would take a
    matrix-vector product (a side of 1), with the batch split over threads off TBB, or with no images,
    numba-rows enters neither its region nor one share of it. Otherwise the batch is split over two
    threads, whatever its size, so that only the reason under test keeps the kernel out."""
    from minires.cpu import blas, numba_layer, threads as cpu_threads
    from minires.kernels import conv2d_rows_cpu
    force_the_numba_region(monkeypatch)
    monkeypatch.setattr(cpu_threads, "MIN_PARALLEL_SIZE", 0)
    for kernel in ("correlate_by_rows", "correlate_share"):
        monkeypatch.setattr(conv2d_rows_cpu, kernel, lambda *args: pytest.fail("entered the kernel"))
    rng = np.random.default_rng(8)
    out_channels = 1 if why == "a side of 1" else 4
    x, w = rng.standard_normal((0 if why == "an empty batch" else 3, 2, 6, 6)), rng.standard_normal((out_channels, 2, 3, 3))
    if why == "no BLAS to call":
        monkeypatch.setattr(blas, "gemm", lambda dtype: None)
    elif why == "another layer":
        monkeypatch.setattr(numba_layer, "threading_layer", lambda: "omp")
    region, fast = NumbaRowsIm2colGemm(), implementation("numpy-rows", 2 ** 22)
    before = cpu_threads.get_num_threads()
    try:
        cpu_threads.set_num_threads(2)
        assert np.array_equal(region.forward(x, w, (1, 1), (1, 1)), fast.forward(x, w, (1, 1), (1, 1)))
    finally:
        cpu_threads.set_num_threads(before)


@NEEDS_NUMBA
@pytest.mark.parametrize("threads, batch", [(1, 3), (2, 1)])
def test_numba_rows_runs_one_share_on_the_calling_thread(monkeypatch, threads, batch):
    """A batch in one share (one thread; or one image on two) runs the kernel's share function here,
    on whatever layer Numba's threads would run, without asking for that layer (which starts Numba's
    threads) and without the parallel region: numpy-rows' bits, forward and backward."""
    from minires.cpu import numba_layer, threads as cpu_threads
    from minires.kernels import conv2d_rows_cpu
    monkeypatch.setattr(numba_layer, "threading_layer", lambda: pytest.fail("asked for Numba's threads"))
    monkeypatch.setattr(conv2d_rows_cpu, "correlate_by_rows", lambda *args: pytest.fail("entered the region"))
    calls, share = [], conv2d_rows_cpu.correlate_share
    monkeypatch.setattr(conv2d_rows_cpu, "correlate_share", lambda *args: (calls.append(1), share(*args))[1])
    monkeypatch.setattr(cpu_threads, "MIN_PARALLEL_SIZE", 0)
    rng = np.random.default_rng(9)
    x, w, gy = rng.standard_normal((batch, 3, 6, 6)), rng.standard_normal((4, 3, 3, 3)), rng.standard_normal((batch, 4, 6, 6))
    region, fast = NumbaRowsIm2colGemm(), implementation("numpy-rows", 2 ** 22)
    before = cpu_threads.get_num_threads()
    try:
        cpu_threads.set_num_threads(threads)
        mine = [region.forward(x, w, (1, 1), (1, 1)), *region.backward(gy, x, w, (1, 1), (1, 1))]
        theirs = [fast.forward(x, w, (1, 1), (1, 1)), *fast.backward(gy, x, w, (1, 1), (1, 1))]
    finally:
        cpu_threads.set_num_threads(before)
    assert len(calls) >= 2 and all(np.array_equal(a, b) for a, b in zip(mine, theirs))


@NEEDS_NUMBA
def test_numba_rows_enters_its_kernel_when_nothing_keeps_it_out(monkeypatch):
    """The counterpart of the test above: the same problem on two threads does run the kernel."""
    from minires.cpu import threads as cpu_threads
    from minires.kernels import conv2d_rows_cpu
    force_the_numba_region(monkeypatch)
    monkeypatch.setattr(cpu_threads, "MIN_PARALLEL_SIZE", 0)
    calls, kernel = [], conv2d_rows_cpu.correlate_by_rows
    monkeypatch.setattr(conv2d_rows_cpu, "correlate_by_rows", lambda *args: (calls.append(1), kernel(*args))[1])
    rng = np.random.default_rng(8)
    x, w = rng.standard_normal((3, 2, 6, 6)), rng.standard_normal((4, 2, 3, 3))
    before = cpu_threads.get_num_threads()
    try:
        cpu_threads.set_num_threads(2)
        y = NumbaRowsIm2colGemm().forward(x, w, (1, 1), (1, 1))
    finally:
        cpu_threads.set_num_threads(before)
    assert calls == [1] and np.array_equal(y, implementation("numpy-rows", 2 ** 22).forward(x, w, (1, 1), (1, 1)))


@NEEDS_NUMBA
@pytest.mark.parametrize("threads, kernel", [(2, "input_gradient_by_columns"), (1, "input_gradient_share")])
def test_the_strided_data_gradient_runs_in_its_kernel(monkeypatch, threads, kernel):
    """A strided conv's data gradient runs numba-rows' own kernel (one region where the batch is split,
    the share function on this thread where it is not), never the pool's chunks, with numpy-rows' bits
    (which multiply image by image as well); float16 keeps the pool's code."""
    from minires.cpu import threads as cpu_threads
    from minires.kernels import conv2d_rows_cpu
    force_the_numba_region(monkeypatch)
    monkeypatch.setattr(cpu_threads, "MIN_PARALLEL_SIZE", 0)
    calls, real = [], getattr(conv2d_rows_cpu, kernel)
    monkeypatch.setattr(conv2d_rows_cpu, kernel, lambda *args: (calls.append(1), real(*args))[1])
    rng = np.random.default_rng(11)
    gy, w = rng.standard_normal((3, 4, 4, 4)).astype(np.float32), rng.standard_normal((4, 2, 3, 3)).astype(np.float32)
    region, fast = NumbaRowsIm2colGemm(), implementation("numpy-rows", 2 ** 22)
    before = cpu_threads.get_num_threads()
    try:
        cpu_threads.set_num_threads(threads)
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(ChunkedIm2colGemm, "_run_chunks", lambda *args: pytest.fail("ran the pool's chunks"))
            mine = region.backward_data(gy, w, (3, 2, 8, 8), (2, 2), (1, 1))
        theirs = fast.backward_data(gy, w, (3, 2, 8, 8), (2, 2), (1, 1))
        half = region.backward_data(gy.astype(np.float16), w.astype(np.float16), (3, 2, 8, 8), (2, 2), (1, 1))
    finally:
        cpu_threads.set_num_threads(before)
    assert calls == [1] and mine.tobytes() == theirs.tobytes() and mine.strides == theirs.strides
    assert half.dtype == np.float16 and calls == [1]


@NEEDS_NUMBA
def test_numba_types_the_gemm_argument_from_the_type_made_once(monkeypatch):
    """minires/cpu/blas.py: Numba would build the GEMM argument's function type from its signature at
    every kernel call; the argument's class hands Numba the type it made once instead."""
    import numba
    from minires.cpu import blas
    gemm = blas.gemm(np.float32)
    if gemm is None:
        pytest.skip("NumPy's BLAS is not a 64-bit-integer OpenBLAS")
    monkeypatch.setattr(gemm, "signature", lambda: pytest.fail("typed from the signature again"))
    assert numba.typeof(gemm) is gemm.numba_type and gemm.numba_type.signature == blas.gemm(np.float32)._signature


def _last_line(code: str, **env) -> str:
    """What ``code`` prints last, run in a fresh Python (Numba's layer is chosen once per process)
    with ``NUMBA_THREADING_LAYER`` unset unless ``env`` sets it."""
    import os
    import subprocess
    import sys
    clean = {k: v for k, v in os.environ.items() if k != "NUMBA_THREADING_LAYER"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**clean, **env})
    return out.stdout.strip().splitlines()[-1]


CONV_IN_A_FRESH_PROCESS = """
import numpy as np
from minires import backend
from minires.cpu import threads
from minires.cpu.numba_layer import threading_layer
threads.set_num_threads(2)
rng = np.random.default_rng(0)
x, w = rng.standard_normal((8, 16, 12, 12)), rng.standard_normal((16, 16, 3, 3))
def both(impl):
    conv = backend.lookup("conv2d", x, impl)[1]
    return conv.forward(x, w, (1, 1), (1, 1)), conv.backward(x, x, w, (1, 1), (1, 1))[1]
same = lambda a, b: all(np.array_equal(p, q) for p, q in zip(a, b))
"""


@NEEDS_NUMBA
def test_pips_tbb_is_numbas_layer_where_it_is_installed():
    from minires.cpu.numba_layer import pip_libtbb
    if pip_libtbb() is None:
        pytest.skip("pip's tbb is not installed (the numba extra installs it on x86-64 Linux)")
    assert _last_line(CONV_IN_A_FRESH_PROCESS + "both('numba-rows'); print(threading_layer())") == "tbb"


@NEEDS_NUMBA
def test_a_layer_asked_for_is_kept_and_the_conv_keeps_its_bits():
    code = CONV_IN_A_FRESH_PROCESS + "print(threading_layer(), same(both('numba-rows'), both('numpy-rows')))"
    assert _last_line(code, NUMBA_THREADING_LAYER="workqueue") == "workqueue True"


@NEEDS_NUMBA
def test_numba_rows_runs_in_a_forked_child_after_the_parent():
    """The experiments fork their workers after the parent may have run a conv: Numba's layer must
    survive the fork (GNU OpenMP's does not)."""
    code = CONV_IN_A_FRESH_PROCESS + """
import multiprocessing
parent = both("numba-rows")
with multiprocessing.get_context("fork").Pool(1) as pool:
    child = pool.apply(both, ("numba-rows",))
print(threading_layer(), same(parent, child))
"""
    assert _last_line(code).endswith(" True")


@NEEDS_NUMBA
def test_blas_runs_on_one_thread_once_the_conv_kernels_call_it():
    """numba-rows' kernels call BLAS from each of their threads, and no longer start minires' pool (which
    set BLAS to one thread) in a training step: a training step of a fresh process leaves BLAS on one
    thread, where it had two (its threads inside the kernels took the default run to 1.5x its time)."""
    code = CONV_IN_A_FRESH_PROCESS + """
import threadpoolctl
import minires as mr
from minires.models import get_model
blas = lambda: [p["num_threads"] for p in threadpoolctl.threadpool_info() if p["user_api"] == "blas"]
before = blas()
model = get_model("resnet20")
loss = mr.functional.cross_entropy(model(mr.tensor(rng.standard_normal((8, 3, 32, 32)).astype(np.float32))), np.arange(8))
loss.backward()
print(before, blas(), threads._executor is None)
"""
    assert _last_line(code, OPENBLAS_NUM_THREADS="2") == "[2] [1] True"


AB_REPORT = "results/cpu/2026-12-04-amd-epyc-numba-rows-ab.txt"


def test_the_readme_quotes_the_committed_ab_of_numba_rows():
    """The README's step ratios of numba-rows against numpy-fast are the committed A/B output's: two
    threads (ResNet-20 and -56 at batch 32, then at batch 128), then one thread (ResNet-20 at 32 and 128)."""
    import re
    from conftest import REPO, one_line
    report = (REPO / AB_REPORT).read_text()
    runs = re.findall(r"(resnet\d+) batch (\d+), (\d) thread.*?B / A: step ([\d.]+)", report, re.S)
    assert [run[:3] for run in runs] == [("resnet20", "32", "2"), ("resnet56", "32", "2"), ("resnet20", "128", "2"),
                                         ("resnet56", "128", "2"), ("resnet20", "32", "1"), ("resnet20", "128", "1")]
    r20_32, r56_32, r20_128, r56_128, one_32, one_128 = (run[3] for run in runs)
    readme = one_line("README.md")
    assert (f"on two threads the step took {r20_32}x (ResNet-20) and {r56_32}x (ResNet-56) the time at batch 32 and "
            f"{r20_128}x and {r56_128}x at batch 128, on one thread ResNet-20's {one_32}x at batch 32 and "
            f"{one_128}x at batch 128") in readme
    assert f"([output]({AB_REPORT}))" in readme


@pytest.mark.parametrize("stride, c_in, c_out", [((2, 2), 4, 6), ((2, 1), 4, 6), ((1, 1), 3, 8)],
                         ids=["strided", "vertical-stride-2", "stem-like"])
def test_numpy_fast_keeps_the_column_matrix_for_strided_convs_and_separate_weight_gradients(stride, c_in, c_out):
    """README: ``numpy-fast``, the default without Numba, keeps the column matrix for the strided convs'
    forward and the separate weight gradients, so the runs made without Numba keep their bits: there it
    gives ``numpy-columns``' bits (the column matrix everywhere), where ``numpy-rows`` adds in another order."""
    rng = np.random.default_rng(11)
    x = channels_last(rng.standard_normal((5, c_in, 9, 9)).astype(np.float32))
    w = rng.standard_normal((c_out, c_in, 3, 3)).astype(np.float32)
    gy = rng.standard_normal(Im2colConv2d.forward(x, w, stride, (1, 1)).shape).astype(np.float32)
    fast, columns = (backend.lookup("conv2d", x, name)[1] for name in ("numpy-fast", "numpy-columns"))
    assert np.array_equal(fast.backward_weight(gy, x, w.shape, stride, (1, 1)),
                          columns.backward_weight(gy, x, w.shape, stride, (1, 1)))
    if stride[0] > 1:
        assert np.array_equal(fast.forward(x, w, stride, (1, 1)), columns.forward(x, w, stride, (1, 1)))

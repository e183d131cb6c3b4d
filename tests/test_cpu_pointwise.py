"""The threaded CPU ReLU, add + ReLU and batch norm (minires.cpu.pointwise) against the references."""
import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest

import minires as mr
import minires.functional as F
from minires import backend
from minires.cpu import pointwise, threads
from minires.functional.elementwise import NumpyAddReLU, NumpyReLU
from minires.functional.norm import NumpyBatchNorm
from conftest import channels_last, every_other_column


def arrays(*shapes, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s) for s in shapes]


def test_relu_and_add_relu(split):
    x, gy, b = arrays((7, 3, 4, 5), (7, 3, 4, 5), (7, 3, 4, 5))
    y = pointwise.ThreadedReLU.forward(x)
    np.testing.assert_array_equal(y, NumpyReLU.forward(x))
    np.testing.assert_array_equal(pointwise.ThreadedReLU.backward(gy, y), NumpyReLU.backward(gy, y))
    np.testing.assert_array_equal(pointwise.ThreadedAddReLU.forward(x, b), NumpyAddReLU.forward(x, b))
    bias = b[:1, :, :1, :1]                                  # broadcasting falls back to one pass
    np.testing.assert_array_equal(pointwise.ThreadedAddReLU.forward(x, bias), NumpyAddReLU.forward(x, bias))


@pytest.mark.parametrize("shape", [(7, 3, 4, 5), (7, 6)], ids=["NCHW", "NC"])
@pytest.mark.parametrize("affine", [True, False])
def test_batch_norm_matches_the_reference_and_repeats_to_the_bit(split, shape, affine):
    x, gy = arrays(shape, shape, seed=1)
    x = 3 + 2 * x                                            # a mean and scale to remove
    weight, bias = (arrays((shape[1],), (shape[1],), seed=2) if affine else (None, None))
    mine = pointwise.ThreadedBatchNorm.forward_train(x, weight, bias, 1e-5)
    for a, b in zip(mine, NumpyBatchNorm.forward_train(x, weight, bias, 1e-5)):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    _, mean, _, invstd = mine
    grads = pointwise.ThreadedBatchNorm.backward(gy, x, weight, mean, invstd)
    for a, b in zip(grads, NumpyBatchNorm.backward(gy, x, weight, mean, invstd)):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    again = pointwise.ThreadedBatchNorm.backward(gy, x, weight, mean, invstd)
    assert all(np.array_equal(a, b) for a, b in zip(grads, again))


@pytest.mark.parametrize("x_layout", [channels_last, every_other_column], ids=["x-channels-last", "x-strided"])
@pytest.mark.parametrize("gy_layout", [channels_last, np.ascontiguousarray, every_other_column],
                         ids=["gy-channels-last", "gy-NCHW", "gy-strided"])
def test_batch_norm_in_other_memory_layouts(split, x_layout, gy_layout):
    """x and gy in NHWC memory or strided, in any pairing: the same numbers as the reference, and
    with x channels last the outputs keep that layout (so the next op reads them in order)."""
    x, gy, weight, bias = arrays((7, 3, 4, 5), (7, 3, 4, 5), (3,), (3,), seed=4)
    x, gy = x_layout(2 + x), gy_layout(gy)
    y, mean, var, invstd = pointwise.ThreadedBatchNorm.forward_train(x, weight, bias, 1e-5)
    expected = NumpyBatchNorm.forward_train(np.ascontiguousarray(x), weight, bias, 1e-5)
    for a, b in zip((y, mean, var, invstd), expected):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    grads = pointwise.ThreadedBatchNorm.backward(gy, x, weight, mean, invstd)
    for a, b in zip(grads, NumpyBatchNorm.backward(np.ascontiguousarray(gy), np.ascontiguousarray(x), weight,
                                                   mean, invstd)):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    for out in (y, grads[0]):
        assert out.transpose(0, 2, 3, 1).flags.c_contiguous == (x_layout is channels_last)


def test_relu_outputs_keep_the_activations_layout(split):
    """ReLU's and add + ReLU's outputs and ReLU's gradient take the layout of the activations, not
    of an incoming gradient in another layout (as from pooling)."""
    x, b, gy = arrays((7, 3, 4, 5), (7, 3, 4, 5), (7, 3, 4, 5), seed=5)
    x, b = channels_last(x), channels_last(b)
    y = pointwise.ThreadedReLU.forward(x)
    gx = pointwise.ThreadedReLU.backward(gy, y)                 # gy: NCHW memory
    np.testing.assert_array_equal(gx, NumpyReLU.backward(gy, y))
    for out in (y, gx, pointwise.ThreadedAddReLU.forward(x, b)):
        assert out.transpose(0, 2, 3, 1).flags.c_contiguous


def test_map_batch_gives_equal_shares_cut_into_blocks_in_order(monkeypatch):
    monkeypatch.setattr(threads, "MIN_PARALLEL_SIZE", 0)
    a, before, seen = np.arange(10.0), threads.get_num_threads(), {}
    try:
        for n in (1, 2, 3):
            threads.set_num_threads(n)
            seen[n] = threads.map_batch(a, lambda s: a[s].tolist(), per_block=3)
    finally:
        threads.set_num_threads(before)
    assert seen[1] == [[0, 1], [2, 3, 4], [5, 6], [7, 8, 9]]        # one share of 10: four blocks of <= 3
    assert seen[2] == [[0, 1], [2, 3, 4], [5, 6], [7, 8, 9]]        # shares of 5 and 5, two blocks each
    assert seen[3] == [[0, 1, 2], [3, 4, 5], [6, 7], [8, 9]]        # shares of 3, 3 and 4
    assert threads.map_batch(a, lambda s: a[s].tolist(), min_size=11) == [list(range(10))]  # too small to split
    assert threads.map_batch(np.float64(2.0), lambda s: 1) == [1]   # a 0-d array: one call


def test_gradcheck_through_the_threaded_ops(split):
    x, w, b = (mr.Tensor(a, requires_grad=True) for a in arrays((5, 2, 3, 3), (2,), (2,), seed=3))
    assert mr.gradcheck(lambda x, w, b: F.relu(F.batch_norm(x, None, None, w, b, training=True)), [x, w, b])


def test_threaded_kernels_are_the_cpu_defaults_without_numba():
    """Where Numba is installed, batch norm's and ReLU's backward take its kernels instead
    (tests/test_cpu_batchnorm.py, tests/test_cpu_relu.py)."""
    for op in ("relu", "add_relu", "batch_norm"):
        assert "numpy-threads" in backend.available(op)
        if importlib.util.find_spec("numba") is None:
            assert backend.lookup(op, np.zeros((1, 1)))[0] == "numpy-threads"


def test_set_num_threads_rejects_zero():
    with pytest.raises(ValueError, match="at least one thread"):
        threads.set_num_threads(0)


def test_the_allocator_setting_is_applied_on_linux_and_can_be_undone():
    import platform
    from minires.cpu import allocator
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        pytest.skip("glibc only")
    assert allocator.keep_freed_memory()
    assert allocator.set_thresholds(mmap=128 * 1024, trim=128 * 1024)
    assert allocator.keep_freed_memory()


def test_the_default_thread_count_follows_omp_num_threads(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert threads._default_threads() == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "not a number")
    assert threads._default_threads() == (os.cpu_count() or 1)
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert threads._default_threads() == (os.cpu_count() or 1)


class _Passes(np.ndarray):
    """An array that counts the NumPy operations (ufunc calls and functions such as einsum) that read or
    write an array of ``activation`` values: each is one pass over memory. Allocations are not passes."""
    activation, count = None, 0

    @staticmethod
    def _plain(values):
        return tuple(v.view(np.ndarray) if isinstance(v, _Passes) else _Passes._plain(v) if isinstance(v, (list, tuple))
                     else v for v in values)

    @classmethod
    def _seen(cls, values):
        if any(isinstance(v, np.ndarray) and v.size == cls.activation for v in values):
            cls.count += 1

    @staticmethod
    def _wrap(result):
        return result.view(_Passes) if isinstance(result, np.ndarray) else result

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        outputs = kwargs.get("out", ())
        self._seen(inputs + outputs)
        if outputs:
            kwargs["out"] = self._plain(outputs)
        return self._wrap(getattr(ufunc, method)(*self._plain(inputs), **kwargs))

    def __array_function__(self, func, types, args, kwargs):
        if func not in (np.empty_like, np.empty):
            self._seen(args)
        return self._wrap(func(*self._plain(args), **kwargs))


def test_the_numpy_batch_norm_makes_the_passes_the_numba_kernels_save(monkeypatch):
    """minires.cpu.batchnorm: the threaded NumPy batch norm makes one pass per operation, five forward (with
    a bias) and seven backward, where the Numba kernels make two each way."""
    from minires.cpu import batchnorm
    monkeypatch.setattr(threads, "MIN_PARALLEL_PASS", 1 << 30)        # one slice: a pass is one call
    rng = np.random.default_rng(0)
    x, gy = rng.standard_normal((2, 3, 4, 5)), rng.standard_normal((2, 3, 4, 5))
    weight, bias = rng.standard_normal(3), rng.standard_normal(3)
    _Passes.activation, _Passes.count = x.size, 0
    _, mean, _, invstd = pointwise.ThreadedBatchNorm.forward_train(x.view(_Passes), weight, bias, 1e-5)
    forward, _Passes.count = _Passes.count, 0
    pointwise.ThreadedBatchNorm.backward(gy.view(_Passes), x.view(_Passes), weight, np.asarray(mean), np.asarray(invstd))
    backward = _Passes.count
    words = {5: "five", 7: "seven"}
    assert (forward, backward) == (5, 7)
    assert (f"makes {words[forward]} passes forward (with a bias) and {words[backward]} backward"
            in " ".join(batchnorm.__doc__.split()))
    readme = " ".join((Path(__file__).parents[1] / "README.md").read_text().split())
    assert f"instead of NumPy's {words[forward]} forward (with a bias) and {words[backward]} backward" in readme

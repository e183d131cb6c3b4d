"""The sum of two arrays as one Numba region (minires.cpu.add, ``numba``): NumPy's ``a + b`` to the bit,
in NumPy's layout, for the residual add and for the engine's sum of two gradients of one tensor."""
import numpy as np
import pytest

import minires as mr
from minires import backend
from conftest import channels_last, every_other_column

pytest.importorskip("numba")
from minires.cpu import add, numba_layer, threads  # noqa: E402 - after the skip


@pytest.fixture
def regions(monkeypatch):
    """Numba's threads taken as TBB's, every pass large enough for a region, on 3 threads (an odd share
    of 7 images); the list of the regions that ran."""
    monkeypatch.setattr(numba_layer, "threading_layer", lambda: "tbb")
    monkeypatch.setattr(numba_layer, "MIN_REGION_PASS", 0)
    before = threads.get_num_threads()
    threads.set_num_threads(3)
    ran, kernel = [], add._kernels().add_split
    monkeypatch.setattr(add, "_kernels", lambda: type("Kernels", (), {"add_split": staticmethod(
        lambda *args: (ran.append(args[0].size), kernel(*args))[1])}))
    yield ran
    threads.set_num_threads(before)


def edge_values(a):
    """``a`` with NaN, infinities, a signed zero and a subnormal in its first values."""
    a = a.copy()
    a.reshape(-1)[:6] = [np.nan, np.inf, -np.inf, -0.0, np.finfo(a.dtype).smallest_subnormal, 1e30]
    return a


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layout", [np.ascontiguousarray, channels_last], ids=["NCHW", "channels-last"])
def test_the_region_gives_numpys_bits_and_layout(regions, dtype, layout):
    rng = np.random.default_rng(0)
    a, b = (layout(edge_values(rng.standard_normal((7, 3, 4, 5)).astype(dtype))) for _ in range(2))
    y, expected = add.NumbaAdd.forward(a, b), a + b
    assert regions == [a.size]                                             # the kernel ran, once
    assert y.dtype == dtype and y.shape == expected.shape and y.strides == expected.strides
    assert y.tobytes() == expected.tobytes()


@pytest.mark.parametrize("case", ["broadcast", "dtypes", "layouts", "strided", "float16", "one image row"])
def test_anything_else_is_numpys_sum(regions, case):
    """Broadcasting, mixed dtypes or layouts, a strided view, a dtype the kernel lacks, fewer than two
    axes: NumPy's ``a + b`` itself, its layout included."""
    rng = np.random.default_rng(1)
    a, b = (rng.standard_normal((7, 3, 4, 5)) for _ in range(2))
    a, b = {"broadcast": (a, b[:1]), "dtypes": (a, b.astype(np.float32)), "layouts": (a, channels_last(b)),
            "strided": (every_other_column(a), every_other_column(b)),
            "float16": (a.astype(np.float16), b.astype(np.float16)), "one image row": (a[0, 0, 0], b[0, 0, 0])}[case]
    y, expected = add.NumbaAdd.forward(a, b), a + b
    assert regions == []
    assert y.dtype == expected.dtype and y.strides == expected.strides and y.tobytes() == expected.tobytes()


def test_off_tbb_or_on_one_thread_it_is_numpys_sum(monkeypatch):
    monkeypatch.setattr(numba_layer, "threading_layer", lambda: "omp")
    monkeypatch.setattr(numba_layer, "MIN_REGION_PASS", 0)
    a, b = (channels_last(np.ones((4, 3, 2, 2))) for _ in range(2))
    monkeypatch.setattr(add, "_kernels", lambda: pytest.fail("no region off TBB"))
    np.testing.assert_array_equal(add.NumbaAdd.forward(a, b), a + b)


def test_the_residual_add_and_the_gradients_of_a_tensor_used_twice_go_through_the_op(monkeypatch):
    """``x + y`` and the engine's sum of the two gradients ``h`` gets (from ``h * 2`` and ``h * 3``) are the
    registry's op ``"add"``, with the same results as NumPy's sums."""
    calls = []
    forward = add.NumbaAdd.forward
    monkeypatch.setattr(add.NumbaAdd, "forward", staticmethod(lambda a, b: (calls.append(a.shape), forward(a, b))[1]))
    x = mr.tensor(np.arange(6.0).reshape(2, 3), requires_grad=True)
    h = x + x * 0.5
    ((h * 2.0) * (h * 3.0)).sum().backward()
    assert len(calls) == 3                      # the forward's x + x * 0.5; h's two gradients; x's two
    h_value = 1.5 * np.arange(6.0).reshape(2, 3)
    np.testing.assert_array_equal(x.grad.numpy(), 1.5 * (2 * 3 * h_value + 3 * 2 * h_value))


def test_numba_is_the_default_and_can_be_switched_off():
    assert backend.lookup("add", np.zeros((1, 1)))[0] == "numba"
    with backend.using("add", "numpy"):
        assert backend.lookup("add", np.zeros((1, 1)))[0] == "numpy"



AB_REPORT = "results/cpu/2026-12-05-amd-epyc-add-ab.txt"


def test_the_readme_quotes_the_committed_ab_of_the_sums():
    """The README's times of the sums in a ResNet-20 step and the ratios are the committed A/B output's:
    three runs at batch 32 on two threads, one at batch 128, one on one thread (where both sides are NumPy's)."""
    import re
    from conftest import REPO, one_line
    report = (REPO / AB_REPORT).read_text()
    cases = re.findall(r"batch (\d+), (\d) thread", report)
    kernels = [float(ms) for ms in re.findall(r"add kernels +([\d.]+) ms", report)]
    steps = [float(r) for r in re.findall(r"B / A: step ([\d.]+)", report)]
    ratios = [float(r) for r in re.findall(r"kernels ([\d.]+)$", report, re.M)]
    assert cases == [("32", "2")] * 3 + [("128", "2"), ("32", "1")] and len(kernels) == 10
    before, after = kernels[0:6:2], kernels[1:6:2]
    readme = one_line("README.md")
    assert (f"went from {', '.join(map(str, before[:2]))} and {before[2]} ms to {', '.join(map(str, after[:2]))} "
            f"and {after[2]} ms in three runs ({min(ratios[:3]):.3f}-{max(ratios[:3]):.3f}x; the step "
            f"{min(steps[:3]):.3f}-{max(steps[:3]):.3f}x), at batch 128 from {kernels[6]} to {kernels[7]} ms "
            f"({ratios[3]:.3f}x; the step {steps[3]:.3f}x); on one thread both sides are NumPy's sum (no region "
            f"runs there), so that cell's {ratios[4]:.3f}x") in readme
    assert f"([output]({AB_REPORT}))" in readme

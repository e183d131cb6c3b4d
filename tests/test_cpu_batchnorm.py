"""The two-pass Numba batch norm (minires.cpu.batchnorm, ``numba``) against the NumPy reference and PyTorch."""
import platform
import subprocess
import time
import sys

import numpy as np
import pytest

import minires as mr
import minires.functional as F
from minires import backend
from minires.cpu import batchnorm, pointwise
from minires.functional.norm import NumpyBatchNorm
from conftest import channels_last

pytest.importorskip("numba")

Numba = batchnorm.NumbaBatchNorm
TOLERANCE = {np.float64: dict(rtol=1e-12, atol=1e-12), np.float32: dict(rtol=2e-5, atol=2e-5)}


def problem(shape, dtype, seed=0, offset=3.0):
    """x (channels last; each channel with its own mean and spread), gy, weight, bias."""
    rng = np.random.default_rng(seed)
    per_channel = (1, shape[1]) + (1,) * (len(shape) - 2)
    x = offset + rng.standard_normal(shape) * rng.uniform(0.5, 3, per_channel) + rng.uniform(-2, 2, per_channel)
    gy = rng.standard_normal(shape)
    weight, bias = rng.uniform(0.5, 1.5, shape[1]), rng.standard_normal(shape[1])
    return [a.astype(dtype) for a in (channels_last(x), gy, weight, bias)]


def reference(x, gy, weight, bias):
    """The NumPy reference's forward and backward, computed in float64 from the same values."""
    x64, gy64 = (np.ascontiguousarray(a, dtype=np.float64) for a in (x, gy))
    w64, b64 = (None if v is None else v.astype(np.float64) for v in (weight, bias))
    y, mean, var, invstd = NumpyBatchNorm.forward_train(x64, w64, b64, 1e-5)
    return (y, mean, var, invstd), NumpyBatchNorm.backward(gy64, x64, w64, mean, invstd)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape", [(7, 5, 4, 6), (7, 6), (7, 3, 5)], ids=["NCHW", "NC", "NCL"])
@pytest.mark.parametrize("affine", [True, False])
def test_forward_and_backward_match_the_reference(split, dtype, shape, affine):
    x, gy, weight, bias = problem(shape, dtype)
    weight, bias = (weight, bias) if affine else (None, None)
    mine = Numba.forward_train(x, weight, bias, 1e-5)
    expected_forward, expected_grads = reference(x, gy, weight, bias)
    for a, b in zip(mine, expected_forward):
        assert a.dtype == dtype
        np.testing.assert_allclose(a, b, **TOLERANCE[dtype])
    _, mean, _, invstd = mine
    grads = Numba.backward(gy, x, weight, mean, invstd)
    for a, b in zip(grads, expected_grads):
        assert a.dtype == dtype
        np.testing.assert_allclose(a, b, **TOLERANCE[dtype])
    assert all(np.array_equal(a, b) for a, b in zip(grads, Numba.backward(gy, x, weight, mean, invstd)))


@pytest.mark.parametrize("x_layout", [channels_last, np.ascontiguousarray, lambda a: np.repeat(a, 2, axis=3)[..., ::2]],
                         ids=["x-channels-last", "x-NCHW", "x-strided"])
def test_every_memory_layout_gives_the_same_numbers_and_outputs_keep_the_layout(split, x_layout):
    """x in channels-last, NCHW or strided memory, gy in NCHW memory: the reference's numbers; y and gx
    are laid out like x (a strided x is read as an NCHW copy)."""
    x, gy, weight, bias = problem((7, 4, 3, 5), np.float64, seed=1)
    x = x_layout(x)
    forward = Numba.forward_train(x, weight, bias, 1e-5)
    expected_forward, expected_grads = reference(x, gy, weight, bias)
    for a, b in zip(forward, expected_forward):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    grads = Numba.backward(np.ascontiguousarray(gy), x, weight, forward[1], forward[3])
    for a, b in zip(grads, expected_grads):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    memory_order = np.moveaxis if x_layout is channels_last else (lambda a, *_: a)
    for out in (forward[0], grads[0]):
        assert memory_order(out, 1, -1).flags.c_contiguous


def test_a_large_mean_does_not_cancel_the_variance():
    """Values 1e8 +- 1: sums of squares about the origin would lose the variance to rounding even in
    float64 (1e16 against 1); shifted by a value of the channel they keep it, as the reference's two
    passes do."""
    rng = np.random.default_rng(2)
    x = channels_last(1e8 + rng.standard_normal((8, 3, 6, 6)))
    _, mean, var, _ = Numba.forward_train(x, None, None, 1e-5)
    np.testing.assert_allclose(var, x.var(axis=(0, 2, 3)), rtol=1e-9)
    np.testing.assert_allclose(mean, x.mean(axis=(0, 2, 3)), rtol=1e-15)


def test_gradcheck_through_the_numba_kernels(split):
    x, _, weight, bias = problem((5, 2, 3, 3), np.float64, seed=3)
    x, w, b = (mr.Tensor(a, requires_grad=True) for a in (x, weight, bias))
    assert mr.gradcheck(lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True, impl="numba"), [x, w, b])


def test_matches_pytorch_in_float32(torch_oracle):
    torch = torch_oracle
    x, gy, weight, bias = problem((6, 4, 5, 5), np.float32, seed=5)
    running = [np.zeros(4, np.float32), np.ones(4, np.float32)]
    leaves = [mr.Tensor(a, requires_grad=True) for a in (x, weight, bias)]
    y = F.batch_norm(leaves[0], *running, leaves[1], leaves[2], training=True, impl="numba")
    y.backward(gy)
    theirs = [torch.tensor(np.ascontiguousarray(a), requires_grad=True) for a in (x, weight, bias)]
    t_running = [torch.zeros(4), torch.ones(4)]
    t_y = torch.nn.functional.batch_norm(theirs[0], *t_running, theirs[1], theirs[2], training=True)
    t_y.backward(torch.tensor(gy))
    np.testing.assert_allclose(y.numpy(), t_y.detach().numpy(), rtol=1e-5, atol=1e-5)
    for mine, their in zip(leaves, theirs):
        np.testing.assert_allclose(mine.grad.numpy(), their.grad.numpy(), rtol=1e-4, atol=1e-5)
    for mine, their in zip(running, t_running):
        np.testing.assert_allclose(mine, their.numpy(), rtol=1e-6, atol=1e-6)


def test_numba_is_the_default_and_can_be_switched_off():
    assert backend.lookup("batch_norm", np.zeros((1, 1)))[0] == "numba"
    with backend.using("batch_norm", "numpy-threads"):
        assert backend.lookup("batch_norm", np.zeros((1, 1)))[1] is pointwise.ThreadedBatchNorm
    assert backend.lookup("batch_norm", np.zeros((1, 1)))[1] is Numba


def test_the_ab_benchmark_times_both_implementations_and_restores_the_registry():
    """benchmarks/cpu_kernel_ab.py (the README's A/B command) on a toy step: each implementation's
    kernels take part of its step, and the registry holds the real implementations afterwards."""
    import importlib.util
    from pathlib import Path
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "cpu_kernel_ab.py"
    spec = importlib.util.spec_from_file_location("cpu_kernel_ab", path)
    ab = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ab)
    results = ab.compare("batch_norm", ["numpy-threads", "numba"], "resnet20", 2, 1, time.perf_counter)
    assert list(results) == ["numpy-threads", "numba"]
    assert all(0 < kernel < step for step, kernel in results.values())
    assert backend.lookup("batch_norm", np.zeros((1, 1)), "numba")[1] is Numba


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("channels_last", [True, False])
def test_the_vectors_between_the_passes_have_numpys_bits(dtype, affine, channels_last):
    """``forward_vectors`` and ``backward_vectors`` round where the NumPy expressions of the statistics and
    constants do (written out here, float64 sums in, the data's dtype out), for ordinary channels, a constant
    one (variance 0, and a negative rounding error clipped to 0), a NaN one, and eps = 0 (s infinite)."""
    from minires.kernels import batchnorm_cpu
    rng = np.random.default_rng(7)
    channels, per_channel, m = 6, 4, 96
    shift = rng.standard_normal(channels) * 3
    sums = np.stack([rng.standard_normal(channels) * 10, rng.uniform(1, 50, channels)])
    sums[:, 1] = 0                                              # a constant channel: S1 = S2 = 0
    sums[:, 2] = [1e-3, 1e-9]                                   # S2/m < (S1/m)^2: clipped to 0
    sums[1, 3] = np.nan
    weight, bias = (rng.uniform(0.5, 1.5, channels).astype(dtype), rng.standard_normal(channels).astype(dtype))
    weight, bias = (weight, bias) if affine else (None, None)
    channel_of = (np.arange(channels * per_channel) % channels if channels_last
                  else np.arange(channels * per_channel) // per_channel)
    for eps in (1e-5, 0.0):
        vectors = np.empty((3, channel_of.size), dtype)
        got = batchnorm_cpu.forward_vectors(sums, shift, m, dtype(eps), dtype(1), weight, bias, channel_of, vectors)
        centred_mean, mean_square = sums / m
        mean = (shift + centred_mean).astype(dtype)
        var = np.maximum(mean_square - centred_mean ** 2, 0).astype(dtype)
        invstd = 1 / np.sqrt(var + eps)
        scale = invstd if weight is None else weight * invstd
        shift_by = np.zeros_like(mean) if bias is None else bias
        for a, b in zip(got, (mean, var, invstd)):
            assert a.dtype == dtype and a.tobytes() == b.tobytes()
        assert vectors.tobytes() == np.stack([mean, scale, shift_by])[:, channel_of].tobytes()

        vectors = np.empty((4, channel_of.size), dtype)
        gweight, gbias = batchnorm_cpu.backward_vectors(sums, mean, invstd, dtype(m), weight, channel_of, vectors)
        expected_gbias, expected_gweight = sums[0].astype(dtype), (sums[1] * invstd).astype(dtype)
        expected = [mean, scale, -scale * invstd * expected_gweight / m, -scale * expected_gbias / m]
        assert gweight.tobytes() == expected_gweight.tobytes() and gbias.tobytes() == expected_gbias.tobytes()
        assert vectors.tobytes() == np.stack(expected)[:, channel_of].tobytes()


def test_kernels_release_the_gil_run_serially_and_keep_strict_float_math():
    """minires' threads run the kernels side by side only if each releases the GIL; a kernel of its own
    thread pool (``parallel``) would compete with them for the cores (only the ``*_split`` regions,
    used on TBB instead of the pool, are parallel); ``fastmath`` would let LLVM reorder the float64 sums."""
    from minires.kernels import batchnorm_cpu
    for name in ("shifted_sums", "gradient_sums", "normalize", "input_gradient", "forward_vectors", "backward_vectors",
                 "channel_totals"):
        options = getattr(batchnorm_cpu, name).targetoptions
        assert options["nogil"] and not options.get("parallel") and not options.get("fastmath"), (name, options)
    for name in ("shifted_sums_split", "gradient_sums_split", "normalize_split", "input_gradient_split"):
        options = getattr(batchnorm_cpu, name).targetoptions
        assert options["nogil"] and options["parallel"] and not options.get("fastmath"), (name, options)


@pytest.mark.parametrize("threads", [1, 3])
@pytest.mark.parametrize("layout", ["NCHW", "channels last"])
def test_the_numba_region_on_tbb_gives_the_same_bits(monkeypatch, threads, layout):
    """Where Numba's threads run on TBB, the passes too small for minires' pool (but not tiny) run as one Numba
    region (the ``*_split`` kernels, on 2 threads or more) instead of on one thread: the sums on the same
    slices, one per thread, as on the pool or one after the other, and every other value computed
    alone, so every output has the same bits whichever runs them."""
    from minires.cpu import numba_layer, threads as cpu_threads
    from minires.kernels import batchnorm_cpu
    before = cpu_threads.get_num_threads()
    cpu_threads.set_num_threads(threads)
    x, gy, weight, bias = problem((7, 5, 4, 3), np.float64, seed=9)   # float64: a sum in another order would show
    x, gy = (channels_last(x), channels_last(gy)) if layout == "channels last" else (np.ascontiguousarray(x), gy)
    calls = []
    for name in ("shifted_sums_split", "gradient_sums_split", "normalize_split", "input_gradient_split"):
        kernel = getattr(batchnorm_cpu, name)
        monkeypatch.setattr(batchnorm_cpu, name, lambda *args, kernel=kernel: (calls.append(1), kernel(*args))[1])
    results = {}
    try:
        # (route, Numba's layer, the pool's threshold, the regions' threshold): this problem is tiny, so on
        # TBB it takes a region only with the regions' threshold at 0 ("tiny alone": the default's)
        for route, layer, min_pass, min_region in (("region", "tbb", 1 << 20, 0), ("in turn", "omp", 1 << 20, 0),
                                                   ("pool", "omp", 0, 0),
                                                   ("tiny alone", "tbb", 1 << 20, numba_layer.MIN_REGION_PASS)):
            monkeypatch.setattr(numba_layer, "threading_layer", lambda: layer)
            monkeypatch.setattr(numba_layer, "MIN_REGION_PASS", min_region)
            monkeypatch.setattr(cpu_threads, "MIN_PARALLEL_PASS", min_pass)
            y, mean, var, invstd = Numba.forward_train(x, weight, bias, 1e-5)
            results[route] = (y, mean, var, invstd, *Numba.backward(gy, x, weight, mean, invstd))
    finally:
        cpu_threads.set_num_threads(before)
    assert len(calls) == (4 if threads > 1 else 0)      # each way's sums, normalize, the input gradient: a region only
    for route in ("in turn", "pool", "tiny alone"):
        assert all(np.array_equal(a, b) for a, b in zip(results["region"], results[route])), route


def test_the_channel_totals_after_a_region_add_as_numpy_does():
    """channel_totals (one kernel after a region over channels-last rows) adds the slices' per-position
    sums in slice order and then each channel's positions in order: the bits of the NumPy it replaces,
    threads.total and then ChannelRows.fold, for sums of very different sizes, 1-4 slices, 2-512 channels."""
    from minires.kernels import batchnorm_cpu
    rng = np.random.default_rng(10)
    for _ in range(300):
        channels, pixels, slices = int(rng.choice([2, 3, 16, 64, 100, 512])), int(rng.integers(2, 40)), int(rng.integers(1, 5))
        partials = rng.standard_normal((slices, 2, pixels * channels)) * 10.0 ** rng.integers(-8, 9, (slices, 2, pixels * channels))
        layout = pointwise.ChannelRows(channels_last(np.empty((1, channels, pixels, 1))))
        expected = layout.fold(pointwise.total(list(partials)))
        assert layout.channels_last and batchnorm_cpu.channel_totals(partials, channels).tobytes() == expected.tobytes()


@pytest.mark.parametrize("threads", [1, 2, 3, 4])
def test_a_regions_bounds_are_the_pools_shares_and_read_only(monkeypatch, threads):
    """The bounds a region runs (cached for each row count and thread count) cut the rows where minires'
    pool would: one share per thread, at most one per row; None for a single share. Every pass with that
    many rows gets the same array, so it cannot be written."""
    from minires.cpu import numba_layer, threads as cpu_threads
    monkeypatch.setattr(numba_layer, "threading_layer", lambda: "tbb")
    monkeypatch.setattr(numba_layer, "MIN_REGION_PASS", 0)
    before = cpu_threads.get_num_threads()
    cpu_threads.set_num_threads(threads)
    try:
        for rows in (1, 2, 3, 7, 64):
            a = np.empty((rows, 5), np.float32)
            bounds = numba_layer.region_bounds(a)
            shares = [run[0] for run in cpu_threads.batch_runs(a, None, min_size=0)]
            if len(shares) < 2:
                assert bounds is None
                continue
            assert list(bounds) == [s.start for s in shares] + [rows] and bounds.dtype == np.int64
            assert numba_layer.region_bounds(a) is bounds and not bounds.flags.writeable
    finally:
        cpu_threads.set_num_threads(before)


def test_float16_takes_the_numpy_passes():
    """The kernels compile for float32 and float64; float16 data gets the threaded NumPy kernels' numbers."""
    x, gy, weight, bias = problem((4, 3, 2, 2), np.float16, seed=6)
    y, mean, var, invstd = Numba.forward_train(x, weight, bias, 1e-5)
    expected = pointwise.ThreadedBatchNorm.forward_train(x, weight, bias, 1e-5)
    assert y.dtype == np.float16 and all(np.array_equal(a, b) for a, b in zip((y, mean, var, invstd), expected))
    grads = Numba.backward(gy, x, weight, mean, invstd)
    expected = pointwise.ThreadedBatchNorm.backward(gy, x, weight, mean, invstd)
    assert all(np.array_equal(a, b) for a, b in zip(grads, expected))


VECTORISED = r"""
import re, numpy as np
from kernels import batchnorm_cpu as k
for dtype in (np.float32, np.float64):
    x, c = np.ones((2, 96), dtype), np.zeros(96, dtype)
    k.shifted_sums(x, np.zeros(96), np.zeros(96), np.zeros(96))
    k.gradient_sums(x, x, np.zeros(96), np.zeros(96), np.zeros(96))
    k.normalize(x, c, c, c, np.empty_like(x))
    k.input_gradient(x, x, c, c, c, c, np.empty_like(x))
for kernel in (k.shifted_sums, k.gradient_sums, k.normalize, k.input_gradient):
    for signature, asm in kernel.inspect_asm().items():
        print(kernel.__name__, signature[0].dtype, len(re.findall(r"\bv?(?:add|sub|mul)p[sd]\s", asm)))
"""


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="reads x86 assembly")
def test_llvm_vectorises_every_kernel_loop(tmp_path):
    """kernels/batchnorm_cpu.py: "the loop runs along a row ... and LLVM vectorises it": each kernel's machine
    code, for float32 and float64, has packed (SIMD) additions, subtractions or products. Compiled afresh in
    a child process with its own cache folder (Numba cannot show the assembly of cached code)."""
    import os
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path), PYTHONPATH=str(root))
    out = subprocess.run([sys.executable, "-c", VECTORISED], env=env, cwd=root, capture_output=True, text=True,
                         check=True, timeout=300).stdout.split("\n")
    counts = {tuple(line.split()[:2]): int(line.split()[2]) for line in out if line}
    assert len(counts) == 8 and all(n > 0 for n in counts.values()), counts
    assert "LLVM vectorises it" in " ".join((root / "kernels/batchnorm_cpu.py").read_text().split())


REGIONS_AB = "results/cpu/2026-12-04-amd-epyc-numba-regions-ab.txt"
EVERY_SIZE_AB = "results/cpu/2026-12-04-amd-epyc-numba-regions-every-size-ab.txt"
SUMS_IN_REGIONS_AB = "results/cpu/2026-12-05-amd-epyc-numba-regions-ab.txt"      # the sums in the regions too
EVERY_SIZE_NOW_AB = "results/cpu/2026-12-05-amd-epyc-numba-regions-every-size-ab.txt"   # and every size
TINY_PASSES_AB = "results/cpu/2026-12-05-amd-epyc-tiny-passes-ab.txt"    # the tiniest passes on one thread


def test_the_readme_quotes_the_committed_ab_of_the_numba_regions():
    """The README's step ratios of the passes in Numba regions against minires' pool are the committed
    outputs': ResNet-20 and -56 at batch 32, then 128, for the kept version, the first one, and the one
    with the sums in the regions too."""
    import re
    from conftest import REPO, one_line
    kept, first = ([r for r in re.findall(r"regions / pool: step ([\d.]+)", (REPO / name).read_text())]
                   for name in (REGIONS_AB, EVERY_SIZE_AB))
    assert len(kept) == len(first) == 4
    readme = one_line("README.md")
    assert (f"the step took {kept[0]}x (ResNet-20) and {kept[1]}x (ResNet-56) the time at batch 32, {kept[2]}x "
            f"and {kept[3]}x at batch 128") in readme
    assert f"made batch 128 slower, {first[2]}x and {first[3]}x" in readme
    assert f"for the same gain at batch 32, {first[0]}x and {first[1]}x" in readme
    assert f"([output]({REGIONS_AB})" in readme and f"([output]({EVERY_SIZE_AB}))" in readme
    now = re.findall(r"regions / pool: step ([\d.]+)", (REPO / SUMS_IN_REGIONS_AB).read_text())
    every = re.findall(r"every size / small only: step ([\d.]+)", (REPO / EVERY_SIZE_NOW_AB).read_text())
    assert len(every) == 4 and (f"[output]({EVERY_SIZE_NOW_AB})), the step took {every[0]}x (ResNet-20) and "
                                f"{every[1]}x (ResNet-56) the time at batch 64, {every[2]}x and {every[3]}x at "
                                f"batch 128") in readme
    from minires.cpu import numba_layer
    floats = [float(r) for r in every]
    assert f"took {min(floats):.3f}-{max(floats):.3f}x the time" in " ".join(numba_layer.region_bounds.__doc__.split())
    assert len(now) == 4 and (f"([output]({SUMS_IN_REGIONS_AB})): regions against the pool, the step took {now[0]}x "
                              f"(ResNet-20) and {now[1]}x (ResNet-56) the time at batch 32, {now[2]}x and {now[3]}x "
                              f"at batch 128") in readme


def test_the_readme_and_the_threshold_quote_the_ab_of_the_tiniest_passes():
    """The step ratios the README gives for the passes under MIN_REGION_PASS values on the calling thread
    against a region for every pass, and those the threshold's comment gives, are the committed output's."""
    import re
    from conftest import REPO, one_line
    runs = dict(((model, int(batch)), ratio) for model, batch, ratio in re.findall(
        r"(resnet\d+) batch (\d+),.*?tiny alone / every size: step ([\d.]+)", (REPO / TINY_PASSES_AB).read_text(), re.S))
    r20 = {batch: runs[("resnet20", batch)] for batch in (1, 2, 4, 8, 32, 128)}
    assert (f"the step took {r20[1]}x the time at batch 1, {r20[2]}x at batch 2, {r20[4]}x at batch 4 and {r20[8]}x at "
            f"batch 8 (ResNet-20), {runs[('resnet56', 2)]}x at batch 2 (ResNet-56); batch 32 and 128, which have no "
            f"such pass, gave {r20[32]}x and {r20[128]}x (ResNet-20) and {runs[('resnet56', 32)]}x (ResNet-56, batch "
            f"32)") in one_line("README.md")
    from minires.cpu import numba_layer
    stages = [(16, 32), (32, 16), (64, 8)]                   # a CIFAR ResNet's (channels, side) per stage
    tiny = {batch: [batch * c * side * side < numba_layer.MIN_REGION_PASS for c, side in stages] for batch in (1, 2, 4, 8)}
    assert tiny == {1: [True] * 3, 2: [False, True, True], 4: [False, False, True], 8: [False] * 3}
    assert ("in a CIFAR ResNet, every pass at batch 1, the last two stages' at batch 2, the last stage's at "
            "batch 4") in one_line("README.md")
    source = " ".join((REPO / "minires/cpu/numba_layer.py").read_text().replace("#", " ").split())
    assert f"took {r20[1]}x at batch 1 and {r20[2]}x at batch 2 the time it took with a region for every pass" in source


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layout", [channels_last, np.ascontiguousarray], ids=["channels-last", "NCHW"])
@pytest.mark.parametrize("route", ["minires-pool", "numba-region"])
def test_the_evaluation_pass_gives_the_references_bits_and_layout(split, monkeypatch, dtype, layout, route):
    """Evaluation mode in one pass (``forward_eval``: ``normalize`` with a zero mean) rounds where the reference's
    ``x * scale`` then ``+ shift`` does, NaN, infinities and -0.0 included, on minires' pool or as one region."""
    from minires.cpu import numba_layer, threads
    from minires.kernels import batchnorm_cpu
    monkeypatch.setattr(numba_layer, "threading_layer", lambda: "tbb" if route == "numba-region" else "omp")
    monkeypatch.setattr(numba_layer, "MIN_REGION_PASS", 0)
    if route == "numba-region":
        monkeypatch.setattr(threads, "MIN_PARALLEL_PASS", 1 << 40)
    ran = []
    for name in ("normalize", "normalize_split"):
        kernel = getattr(batchnorm_cpu, name)
        monkeypatch.setattr(batchnorm_cpu, name, lambda *args, _k=kernel, _n=name: (ran.append(_n), _k(*args))[1])
    x, _, scale, shift = problem((7, 5, 4, 6), dtype)
    x = np.ascontiguousarray(x)
    x.reshape(-1)[:5] = [np.nan, np.inf, -np.inf, -0.0, 0.0]
    x = layout(x)
    y = Numba.forward_eval(x, scale, shift)
    expected = x * scale.reshape(1, -1, 1, 1)
    expected += shift.reshape(1, -1, 1, 1)
    assert ran and set(ran) == {"normalize_split" if route == "numba-region" and split > 1 else "normalize"}
    assert y.dtype == dtype and y.strides == expected.strides and y.tobytes() == expected.tobytes()


def test_evaluation_mode_takes_the_one_pass_with_the_references_bits(monkeypatch):
    """``F.batch_norm(training=False)`` (a model's ``eval()``) runs ``forward_eval`` and gives what the NumPy passes
    give (``numpy-threads``, which has none)."""
    calls = []
    one_pass = Numba.forward_eval
    monkeypatch.setattr(Numba, "forward_eval", staticmethod(lambda *args: (calls.append(1), one_pass(*args))[1]))
    x, _, weight, bias = problem((4, 3, 2, 5), np.float32)
    running_var, running_mean = problem((4, 3, 2, 5), np.float32, seed=1)[2:]     # weight > 0: a variance
    y = F.batch_norm(x, running_mean, running_var, weight, bias, training=False).numpy()
    with backend.using("batch_norm", "numpy-threads"):
        expected = F.batch_norm(x, running_mean, running_var, weight, bias, training=False).numpy()
    assert calls == [1] and y.tobytes() == expected.tobytes() and y.strides == expected.strides


def test_the_evaluation_pass_leaves_other_layouts_dtypes_and_empty_batches_to_the_reference():
    x, _, weight, bias = problem((4, 3, 2, 5), np.float32)
    strided = np.repeat(x, 2, axis=3)[..., ::2]
    scale, shift = weight, bias
    assert Numba.forward_eval(strided, scale, shift) is None
    assert Numba.forward_eval(x, scale.astype(np.float64), shift) is None
    assert Numba.forward_eval(x.astype(np.float16), scale.astype(np.float16), shift.astype(np.float16)) is None
    assert Numba.forward_eval(x[:0], scale, shift) is None

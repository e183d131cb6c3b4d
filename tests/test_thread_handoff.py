"""benchmarks/thread_handoff.py: the pool's round trip and a ReLU pass, one thread vs split, are timed
and reported (a tiny run: the machinery, not the speed)."""
import numpy as np
import pytest
from conftest import load_benchmark


def test_both_ways_of_running_the_pass_compute_relu():
    """On one thread and split over two, the timed pass gives max(x, 0) for every image."""
    module = load_benchmark("thread_handoff")
    from minires.bench.cpu import set_threads
    from minires.cpu import get_num_threads
    from minires.cpu.conv import channels_last_empty
    x = channels_last_empty((5, 3, 4, 4), np.float32)
    x[...] = np.random.default_rng(1).standard_normal(x.shape, dtype=np.float32)
    ours = get_num_threads()
    try:
        set_threads(2)
        for min_size in (x.size + 1, 0):
            np.testing.assert_array_equal(module.relu_pass(x, min_size), np.maximum(x, 0))
    finally:
        set_threads(ours)


def _main_keeping_our_threads(module, argv) -> int:
    """The script's main(argv), then this process's thread count back as it was (main sets its own)."""
    from minires.bench.cpu import set_threads
    from minires.cpu import get_num_threads
    ours = get_num_threads()
    try:
        return module.main(argv)
    finally:
        set_threads(ours)


def test_report_names_the_round_trip_and_each_shape(capsys):
    module = load_benchmark("thread_handoff")
    assert _main_keeping_our_threads(module, ["--batch", "2", "--threads", "2", "--trials", "5", "--rounds", "2"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("thread pool round trip, 2 threads, 5 trials: median ")
    assert [line.split(" (")[0] for line in out[1:4]] == ["ReLU forward over 2x16x32x32", "ReLU forward over 2x32x16x16",
                                                         "ReLU forward over 2x64x8x8"]
    assert all(line.endswith(("one thread is faster", "split is faster", "no measurable difference (within 5%)"))
               for line in out[1:4])
    assert out[4] == "(training splits passes from MIN_PARALLEL_PASS = 1,048,576 values on)"
    assert out[5].startswith("cpuidle driver: ") and len(out[5]) > len("cpuidle driver: ")
    import importlib.util
    if importlib.util.find_spec("numba") is None:
        assert out[6:] == ["Numba region starts: not measured (Numba is not installed)"]
        return
    gaps = [int(line.split(" after ")[1].split()[0]) for line in out[6:]]
    assert gaps == list(module.REGION_GAPS_US)
    assert all(line.startswith("Numba region start (") and " layer, 2 threads) after " in line for line in out[6:])


def test_region_starts_are_timed_after_every_gap():
    """Every gap gets its trials' call times, sorted and positive, on a layer Numba names."""
    pytest.importorskip("numba")
    module = load_benchmark("thread_handoff")
    layer, starts = module.region_starts(2, 3)
    assert layer in ("tbb", "omp", "workqueue")
    assert list(starts) == list(module.REGION_GAPS_US) and all(len(calls) == 3 for calls in starts.values())
    assert all(calls == sorted(calls) and calls[0] > 0 for calls in starts.values())


def test_a_difference_within_the_noise_is_not_called_faster(monkeypatch, capsys):
    """1% apart is no evidence that either way is faster: the line says so instead of naming one."""
    module = load_benchmark("thread_handoff")
    planted = iter([{"one thread": 100e-6, "split": 99e-6}, {"one thread": 100e-6, "split": 50e-6},
                    {"one thread": 100e-6, "split": 150e-6}])
    monkeypatch.setattr(module, "relu_pass_times", lambda shape, rounds: next(planted))
    assert _main_keeping_our_threads(module, ["--batch", "2", "--threads", "2", "--trials", "5", "--rounds", "1"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1].endswith("one thread 100 us, split 99 us: no measurable difference (within 5%)")
    assert out[2].endswith("split is faster") and out[3].endswith("one thread is faster")


def test_counts_that_cannot_be_timed_are_refused(capsys):
    module = load_benchmark("thread_handoff")
    for argv in (["--trials", "0"], ["--rounds", "0"], ["--threads", "0"], ["--batch", "0"]):
        with pytest.raises(SystemExit) as exit_:
            module.main(argv)
        assert exit_.value.code == 2 and "is not a positive integer" in capsys.readouterr().err


def test_the_readmes_count_of_regions_and_their_starts_are_measured():
    """The README's count of Numba regions in a ResNet-20 step at batch 32 on two threads is counted here, by
    wrapping every kernel that runs as a region (on TBB only: elsewhere the passes take minires' pool), and
    its region starts are the committed output's, slower after a gap than right after another region."""
    import re
    pytest.importorskip("numba")
    from conftest import REPO, one_line
    from minires.bench.cpu import set_threads
    from minires.bench.measure import training_step
    from minires.cpu import get_num_threads, numba_layer
    from minires.kernels import batchnorm_cpu, conv2d_rows_cpu, relu_cpu
    readme = one_line("README.md")
    output = (REPO / "results/cpu/2026-12-05-amd-epyc-thread-handoff.txt").read_text()
    starts = {int(gap): (float(median), float(p90)) for gap, median, p90 in
              re.findall(r"after (\d+) us of other work: median ([\d.]+) us \(p90 ([\d.]+)\)", output)}
    later = [starts[gap] for gap in starts if gap >= 100]
    assert (f"an almost empty region takes {starts[0][0]:.1f} us right after another, but "
            f"{min(m for m, _ in later):.1f}-{max(m for m, _ in later):.1f} us at the median (p90 up to "
            f"{max(p for _, p in later):.1f} us) after 100 us to 3 ms of other work") in readme
    assert min(m for m, _ in later) > 3 * starts[0][0]
    ours = get_num_threads()
    try:
        set_threads(2)
        if numba_layer.threading_layer() != "tbb":
            pytest.skip("Numba's threads are not on TBB here: no regions")
        step = training_step("resnet20", 32, "cpu")
        step()
        calls = []
        with pytest.MonkeyPatch.context() as patch:
            for module, names in ((batchnorm_cpu, ("shifted_sums_split", "gradient_sums_split", "normalize_split", "input_gradient_split")),
                                  (relu_cpu, ("relu_split", "relu_gradient_split")), (conv2d_rows_cpu, ("correlate_by_rows",))):
                for name in names:
                    kernel = getattr(module, name)
                    patch.setattr(module, name, lambda *a, _kernel=kernel, _name=name: calls.append(_name) or _kernel(*a))
            step()
    finally:
        set_threads(ours)
    assert f"A ResNet-20 step at batch 32 on two threads runs {len(calls)} Numba regions" in readme
    assert set(calls) == {"shifted_sums_split", "gradient_sums_split", "normalize_split", "input_gradient_split", "relu_split",
                          "relu_gradient_split", "correlate_by_rows"}           # every kind of region was seen

"""benchmarks/numba_regions_ab.py: steps with batch norm's and ReLU's small passes in Numba regions and on
minires' pool take turns and are reported (a tiny run: the machinery, not the speed)."""
import importlib.util
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("numba")
SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "numba_regions_ab.py"


def run_watching(switch: str, argv: list) -> set:
    """Run the script's main with ``argv`` (a tiny run: batch 2, two threads, one round); the values
    the switch ``numba_layer.<switch>`` had whenever a pass asked for a region's bounds."""
    from minires.bench.cpu import set_threads
    from minires.cpu import get_num_threads, numba_layer
    spec = importlib.util.spec_from_file_location("numba_regions_ab", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    seen, real_bounds, ours = set(), numba_layer.region_bounds, get_num_threads()
    module.numba_layer.region_bounds = lambda a: seen.add(getattr(numba_layer, switch)) or real_bounds(a)
    try:
        assert module.main(["--batch", "2", "--threads", "2", "--rounds", "1", *argv]) == 0
    finally:
        numba_layer.region_bounds = real_bounds
        set_threads(ours)
    return seen


def test_both_take_turns_are_reported_and_the_switch_is_restored(capsys):
    from minires.cpu import numba_layer
    seen = run_watching("PASSES_IN_REGIONS", [])
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("resnet20 batch 2, 2 thread(s), Numba ") and out[0].endswith("2 steps each, medians:")
    assert [line.split()[0] for line in out[1:3]] == ["pool", "regions"]
    assert float(out[3].split("step ")[1]) > 0
    assert seen == {True, False} and numba_layer.PASSES_IN_REGIONS is True


def test_every_size_against_small_only_takes_turns_and_the_switch_is_restored(capsys):
    """``--against small-only``: every pass in a region against regions only for the passes under the
    pool's threshold (the rule before 2026-12-05), the switch back to every size afterwards."""
    from minires.cpu import numba_layer
    seen = run_watching("SMALL_PASSES_ONLY", ["--against", "small-only"])
    out = capsys.readouterr().out.splitlines()
    assert [line.split(" step")[0].strip() for line in out[1:3]] == ["small only", "every size"]
    assert out[3].startswith("  every size / small only: step ") and float(out[3].split("step ")[1]) > 0
    assert seen == {True, False} and numba_layer.SMALL_PASSES_ONLY is False and numba_layer.PASSES_IN_REGIONS


def test_every_size_against_tiny_alone_takes_turns_and_the_switch_is_restored(capsys):
    """``--against every-size``: regions for the tiniest passes too (the rule before 2026-12-05 07:00 UTC)
    against those passes on this thread, the threshold back afterwards."""
    from minires.cpu import numba_layer
    threshold = numba_layer.MIN_REGION_PASS
    seen = run_watching("MIN_REGION_PASS", ["--against", "every-size"])
    out = capsys.readouterr().out.splitlines()
    assert [line.split(" step")[0].strip() for line in out[1:3]] == ["every size", "tiny alone"]
    assert out[3].startswith("  tiny alone / every size: step ") and float(out[3].split("step ")[1]) > 0
    assert seen == {0, threshold} and numba_layer.MIN_REGION_PASS == threshold > 0


def test_which_passes_run_in_a_region_on_tbb(monkeypatch):
    """On TBB a pass of MIN_REGION_PASS values or more runs in a region, the largest too; a tinier one on
    this thread; with SMALL_PASSES_ONLY, only those under the pool's threshold; with MIN_REGION_PASS 0,
    the tiniest too."""
    from minires.cpu import numba_layer, threads
    monkeypatch.setattr(numba_layer, "threading_layer", lambda: "tbb")
    before = threads.get_num_threads()
    threads.set_num_threads(2)
    try:
        big = np.empty((4, threads.MIN_PARALLEL_PASS // 4), np.float32)
        small = big[:, :numba_layer.MIN_REGION_PASS // 4]
        tiny = small[:, :-1]
        assert [list(b) if b is not None else None for b in map(numba_layer.region_bounds, (big, small, tiny))] == \
            [[0, 2, 4], [0, 2, 4], None]
        monkeypatch.setattr(numba_layer, "SMALL_PASSES_ONLY", True)
        assert numba_layer.region_bounds(big) is None and list(numba_layer.region_bounds(small)) == [0, 2, 4]
        monkeypatch.setattr(numba_layer, "MIN_REGION_PASS", 0)
        assert list(numba_layer.region_bounds(tiny)) == [0, 2, 4]
    finally:
        threads.set_num_threads(before)


ONE_THREAD = """
import numpy as np
from minires.cpu import threads
threads.set_num_threads(1)
from minires.cpu.batchnorm import NumbaBatchNorm
from minires.cpu.relu import NumbaReLU
x = np.random.default_rng(0).standard_normal((4, 3, 5, 5)).astype(np.float32)
y = NumbaBatchNorm.forward_train(x, np.ones(3, np.float32), np.zeros(3, np.float32), 1e-5)[0]
NumbaReLU.backward(x, NumbaReLU.forward(y))
from numba.np.ufunc import parallel
print(parallel._is_initialized)
"""


def test_one_thread_never_starts_numbas_threads():
    """A process on one thread (an MPI rank, an experiment's worker) runs batch norm and ReLU without a
    region, and so never starts Numba's thread pool (checked in a fresh process: it starts once)."""
    import os
    import subprocess
    import sys
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", ONE_THREAD], capture_output=True, text=True, check=True,
                         env=dict(os.environ, PYTHONPATH=str(root)), cwd=root).stdout.split()
    assert out == ["False"]

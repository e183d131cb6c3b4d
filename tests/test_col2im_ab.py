"""benchmarks/col2im_ab.py: numba-rows' two col2im take turns, alone and in training steps, and are reported;
the default comes back (a tiny run: the machinery, not the speed)."""
import numpy as np
import pytest

from conftest import load_benchmark

pytest.importorskip("numba")


def test_both_movers_run_alone_and_in_steps_and_the_gather_is_restored(capsys):
    from minires import backend
    from minires.bench.cpu import set_threads
    from minires.cpu import conv, get_num_threads
    module = load_benchmark("col2im_ab")
    used, real = set(), dict(module.MOVERS)
    module.MOVERS.update({name: (lambda *args, name=name, f=f: (used.add(name), f(*args))[1]) for name, f in real.items()})
    ours = get_num_threads()
    try:
        assert module.main(["--batch", "4", "--threads", "2", "--rounds", "1", "--repeat", "2"]) == 0
    finally:
        module.MOVERS.update(real)
        set_threads(ours)
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "col2im alone, 2 images (one thread's share of batch 4), median of 2 calls:"
    assert [line.split(":")[0].strip() for line in out[1:3]] == ["16 -> 32 channels, 32x32", "32 -> 64 channels, 16x16"]
    assert out[3] == "resnet20 batch 4, 2 thread(s), wall clock, 2 steps each, medians:"
    assert [line.split()[0] for line in out[4:6]] == ["numpy", "gather"] and float(out[6].split("step ")[1]) > 0
    assert used == {"numpy", "gather"}
    assert backend.lookup("conv2d", np.zeros(1), "numba-rows")[1].col2im is conv.gather_col2im

"""benchmarks/col2im_ab.py: numba-rows' two col2im take turns, alone and in training steps, and are reported;
the default comes back (a tiny run: the machinery, not the speed)."""
import numpy as np
import pytest

from conftest import load_benchmark

pytest.importorskip("numba")


def test_both_movers_run_alone_and_in_steps_and_the_gather_is_restored(capsys):
    """Both col2im run alone and in the steps' strided data gradients (the pool's route, which the A/B
    pins while it runs); the default comes back, route and gather."""
    from minires import backend
    from minires.bench.cpu import set_threads
    from minires.cpu import conv, get_num_threads
    module = load_benchmark("col2im_ab")
    used, real = set(), dict(module.MOVERS)
    module.MOVERS.update({name: (lambda *args, name=name, f=f: (used.add(name), f(*args))[1]) for name, f in real.items()})
    ours = get_num_threads()
    try:
        assert module.main(["--batch", "4", "--threads", "2", "--rounds", "1", "--repeat", "2"]) == 0
        in_main = set(used)
        used.clear()
        module.in_steps("resnet20", 4, 1)     # the steps alone call both too
    finally:
        module.MOVERS.update(real)
        set_threads(ours)
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "col2im alone, one chunk of a thread's share of batch 4 (2 images), median of 2 calls:"
    assert [line.split(":")[0].strip() for line in out[1:3]] == ["16 -> 32 channels, 32x32, 2 images",
                                                                "32 -> 64 channels, 16x16, 2 images"]
    assert out[3] == "resnet20 batch 4, 2 thread(s), wall clock, 2 steps each, medians:"
    assert [line.split()[0] for line in out[4:6]] == ["numpy", "gather"] and float(out[6].split("step ")[1]) > 0
    assert in_main == used == {"numpy", "gather"}
    restored = backend.lookup("conv2d", np.zeros(1), "numba-rows")[1]
    assert restored.col2im is conv.gather_col2im and "backward_data" not in vars(restored)


def test_the_readme_quotes_the_committed_ab():
    """The README's range of the col2im's ratios alone and its step ratios (batch 32 and 128, one thread
    and two) are the committed output's."""
    import re
    from conftest import REPO, one_line
    report = "results/cpu/2026-12-05-amd-epyc-col2im-ab.txt"
    text = (REPO / report).read_text()
    alone = [float(r) for r in re.findall(r"gather / numpy ([\d.]+)$", text, re.M)]
    steps = [r for r in re.findall(r"gather / numpy: step ([\d.]+)", text)]
    assert len(alone) == 8 and len(steps) == 4                  # (b32, b128) x (1, 2 threads), in that order
    readme = one_line("README.md")
    assert (f"([output]({report})): alone, on one chunk of images as the conv cuts them, {min(alone):.3f}-"
            f"{max(alone):.3f}x NumPy's time; in ResNet-20 steps {steps[0]}x and {steps[2]}x on one thread "
            f"(batch 32 and 128), {steps[1]}x and {steps[3]}x on two") in readme

"""benchmarks/numba_regions_ab.py: steps with batch norm's and ReLU's small passes in Numba regions and on
minires' pool take turns and are reported (a tiny run: the machinery, not the speed)."""
import importlib.util
from pathlib import Path

import pytest

pytest.importorskip("numba")
SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "numba_regions_ab.py"


def test_both_take_turns_are_reported_and_the_switch_is_restored(capsys):
    from minires.bench.cpu import set_threads
    from minires.cpu import get_num_threads, numba_layer
    spec = importlib.util.spec_from_file_location("numba_regions_ab", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    seen, real_bounds, ours = set(), numba_layer.region_bounds, get_num_threads()
    module.numba_layer.region_bounds = lambda a: seen.add(numba_layer.PASSES_IN_REGIONS) or real_bounds(a)
    try:
        assert module.main(["--batch", "2", "--threads", "2", "--rounds", "1"]) == 0
    finally:
        numba_layer.region_bounds = real_bounds
        set_threads(ours)
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("resnet20 batch 2, 2 thread(s), Numba ") and out[0].endswith("2 steps each, medians:")
    assert [line.split()[0] for line in out[1:3]] == ["pool", "regions"]
    assert float(out[3].split("step ")[1]) > 0
    assert seen == {True, False} and numba_layer.PASSES_IN_REGIONS is True

"""benchmarks/interleaved_steps.py: minires and PyTorch steps of the same net take turns and are reported
pair by pair (a tiny run: the machinery, not the speed)."""
import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "interleaved_steps.py"


def test_pairs_of_steps_are_timed_and_reported(torch_oracle, capsys):
    spec = importlib.util.spec_from_file_location("interleaved_steps", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    from minires.bench.cpu import set_threads
    from minires.cpu import get_num_threads
    threads, ours = torch_oracle.get_num_threads(), get_num_threads()
    try:
        assert module.main(["--model", "resnet20", "--batch", "2", "--threads", "1", "--pairs", "3"]) == 0
    finally:
        torch_oracle.set_num_threads(threads)
        set_threads(ours)
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "resnet20 batch 2, 1 thread(s), 3 pairs, wall clock"
    ratios = out[3].split(":")[1].split("(")[0].split(",")
    assert len(ratios) == 3 and all(float(r) > 0 for r in ratios)
    busy = out[4].split(": ")[1].split(" (")[0].split(", ")
    assert [b.split()[0] for b in busy] == ["minires", "PyTorch"]
    assert all(0 < float(b.split()[1]) < 1.5 for b in busy)        # one thread: at most about one core busy


def test_a_model_pytorch_would_build_differently_and_zero_pairs_are_refused(torch_oracle, capsys):
    """``--model resnet18`` paired minires' ImageNet ResNet-18 with PyTorch's CIFAR ResNet-14 (6n+2
    from the name's number); ``--pairs 0`` ended in a StatisticsError."""
    spec = importlib.util.spec_from_file_location("interleaved_steps", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for argv, message in ((["--model", "resnet18"], "'resnet18' is not a CIFAR ResNet"),
                          (["--pairs", "0"], "is not a positive integer"), (["--threads", "0"], "is not a positive")):
        with pytest.raises(SystemExit) as exit_:
            module.main(argv)
        assert exit_.value.code == 2 and message in capsys.readouterr().err


REPORTS = ["results/cpu/2026-12-04-amd-epyc-interleaved-steps.txt",
           "results/cpu/2026-12-04-amd-epyc-interleaved-steps-numba-rows.txt"]


@pytest.mark.parametrize("report", REPORTS)
def test_the_readmes_tables_of_2026_12_04_quote_the_committed_outputs(report):
    """Each cell of the README's tables (median, range of the pairs' ratios, cores busy) is the committed
    run's, for every model, batch size and thread count: before and after numba-rows."""
    import re
    from conftest import REPO, one_line
    runs, key = {}, None
    for line in (REPO / report).read_text().splitlines():
        if line.startswith("== "):
            model, batch, threads = re.match(r"== --model (\S+) --batch (\d+) --threads (\d+)", line).groups()
            key = (model, int(batch), int(threads))
        elif "minires / PyTorch:" in line:
            ratios = [float(r) for r in line.split(":")[1].split("(")[0].split(",")]
            runs[key] = {"median": float(line.split("median ")[1].rstrip(")")), "range": (min(ratios), max(ratios))}
        elif "cores busy" in line:
            runs[key]["busy"] = [float(b.split()[1]) for b in line.split(": ")[1].split(" (")[0].split(", ")]
    assert len(runs) == 8
    readme = one_line("README.md")
    for model in ("resnet20", "resnet56"):
        for batch in (128, 32):
            one, two = runs[(model, batch, 1)], runs[(model, batch, 2)]
            cells = [f"{r['median']:.2f} ({r['range'][0]:.2f}-{r['range'][1]:.2f})" for r in (one, two)]
            row = (f"| ResNet-{model[6:]}, batch {batch} | {cells[0]} | {cells[1]} | "
                   f"{two['busy'][0]:.2f}, {two['busy'][1]:.2f} |")
            assert row in readme, row

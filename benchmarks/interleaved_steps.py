"""minires and PyTorch training steps taking turns, one pair at a time, in one process.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE PYTHONPATH=. python benchmarks/interleaved_steps.py \\
        --model resnet20 --batch 128 --threads 2 --pairs 8

``minires bench cpu`` times each framework's steps in a block of its own; on a machine whose speed
drifts from minute to minute, two blocks can meet different machines. Here each pair is a minires
step followed at once by a PyTorch step of the same net and batch (both from the bench:
:func:`minires.bench.measure.training_step` and ``benchmarks/torch_reference.py``), so both see the
same moment; the report is every pair's ratio minires / PyTorch and their median, and how many cores
each framework kept busy (the process's CPU time over the wall time of its steps, median over the
pairs). PyTorch's OpenMP threads spin for a while when they wait, and spinning counts as busy, so its
figure bounds its useful work from above; minires' threads sleep when they wait.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from minires.bench import reference
from minires.bench.cpu import set_threads
from minires.bench.measure import training_step
from minires.bench.suite import cifar_resnet_name
from minires.checks import positive_int


def step_pairs(model: str, batch: int, threads: int, pairs: int) -> list[tuple[float, float, float, float]]:
    """``[(minires seconds, PyTorch seconds, minires CPU seconds, PyTorch CPU seconds)]``, one per pair,
    after two warm-up steps of each (CPU seconds: all of the process's threads)."""
    set_threads(threads)
    torch.set_num_threads(threads)
    torch_reference, why_not = reference.load()
    if torch_reference is None:
        raise SystemExit(why_not)
    n = (int(model.removeprefix("resnet")) - 2) // 6
    ours, theirs = training_step(model, batch, "cpu"), torch_reference.training_step(n, batch, "cpu")
    for step in (ours, theirs, ours, theirs):
        step()
    times = []
    for _ in range(pairs):
        start, cpu_start = time.perf_counter(), time.process_time()
        ours()
        middle, cpu_middle = time.perf_counter(), time.process_time()
        theirs()
        end, cpu_end = time.perf_counter(), time.process_time()
        times.append((middle - start, end - middle, cpu_middle - cpu_start, cpu_end - cpu_middle))
    return times


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=cifar_resnet_name, default="resnet20", help="a CIFAR ResNet, resnet6n+2")
    parser.add_argument("--batch", type=positive_int, default=128)
    parser.add_argument("--threads", type=positive_int, default=2)
    parser.add_argument("--pairs", type=positive_int, default=8)
    args = parser.parse_args(argv)
    times = step_pairs(args.model, args.batch, args.threads, args.pairs)
    ratios = [ours / theirs for ours, theirs, _, _ in times]
    busy = [statistics.median(t[k + 2] / t[k] for t in times) for k in (0, 1)]
    print(f"{args.model} batch {args.batch}, {args.threads} thread(s), {args.pairs} pairs, wall clock")
    print("  minires ms:", ", ".join(f"{1e3 * t[0]:.0f}" for t in times))
    print("  PyTorch ms:", ", ".join(f"{1e3 * t[1]:.0f}" for t in times))
    print("  minires / PyTorch:", ", ".join(f"{r:.2f}" for r in ratios), f"(median {statistics.median(ratios):.2f})")
    print(f"  cores busy (CPU time / wall time, median): minires {busy[0]:.2f}, PyTorch {busy[1]:.2f}"
          " (PyTorch's threads spin while they wait)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

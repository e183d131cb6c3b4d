"""minires and PyTorch training steps taking turns, one pair at a time, in one process.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE PYTHONPATH=. python benchmarks/interleaved_steps.py \\
        --model resnet20 --batch 128 --threads 2 --pairs 8

``minires bench cpu`` times each framework's steps in a block of its own; on a machine whose speed
drifts from minute to minute, two blocks can meet different machines. Here each pair is a minires
step followed at once by a PyTorch step of the same net and batch (both from the bench:
:func:`minires.bench.measure.training_step` and ``benchmarks/torch_reference.py``), so both see the
same moment; the report is every pair's ratio minires / PyTorch and their median.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from minires.bench import reference
from minires.bench.cpu import set_threads
from minires.bench.measure import training_step


def step_pairs(model: str, batch: int, threads: int, pairs: int) -> list[tuple[float, float]]:
    """``[(minires seconds, PyTorch seconds)]``, one per pair, after two warm-up steps of each."""
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
        start = time.perf_counter()
        ours()
        middle = time.perf_counter()
        theirs()
        times.append((middle - start, time.perf_counter() - middle))
    return times


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="resnet20", help="a CIFAR ResNet, resnet6n+2")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--pairs", type=int, default=8)
    args = parser.parse_args(argv)
    times = step_pairs(args.model, args.batch, args.threads, args.pairs)
    ratios = [ours / theirs for ours, theirs in times]
    print(f"{args.model} batch {args.batch}, {args.threads} thread(s), {args.pairs} pairs, wall clock")
    print("  minires ms:", ", ".join(f"{1e3 * ours:.0f}" for ours, _ in times))
    print("  PyTorch ms:", ", ".join(f"{1e3 * theirs:.0f}" for _, theirs in times))
    print("  minires / PyTorch:", ", ".join(f"{r:.2f}" for r in ratios), f"(median {statistics.median(ratios):.2f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

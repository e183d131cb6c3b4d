"""minires and PyTorch training steps taking turns, one pair of turns at a time, in one process.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE PYTHONPATH=. python benchmarks/interleaved_steps.py \\
        --model resnet20 --batch 128 --threads 2 --pairs 8

``minires bench cpu`` times each framework's steps in a block of its own; on a machine whose speed
drifts from minute to minute, two blocks can meet different machines. Here each pair is a turn of
minires steps followed at once by a turn of PyTorch steps of the same net and batch (both from the
bench: :func:`minires.bench.measure.training_step` and ``benchmarks/torch_reference.py``), so both
see the same moment. A turn is ``--settle`` steps that are not counted, then ``--steps`` that are;
the pair's time for each framework is the mean of its counted steps, and the report is every pair's
ratio minires / PyTorch, their median, and how many cores each framework kept busy (the process's
CPU time over the wall time of its counted steps, median over the pairs).

Why settle: PyTorch's OpenMP threads (GNU libgomp) keep spinning for some milliseconds after each
parallel loop, and a step that starts then shares the cores with them; a user's training run never
meets another framework's threads. The report measures it: the CPU time the process spends in the
10 ms after each framework's step while the calling thread sleeps, and the first step of each turn
(uncounted) next to the counted ones. ``--settle 0 --steps 1`` is the script before 2026-12-05
02:00 UTC, where every minires step followed a PyTorch one.
"""
from __future__ import annotations

import argparse
import statistics
import time

from minires.bench.cpu import warmed_up_steps
from minires.bench.suite import cifar_resnet_name
from minires.checks import non_negative_int, positive_int

IDLE_WINDOW = 0.010     # seconds after a step in which the process's CPU time is measured


def timed_turn(step, settle: int, steps: int) -> tuple[float, float, float]:
    """``(seconds of the turn's first step, counted or not; mean seconds of the counted steps; CPU
    seconds of the counted steps)`` of a turn: ``settle`` uncounted steps, then ``steps`` counted
    ones (CPU: all of the process's threads)."""
    seconds, cpu = [], 0.0
    for k in range(settle + steps):
        start, cpu_start = time.perf_counter(), time.process_time()
        step()
        seconds.append(time.perf_counter() - start)
        if k >= settle:
            cpu += time.process_time() - cpu_start
    return seconds[0], statistics.fmean(seconds[settle:]), cpu


def cpu_after_step(step, repeat: int = 3) -> float:
    """Median CPU seconds the process spends in the ``IDLE_WINDOW`` after ``step`` returns, the calling
    thread asleep: what the framework's worker threads do while they wait (spin, or sleep)."""
    spent = []
    for _ in range(repeat):
        step()
        cpu_start = time.process_time()
        time.sleep(IDLE_WINDOW)
        spent.append(time.process_time() - cpu_start)
    return statistics.median(spent)


def step_pairs(model: str, batch: int, threads: int, pairs: int, settle: int = 1, steps: int = 2):
    """``([(minires turn, PyTorch turn)] one per pair, (minires, PyTorch) CPU seconds after a step)``,
    each turn :func:`timed_turn`'s triple, after two warm-up steps of each framework."""
    ours, theirs = warmed_up_steps(model, batch, threads)
    turns = [(timed_turn(ours, settle, steps), timed_turn(theirs, settle, steps)) for _ in range(pairs)]
    return turns, (cpu_after_step(ours), cpu_after_step(theirs))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=cifar_resnet_name, default="resnet20", help="a CIFAR ResNet, resnet6n+2")
    parser.add_argument("--batch", type=positive_int, default=128)
    parser.add_argument("--threads", type=positive_int, default=2)
    parser.add_argument("--pairs", type=positive_int, default=8, help="pairs of turns, minires' then PyTorch's")
    parser.add_argument("--settle", type=non_negative_int, default=1, help="uncounted steps starting each turn")
    parser.add_argument("--steps", type=positive_int, default=2, help="counted steps in each turn")
    args = parser.parse_args(argv)
    turns, after = step_pairs(args.model, args.batch, args.threads, args.pairs, args.settle, args.steps)
    ratios = [ours[1] / theirs[1] for ours, theirs in turns]
    busy = [statistics.median(pair[k][2] / (pair[k][1] * args.steps) for pair in turns) for k in (0, 1)]
    print(f"{args.model} batch {args.batch}, {args.threads} thread(s), {args.pairs} pairs, "
          f"{args.settle} uncounted + {args.steps} counted step(s) per turn, wall clock")
    print("  minires ms:", ", ".join(f"{1e3 * ours[1]:.0f}" for ours, _ in turns))
    print("  PyTorch ms:", ", ".join(f"{1e3 * theirs[1]:.0f}" for _, theirs in turns))
    print("  minires / PyTorch:", ", ".join(f"{r:.2f}" for r in ratios), f"(median {statistics.median(ratios):.2f})")
    print(f"  cores busy (CPU time / wall time, median): minires {busy[0]:.2f}, PyTorch {busy[1]:.2f}"
          " (threads that spin while they wait count as busy)")
    if args.settle:
        first = [statistics.median(pair[k][0] for pair in turns) * 1e3 for k in (0, 1)]
        print(f"  first step of a turn, after the other framework's (not counted), median ms: minires {first[0]:.0f}, "
              f"PyTorch {first[1]:.0f}")
    print(f"  CPU time in the {IDLE_WINDOW * 1e3:.0f} ms after a step, calling thread asleep (median of 3), ms: "
          f"minires {after[0] * 1e3:.2f}, PyTorch {after[1] * 1e3:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Where a training step's time goes, phase by phase, minires against PyTorch, taking turns:

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE PYTHONPATH=. python benchmarks/step_phases.py \\
        --model resnet20 --batches 1 32 --threads 2 --turns 12

A step is five phases (:data:`minires.bench.measure.PHASES`): ``zero_grad``, the forward, the loss,
its backward and the optimizer's step, each timed on the wall clock (:class:`~minires.bench.measure.
PhasedStep`; the same recipe for both frameworks). For each batch size the frameworks take turns as
in ``interleaved_steps.py``: a turn is ``--settle`` uncounted steps, then ``--steps`` counted ones,
minires' turn then PyTorch's, ``--turns`` times. The report gives each phase's median over the
counted steps for each framework, and the difference.

What it is for: at batch 1 the kernels have almost nothing to do, so a phase's time is mostly what a
framework spends per op whatever the data (Python, dispatch, starting threads); the difference there,
next to the difference at a larger batch, shows how much of a step's gap is that fixed cost.
"""
from __future__ import annotations

import argparse
import statistics

from minires.bench.cpu import warmed_up_steps
from minires.bench.measure import PHASES
from minires.bench.suite import cifar_resnet_name
from minires.checks import non_negative_int, positive_int


def phase_medians(counted) -> dict[str, float]:
    """``{phase: median seconds}`` over the counted steps (each ``{phase: seconds, "step": total}``)."""
    return {phase: statistics.median(times[phase] for times in counted) for phase in PHASES + ("step",)}


def counted_steps(step, settle: int, steps: int) -> list[dict[str, float]]:
    """One turn: ``settle`` steps not timed, then ``steps`` timed ones, each ``{phase: seconds, "step": total}``."""
    for _ in range(settle):
        step()
    times = []
    for _ in range(steps):
        phases = step.timed()
        times.append({**phases, "step": sum(phases.values())})
    return times


def measure(model: str, batch: int, threads: int, turns: int, settle: int, steps: int):
    """``(minires' phase medians, PyTorch's)`` for one batch size."""
    ours, theirs = warmed_up_steps(model, batch, threads)
    ours_times, theirs_times = [], []
    for _ in range(turns):
        ours_times += counted_steps(ours, settle, steps)
        theirs_times += counted_steps(theirs, settle, steps)
    return phase_medians(ours_times), phase_medians(theirs_times)


def report(model: str, threads: int, turns: int, settle: int, steps: int, by_batch: dict) -> list[str]:
    """The table: one row per batch size and phase, milliseconds."""
    lines = [f"{model}, {threads} thread(s), {turns} turns of {settle} uncounted + {steps} counted step(s) per "
             "framework, median ms of the counted steps (the step's median is not the sum of its phases' medians)",
             "batch | phase | minires | PyTorch | minires - PyTorch"]
    for batch, (ours, theirs) in by_batch.items():
        for phase in PHASES + ("step",):
            a, b = 1e3 * ours[phase], 1e3 * theirs[phase]
            lines.append(f"{batch} | {phase} | {a:.2f} | {b:.2f} | {a - b:+.2f}")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=cifar_resnet_name, default="resnet20", help="a CIFAR ResNet, resnet6n+2")
    parser.add_argument("--batches", type=positive_int, nargs="+", default=[1, 32])
    parser.add_argument("--threads", type=positive_int, default=2)
    parser.add_argument("--turns", type=positive_int, default=12, help="turns of each framework per batch size")
    parser.add_argument("--settle", type=non_negative_int, default=1, help="uncounted steps starting each turn")
    parser.add_argument("--steps", type=positive_int, default=2, help="counted steps in each turn")
    args = parser.parse_args(argv)
    by_batch = {batch: measure(args.model, batch, args.threads, args.turns, args.settle, args.steps)
                for batch in args.batches}
    print("\n".join(report(args.model, args.threads, args.turns, args.settle, args.steps, by_batch)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

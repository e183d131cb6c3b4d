"""A/B of two registered CPU implementations of one op inside a training step, on a shared machine.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE PYTHONPATH=. python benchmarks/cpu_kernel_ab.py \\
        --op batch_norm --impls numpy-threads numba --batch 128 --threads 1 --clock cpu

The two implementations take turns, two steps each, ``--rounds`` times, in one process (so both see
the same load, caches and allocator); the report is each one's median step time and the median
time spent inside the op's kernels per step (every method of the registered implementation is
timed), and their ratio B / A. ``--clock cpu`` counts the process's CPU time, steadier than the wall
clock when other jobs share the cores (with one thread). The training step is
:func:`minires.bench.measure.training_step` (forward, cross-entropy, backward, SGD).
"""
from __future__ import annotations

import argparse
import collections
import time

import numpy as np

from minires import backend
from minires.bench.measure import training_step
from minires.bench.cpu import set_threads
from minires.checks import positive_int

KERNEL_METHODS = ("forward", "forward_train", "backward", "backward_data", "backward_weight")


def timed_implementation(implementation, spent: collections.Counter, clock):
    """A stand-in for ``implementation`` whose kernel methods add their time to ``spent``."""
    class Timed:
        pass

    def timing(method):
        def run(*args, **kwargs):
            start = clock()
            try:
                return method(*args, **kwargs)
            finally:
                spent["kernel"] += clock() - start
        return run

    stand_in = Timed()
    for name in KERNEL_METHODS:
        if hasattr(implementation, name):
            setattr(stand_in, name, timing(getattr(implementation, name)))
    return stand_in


def compare(op: str, impls: list[str], model: str, batch: int, rounds: int, clock) -> dict:
    """``{impl: (median step seconds, median kernel seconds per step)}`` of interleaved steps."""
    entry = backend._REGISTRY[op]
    spent = collections.Counter()
    originals = dict(entry.impls)
    for name in impls:
        fn, device = originals[name]
        entry.impls[name] = (timed_implementation(fn, spent, clock), device)
    step = training_step(model, batch, "cpu")
    steps, kernels = collections.defaultdict(list), collections.defaultdict(list)
    try:
        for round_ in range(rounds + 1):                 # round 0 warms up (compilation, buffers)
            for name in impls:
                with backend.using(op, name):
                    for _ in range(2):
                        spent.clear()
                        start = clock()
                        step()
                        if round_:
                            steps[name].append(clock() - start)
                            kernels[name].append(spent["kernel"])
    finally:
        entry.impls.update(originals)
    return {name: (float(np.median(steps[name])), float(np.median(kernels[name]))) for name in impls}


def unfit_choice(op: str, impls: list[str]) -> str | None:
    """Why ``--op`` and ``--impls`` cannot be compared here, or None when they can."""
    if op not in backend._REGISTRY:
        return f"--op: {op!r} is not a registry op; choose from {', '.join(sorted(backend._REGISTRY))}"
    names = backend.available(op, device="cpu")
    for name in impls:
        if name not in names:
            return f"--impls: {name!r} is not a CPU implementation of {op}; choose from {', '.join(names)}"
    if impls[0] == impls[1]:
        return f"--impls: A and B are both {impls[0]!r}; name two different implementations"
    return None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--op", default="batch_norm", help="registry op (see minires.backend.available())")
    parser.add_argument("--impls", nargs=2, default=["numpy-threads", "numba"], metavar=("A", "B"))
    parser.add_argument("--model", default="resnet20")
    parser.add_argument("--batch", type=positive_int, default=128)
    parser.add_argument("--threads", type=positive_int, default=1)
    parser.add_argument("--rounds", type=positive_int, default=8, help="turns per implementation (two steps each)")
    parser.add_argument("--clock", choices=["wall", "cpu"], default="cpu")
    args = parser.parse_args(argv)
    why_not = unfit_choice(args.op, args.impls)
    if why_not:
        parser.error(why_not)
    set_threads(args.threads)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    results = compare(args.op, args.impls, args.model, args.batch, args.rounds, clock)
    print(f"{args.model} batch {args.batch}, {args.threads} thread(s), {args.clock} clock, "
          f"{2 * args.rounds} steps each, medians:")
    for name, (step_s, kernel_s) in results.items():
        print(f"  {args.op}={name:14s} step {1e3 * step_s:8.1f} ms   {args.op} kernels {1e3 * kernel_s:7.1f} ms")
    (a_step, a_kernel), (b_step, b_kernel) = results.values()
    print(f"  B / A: step {b_step / a_step:.3f}, kernels {b_kernel / a_kernel:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""A/B of batch norm's and ReLU's passes as Numba regions (on TBB) against minires' thread pool,
inside a training step, in one process:

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE PYTHONPATH=. python benchmarks/numba_regions_ab.py \\
        --model resnet20 --batch 32 --threads 2

The two take turns, two steps each, ``--rounds`` times, flipping
:data:`minires.cpu.numba_layer.PASSES_IN_REGIONS` (the conv is the default either way); the report
is each one's median step time (wall clock) and their ratio regions / pool.
"""
from __future__ import annotations

import argparse

from minires.bench.cpu import set_threads
from minires.bench.measure import interleaved_step_medians, training_step
from minires.checks import positive_int
from minires.cpu import numba_layer


def compare(model: str, batch: int, rounds: int) -> dict[str, float]:
    """``{"pool": median step seconds, "regions": ...}`` of interleaved steps."""
    def passes_in_regions(on: bool):
        return lambda: setattr(numba_layer, "PASSES_IN_REGIONS", on)
    try:
        return interleaved_step_medians(training_step(model, batch, "cpu"),
                                        {"pool": passes_in_regions(False), "regions": passes_in_regions(True)}, rounds)
    finally:
        numba_layer.PASSES_IN_REGIONS = True


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="resnet20", help="default resnet20")
    parser.add_argument("--batch", type=positive_int, default=32, help="default 32")
    parser.add_argument("--threads", type=positive_int, default=2, help="default 2")
    parser.add_argument("--rounds", type=positive_int, default=12, help="turns each (two steps each; default 12)")
    args = parser.parse_args(argv)
    used = set_threads(args.threads)
    results = compare(args.model, args.batch, args.rounds)
    print(f"{args.model} batch {args.batch}, {args.threads} thread(s), Numba {used['Numba']}, wall clock, "
          f"{2 * args.rounds} steps each, medians:")
    for name, seconds in results.items():
        print(f"  {name:8s} step {1e3 * seconds:8.1f} ms")
    print(f"  regions / pool: step {results['regions'] / results['pool']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

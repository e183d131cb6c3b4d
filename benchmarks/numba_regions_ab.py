"""A/B of batch norm's and ReLU's passes as Numba regions (on TBB) inside a training step, in one
process: against minires' thread pool, against regions only for the passes too small for the
pool (the rule before 2026-12-05), or against regions for the tiniest passes too (the rule before
2026-12-05 07:00 UTC):

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE PYTHONPATH=. python benchmarks/numba_regions_ab.py \
        --model resnet20 --batch 32 --threads 2 [--against small-only | --against every-size]

The two take turns, two steps each, ``--rounds`` times, flipping
:data:`minires.cpu.numba_layer.PASSES_IN_REGIONS` (``--against pool``, the default),
:data:`~minires.cpu.numba_layer.SMALL_PASSES_ONLY` (``--against small-only``) or
:data:`~minires.cpu.numba_layer.MIN_REGION_PASS` (``--against every-size``: 0); the conv is the
default either way. The report is each one's median step time (wall clock) and their ratio.
"""
from __future__ import annotations

import argparse

from minires.bench.cpu import set_threads
from minires.bench.measure import interleaved_step_medians, training_step
from minires.bench.suite import add_interleaved_step_arguments, print_interleaved_steps
from minires.cpu import numba_layer


SETTINGS = {   # --against: (its name, the default's name, the switch, its value then, its value by default)
    "pool": ("pool", "regions", "PASSES_IN_REGIONS", False, True),
    "small-only": ("small only", "every size", "SMALL_PASSES_ONLY", True, False),
    "every-size": ("every size", "tiny alone", "MIN_REGION_PASS", 0, numba_layer.MIN_REGION_PASS),
}


def compare(model: str, batch: int, rounds: int, against: str = "pool") -> dict[str, float]:
    """``{name: median step seconds}`` of interleaved steps, the setting ``against`` names first."""
    other, default, switch, value, default_value = SETTINGS[against]
    turns = {other: lambda: setattr(numba_layer, switch, value),
             default: lambda: setattr(numba_layer, switch, default_value)}
    try:
        return interleaved_step_medians(training_step(model, batch, "cpu"), turns, rounds)
    finally:
        setattr(numba_layer, switch, default_value)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_interleaved_step_arguments(parser)
    parser.add_argument("--against", choices=sorted(SETTINGS), default="pool",
                        help="minires' pool for every pass (default), regions only for the small ones, or "
                             "regions for the tiniest too")
    args = parser.parse_args(argv)
    used = set_threads(args.threads)
    results = compare(args.model, args.batch, args.rounds, args.against)
    other, default = list(results)
    print_interleaved_steps(args, results, (default, other), used["Numba"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""A/B of the stem's weight gradient in ``numba-rows``: from the row columns of its input
(``_weight_by_rows``, the default since 2026-12-05) against the column matrix
(``_weight_by_columns``, the route before):

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE PYTHONPATH=. python benchmarks/stem_weight_ab.py \\
        --model resnet20 --batch 32 --threads 2

Two measurements:

* the weight gradient of the stem alone (3 -> 16 channels, 3x3, stride 1, 32x32 pixels; NCHW input
  as the data loader gives it, a channels-last output gradient as the layers after it give it) on
  random data at ``--batch``, on ``--threads`` threads: the median of ``--repeat`` calls of each;
* training steps of ``--model`` with either route, taking turns, two steps each, ``--rounds``
  times (:func:`~minires.bench.measure.interleaved_step_medians`): the median step times and their
  ratio.

The two routes add the products in other orders, so their bits differ (each is tested against the
float64 reference); the A/B times them only.
"""
from __future__ import annotations

import argparse

import numpy as np

from minires import backend
from minires.bench.cpu import set_threads
from minires.bench.measure import interleaved_step_medians, training_step
from minires.bench.suite import add_interleaved_step_arguments
from minires.bench.timing import median_seconds
from minires.checks import positive_int
from minires.cpu.conv import channels_last_empty

ROUTES = ("columns", "rows")
STEM = (3, 16, 32)      # (c_in, c_out, height = width)


def use_route(conv, route: str) -> None:
    """Make ``conv`` (the registered ``numba-rows``) take the weight gradient by ``route``."""
    if route == "columns":
        conv._weight_by_rows = conv._weight_by_columns        # an instance attribute, over the method
    else:
        conv.__dict__.pop("_weight_by_rows", None)


def alone(conv, batch: int, repeat: int) -> dict[str, float]:
    """``{route: median seconds of the stem's weight gradient}``."""
    c_in, c_out, size = STEM
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, c_in, size, size)).astype(np.float32)
    gy = channels_last_empty((batch, c_out, size, size), np.float32)
    gy[...] = rng.standard_normal(gy.shape)
    times = {}
    for route in ROUTES:
        use_route(conv, route)
        times[route] = median_seconds(lambda: conv.backward_weight(gy, x, (c_out, c_in, 3, 3), (1, 1), (1, 1)),
                                      lambda: None, repeat=repeat, warmup=2)
    return times


def in_steps(conv, model: str, batch: int, rounds: int) -> dict[str, float]:
    """``{route: median step seconds}``."""
    turns = {route: (lambda r=route: use_route(conv, r)) for route in ROUTES}
    with backend.using("conv2d", "numba-rows"):
        return interleaved_step_medians(training_step(model, batch, "cpu"), turns, rounds)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_interleaved_step_arguments(parser)
    parser.add_argument("--repeat", type=positive_int, default=50, help="calls of each route alone (default 50)")
    args = parser.parse_args(argv)
    used = set_threads(args.threads)
    conv = backend.lookup("conv2d", np.zeros(1), "numba-rows")[1]
    try:
        times = alone(conv, args.batch, args.repeat)
        print(f"the stem's weight gradient alone, batch {args.batch}, {args.threads} thread(s), median of {args.repeat} calls:")
        for route, seconds in times.items():
            print(f"  {route:8s} {1e3 * seconds:8.3f} ms")
        print(f"  rows / columns {times['rows'] / times['columns']:.3f}")
        steps = in_steps(conv, args.model, args.batch, args.rounds)
    finally:
        use_route(conv, "rows")
    print(f"{args.model} batch {args.batch}, {args.threads} thread(s), Numba {used['Numba']}, wall clock, "
          f"{2 * args.rounds} steps each, medians:")
    for route, seconds in steps.items():
        print(f"  {route:8s} step {1e3 * seconds:8.1f} ms")
    print(f"  rows / columns: step {steps['rows'] / steps['columns']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

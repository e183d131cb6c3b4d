"""A/B of ``numba-rows``' routes from row columns (the default since 2026-12-05) against the column
matrix (the routes before), for one group of ResNet-20's convs (``--convs``):

* ``stem``: the 3-channel stem's weight gradient (``_weight_by_rows`` against ``_weight_by_columns``);
* ``strided``: the two convs that halve the image, their forward and their weight gradient
  (``_by_rows`` for every conv, against only for those of vertical stride 1); their data gradient
  goes through col2im either way.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE PYTHONPATH=. python benchmarks/conv_routes_ab.py \\
        --convs stem --model resnet20 --batch 32 --threads 2

Two measurements:

* the group's work alone on random data at ``--batch`` (channels-last activations and output
  gradients as the layers around them give them; the stem's input NCHW, as the data loader gives
  it), on ``--threads`` threads: the median of ``--repeat`` calls of each route;
* training steps of ``--model`` with either route, taking turns, two steps each, ``--rounds``
  times (:func:`~minires.bench.measure.interleaved_step_medians`): the median step times and their
  ratio.

The routes add the products in other orders, so their bits differ (each is tested against the
float64 reference); the A/B times them only.
"""
from __future__ import annotations

import argparse

import numpy as np

from minires import backend
from minires.bench.cpu import set_threads
from minires.bench.measure import interleaved_step_medians, training_step
from minires.bench.suite import add_interleaved_step_arguments, print_interleaved_steps
from minires.bench.timing import median_seconds
from minires.checks import positive_int
from minires.cpu.conv import channels_last_empty

ROUTES = ("columns", "rows")
SHAPES = {"stem": [(3, 16, 32, 1)], "strided": [(16, 32, 32, 2), (32, 64, 16, 2)]}  # (c_in, c_out, size, stride)


def use_route(conv, convs: str, route: str) -> None:
    """Make ``conv`` (the registered ``numba-rows``) take ``route`` for the group ``convs``; the other
    group keeps the default. The columns' routes are instance attributes over the methods."""
    for name in ("_weight_by_rows", "_by_rows"):
        conv.__dict__.pop(name, None)
    if route == "rows":
        return
    if convs == "stem":
        conv._weight_by_rows = conv._weight_by_columns
    else:
        conv._by_rows = lambda g, gradient=False: g.stride_h == 1


def work(conv, convs: str, batch: int):
    """The group's calls alone, as one function of no arguments, on random float32 data."""
    rng = np.random.default_rng(0)
    calls = []
    for c_in, c_out, size, stride in SHAPES[convs]:
        out = size // stride
        x = rng.standard_normal((batch, c_in, size, size)).astype(np.float32)
        if convs == "strided":
            x = channels_last_empty(x.shape, np.float32)
            x[...] = rng.standard_normal(x.shape)
        gy = channels_last_empty((batch, c_out, out, out), np.float32)
        gy[...] = rng.standard_normal(gy.shape)
        w = rng.standard_normal((c_out, c_in, 3, 3)).astype(np.float32)
        args = ((stride, stride), (1, 1))
        if convs == "stem":
            calls.append(lambda gy=gy, x=x, w=w, args=args: conv.backward_weight(gy, x, w.shape, *args))
        else:
            calls.append(lambda x=x, w=w, args=args: conv.forward(x, w, *args))
            calls.append(lambda gy=gy, x=x, w=w, args=args: conv.backward(gy, x, w, *args))
    return lambda: [call() for call in calls]


def alone(conv, convs: str, batch: int, repeat: int) -> dict[str, float]:
    """``{route: median seconds of the group's calls}``."""
    run, times = work(conv, convs, batch), {}
    for route in ROUTES:
        use_route(conv, convs, route)
        times[route] = median_seconds(run, lambda: None, repeat=repeat, warmup=2)
    return times


def in_steps(conv, convs: str, model: str, batch: int, rounds: int) -> dict[str, float]:
    """``{route: median step seconds}``."""
    turns = {route: (lambda r=route: use_route(conv, convs, r)) for route in ROUTES}
    with backend.using("conv2d", "numba-rows"):
        return interleaved_step_medians(training_step(model, batch, "cpu"), turns, rounds)


WHAT = {"stem": "the stem's weight gradient", "strided": "the strided convs' forward and backward"}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--convs", choices=sorted(SHAPES), default="stem", help="which convs' route (default stem)")
    add_interleaved_step_arguments(parser)
    parser.add_argument("--repeat", type=positive_int, default=50, help="calls of each route alone (default 50)")
    args = parser.parse_args(argv)
    used = set_threads(args.threads)
    conv = backend.lookup("conv2d", np.zeros(1), "numba-rows")[1]
    try:
        times = alone(conv, args.convs, args.batch, args.repeat)
        print(f"{WHAT[args.convs]} alone, batch {args.batch}, {args.threads} thread(s), median of {args.repeat} calls:")
        for route, seconds in times.items():
            print(f"  {route:8s} {1e3 * seconds:8.3f} ms")
        print(f"  rows / columns {times['rows'] / times['columns']:.3f}")
        steps = in_steps(conv, args.convs, args.model, args.batch, args.rounds)
    finally:
        use_route(conv, args.convs, "rows")
    print_interleaved_steps(args, steps, ("rows", "columns"), used["Numba"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""A/B of batch norm's sums on the CPU: the two kernels of ``kernels/batchnorm_cpu.py``
(``shifted_sums`` forward, ``gradient_sums`` backward; the default since 2026-12-05) against the one
general kernel they replaced, :math:`\\sum (u - a)` and :math:`\\sum (u - a)(v - b)`, called with
:math:`u = v = x, a = b = \\kappa` forward and :math:`u = \\bar y, a = 0, v = x, b = \\mu` backward
(written out below as it was, the "before" of this comparison):

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE PYTHONPATH=. python benchmarks/batchnorm_sums_ab.py \\
        --model resnet20 --batch 32 --threads 2

Two measurements:

* each kernel alone, on one thread, on random channels-last data of ResNet-20's three batch-norm
  shapes at ``--batch`` (16 channels at 32x32 pixels, 32 at 16x16, 64 at 8x8), cut in rows as the
  driver cuts them: the median of ``--repeat`` calls each, their ratio, and whether the two give
  the same bits (they should: the same float64 arithmetic on the same operands in the same order);
* training steps of ``--model`` with either, taking turns, two steps each, ``--rounds`` times
  (:func:`~minires.bench.measure.interleaved_step_medians`): the median step times and their ratio.
"""
from __future__ import annotations

import argparse

import numpy as np
from numba import njit, prange

from minires.bench.cpu import set_threads
from minires.bench.measure import interleaved_step_medians, training_step
from minires.bench.suite import add_interleaved_step_arguments, print_interleaved_steps
from minires.bench.timing import median_seconds
from minires.checks import positive_int
from minires.cpu import batchnorm
from minires.kernels import batchnorm_cpu

SHAPES = ((16, 32), (32, 16), (64, 8))     # ResNet-20's batch norms: (channels, height = width)


@njit(nogil=True)      # no disk cache: the tests load this script under a name Numba cannot import
def general_sums(u, u_centre, v, v_centre, sums, products):
    """The general kernel: :math:`\\sum_r (u - a)` and :math:`\\sum_r (u - a)(v - b)` into ``sums``,
    ``products``, four rows per iteration."""
    rows, length = u.shape
    for r in range(0, rows - rows % 4, 4):
        for i in range(length):
            p0, p1 = np.float64(u[r, i]) - u_centre[i], np.float64(u[r + 1, i]) - u_centre[i]
            p2, p3 = np.float64(u[r + 2, i]) - u_centre[i], np.float64(u[r + 3, i]) - u_centre[i]
            q0, q1 = np.float64(v[r, i]) - v_centre[i], np.float64(v[r + 1, i]) - v_centre[i]
            q2, q3 = np.float64(v[r + 2, i]) - v_centre[i], np.float64(v[r + 3, i]) - v_centre[i]
            sums[i] += (p0 + p1) + (p2 + p3)
            products[i] += (p0 * q0 + p1 * q1) + (p2 * q2 + p3 * q3)
    for r in range(rows - rows % 4, rows):
        for i in range(length):
            p = np.float64(u[r, i]) - u_centre[i]
            sums[i] += p
            products[i] += p * (np.float64(v[r, i]) - v_centre[i])


@njit(parallel=True, nogil=True)
def general_sums_split(u, u_centre, v, v_centre, partials, bounds):
    """``general_sums`` of each slice into its own accumulators, as the ``*_split`` kernels."""
    for t in prange(bounds.size - 1):
        lo, hi = bounds[t], bounds[t + 1]
        general_sums(u[lo:hi], u_centre, v[lo:hi], v_centre, partials[t, 0], partials[t, 1])


def general_kernels() -> dict:
    """The four kernel names the driver calls, each as the general kernel called the old way."""
    def forward(x, shift, sums, squares):
        general_sums(x, shift, x, shift, sums, squares)

    def backward(gy, x, mean, sums, products):
        general_sums(gy, np.zeros_like(mean), x, mean, sums, products)

    def forward_split(x, shift, partials, bounds):
        general_sums_split(x, shift, x, shift, partials, bounds)

    def backward_split(gy, x, mean, partials, bounds):
        general_sums_split(gy, np.zeros_like(mean), x, mean, partials, bounds)
    return {"shifted_sums": forward, "gradient_sums": backward,
            "shifted_sums_split": forward_split, "gradient_sums_split": backward_split}


SPECIAL = {name: getattr(batchnorm_cpu, name) for name in general_kernels()}
KERNELS = {"general": general_kernels(), "special": SPECIAL}


def alone(batch: int, repeat: int) -> list[tuple[str, dict[str, float], bool]]:
    """``[(case, {"general": s, "special": s}, same bits)]``, one thread, for each shape's forward and
    backward sums."""
    rows, rng = [], np.random.default_rng(0)
    for channels, size in SHAPES:
        x, gy = (rng.standard_normal((batch, size, size, channels)).astype(np.float32) + 2 for _ in range(2))
        data = batchnorm.KernelRows(x.transpose(0, 3, 1, 2))
        x_rows, gy_rows = data.rows, data.rows_of(gy.transpose(0, 3, 1, 2))
        centre = rng.standard_normal(x_rows.shape[1])
        for way, arguments in (("forward", (x_rows, centre)), ("backward", (gy_rows, x_rows, centre))):
            kernel = "shifted_sums" if way == "forward" else "gradient_sums"
            outputs, times = {}, {}
            for name, kernels in KERNELS.items():
                out = np.zeros((2, x_rows.shape[1]))
                kernels[kernel](*arguments, out[0], out[1])
                outputs[name] = out
                times[name] = median_seconds(lambda f=kernels[kernel]: f(*arguments, out[0], out[1]), lambda: None,
                                             repeat=repeat, warmup=1)
            rows.append((f"{way} {channels} channels {size}x{size}", times,
                         outputs["general"].tobytes() == outputs["special"].tobytes()))
    return rows


class KernelSet:
    """``kernels/batchnorm_cpu.py`` as the driver sees it (:func:`minires.cpu.batchnorm._kernels`), with
    the sums kernels of ``sums`` in place of its own (the module itself is left alone: its ``*_split``
    kernels call the serial ones by their global names when Numba compiles them)."""

    def __init__(self, sums: dict):
        self.sums = sums

    def __getattr__(self, name):
        return self.sums[name] if name in self.sums else getattr(batchnorm_cpu, name)


def in_steps(model: str, batch: int, rounds: int) -> dict[str, float]:
    """``{"general": s, "special": s}``: median step seconds with the driver calling each kernel set in turn."""
    default = batchnorm._kernels
    try:
        turns = {name: (lambda k=KernelSet(kernels): setattr(batchnorm, "_kernels", lambda: k))
                 for name, kernels in KERNELS.items()}
        return interleaved_step_medians(training_step(model, batch, "cpu"), turns, rounds)
    finally:
        batchnorm._kernels = default


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_interleaved_step_arguments(parser)
    parser.add_argument("--repeat", type=positive_int, default=50, help="calls per kernel alone (default 50)")
    args = parser.parse_args(argv)
    set_threads(1)
    print(f"batch norm's sums alone, one thread, batch {args.batch}, channels-last rows, median of {args.repeat} calls:")
    for case, times, same in alone(args.batch, args.repeat):
        print(f"  {case:28s} general {1e6 * times['general']:8.1f} us  special {1e6 * times['special']:8.1f} us  "
              f"special / general {times['special'] / times['general']:.3f}  same bits: {'yes' if same else 'NO'}")
    used = set_threads(args.threads)
    results = in_steps(args.model, args.batch, args.rounds)
    print_interleaved_steps(args, results, ("special", "general"), used["Numba"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""A/B of ``numba-rows``' col2im for the strided convs: the serial Numba gather (:func:`gather_col2im
<minires.cpu.conv.gather_col2im>`, the default) against NumPy's tap-by-tap additions
(:func:`~minires.cpu.conv.numpy_col2im`), which give the same bits:

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE PYTHONPATH=. python benchmarks/col2im_ab.py \\
        --model resnet20 --batch 32 --threads 2

Two measurements:

* each col2im alone on random column gradients of ResNet-20's two strided convs (3x3, stride 2,
  16 -> 32 channels at 32x32 pixels, 32 -> 64 at 16x16) for one chunk of images as the conv cuts
  one thread's share of ``--batch`` (its column matrix at most ``CHUNK_BYTES``), the median of
  ``--repeat`` calls;
* training steps of ``--model`` with either col2im, taking turns, two steps each, ``--rounds`` times
  (:func:`~minires.bench.measure.interleaved_step_medians`): the median step times and their ratio.
  The steps run the strided convs' data gradient as this A/B was made for, in chunks on minires'
  pool (:meth:`ChunkedIm2colGemm.backward_data <minires.cpu.conv.ChunkedIm2colGemm.backward_data>`);
  since 2026-12-05 ``numba-rows`` runs it as one Numba region instead (its ``backward_data``), which
  calls the gather's kernel image by image.
"""
from __future__ import annotations

import argparse
import functools

import numpy as np

from minires import backend
from minires.bench.cpu import set_threads
from minires.bench.measure import interleaved_step_medians, training_step
from minires.bench.suite import add_interleaved_step_arguments, print_interleaved_steps
from minires.bench.timing import median_seconds
from minires.checks import positive_int
from minires.cpu.conv import ChunkedIm2colGemm, channels_last_empty, column_matrix_shape, gather_col2im, numpy_col2im
from minires.kernels.conv2d_index import ConvGeometry

MOVERS = {"numpy": numpy_col2im, "gather": gather_col2im}
STRIDED = ((16, 32, 32), (32, 64, 16))     # ResNet-20's strided convs: (c_in, c_out, input height = width)


def alone(share: int, repeat: int) -> list[tuple[str, int, dict[str, float]]]:
    """``[(shape name, images, {mover: median seconds of a call})]``: for one chunk of a thread's
    ``share`` of the images, as numba-rows cuts it (its column matrix at most ``CHUNK_BYTES``)."""
    rows, conv = [], backend.lookup("conv2d", np.zeros(1), "numba-rows")[1]
    for c_in, c_out, size in STRIDED:
        g = ConvGeometry.of((share, c_in, size, size), (c_out, c_in, 3, 3), (2, 2), (1, 1))
        images = conv._chunk_size(g, column_matrix_shape(g), np.float32)[1]
        g = g._replace(n=images)
        gcol = np.random.default_rng(0).standard_normal(column_matrix_shape(g)(images)).astype(np.float32)
        gx = channels_last_empty((images, c_in, size, size), np.float32)
        times = {name: median_seconds(lambda col2im=col2im: col2im(gcol, g, gx), lambda: None, repeat=repeat,
                                      warmup=1)       # the unmeasured call compiles the kernel, faults the pages in
                 for name, col2im in MOVERS.items()}
        rows.append((f"{c_in} -> {c_out} channels, {size}x{size}", images, times))
    return rows


def in_steps(model: str, batch: int, rounds: int) -> dict[str, float]:
    """``{mover: median step seconds}``: numba-rows (the CPU default) with each col2im in turn."""
    conv = backend.lookup("conv2d", np.zeros(1), "numba-rows")[1]
    conv.backward_data = functools.partial(ChunkedIm2colGemm.backward_data, conv)   # the pool's route, which calls col2im
    try:
        turns = {name: (lambda mover=mover: setattr(conv, "col2im", mover)) for name, mover in MOVERS.items()}
        with backend.using("conv2d", "numba-rows"):
            return interleaved_step_medians(training_step(model, batch, "cpu"), turns, rounds)
    finally:
        conv.col2im = gather_col2im
        del conv.backward_data


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_interleaved_step_arguments(parser)
    parser.add_argument("--repeat", type=positive_int, default=30, help="calls of each col2im alone (default 30)")
    args = parser.parse_args(argv)
    if "numba-rows" not in backend.available("conv2d"):
        raise SystemExit("col2im_ab: numba-rows needs Numba (pip install -e \".[numba]\")")
    set_threads(args.threads)
    share = -(-args.batch // args.threads)
    print(f"col2im alone, one chunk of a thread's share of batch {args.batch} ({share} images), "
          f"median of {args.repeat} calls:")
    for shape, images, times in alone(share, args.repeat):
        print(f"  {shape}, {images} images: numpy {1e3 * times['numpy']:.3f} ms, gather {1e3 * times['gather']:.3f} ms, "
              f"gather / numpy {times['gather'] / times['numpy']:.3f}")
    steps = in_steps(args.model, args.batch, args.rounds)
    print_interleaved_steps(args, steps, ("gather", "numpy"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

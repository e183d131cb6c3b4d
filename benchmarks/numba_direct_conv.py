"""Why minires has no Numba direct convolution: LLVM vectorises the loop over output channels only in
some cases. A probe, not part of minires.

The kernel is the textbook direct 3x3 convolution on a channels-last, zero-padded input: one
``prange`` iteration computes one output row of one image, a block of ``PIXELS`` output pixels at a
time, each with all ``O`` output channels accumulated in a small array,

    acc[j, o] += x_padded[b, i + p, j0 + j + q, c] * w[p, q, c, o]

so the innermost loop runs over ``o``, contiguous in both ``acc`` and ``w``: what a SIMD unit wants.
Two builds of the same source differ only in where the channel counts come from: compile-time
constants (a closure variable) or the arrays' shapes at run time. The probe prints each one's time and GFLOP/s for
ResNet-20's three 3x3 layer shapes, one thread, next to PyTorch's (oneDNN) channels-last convolution,
and the kind of FMA instructions LLVM emitted (``ss``: scalar, ``ps``: vector)::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/numba_direct_conv.py --batch 32
"""
from __future__ import annotations

import argparse
import re
import time

import numba
import numpy as np
import torch
from numba import njit, prange

PIXELS = 4  # output pixels per block


def direct_conv(channels: int | None):
    """The kernel, with the channel counts fixed at compile time (an int: the layer's input and output
    channels) or read from the arrays at run time (None)."""
    @njit(parallel=True, fastmath=True, nogil=True, boundscheck=False, error_model="numpy")
    def conv(x_padded, w, y):
        n, out_h, out_w = y.shape[0], y.shape[1], y.shape[2]
        c_in = w.shape[2] if channels is None else channels
        o_count = w.shape[3] if channels is None else channels
        for row in prange(n * out_h):
            b, i = row // out_h, row % out_h
            acc = np.empty((PIXELS, o_count), np.float32)
            for j0 in range(0, out_w, PIXELS):
                acc[:] = 0
                for p in range(3):
                    for q in range(3):
                        for c in range(c_in):
                            for j in range(PIXELS):
                                xv = x_padded[b, i + p, j0 + j + q, c]
                                for o in range(o_count):
                                    acc[j, o] += xv * w[p, q, c, o]
                for j in range(PIXELS):
                    for o in range(o_count):
                        y[b, i, j0 + j, o] = acc[j, o]
    return conv


def median_ms(f, repeat: int = 20) -> float:
    f()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        f()
        times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(times))


def fma_kinds(kernel) -> str:
    asm = "".join(kernel.inspect_asm().values())
    scalar, vector = len(re.findall(r"\bvfmadd\w*ss\b", asm)), len(re.findall(r"\bvfmadd\w*ps\b", asm))
    return f"{scalar} scalar + {vector} vector FMAs"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()
    numba.set_num_threads(1)
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    print(f"one thread, batch {args.batch}, float32, Numba {numba.__version__}, PyTorch {torch.__version__}")
    for channels, size in ((16, 32), (32, 16), (64, 8)):
        x = rng.standard_normal((args.batch, channels, size, size), dtype=np.float32)
        w = rng.standard_normal((channels, channels, 3, 3), dtype=np.float32)
        x_padded = np.zeros((args.batch, size + 2, size + 2, channels), np.float32)
        x_padded[:, 1:-1, 1:-1] = x.transpose(0, 2, 3, 1)
        w_taps = np.ascontiguousarray(w.transpose(2, 3, 1, 0))      # (p, q, c, o)
        y = np.empty((args.batch, size, size, channels), np.float32)
        reference = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(w), padding=1).numpy()
        gflop = 2 * args.batch * size * size * channels * channels * 9 / 1e9
        for label, kernel in (("constant C, O", direct_conv(channels)), ("runtime C, O", direct_conv(None))):
            kernel(x_padded, w_taps, y)
            assert np.allclose(y.transpose(0, 3, 1, 2), reference, rtol=1e-4, atol=1e-3)
            ms = median_ms(lambda: kernel(x_padded, w_taps, y))
            print(f"{channels:2d} -> {channels:2d} @{size:2d}  Numba, {label:14s} {ms:7.2f} ms {gflop / ms * 1e3:6.1f} "
                  f"GFLOP/s  ({fma_kinds(kernel)})")
        x_last = torch.from_numpy(x).to(memory_format=torch.channels_last)
        ms = median_ms(lambda: torch.nn.functional.conv2d(x_last, torch.from_numpy(w), padding=1))
        print(f"{channels:2d} -> {channels:2d} @{size:2d}  PyTorch, channels last {ms:7.2f} ms "
              f"{gflop / ms * 1e3:6.1f} GFLOP/s")


if __name__ == "__main__":
    main()

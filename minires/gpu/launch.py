"""Launch geometry of the GPU kernels: plain Python, so the tests check it on the CPU.

* Elementwise-style kernels (im2col, col2im, ReLU, add+ReLU) run one thread per item in 1-D
  blocks of :data:`THREADS`: :func:`blocks_for` blocks.
* The implicit-GEMM kernels tile ``C`` (``M x N``) with ``TILE_M x TILE_N`` blocks of
  ``BLOCK_SIDE x BLOCK_SIDE`` threads (:func:`tiled_grid`); the column index goes on grid axis x,
  whose limit (2^31 - 1) is far above grid y's (65535), because N (pixels) is the long side.
* backward-weight has a small ``C`` (c_out x c_in*kh*kw, a few blocks) and a long reduction
  (n*out_h*out_w), so :func:`split_k` cuts the reduction into chunks, one block layer each,
  until the GPU has enough blocks to stay busy.
"""
from __future__ import annotations

import math

from ..kernels.conv2d_index import BLOCK_SIDE, TILE_K, TILE_M, TILE_N

THREADS = 256          # threads per 1-D block (a multiple of the 32-thread warp)
INT32_MAX = 2**31 - 1  # the kernels index with 32-bit ints
BLOCKS_PER_SM = 4      # split-K aims for this many blocks per streaming multiprocessor


def blocks_for(size: int, threads: int = THREADS) -> int:
    """How many blocks of ``threads`` cover ``size`` items (one thread each)."""
    return max(1, math.ceil(size / threads))


def tiled_grid(m: int, n: int, chunks: int = 1) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """``(grid, block)`` for the implicit GEMM of an ``m x n`` result in ``chunks`` reduction chunks."""
    return (math.ceil(n / TILE_N), math.ceil(m / TILE_M), chunks), (BLOCK_SIDE, BLOCK_SIDE, 1)


def split_k(m: int, n: int, k: int, target_blocks: int) -> tuple[int, int]:
    """``(chunks, k_chunk)``: cut a length-``k`` reduction into chunks of ``k_chunk`` (a multiple of
    ``TILE_K``) so that ``chunks`` layers of ``m x n`` tiles give about ``target_blocks`` blocks.

    Every chunk is non-empty, and a chunk is never shorter than one ``TILE_K`` slab.
    """
    tiles = math.ceil(m / TILE_M) * math.ceil(n / TILE_N)
    wanted = max(1, min(math.ceil(target_blocks / tiles), math.ceil(k / TILE_K)))
    k_chunk = math.ceil(k / wanted / TILE_K) * TILE_K
    return math.ceil(k / k_chunk), k_chunk


SMALLER_BATCH = "use a smaller batch, or run this op on the CPU (.to('cpu'))"  # fixes, for check_int32
ON_THE_CPU = "run this op on the CPU (.to('cpu'))"


def check_int32(op: str, fix: str, **sizes: int) -> None:
    """Raise ValueError, ending with ``fix``, if an array the kernels index is too big for 32-bit indices."""
    for name, size in sizes.items():
        if size > INT32_MAX:
            raise ValueError(f"{op}: {name} has {size} elements, more than the GPU kernels' 32-bit indices "
                             f"reach ({INT32_MAX}); {fix}")

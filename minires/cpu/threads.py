"""The CPU threads of minires' fast paths: how many (:func:`set_num_threads`, like
``torch.set_num_threads``), one shared pool, and :func:`map_batch`, which runs a function on slices
of a batch at once.

NumPy's copies and ufunc loops and the BLAS calls all release the GIL, so Python threads that each
work on their own slice of the arrays run in parallel. BLAS is then set to one thread (through
threadpoolctl) for the whole process: its own threads would compete with these for the cores.
"""
from __future__ import annotations

import concurrent.futures
import functools
import os

MIN_PARALLEL_SIZE = 1 << 16   # a conv on fewer input values is not worth a thread hand-off (~50 us round trip)
MIN_PARALLEL_PASS = 1 << 20   # nor a pass of ReLU or batch norm over fewer: it takes only ~50-200 us

_executor = None


def _default_threads() -> int:
    """``OMP_NUM_THREADS`` when it is set (PyTorch's convention; ``mpirun -x OMP_NUM_THREADS=1``
    gives each rank one), else every core."""
    try:
        return max(1, int(os.environ["OMP_NUM_THREADS"]))
    except (KeyError, ValueError):
        return os.cpu_count() or 1


_threads = _default_threads()


def set_num_threads(n: int) -> None:
    """Run the CPU conv's chunks and the elementwise passes on ``n`` threads (default:
    ``OMP_NUM_THREADS`` if set, else every core)."""
    global _threads, _executor
    if n < 1:
        raise ValueError(f"set_num_threads: need at least one thread, got {n}")
    if _executor is not None:
        _executor.shutdown()
    _threads, _executor = int(n), None


def get_num_threads() -> int:
    """How many threads minires' CPU paths use (:func:`set_num_threads`)."""
    return _threads


def pool() -> concurrent.futures.ThreadPoolExecutor:
    """The shared pool of :func:`get_num_threads` - 1 threads, the caller being the other one (made on
    first use; BLAS then gets one thread)."""
    global _executor
    if _executor is None:
        blas_on_one_thread()
        _executor = concurrent.futures.ThreadPoolExecutor(max(1, _threads - 1), thread_name_prefix="minires-cpu")
    return _executor


@functools.cache
def blas_on_one_thread() -> None:
    """Set BLAS to one thread for the whole process (threadpoolctl), once: before minires' pool starts,
    and before a Numba kernel first calls BLAS from its threads (:func:`minires.cpu.blas.gemm`).
    BLAS's own threads would compete with those for the cores: when the strided convs' data gradient
    left the pool, the last user of it in a training step, BLAS kept its threads inside the conv
    kernels and the default training run took 1.5x its time (2026-12-05, one-off)."""
    import threadpoolctl
    threadpoolctl.threadpool_limits(1, user_api="blas")


def total(partials):
    """The sum of per-slice results in slice order, skipping None (None if all are): the same slices
    give the same bits."""
    partials = [p for p in partials if p is not None]
    return sum(partials[1:], partials[0]) if partials else None


def map_batch(a, work, per_block: int | None = None, min_size: int | None = None) -> list:
    """``[work(s) for s in blocks]``, in order: the blocks are slices of ``a``'s first axis.

    Each of :func:`get_num_threads` threads (this one included) takes an equal contiguous share of
    the images and cuts it into near-equal blocks of at most ``per_block`` images (None: the whole
    share; the conv's chunks are such blocks); everything runs here when ``a`` has fewer than
    ``min_size`` values (None: :data:`MIN_PARALLEL_SIZE`). Summing the results in order
    (:func:`total`) gives the same bits whenever the thread count is the same.
    """
    if a.ndim == 0:
        return [work(Ellipsis)]
    n = a.shape[0]
    parts = share_count(a, min_size)
    if parts == 1 and per_block is None:
        return [work(slice(0, n))]          # one block, here: the common case of small passes, kept cheap
    runs = batch_runs(a, per_block, min_size)
    others = [pool().submit(lambda run: [work(b) for b in run], run) for run in runs[1:]]
    results = [work(b) for b in runs[0]]     # this thread does a share too, instead of waiting
    for future in others:
        results += future.result()
    return results


def batch_runs(a, per_block: int | None = None, min_size: int | None = None) -> tuple[tuple[slice, ...], ...]:
    """:func:`map_batch`'s blocks of ``a``'s first axis, one tuple per thread (the caller's first)."""
    return share_runs(a.shape[0], share_count(a, min_size), per_block)


@functools.lru_cache(maxsize=256)
def share_runs(n: int, parts: int, per_block: int | None) -> tuple[tuple[slice, ...], ...]:
    """:func:`batch_runs` of ``n`` images in ``parts`` shares (kept: a training step asks for the same
    few dozen again and again)."""
    bounds = share_bounds(n, parts)
    return tuple(_blocks(lo, hi, per_block) for lo, hi in zip(bounds[:-1], bounds[1:]))


def share_bounds(n: int, parts: int) -> list[int]:
    """Where each of ``parts`` near-equal contiguous shares of ``n`` items starts, and ``n``."""
    return [n * k // parts for k in range(parts)] + [n]


def share_count(a, min_size: int | None = None) -> int:
    """How many threads share a pass over ``a``: one below ``min_size`` values (None:
    :data:`MIN_PARALLEL_SIZE`), else one per thread, at most one per image."""
    min_size = MIN_PARALLEL_SIZE if min_size is None else min_size
    return 1 if a.size < min_size else max(1, min(_threads, a.shape[0]))


def _blocks(start: int, stop: int, per_block: int | None) -> tuple[slice, ...]:
    """``[start, stop)`` cut into the fewest near-equal slices of at most ``per_block``."""
    count = max(1, -(-(stop - start) // per_block) if per_block else 1)
    bounds = [start + (stop - start) * k // count for k in range(count + 1)]
    return tuple(slice(lo, hi) for lo, hi in zip(bounds[:-1], bounds[1:]))

"""Numba's threading layer for minires' parallel CPU kernels: TBB where pip's ``tbb`` is installed.

Numba runs ``prange`` loops on one of three layers, the first that loads of ``tbb``, ``omp`` and
``workqueue``. Only TBB's threads start fast enough (microseconds, where a hand-off to minires'
Python pool takes 35-70 us) for a Numba region to beat minires' own pool: the conv's
(``numba-rows``, :mod:`minires.cpu.conv`), and batch norm's and ReLU's passes (:func:`run_pass`),
which off TBB run on minires' pool, or on one thread when they are too small for it (on TBB too
when they are tiny: :data:`MIN_REGION_PASS`). With GNU OpenMP the conv's region made a training
step slower (README). pip's ``tbb`` package (in the ``numba`` extra on x86-64 Linux) puts
``libtbb.so.12`` in the environment's ``lib`` folder, where the dynamic loader does not look, so
Numba would take its next layer (OpenMP where it loads);
:func:`threading_layer` loads it by its path first. A layer chosen with ``NUMBA_THREADING_LAYER``
is left as it is.

The layer is fixed for the life of the process when Numba first starts its threads, so this must
run before that: minires calls it before every parallel kernel of its own.
"""
from __future__ import annotations

import ctypes
import functools
import importlib.metadata
import os

import numpy as np

from . import threads
from .pointwise import map_pass


def pip_libtbb() -> str | None:
    """The path of ``libtbb.so.12`` from pip's ``tbb`` package, None if it is not installed."""
    try:
        files = importlib.metadata.files("tbb") or []
    except importlib.metadata.PackageNotFoundError:
        return None
    paths = [f.locate() for f in files if f.name == "libtbb.so.12"]
    return str(paths[0]) if paths and os.path.exists(paths[0]) else None


@functools.cache
def threading_layer() -> str:
    """Start Numba's threads, on TBB where pip's ``tbb`` is installed and no layer was asked for;
    return the layer's name (``tbb``, ``omp`` or ``workqueue``)."""
    import numba
    from numba.np.ufunc import parallel

    if not parallel._is_initialized and "NUMBA_THREADING_LAYER" not in os.environ:
        path = pip_libtbb()
        if path is not None:
            ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)   # found by its name from now on
    numba.get_num_threads()                              # starts the threads: the layer is chosen
    return numba.threading_layer()


PASSES_IN_REGIONS = True   # False: batch norm's and ReLU's passes on minires' pool even on TBB (to compare)
SMALL_PASSES_ONLY = False  # True: regions only under the pool's threshold, the rule before 2026-12-05 (to compare)
# A pass over fewer values runs on this thread alone: waking TBB's threads costs more than the second
# thread saves (a ResNet-20 step on two threads, 2026-12-05, took 0.803x at batch 1 and 0.893x at batch 2
# the time it took with a region for every pass; README). 0: a region for every pass (to compare).
MIN_REGION_PASS = 1 << 15


def region_bounds(a):
    """Where Numba's threads run on TBB: the bounds of an equal share of ``a``'s first axis per
    thread, to run a pass over ``a`` as one Numba region. None where that does not apply (the pool's
    :func:`~minires.cpu.pointwise.map_pass` then runs the pass, or this thread alone below
    :data:`~minires.cpu.threads.MIN_PARALLEL_PASS` values, where the pool's hand-off would cost more
    than it saves, and below :data:`MIN_REGION_PASS` values, where waking TBB's threads does). Regions
    take the passes from there up, the large ones too: since batch norm's sums joined them, a step at
    batch 64 and 128 on two threads took 0.935-1.003x the time it took with regions only under the
    pool's threshold (README). The slices are the same whichever runs them
    (:func:`~minires.cpu.threads.batch_runs`), and so are the bits."""
    bounds = _region_bounds(a.shape[0], threads.get_num_threads())
    if (bounds is None or not PASSES_IN_REGIONS or a.size < MIN_REGION_PASS
            or (SMALL_PASSES_ONLY and a.size >= threads.MIN_PARALLEL_PASS)
            or threading_layer() != "tbb"):     # last: one thread never starts Numba's threads
        return None
    return bounds


@functools.lru_cache(maxsize=256)
def _region_bounds(rows: int, thread_count: int):
    """:func:`region_bounds` for ``rows`` rows: one share per thread, at most one per row, as
    :func:`~minires.cpu.threads.batch_runs` cuts them (int64, read-only: every pass of that many rows
    shares it; a step asks for the same few hundred times); None for fewer than two shares."""
    parts = min(rows, thread_count)
    if parts < 2:
        return None
    bounds = np.array(threads.share_bounds(rows, parts), dtype=np.int64)
    bounds.flags.writeable = False
    return bounds


def run_pass(rows, serial, split, arguments) -> None:
    """Where Numba's threads run on TBB, ``split(*arguments(slice(None)), bounds)``: a kernel that runs
    the slices of :func:`region_bounds` as one Numba region; else ``serial(*arguments(s))`` on slices
    ``s`` of ``rows``' first axis, on minires' pool (:func:`~minires.cpu.pointwise.map_pass`). Each
    value is computed alone, so the slices do not change the bits."""
    bounds = region_bounds(rows)
    if bounds is not None:
        split(*arguments(slice(None)), bounds)
    else:
        map_pass(rows, lambda s: serial(*arguments(s)))

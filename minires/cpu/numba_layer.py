"""Numba's threading layer for minires' parallel CPU kernels: TBB where pip's ``tbb`` is installed.

Numba runs ``prange`` loops on one of three layers, the first that loads of ``tbb``, ``omp`` and
``workqueue``. Only TBB's threads start fast enough for the conv's one-region kernel
(``numba-rows``, :mod:`minires.cpu.conv`) to beat minires' own pool: in a ResNet training step at
2 threads it took 0.91-0.98x the time with TBB and 1.01-1.15x with GNU OpenMP (README). pip's
``tbb`` package (in the ``numba`` extra on x86-64 Linux) puts ``libtbb.so.12`` in the
environment's ``lib`` folder, where the dynamic loader does not look, so Numba falls back to
OpenMP; :func:`threading_layer` loads it by its path first. A layer chosen with
``NUMBA_THREADING_LAYER`` is left as it is.

The layer is fixed for the life of the process when Numba first starts its threads, so this must
run before that: minires calls it before every parallel kernel of its own.
"""
from __future__ import annotations

import ctypes
import functools
import importlib.metadata
import os


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

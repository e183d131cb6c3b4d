"""Timing that waits for the device: the median of repeated runs after a warm-up.

Each run is timed from the host, from before the call to after the device has finished, so the
numbers include Python and kernel-launch overhead: what a user of the framework actually waits.
:func:`use_clock` can swap the wall clock for the process's CPU time (``minires bench cpu --clock
cpu``): on a machine shared with other jobs, single-threaded CPU time is the work done, without
the time spent waiting for a core.
"""
from __future__ import annotations

import statistics
import time

_clock = time.perf_counter


def use_clock(clock) -> None:
    """Time every later measurement with ``clock`` (``time.perf_counter`` or ``time.process_time``)."""
    global _clock
    _clock = clock


def median_seconds(fn, synchronize, repeat: int = 20, warmup: int = 3) -> float:
    """Median time of ``fn()`` followed by ``synchronize()``, over ``repeat`` runs, on the clock of
    :func:`use_clock` (the wall clock unless changed)."""
    for _ in range(warmup):
        fn()
    synchronize()
    times = []
    for _ in range(repeat):
        start = _clock()
        fn()
        synchronize()
        times.append(_clock() - start)
    return statistics.median(times)

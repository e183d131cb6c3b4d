"""Timing that waits for the device: the median of repeated runs after a warm-up.

Each run is timed from the host, from before the call to after the device has finished, so the
numbers include Python and kernel-launch overhead: what a user of the framework actually waits.
"""
from __future__ import annotations

import statistics
import time


def median_seconds(fn, synchronize, repeat: int = 20, warmup: int = 3) -> float:
    """Median wall time of ``fn()`` followed by ``synchronize()``, over ``repeat`` runs."""
    for _ in range(warmup):
        fn()
    synchronize()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)

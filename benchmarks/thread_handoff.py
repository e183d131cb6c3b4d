"""What handing work to minires' second CPU thread costs on this machine, and whether splitting a
memory-bound pass over the threads pays at ResNet-20's activation sizes.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE PYTHONPATH=. python benchmarks/thread_handoff.py \\
        --batch 32 --threads 2

Two measurements on minires' own thread pool (:mod:`minires.cpu.threads`), and one on Numba's:

* the round trip of an empty task: submit it to the pool and wait for its result;
* a ReLU forward pass, ``max(x, 0)`` into a new array (:func:`relu_pass`, the pass of
  :class:`~minires.cpu.pointwise.ThreadedReLU`), over each of ResNet-20's three activation shapes
  at ``--batch``, in channels-last memory as the conv returns them: on this thread alone, and split
  over the threads by :func:`~minires.cpu.threads.map_batch`, taking turns ``--rounds`` times;
* where Numba is installed, the call of an almost empty Numba region (:func:`region_starts`, one
  ``prange`` iteration per thread, on the layer minires picks) right after another, and after
  10 us to 3 ms of other work on the calling thread: in a training step each stride-1 conv and each pass
  of batch norm and ReLU is such a region, with Python in between.

Passes below :data:`~minires.cpu.threads.MIN_PARALLEL_PASS` values run on one thread in training;
the report says, for each shape, which way was faster here (or that they are within 5%). Where the round trip is long (a
virtual machine whose idle cores halt), a pass of a few hundred microseconds gains nothing from a
second thread.
"""
from __future__ import annotations

import argparse
import importlib.util
import statistics
import time
from pathlib import Path

import numpy as np

from minires.bench.blas import NOISE
from minires.bench.cpu import set_threads
from minires.checks import positive_int
from minires.cpu import threads
from minires.cpu.conv import channels_last_empty
from minires.cpu.pointwise import zeros_image

RESNET20_ACTIVATIONS = ((16, 32), (32, 16), (64, 8))   # (channels, height = width) of each stage


def round_trips(trials: int) -> list[float]:
    """Seconds for each of ``trials`` empty tasks sent to the pool and waited for (after 20 unmeasured)."""
    pool = threads.pool()
    times = []
    for k in range(trials + 20):
        start = time.perf_counter()
        pool.submit(lambda: None).result()
        if k >= 20:
            times.append(time.perf_counter() - start)
    return times


def relu_pass(x, min_size: int):
    """``max(x, 0)`` into a new array, as :class:`~minires.cpu.pointwise.ThreadedReLU` runs it, with
    ``min_size`` in place of its threshold (``x.size + 1``: this thread alone; 0: split)."""
    y, zero = np.empty_like(x), zeros_image(x)
    threads.map_batch(x, lambda s: np.maximum(x[s], zero, out=y[s]), min_size=min_size)
    return y


def relu_pass_times(shape: tuple, rounds: int) -> dict[str, float]:
    """Median seconds of one ReLU forward pass over ``shape``: ``"one thread"`` and ``"split"``."""
    x = channels_last_empty(shape, np.float32)
    x[...] = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
    min_sizes = {"one thread": x.size + 1, "split": 0}
    times = {name: [] for name in min_sizes}
    for k in range(rounds + 3):                      # the first three rounds warm up
        for name, min_size in min_sizes.items():
            start = time.perf_counter()
            relu_pass(x, min_size)
            if k >= 3:
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


REGION_GAPS_US = (0, 10, 100, 1000, 3000)    # microseconds of other work before each region's call


def region_starts(threads_: int, trials: int) -> tuple[str, dict[int, list[float]]]:
    """``(Numba's threading layer, {gap in us: sorted seconds of each call})``: an almost empty region,
    ``threads_`` iterations of a ``prange`` (each adds 1 to its own element), called ``trials``
    times after each gap of :data:`REGION_GAPS_US` spent busy on this thread (after 100 calls that warm up)."""
    from numba import njit, prange

    from minires.cpu import numba_layer
    layer = numba_layer.threading_layer()

    @njit(parallel=True, nogil=True)
    def almost_empty(counts):
        for t in prange(counts.size):
            counts[t] += 1.0

    counts = np.zeros(threads_)
    for _ in range(100):
        almost_empty(counts)
    times = {}
    for gap in REGION_GAPS_US:
        calls = []
        for _ in range(trials):
            busy_until = time.perf_counter() + gap * 1e-6
            while time.perf_counter() < busy_until:
                pass
            start = time.perf_counter()
            almost_empty(counts)
            calls.append(time.perf_counter() - start)
        times[gap] = sorted(calls)
    return layer, times


def faster_way(times: dict[str, float]) -> str:
    """Which of the two ways was faster, or that they are within :data:`~minires.bench.blas.NOISE`."""
    faster, slower = sorted(times, key=times.get)
    if times[slower] <= times[faster] * (1 + NOISE):
        return f"no measurable difference (within {NOISE:.0%})"
    return f"{faster} is faster"


def cpuidle_driver() -> str:
    """How this machine's idle cores wait (Linux's cpuidle driver: ``haltpoll`` in a KVM guest halts
    them, so a waiting thread's core must be woken), or "unknown" where the system does not say."""
    try:
        return Path("/sys/devices/system/cpu/cpuidle/current_driver").read_text().strip() or "unknown"
    except OSError:
        return "unknown"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=positive_int, default=32)
    parser.add_argument("--threads", type=positive_int, default=2)
    parser.add_argument("--trials", type=positive_int, default=300, help="round trips to time")
    parser.add_argument("--rounds", type=positive_int, default=50, help="turns of each way of running a pass")
    args = parser.parse_args(argv)
    set_threads(args.threads)
    trips = sorted(round_trips(args.trials))
    print(f"thread pool round trip, {args.threads} threads, {args.trials} trials: median "
          f"{statistics.median(trips) * 1e6:.0f} us (p10 {trips[len(trips) // 10] * 1e6:.0f}, "
          f"p90 {trips[len(trips) * 9 // 10] * 1e6:.0f})")
    for channels, size in RESNET20_ACTIVATIONS:
        shape = (args.batch, channels, size, size)
        times = relu_pass_times(shape, args.rounds)
        print(f"ReLU forward over {'x'.join(map(str, shape))} ({np.prod(shape):,} values): one thread "
              f"{times['one thread'] * 1e6:.0f} us, split {times['split'] * 1e6:.0f} us: {faster_way(times)}")
    print(f"(training splits passes from MIN_PARALLEL_PASS = {threads.MIN_PARALLEL_PASS:,} values on)")
    print(f"cpuidle driver: {cpuidle_driver()}")
    if importlib.util.find_spec("numba") is None:
        print("Numba region starts: not measured (Numba is not installed)")
        return 0
    layer, starts = region_starts(args.threads, args.trials)
    for gap, calls in starts.items():
        print(f"Numba region start ({layer} layer, {args.threads} threads) after {gap} us of other work: median "
              f"{statistics.median(calls) * 1e6:.1f} us (p90 {calls[len(calls) * 9 // 10] * 1e6:.1f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

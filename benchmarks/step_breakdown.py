"""Where a minires training step's time goes, op by op, on one thread count and on another.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE PYTHONPATH=. python benchmarks/step_breakdown.py \\
        --model resnet20 --batch 32 --threads 1 2 --steps 10

Each method of each op's CPU implementation (conv2d, batch_norm, relu, add_relu: whatever
``minires.backend`` runs by default) is wrapped in a wall-clock timer for ``--steps`` steps of
:func:`minires.bench.measure.training_step`, after three unmeasured ones. A method that calls another
of its op's methods (the conv's ``backward`` calling ``backward_data``) counts once, as the outer
call. What the wrapped methods leave is *everything else*: autograd, the residual adds, padding, the
loss and SGD. With more than one thread the report adds the *fork-join wait*: how long the calling
thread, having done its own share of a split call, waits for the other threads' shares (part of the
ops' times, not added to them). The last column is each row's one-thread time over its time on the
most threads, where both ran.
"""
from __future__ import annotations

import argparse
import collections
import time

from minires import backend
from minires.bench.cpu import set_threads
from minires.bench.measure import training_step
from minires.checks import positive_int
from minires.cpu import threads

TIMED_OPS = ("conv2d", "batch_norm", "relu", "add_relu")


class OpTimers:
    """Wall-clock seconds per ``"op.method"``, summed over calls; a method called from inside another
    of the same op's methods is not counted again."""

    def __init__(self):
        self.seconds = collections.Counter()
        self._open = set()          # ops with a timed call in progress

    def timed(self, op: str, method: str, function):
        def call(*args, **kwargs):
            if op in self._open:
                return function(*args, **kwargs)
            self._open.add(op)
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.seconds[f"{op}.{method}"] += time.perf_counter() - start
                self._open.discard(op)
        return call


def public_methods(impl) -> list[str]:
    """The public methods an implementation defines: its class's and their bases' for an instance,
    its own for a class."""
    owners = [impl] if isinstance(impl, type) else type(impl).__mro__[:-1]
    return list(dict.fromkeys(name for owner in owners for name, value in vars(owner).items()
                              if not name.startswith("_") and isinstance(value, (staticmethod, type(public_methods)))))


def wrap(impl, op: str, timers: OpTimers):
    """Time every public method of ``impl`` (a class of static methods, or an instance) in ``timers``;
    returns the function that undoes it."""
    names = public_methods(impl)
    if isinstance(impl, type):
        originals = {name: vars(impl)[name] for name in names}
        for name in names:
            setattr(impl, name, staticmethod(timers.timed(op, name, getattr(impl, name))))
        return lambda: [setattr(impl, name, value) for name, value in originals.items()]
    for name in names:
        setattr(impl, name, timers.timed(op, name, getattr(impl, name)))   # shadows the class's method
    return lambda: [vars(impl).pop(name) for name in names]


class WaitTimer:
    """Wraps the pool minires' CPU threads hand work to: the seconds spent in ``future.result()``."""

    def __init__(self, pool):
        self.pool, self.seconds = pool, 0.0

    def submit(self, *args, **kwargs):
        future, timer = self.pool.submit(*args, **kwargs), self

        class Timed:
            def result(self):
                start = time.perf_counter()
                try:
                    return future.result()
                finally:
                    timer.seconds += time.perf_counter() - start
        return Timed()


def breakdown(model: str, batch: int, thread_count: int, steps: int) -> dict[str, float]:
    """Milliseconds per step: ``"step"``, each ``"op.method"`` called, ``"everything else"`` and
    ``"fork-join wait"``."""
    set_threads(thread_count)
    timers, pool = OpTimers(), threads.pool
    waits = WaitTimer(pool())
    undo = [wrap(backend._REGISTRY[op].impls[name][0], op, timers)
            for op, name in backend.defaults("cpu").items() if op in TIMED_OPS]
    try:
        threads.pool = lambda: waits
        step = training_step(model, batch, "cpu")
        for _ in range(3):
            step()
        timers.seconds.clear()
        waits.seconds = 0.0
        start = time.perf_counter()
        for _ in range(steps):
            step()
        total = time.perf_counter() - start
    finally:
        threads.pool = pool
        for restore in undo:
            restore()
    per_step = {name: seconds / steps * 1e3 for name, seconds in sorted(timers.seconds.items())}
    return {"step": total / steps * 1e3, **per_step,
            "everything else": (total - sum(timers.seconds.values())) / steps * 1e3,
            "fork-join wait": waits.seconds / steps * 1e3}


def report(model: str, batch: int, results: dict[int, dict[str, float]]) -> list[str]:
    """The table: one row per entry, one column per thread count, and one thread over the most."""
    counts = sorted(results)
    rows = list(dict.fromkeys(name for r in results.values() for name in r))
    header = f"{model}, batch {batch}, ms per step | " + " | ".join(f"{n} thread{'s' * (n > 1)}" for n in counts)
    speedup = 1 in results and counts[-1] > 1
    lines = [header + (f" | 1 / {counts[-1]}" if speedup else "")]
    for name in rows:
        cells = [f"{results[n][name]:8.1f}" if name in results[n] else "       -" for n in counts]
        line = f"{name:28s}| " + " | ".join(cells)
        if speedup and name != "fork-join wait" and name in results[1] and results[counts[-1]].get(name):
            line += f" | {results[1][name] / results[counts[-1]][name]:5.2f}x"
        lines.append(line)
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="resnet20", help="a CIFAR ResNet, resnet6n+2")
    parser.add_argument("--batch", type=positive_int, default=32)
    parser.add_argument("--threads", type=positive_int, nargs="+", default=[1, 2])
    parser.add_argument("--steps", type=positive_int, default=10, help="measured steps per thread count")
    args = parser.parse_args(argv)
    results = {n: breakdown(args.model, args.batch, n, args.steps) for n in args.threads}
    print("\n".join(report(args.model, args.batch, results)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

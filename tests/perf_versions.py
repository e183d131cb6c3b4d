"""Cost of the version checks on a ResNet-20 training step (not collected by pytest; run by hand).

    PYTHONPATH=. python tests/perf_versions.py [rounds] [batch]

A/B in one process, alternating: "on" is minires as shipped; "off" replaces the three pieces the
checks add to every op (recording the saved tensors' versions, sharing a view's counter, checking
versions when backward reads them) by no-ops. Prints the median step time of each and the ratio.
On a shared machine that ratio is noisy (a few %), so it also prints the time spent inside those three
functions during a step (each call timed), as a share of the step.
"""
import statistics
import sys
import time

import numpy as np

import minires as mr
from minires import autograd, optim

PIECES = ("_saved_versions", "_share_version_counter", "_check_versions")
ORIGINAL = {name: getattr(autograd, name) for name in PIECES}
NO_OPS = {"_saved_versions": lambda *a: (), "_share_version_counter": lambda *a: None,
          "_check_versions": lambda *a: None}


def use(arm: str) -> None:
    for name in PIECES:
        setattr(autograd, name, ORIGINAL[name] if arm == "on" else NO_OPS[name])


def main(rounds: int = 20, batch: int = 32) -> None:
    mr.manual_seed(0)
    model = mr.models.get_model("resnet20")
    opt = optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    rng = np.random.default_rng(0)
    x = mr.tensor(rng.normal(size=(batch, 3, 32, 32)).astype(np.float32))
    y = rng.integers(0, 10, batch)

    def step():
        start = time.perf_counter()
        loss = mr.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return time.perf_counter() - start

    for arm in ("on", "off") * 2:  # warm-up
        use(arm)
        step()
    times = {"on": [], "off": []}
    for _ in range(rounds):
        for arm in ("on", "off"):
            use(arm)
            times[arm].append(step())
    on, off = statistics.median(times["on"]), statistics.median(times["off"])
    print(f"ResNet-20, batch {batch}, {rounds} alternating rounds: median step with checks {1e3 * on:.2f} ms, "
          f"without {1e3 * off:.2f} ms, overhead {100 * (on / off - 1):+.2f}%")
    inside = time_inside_the_checks(step, rounds)
    print(f"time inside the checks: {1e3 * inside:.3f} ms per step, {100 * inside / on:.2f}% of the step")


def time_inside_the_checks(step, rounds: int) -> float:
    """Seconds per step spent in the three pieces (each call wrapped in a timer)."""
    spent = [0.0]

    def timed(function):
        def call(*args):
            start = time.perf_counter()
            result = function(*args)
            spent[0] += time.perf_counter() - start
            return result
        return call

    for name in PIECES:
        setattr(autograd, name, timed(ORIGINAL[name]))
    for _ in range(rounds):
        step()
    use("on")
    return spent[0] / rounds


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:]))

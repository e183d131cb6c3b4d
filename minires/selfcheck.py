"""``minires gradcheck``: gradient-check every op on this machine, in float64, and print a table.

Useful after editing an op or writing a new kernel: ``minires gradcheck --impl numba`` checks the
convolution through that implementation instead of the default one.
"""
from __future__ import annotations

import time

import numpy as np

from . import backend
from . import functional as F
from .autograd import tensor
from .checks import non_negative_int
from .cli import cpu_conv_impl
from .gradcheck import GradcheckError, gradcheck


def _conv(impl):
    return lambda x, w, b: F.conv2d(x, w, b, stride=2, padding=1, impl=impl)


def _batch_norm(x, w, b):
    return F.batch_norm(x, None, None, w, b, training=True)


def cases(impl=None):
    """(name, function, input shapes, value range) for each op family; inputs are drawn per check."""
    labels = np.array([0, 2, 1])
    return [
        ("add/mul/div (broadcast)", lambda a, b: (a + b) * a / (b * b + 1), [(3, 4), (1, 4)], (-2, 2)),
        ("exp/log/sqrt/pow", lambda a: (a.exp() + a.log() + a.sqrt()) ** 2, [(3, 4)], (0.5, 2)),
        ("relu", F.relu, [(2, 3, 4)], (-2, 2)),
        ("sum/mean/max/var", lambda a: a.sum(axis=0) + F.mean(a, axis=0) + F.max(a, axis=0) + F.var(a, axis=0),
         [(4, 3)], (-2, 2)),
        ("reshape/permute/slice/pad", lambda a: F.pad(a.permute(1, 0)[1:, ::2].reshape(-1), ((1, 2),)),
         [(4, 3)], (-2, 2)),
        ("matmul/linear", lambda x, w, b: F.linear(x, w, b) @ w, [(2, 3), (4, 3), (4,)], (-2, 2)),
        (f"conv2d ({impl or backend.lookup('conv2d', np.zeros(1))[0]})", _conv(impl),
         [(2, 3, 5, 5), (4, 3, 3, 3), (4,)], (-1, 1)),
        ("batch_norm (training)", _batch_norm, [(3, 2, 3, 3), (2,), (2,)], (-2, 2)),
        ("max_pool2d/avg_pool2d", lambda x: F.max_pool2d(x, 2) + F.avg_pool2d(x, 2), [(2, 2, 4, 4)], (-2, 2)),
        ("cross_entropy", lambda z: F.cross_entropy(z, labels), [(3, 4)], (-2, 2)),
    ]


def run_checks(impl=None, seed=0):
    """Yield ``(name, passed, message, seconds)`` for every case; an op that raises fails, and the rest run."""
    rng = np.random.default_rng(seed)
    for name, fn, shapes, (low, high) in cases(impl):
        inputs = [tensor(rng.uniform(low, high, s), dtype="float64", requires_grad=True) for s in shapes]
        start = time.perf_counter()
        try:
            gradcheck(fn, inputs)
            yield name, True, "ok", time.perf_counter() - start
        except Exception as error:  # a wrong gradient, or a broken kernel or install: the other ops are still checked
            yield name, False, _failure(error), time.perf_counter() - start


def _failure(error: Exception) -> str:
    return str(error) if isinstance(error, GradcheckError) else f"raised {type(error).__name__}: {error}"


def add_arguments(parser):
    parser.add_argument("--impl", type=cpu_conv_impl, default=None,
                        help="CPU conv2d implementation to check (default: the default one; `minires bench list` lists them)")
    parser.add_argument("--seed", type=non_negative_int, default=0, help="seed of the random inputs (default 0)")


def run(args) -> int:
    failures = 0
    print(f"{'op':32s} {'result':8s} {'seconds':>8s}")
    for name, passed, message, seconds in run_checks(args.impl, args.seed):
        failures += not passed
        print(f"{name:32s} {'PASS' if passed else 'FAIL':8s} {seconds:8.3f}")
        if not passed:
            print("    " + message)
    print(f"{failures} failed" if failures else "all gradients agree with finite differences")
    return 1 if failures else 0

"""The process-wide random generator that weight initialisation draws from.

``minires.manual_seed(0)`` before building a model makes its initial weights reproducible (the
same seed gives the same weights, on any machine). Functions that draw random numbers take an
optional ``generator`` (a ``numpy.random.Generator``) and fall back to this one.
"""
from __future__ import annotations

import numpy as np

_generator = np.random.default_rng()


def manual_seed(seed: int) -> np.random.Generator:
    """Reseed the default generator (as ``torch.manual_seed``) and return it."""
    global _generator
    _generator = np.random.default_rng(check_seed(seed))
    return _generator


def check_seed(seed) -> int:
    """``seed`` if it is a non-negative int (of any size), else TypeError or ValueError saying so.

    None is refused too: NumPy would draw fresh entropy from it, and the run could not be repeated."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed {seed!r} ({type(seed).__name__}): a seed must be a non-negative int, such as 0")
    if seed < 0:
        raise ValueError(f"seed {seed}: a seed must be a non-negative int, such as 0 or {-seed}")
    return int(seed)


def default_generator() -> np.random.Generator:
    """The generator used when a function is given none."""
    return _generator

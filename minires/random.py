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
    _generator = np.random.default_rng(seed)
    return _generator


def default_generator() -> np.random.Generator:
    """The generator used when a function is given none."""
    return _generator

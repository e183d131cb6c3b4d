"""Argument checks shared by parts of the library that do not import each other (data, models)."""
from __future__ import annotations

import numpy as np


def is_positive_int(value) -> bool:
    """Whether ``value`` is an int or NumPy integer (not a bool, not a float such as 64.0) of at least 1."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 1

"""The rules numeric settings must follow, each one an argparse type (the command line's) whose ``holds(value)``
checks a Python value by the same rule (``fit()``, ``Config``, the data and the models); low in the house, so
that every part can use them."""
from __future__ import annotations

import argparse
import math
import numbers


def _number(kind, name: str, accept):
    """An argparse type for ``kind`` values that ``accept``; its ``holds(value)`` checks a Python value by the
    same rule (an int for ``int``, any real number for ``float``; never a bool)."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a{'n' if kind is int else ''} {kind.__name__}") from None
        if not (_finite(value) and accept(value)):
            raise argparse.ArgumentTypeError(f"{text} is not {name}")
        return value

    def holds(value) -> bool:
        kinds = numbers.Integral if kind is int else numbers.Real     # NumPy's numbers too
        return isinstance(value, kinds) and not isinstance(value, bool) and _finite(value) and accept(value)
    parse.__name__ = name  # argparse names the type in its messages
    parse.holds = holds
    return parse


def _finite(value) -> bool:
    """Not NaN or infinite; an integer always is (``math.isfinite`` cannot convert one past a float's range)."""
    return isinstance(value, numbers.Integral) or math.isfinite(value)


positive_int = _number(int, "a positive integer", lambda v: v > 0)
non_negative_int = _number(int, "a non-negative integer", lambda v: v >= 0)
positive_float = _number(float, "a positive number", lambda v: v > 0)
non_negative_float = _number(float, "a non-negative number", lambda v: v >= 0)
unit_interval = _number(float, "a number in [0, 1)", lambda v: 0 <= v < 1)

"""``minires bench cpu``: conv2d per layer and ResNet training steps against PyTorch on the CPU.

Not written yet (issue 8). The pieces are ready in :mod:`minires.bench.suite`:
``conv_rows("cpu", impls, cifar_resnet_convs(3, batch), ...)`` and ``step_rows("cpu", ...)``
produce the same table as ``minires bench gpu``.
"""
from __future__ import annotations

import sys


def add_arguments(parser) -> None:
    """No options yet."""


def run(args) -> int:
    print("minires bench cpu: not written yet (issue 8); minires bench gpu and list work", file=sys.stderr)
    return 2

"""``minires bench gpu | cpu | list``: time ops and training steps against PyTorch; one table each.

* ``gpu`` (:mod:`minires.bench.gpu`): the GPU test suite, then conv2d per ResNet-20 layer and
  ResNet-20/56 training steps, minires against PyTorch + cuDNN on the same card.
* ``cpu`` (:mod:`minires.bench.cpu`): the same measurements on the CPU cores.
* ``list``: the kernel implementations this machine can run, per op and device, the defaults marked
  (``backend.available()``, ``backend.defaults()``).

Shared pieces: :mod:`~minires.bench.suite` (the measurements, as table rows, on any device),
:mod:`~minires.bench.measure` (timing minires), :mod:`~minires.bench.reference` (loads
``benchmarks/torch_reference.py``, which times PyTorch: the library itself never imports it),
:mod:`~minires.bench.cost` (FLOPs and bytes),
:mod:`~minires.bench.timing`, :mod:`~minires.bench.table`. Each target module provides
``add_arguments(parser)`` and ``run(args) -> int``, like the other ``minires`` commands.
"""
from __future__ import annotations

import importlib

TARGETS = {
    "gpu": ("minires.bench.gpu", "GPU tests, then conv2d and ResNet training steps vs PyTorch+cuDNN"),
    "cpu": ("minires.bench.cpu", "conv2d and ResNet training steps vs PyTorch on the CPU cores"),
    "list": (None, "list the kernel implementations available on this machine"),
}


def add_arguments(parser) -> None:
    targets = parser.add_subparsers(dest="target", metavar="TARGET", required=True)
    for name, (module, help_text) in TARGETS.items():
        target = targets.add_parser(name, help=help_text, description=help_text)
        if module is not None:
            importlib.import_module(module).add_arguments(target)
        target.set_defaults(_target_module=module)


def run(args) -> int:
    if args._target_module is None:
        return list_implementations()
    return importlib.import_module(args._target_module).run(args)


def list_implementations() -> int:
    """Per op, the implementations this machine can run, per device kind, the default marked."""
    from .. import backend
    kinds = ("cpu", "cuda") if backend.cuda_available() else ("cpu",)
    defaults = {kind: backend.defaults(kind) for kind in kinds}
    for op in backend.available():
        parts = [f"{kind}: " + ", ".join(f"{name} (default)" if name == defaults[kind].get(op) else name
                                         for name in backend.available(op, device=kind)) for kind in kinds]
        print(f"{op:<12} {'; '.join(parts)}")
    if not backend.cuda_available():
        print("(no usable GPU here: the cuda implementations are registered but not listed)")
    return 0

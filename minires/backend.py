"""Array modules, devices, and the registry of kernel implementations.

Three small jobs live here, and nothing that imports "upward":

* ``get_array_module(*arrays)`` returns ``numpy`` or ``cupy`` for the given arrays, Chainer-style,
  so one function body can serve both (``xp = get_array_module(x)``).
* Device strings: ``"cpu"``, ``"cuda"`` and ``"cuda:N"``; ``to_device(array, device)`` moves data.
* A registry of implementations per op: the NumPy reference is always there; fast paths
  (``numba`` on the CPU, ``cupy`` RawKernels and ``numba-cuda`` on the GPU) register themselves
  when their package imports. A user picks one globally (``use("conv2d", "numba")``) or per call
  (``conv2d(x, w, impl="numpy")``); ``available("conv2d")`` lists what this machine can run.
"""
from __future__ import annotations

import contextlib
import importlib.util
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

try:  # CuPy is optional: everything works on NumPy without it.
    import cupy as _cupy
except Exception:  # noqa: BLE001 - a broken CUDA install must not break the CPU path
    _cupy = None


def cupy_or_none():
    """The ``cupy`` module if it imported, else None."""
    return _cupy


def get_array_module(*arrays):
    """``cupy`` if any of ``arrays`` is a CuPy array, else ``numpy``."""
    if _cupy is not None:
        for a in arrays:
            if isinstance(a, _cupy.ndarray):
                return _cupy
    return np


# ----------------------------------------------------------------------------- devices
def cuda_available() -> bool:
    """True when CuPy imported and sees at least one GPU."""
    if _cupy is None:
        return False
    try:
        return _cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # noqa: BLE001 - no driver, no device
        return False


GPU_EXTRA = "Install the GPU extra (pip install 'minires[gpu]') on a machine with an NVIDIA GPU"


def _no_gpu_reason() -> str:
    return "CuPy is not installed" if _cupy is None else "CuPy sees no GPU"


def parse_device(device) -> str:
    """Normalise a device spec to ``"cpu"`` or ``"cuda:N"``; raise a clear error when unusable."""
    if device is None:
        return "cpu"
    name = str(device).strip().lower()
    if name == "cpu":
        return "cpu"
    if name == "cuda" or name.startswith("cuda:"):
        index = 0 if name == "cuda" else name.split(":", 1)[1]
        try:
            index = int(index)
        except ValueError:
            raise ValueError(f"device {device!r}: expected 'cuda' or 'cuda:N' with N an integer") from None
        if not cuda_available():
            raise RuntimeError(f"device {device!r} requested but {_no_gpu_reason()}. {GPU_EXTRA}, or use the CPU "
                               "(device='cpu'; --device cpu on the command line).")
        count = _cupy.cuda.runtime.getDeviceCount()
        if not 0 <= index < count:
            cards = "cuda:0" if count == 1 else f"cuda:0 to cuda:{count - 1}"
            raise ValueError(f"device {device!r}: this machine has {count} GPU{'s' * (count > 1)} ({cards})")
        return f"cuda:{index}"
    raise ValueError(f"unknown device {device!r}: use 'cpu', 'cuda' or 'cuda:N'")


def device_of(array) -> str:
    """The device string of a NumPy or CuPy array."""
    if _cupy is not None and isinstance(array, _cupy.ndarray):
        return f"cuda:{array.device.id}"
    return "cpu"


def to_device(array, device: str):
    """Return ``array`` on ``device`` (a no-op when it is already there)."""
    device = parse_device(device)
    if device == "cpu":
        return _cupy.asnumpy(array) if device_of(array) != "cpu" else array
    index = int(device.split(":")[1])
    with _cupy.cuda.Device(index):
        return _cupy.asarray(array)


# ----------------------------------------------------------------------------- registry
@dataclass
class _OpImpls:
    impls: dict = field(default_factory=dict)  # name -> (function, device kind "cpu"/"cuda")
    default: dict = field(default_factory=dict)  # device kind -> chosen name


_REGISTRY: dict[str, _OpImpls] = {}


def register(op: str, name: str, device: str = "cpu", default: bool = False) -> Callable:
    """Decorator: register ``fn`` as implementation ``name`` of ``op`` for ``device`` ("cpu"/"cuda").

    The first implementation registered for a device kind becomes its default unless a later
    one passes ``default=True``.
    """
    def decorate(fn):
        entry = _REGISTRY.setdefault(op, _OpImpls())
        entry.impls[name] = (fn, device)
        if default or device not in entry.default:
            entry.default[device] = name
        return fn
    return decorate


def _entry(op: str) -> _OpImpls:
    if op not in _REGISTRY:
        raise KeyError(f"no op {op!r} in the registry; known ops: {sorted(_REGISTRY)}")
    return _REGISTRY[op]


def _device_kind(device: str, caller: str) -> str:
    """``device`` when it is a device kind, the registry's key ("cpu" or "cuda"); else a clear error."""
    if device not in ("cpu", "cuda"):
        raise ValueError(f"backend.{caller}: device {device!r} is not a device kind; use 'cpu' or 'cuda' "
                         "(implementations are registered per kind, not per card)")
    return device


def available(op: str | None = None, device: str | None = None):
    """Names of the implementations of ``op`` usable on this machine (all ops: a dict); with
    ``device`` ("cpu" or "cuda") only those that run there."""
    if device is not None:
        _device_kind(device, "available")
    if op is None:
        return {name: available(name, device) for name in sorted(_REGISTRY)}
    return [name for name, (_, dev) in _entry(op).impls.items()
            if (dev == "cpu" or cuda_available()) and device in (None, dev)]


def defaults(device: str = "cpu") -> dict:
    """``{op: name}``: the implementation each op runs by default on ``device`` ("cpu" or "cuda") now,
    after any :func:`use` (ops with none for that device are left out)."""
    device = _device_kind(device, "defaults")
    return {op: _REGISTRY[op].default[device] for op in sorted(_REGISTRY) if device in _REGISTRY[op].default}


# implementations registered only where their package is installed: the module that brings them, and its extra
OPTIONAL_IMPLS = {"numba": ("numba", "numba"), "numba-rows": ("numba", "numba"), "numba-cuda": ("numba_cuda", "gpu"),
                  "numba-cuda-tiled": ("numba_cuda", "gpu")}


def _no_such_impl(op: str, name, where: str = "") -> ValueError:
    """``op`` has no implementation ``name``: the registered ones, and the extra to install when ``name`` is one
    whose package is missing here."""
    module, extra = OPTIONAL_IMPLS.get(name, (None, None))
    missing = module is not None and importlib.util.find_spec(module) is None
    hint = f"; {name!r} needs {module} (pip install 'minires[{extra}]')" if missing else ""
    return ValueError(f"{op}: no implementation {name!r}{where}; registered: {sorted(_entry(op).impls)}{hint}")


def use(op: str, name: str) -> None:
    """Make ``name`` the default implementation of ``op`` on its device kind; a GPU one only on a
    machine that can run it (else nothing would run it, without a word)."""
    entry = _entry(op)
    if name not in entry.impls:
        raise _no_such_impl(op, name)
    if entry.impls[name][1] == "cuda" and not cuda_available():
        raise RuntimeError(f"{op}: implementation {name!r} runs on cuda but {_no_gpu_reason()}. {GPU_EXTRA}, "
                           f"or choose one of {available(op, 'cpu')}.")
    entry.default[entry.impls[name][1]] = name


@contextlib.contextmanager
def using(op: str, name: str):
    """Context manager form of :func:`use`; restores the previous choice on exit."""
    before = dict(_entry(op).default)
    use(op, name)
    try:
        yield
    finally:
        _REGISTRY[op].default = before


def lookup(op: str, array, impl: str | None = None) -> tuple[str, Callable]:
    """The (name, function) implementing ``op`` for ``array``'s device, or the one named ``impl``."""
    entry = _entry(op)
    kind = "cpu" if device_of(array) == "cpu" else "cuda"
    name = impl or entry.default.get(kind)
    if name not in entry.impls:
        raise _no_such_impl(op, name, f" for {kind}")
    fn, dev = entry.impls[name]
    if dev != kind:
        raise ValueError(f"{op}: implementation {name!r} runs on {dev} but the data is on {kind}; "
                         f"move the tensors with .to({dev!r}) or choose one of {available(op, kind)}")
    return name, fn

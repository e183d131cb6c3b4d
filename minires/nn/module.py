"""``Module``, ``Parameter`` and ``Sequential``: the containers that hold a network's state.

A module keeps its pieces as ordinary attributes. Assigning a :class:`Parameter` or another
:class:`Module` to an attribute is all it takes to register it: ``parameters()``,
``named_modules()`` and ``state_dict()`` find them by scanning the attributes in the order they
were assigned (the order PyTorch uses too). Buffers (state that is not trained, such as batch
norm's running statistics) are tensors announced with :meth:`Module.register_buffer`.

``module(x)`` runs ``forward(x)`` between the forward pre-hooks and the forward hooks, which is how
recorders of activations (``minires.inspect``, the experiments) watch a net without changing it.

Two services for :mod:`minires.summary` live here as well:

* :class:`LayerError`: a layer that cannot take its input raises it; as the error travels out
  through the enclosing modules it learns the layer's full name (``layer2.0.conv1 (Conv2d): ...``).
* :func:`shape_only`: inside this context, leaf layers that know their ``output_shape`` skip their
  arithmetic and return zeros of that shape, so the real module tree and the real ``forward`` code
  can be walked for a 1202-layer net or a 224x224 ImageNet input in a fraction of a second.
"""
from __future__ import annotations

import contextlib
import threading
from collections import OrderedDict, namedtuple

import numpy as np

from .. import backend, scope
from ..autograd import Tensor, as_dtype
from .hooks import BackwardHookCall

_state = threading.local()


@contextlib.contextmanager
def shape_only():
    """Context manager: leaf layers with an ``output_shape`` return zeros of that shape, unrun.

    Everything else (residual adds, shortcut slicing, flattening) runs for real on those zeros, so
    the shapes that come out are the ones a real forward would give. Used by :func:`minires.summary`.
    """
    before = getattr(_state, "shape_only", False)
    _state.shape_only = True
    try:
        yield
    finally:
        _state.shape_only = before


def is_shape_only() -> bool:
    return getattr(_state, "shape_only", False)


class LayerError(ValueError):
    """A layer cannot take its input. ``str(error)`` names the layer by its path in the model."""

    def __init__(self, layer: "Module", message: str):
        super().__init__(message)
        self.layer, self.message = layer, message
        self.where = type(layer).__name__

    def locate_in(self, root: "Module") -> None:
        """Name the failing layer relative to ``root`` (called by each enclosing module in turn)."""
        for name, module in root.named_modules():
            if module is self.layer and name:
                self.where = f"{name} ({type(module).__name__})"
                return

    def __str__(self):
        return f"{self.where}: {self.message}"


class LayerTypeError(LayerError, TypeError):
    """A layer got input of the wrong kind or dtype (an op's ``TypeError``), named like :class:`LayerError`."""


class Parameter(Tensor):
    """A tensor that a :class:`Module` trains: ``requires_grad=True`` and found by ``parameters()``."""

    def __init__(self, data, requires_grad: bool = True):
        super().__init__(data.data if isinstance(data, Tensor) else data, requires_grad=requires_grad)

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()


class RemovableHandle:
    """Returned by the ``register_*_hook`` methods; ``remove()`` unregisters the hook."""

    def __init__(self, hooks: dict, key: int):
        self._hooks, self._key = hooks, key

    def remove(self) -> None:
        self._hooks.pop(self._key, None)


IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])


def _as_numpy(value) -> np.ndarray:
    """A NumPy array from a NumPy/CuPy array, a minires Tensor, or another library's tensor."""
    if isinstance(value, Tensor):
        return value.numpy()
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # e.g. a torch.Tensor
        return np.asarray(value.detach().cpu().numpy())
    if backend.get_array_module(value) is not np:
        return backend.to_device(value, "cpu")
    return np.asarray(value)


class Module:
    """Base class of every layer and network.

    Subclasses call ``super().__init__()`` first, assign parameters, sub-modules and buffers as
    attributes, and define ``forward``. Leaf layers may also define ``output_shape(input_shape)``
    (shape inference and input checks) and ``macs(input_shape, output_shape)`` (multiply-accumulates
    the layer performs itself), which :func:`minires.summary` uses.
    """

    def __init__(self):
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_buffer_names", [])
        object.__setattr__(self, "_forward_hooks", OrderedDict())
        object.__setattr__(self, "_forward_pre_hooks", OrderedDict())
        object.__setattr__(self, "_backward_hooks", OrderedDict())

    def __setattr__(self, name, value):
        if "_buffer_names" not in self.__dict__:
            raise AttributeError(f"{type(self).__name__}: call super().__init__() before assigning {name!r}")
        if name in self._buffer_names and value is not None and not isinstance(value, Tensor):
            raise TypeError(f"{type(self).__name__}.{name} is a buffer; assign a Tensor, not {type(value).__name__}")
        object.__setattr__(self, name, value)

    # ------------------------------------------------------------------ running
    def forward(self, *inputs):
        raise NotImplementedError(f"{type(self).__name__} must define forward()")

    def output_shape(self, input_shape):
        """The output shape for ``input_shape``, or None when only running ``forward`` can tell."""
        return None

    def macs(self, input_shape, output_shape) -> int:
        """Multiply-accumulates this module performs itself (children not included); 0 by default."""
        return 0

    def __call__(self, *inputs, **kwargs):
        for hook in list(self._forward_pre_hooks.values()) if self._forward_pre_hooks else ():
            replaced = hook(self, inputs)
            if replaced is not None:
                inputs = replaced if isinstance(replaced, tuple) else (replaced,)
        backward_hooks = BackwardHookCall(self, self._backward_hooks, inputs) if self._backward_hooks else None
        if backward_hooks is not None:
            inputs = backward_hooks.wrap_inputs(inputs)
        scope.enter(self)  # ops recorded inside carry this module's path (minires.scope)
        try:
            output = self._run(inputs, kwargs)
        except LayerError as error:
            error.locate_in(self)
            raise
        except TypeError as error:  # an op's complaint: say which layer made the call
            raise LayerTypeError(self, str(error)) from error
        except ValueError as error:
            raise LayerError(self, str(error)) from error
        finally:
            scope.leave()
        for hook in list(self._forward_hooks.values()) if self._forward_hooks else ():
            replaced = hook(self, inputs, output)
            if replaced is not None:
                output = replaced
        return output if backward_hooks is None else backward_hooks.wrap_output(output)

    def _run(self, inputs, kwargs):
        if is_shape_only() and inputs and isinstance(inputs[0], Tensor):
            shape = self.output_shape(inputs[0].shape)
            if shape is not None:
                xp = backend.get_array_module(inputs[0].data)
                return Tensor._wrap(xp.zeros(shape, dtype=inputs[0].dtype))
        return self.forward(*inputs, **kwargs)

    def register_forward_hook(self, hook) -> RemovableHandle:
        """Call ``hook(module, inputs, output)`` after every forward; a non-None return replaces the output."""
        return self._add_hook(self._forward_hooks, hook)

    def register_forward_pre_hook(self, hook) -> RemovableHandle:
        """Call ``hook(module, inputs)`` before every forward; a non-None return replaces the inputs."""
        return self._add_hook(self._forward_pre_hooks, hook)

    def register_full_backward_hook(self, hook) -> RemovableHandle:
        """Call ``hook(module, grad_input, grad_output)`` when backward gets through a call of this module.

        ``grad_output``: a tuple with the gradient for the output; ``grad_input``: one entry per positional
        input, its gradient (None for non-tensors and inputs that need none). Returning a tuple replaces
        ``grad_input``. PyTorch's semantics; see :mod:`minires.nn.hooks` for how it works.
        """
        return self._add_hook(self._backward_hooks, hook)

    @staticmethod
    def _add_hook(hooks: dict, hook) -> RemovableHandle:
        key = max(hooks, default=-1) + 1
        hooks[key] = hook
        return RemovableHandle(hooks, key)

    # ------------------------------------------------------------------ the tree
    def register_buffer(self, name: str, tensor: Tensor) -> None:
        """Register a non-trained tensor (e.g. ``running_mean``): saved in ``state_dict``, moved by ``to``."""
        if not isinstance(tensor, Tensor):
            raise TypeError(f"register_buffer({name!r}): expected a Tensor, got {type(tensor).__name__}")
        if name not in self._buffer_names:
            self._buffer_names.append(name)
        object.__setattr__(self, name, tensor)

    def named_children(self):
        for name, value in vars(self).items():
            if isinstance(value, Module):
                yield name, value

    def children(self):
        for _, child in self.named_children():
            yield child

    def named_modules(self, prefix: str = "", _seen=None):
        """``(qualified name, module)`` for this module and every descendant, depth first, each once."""
        seen = set() if _seen is None else _seen
        if id(self) in seen:
            return
        seen.add(id(self))
        yield prefix, self
        for name, child in self.named_children():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name, seen)

    def modules(self):
        for _, module in self.named_modules():
            yield module

    def _own_parameters(self):
        for name, value in vars(self).items():
            if isinstance(value, Parameter):
                yield name, value

    def _own_buffers(self):
        for name in self._buffer_names:
            value = getattr(self, name)
            if value is not None:
                yield name, value

    def _named_members(self, own):
        seen = set()
        for prefix, module in self.named_modules():
            for name, tensor in own(module):
                if id(tensor) not in seen:
                    seen.add(id(tensor))
                    yield (f"{prefix}.{name}" if prefix else name), tensor

    def named_parameters(self):
        return self._named_members(Module._own_parameters)

    def parameters(self):
        for _, p in self.named_parameters():
            yield p

    def named_buffers(self):
        return self._named_members(Module._own_buffers)

    def buffers(self):
        for _, b in self.named_buffers():
            yield b

    def apply(self, fn) -> "Module":
        """Call ``fn(module)`` on every descendant and on this module (children first, as in PyTorch)."""
        for child in self.children():
            child.apply(fn)
        fn(self)
        return self

    # ------------------------------------------------------------------ modes and state
    def train(self, mode: bool = True) -> "Module":
        for module in self.modules():
            object.__setattr__(module, "training", bool(mode))
        return self

    def eval(self) -> "Module":
        return self.train(False)

    def zero_grad(self) -> None:
        for p in self.parameters():
            p.grad = None

    def requires_grad_(self, flag: bool = True) -> "Module":
        for p in self.parameters():
            p.requires_grad = flag
        return self

    def to(self, device=None, dtype=None) -> "Module":
        """Move every parameter, gradient and buffer to ``device`` and/or cast the floating ones to ``dtype``.

        Works in place (the Parameter objects stay the same, so an optimizer built earlier still
        holds them) and returns ``self``. ``model.to("float64")`` is read as a dtype.
        """
        if isinstance(device, (np.dtype, type)) or (isinstance(device, str) and not device.startswith(("cpu", "cuda"))):
            device, dtype = None, device
        device = None if device is None else backend.parse_device(device)
        dtype = as_dtype(dtype)

        def convert(array):
            if device is not None:
                array = backend.to_device(array, device)
            if dtype is not None and array.dtype.kind == "f":
                array = array.astype(dtype)
            return array

        for tensor in list(self.parameters()) + list(self.buffers()):
            tensor.data = convert(tensor.data)
            if tensor.grad is not None:
                tensor.grad.data = convert(tensor.grad.data)
        return self

    def double(self) -> "Module":
        return self.to(dtype=np.float64)

    def float(self) -> "Module":
        return self.to(dtype=np.float32)

    def cpu(self) -> "Module":
        return self.to("cpu")

    def cuda(self) -> "Module":
        return self.to("cuda")

    def _state_tensors(self):
        """``(key, tensor)`` for every parameter and buffer, in PyTorch's state-dict order."""
        for prefix, module in self.named_modules():
            for name, tensor in list(module._own_parameters()) + list(module._own_buffers()):
                yield (f"{prefix}.{name}" if prefix else name), tensor

    def state_dict(self) -> "OrderedDict[str, np.ndarray]":
        """Parameters and buffers as NumPy arrays (copies), keyed by PyTorch's names (``layer1.0.bn1.running_var``)."""
        return OrderedDict((key, np.array(tensor.numpy(), copy=True)) for key, tensor in self._state_tensors())

    def load_state_dict(self, state_dict, strict: bool = True) -> IncompatibleKeys:
        """Copy arrays into the parameters and buffers by name; returns ``(missing_keys, unexpected_keys)``.

        Values may be NumPy/CuPy arrays, minires tensors or another library's tensors (e.g. a
        PyTorch ``state_dict()``); they are cast to this model's dtype and device. Nothing is
        copied unless everything fits: a shape mismatch always raises, and with ``strict=True``
        (the default) so do missing or unexpected keys.
        """
        targets = OrderedDict(self._state_tensors())
        missing = [k for k in targets if k not in state_dict]
        unexpected = [k for k in state_dict if k not in targets]
        arrays = {k: _as_numpy(v) for k, v in state_dict.items() if k in targets}
        mismatched = [f"{k}: model {targets[k].shape}, given {tuple(a.shape)}"
                      for k, a in arrays.items() if tuple(a.shape) != targets[k].shape]
        problems = [f"shape mismatch for {len(mismatched)} key(s): " + "; ".join(mismatched)] if mismatched else []
        if strict and missing:
            problems.append(f"missing {len(missing)} key(s) the model has: {', '.join(missing)}")
        if strict and unexpected:
            problems.append(f"{len(unexpected)} unexpected key(s) the model does not have: {', '.join(unexpected)}")
        if problems:
            raise ValueError(f"load_state_dict into {type(self).__name__}: " + ". ".join(problems) +
                             ". Check that the model was built with the same architecture and options "
                             "(or pass strict=False to skip missing/unexpected keys).")
        for key, array in arrays.items():
            target = targets[key]
            target.data[...] = backend.to_device(array.astype(target.dtype), target.device)
            target._bump_version()
        return IncompatibleKeys(missing, unexpected)

    # ------------------------------------------------------------------ printing
    def extra_repr(self) -> str:
        """The text inside ``Name(...)`` for a layer, e.g. ``3, 16, kernel_size=(3, 3)``."""
        return ""

    def __repr__(self):
        children = [f"({name}): {child!r}".replace("\n", "\n  ") for name, child in self.named_children()]
        if not children:
            return f"{type(self).__name__}({self.extra_repr()})"
        lines = ([self.extra_repr()] if self.extra_repr() else []) + children
        return f"{type(self).__name__}(\n  " + "\n  ".join(lines) + "\n)"


class Sequential(Module):
    """Modules applied one after another; children are named ``"0"``, ``"1"``, ... as in PyTorch."""

    def __init__(self, *modules: Module):
        super().__init__()
        for index, module in enumerate(modules):
            if not isinstance(module, Module):
                raise TypeError(f"Sequential: item {index} is a {type(module).__name__}, not a Module")
            setattr(self, str(index), module)

    def __getitem__(self, index):
        """The ``index``-th module, or a new Sequential of a slice of them (``net.layer1[:2]``)."""
        children = list(self.children())
        return Sequential(*children[index]) if isinstance(index, slice) else children[index]

    def __len__(self) -> int:
        return sum(1 for _ in self.children())

    def __iter__(self):
        return self.children()

    def forward(self, x):
        for module in self.children():
            x = module(x)
        return x

r"""The autograd engine: ``Tensor``, ``Function``, and the reverse-mode graph walk.

How it works, in four sentences.
Every op is a :class:`Function` with a ``forward(ctx, *arrays)`` that computes plain arrays and a
``backward(ctx, grad_out)`` that returns one gradient per input (the vector-Jacobian product
:math:`\bar x_i = \bar y \, \partial y / \partial x_i`). ``Function.apply`` runs ``forward`` and,
when some input requires a gradient, records a :class:`Node` on the output: the op, its context and
its input tensors. ``Tensor.backward`` sorts the recorded graph topologically (iteratively, no
recursion) and visits it in reverse, so each node runs once, after *all* gradient contributions to
its output have been summed. Leaves accumulate into ``.grad`` across calls, as in PyTorch.

Adding an op is one class and one function::

    class Square(Function):
        '''forward  y = x^2;   backward  x̄ = 2 x ȳ'''
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x * x

        @staticmethod
        def backward(ctx, grad):
            (x,) = ctx.saved_tensors
            return 2 * x * grad

    def square(x):
        return Square.apply(x)

The engine is a generator (:func:`backward_steps`) so that the teaching stepper in
``minires.inspect`` sees exactly the steps that ``backward()`` runs.
"""
from __future__ import annotations

import contextlib
import numbers
import threading
import weakref

import numpy as np

from . import backend, scope

# ----------------------------------------------------------------------------- global modes
_state = threading.local()


def is_grad_enabled() -> bool:
    """Whether ops record the graph (False inside :func:`no_grad`)."""
    return getattr(_state, "grad_enabled", True)


@contextlib.contextmanager
def _grad_mode(enabled: bool):
    before = is_grad_enabled()
    _state.grad_enabled = enabled
    try:
        yield
    finally:
        _state.grad_enabled = before


def no_grad():
    """Context manager: ops inside record no graph (evaluation, parameter updates)."""
    return _grad_mode(False)


def enable_grad():
    """Context manager: re-enable graph recording inside :func:`no_grad`."""
    return _grad_mode(True)


def is_anomaly_enabled() -> bool:
    return getattr(_state, "anomaly", False)


@contextlib.contextmanager
def detect_anomaly():
    """Context manager: raise ``FloatingPointError`` at the first NaN/Inf, forward or backward, naming where it
    started (the data, a parameter or buffer, or the op and module that made it) and the forward source line
    (see :mod:`minires.inspect.anomaly`)."""
    before = is_anomaly_enabled()
    _state.anomaly = True
    try:
        yield
    finally:
        _state.anomaly = before


def differentiated_node():
    """The node whose differentiable backward (``backward_graph``, under ``create_graph``) is running
    ops right now, or None: an op that runs inside it is part of the backward pass, not the forward."""
    stack = getattr(_state, "differentiating", None)
    return stack[-1] if stack else None


def running_hook():
    """The tensor hook running right now, or None: an op that runs inside it is part of the backward pass."""
    return getattr(_state, "hook", None)


@contextlib.contextmanager
def _running(hook):
    before, _state.hook = running_hook(), hook
    try:
        yield
    finally:
        _state.hook = before


def _anomaly():
    from .inspect import anomaly  # late import: only anomaly mode needs it, and it builds on this module
    return anomaly


# ----------------------------------------------------------------------------- dtypes
_DTYPE_NAMES = {"float": np.float32, "double": np.float64, "half": np.float16, "long": np.int64,
                "int": np.int32}


def as_dtype(dtype):
    """A NumPy dtype from a dtype, a type, or a name ("float32", "float64", "double", ...)."""
    if dtype is None:
        return None
    if isinstance(dtype, str) and dtype in _DTYPE_NAMES:
        return np.dtype(_DTYPE_NAMES[dtype])
    try:
        return np.dtype(dtype)
    except TypeError:
        raise TypeError(f"tensor: {dtype!r} is not a dtype; use e.g. 'float32', 'float64' or np.int64") from None


def _default_dtype(data):
    """PyTorch's rule: Python floats -> float32, Python ints/bools -> int64/bool."""
    arr = np.asarray(data)
    if arr.dtype.kind == "f":
        return np.float32
    if arr.dtype.kind in "iu":
        return np.int64
    return arr.dtype


# ----------------------------------------------------------------------------- graph pieces
class Context:
    """What a :class:`Function`'s forward leaves for its backward.

    ``save_for_backward(*arrays)`` stores arrays, read back as ``saved_tensors``; any other
    attribute (``ctx.stride = 2``) can be set freely. ``needs_input_grad[i]`` says whether input
    ``i`` wants a gradient, so backward can skip work.
    """

    def __init__(self, needs_input_grad=()):
        self.needs_input_grad = tuple(needs_input_grad)
        self._saved = ()
        self._versions = ()
        self.freed = False

    def save_for_backward(self, *arrays) -> None:
        self._saved = arrays

    @property
    def saved_tensors(self):
        if self.freed:
            raise RuntimeError(
                "backward through a graph that was already freed: the first backward() released the "
                "saved arrays. Call backward(retain_graph=True) the first time if you need to go "
                "through the graph twice.")
        _check_versions(self._versions)
        return self._saved

    def free(self) -> None:
        self._saved = self._versions = ()
        self.freed = True

    def note_saved_roles(self, inputs, output) -> None:
        """Remember which saved array *is* input ``i``'s array (role ``i``) or the output (role
        ``"output"``); anything else (role None) is a constant. Called when a node is recorded, so that
        :class:`GraphContext` can put the saved values back into the graph for ``create_graph``. When
        two inputs share one array, the input at the saved array's own position wins."""
        roles = []
        for position, array in enumerate(self._saved):
            if position < len(inputs) and inputs[position] is array:
                roles.append(position)
            else:
                matches = [i for i, x in enumerate(inputs) if x is array]
                roles.append(matches[0] if matches else ("output" if array is output else None))
        self.saved_roles = tuple(roles)


class Node:
    """A recorded op in the graph: the Function class, its context and its input tensors.

    ``inputs`` has one entry per positional argument of the op: the Tensor, or None for
    arguments that are not tensors or need no gradient. ``module_path`` is the path of the module
    whose forward recorded the node (``layer2.1.conv1``; ``""`` for the model's own ops, None
    outside modules; see :mod:`minires.scope`); ``trace`` the forward call stack, recorded only in
    anomaly mode.

    Memory: the graph does not keep every intermediate array alive, only what ``ctx`` saved. A
    node holds its leaf inputs, but reaches a computed input through that input's own node, which
    holds its output tensor weakly. When the program drops such a tensor (a BN output, say, once
    the ReLU after it has run), its array is freed, and :meth:`output` stands in for it with a
    data-less tensor of the same shape, dtype and ``grad_fn`` (``data`` is a broadcast zero, no
    memory), so the inspect tools still see every node; the engine walks the nodes' edges and needs
    none (:func:`_graph_order`). A tensor with hooks or ``retain_grad()`` is pinned by its node and
    stays alive.
    """

    __slots__ = ("fn", "ctx", "_edges", "_output", "_described", "_stand_in", "_pinned", "module_path", "trace",
                 "__weakref__")

    def __init__(self, fn, ctx, inputs):
        self.fn, self.ctx = fn, ctx
        self.module_path = scope.current_path()
        self.trace = _anomaly().forward_trace() if is_anomaly_enabled() else None
        self._edges = tuple(t.grad_fn if t is not None and t.grad_fn is not None else t for t in inputs)
        self._output = self._described = self._stand_in = self._pinned = None

    @property
    def inputs(self) -> tuple:
        return tuple(edge.output() if isinstance(edge, Node) else edge for edge in self._edges)

    def record_output(self, tensor: "Tensor") -> None:
        self._output = weakref.ref(tensor)
        self._described = (backend.get_array_module(tensor.data), tensor.data.shape, tensor.data.dtype)

    def pin_output(self) -> None:
        """Keep the output tensor alive as long as the graph (it has hooks or retains its grad)."""
        self._pinned = self.output()

    def live_output(self) -> "Tensor | None":
        """The tensor this node computed, or None once the program dropped it."""
        return self._output()

    def output(self) -> "Tensor":
        """The tensor this node computed, or a data-less stand-in once the program dropped it."""
        tensor = self._output()
        if tensor is not None:
            return tensor
        if self._stand_in is None:
            xp, shape, dtype = self._described
            self._stand_in = Tensor._wrap(xp.broadcast_to(xp.zeros((), dtype=dtype), shape))
            self._stand_in.requires_grad, self._stand_in.grad_fn = True, self
        return self._stand_in

    def release(self) -> None:
        """After this node's backward (without ``retain_graph``): free what its context saved, and drop the
        stand-in, which points back at this node; that loop would leave the pair to the garbage
        collector instead of freeing it when the graph is dropped. The pass no longer needs the
        stand-in: the node's own step was its last use."""
        self.ctx.free()
        self._stand_in = None

    @property
    def name(self) -> str:
        return self.fn.__name__

    def apply_backward(self, grad):
        """Run the op's backward; always return a tuple with one entry per input.

        ``grad`` is an array (the fast path: ``fn.backward`` on arrays), or a Tensor when the engine
        runs with ``create_graph`` (then ``fn.backward_graph`` computes the gradients with
        differentiable ops, recording their own graph).
        """
        grads = self.fn.backward(self.ctx, grad) if not isinstance(grad, Tensor) else self._backward_graph(grad)
        if not isinstance(grads, tuple):
            grads = (grads,)
        if len(grads) < len(self._edges):
            grads = grads + (None,) * (len(self._edges) - len(grads))
        return grads

    def _backward_graph(self, grad: "Tensor"):
        backward_graph = getattr(self.fn, "backward_graph", None)
        if backward_graph is None:
            raise RuntimeError(
                f"{self.name}.backward has no differentiable form, so create_graph=True (double backward) "
                f"cannot go through the op {self.name}; define {self.name}.backward_graph (see README, "
                "'Double backward') or call backward without create_graph")
        stack = _state.__dict__.setdefault("differentiating", [])
        stack.append(self)
        try:
            with _grad_mode(True):
                return backward_graph(GraphContext(self), grad)
        finally:
            stack.pop()

    def attach(self, array, role) -> "Tensor":
        """``array`` as a Tensor in the graph: input ``role``'s value (at that input's node, or the leaf
        itself), this node's output (``role == "output"``), or a constant (``role`` None)."""
        if array is None:
            return None
        edge = self._edges[role] if isinstance(role, int) else (self if role == "output" else None)
        if isinstance(edge, Tensor):
            return edge
        tensor = Tensor._wrap(array)
        if edge is not None:
            tensor.requires_grad, tensor.grad_fn = True, edge
        return tensor

    def __repr__(self):
        return f"<Node {self.name}>"


class GraphContext:
    """The context that ``backward_graph(ctx, grad)`` receives under ``create_graph``: the op's own
    :class:`Context` (``ctx.stride``, ``ctx.needs_input_grad`` ... read through), except that
    ``saved_tensors`` are Tensors in the graph: a saved input depends on that input, the saved output
    on the op itself, so the gradients computed from them can be differentiated again."""

    def __init__(self, node: Node):
        self._node = node

    def __getattr__(self, name):
        return getattr(self._node.ctx, name)

    @property
    def saved_tensors(self):
        ctx = self._node.ctx
        return tuple(self._node.attach(array, role) for array, role in zip(ctx.saved_tensors, ctx.saved_roles))


class Function:
    """Base class of every differentiable op. Subclasses define two static methods:

    ``forward(ctx, *args, **kwargs) -> array`` on raw arrays (tensors arrive unwrapped), and
    ``backward(ctx, grad_out) -> grad or tuple of grads``, one per positional argument
    (``None`` where no gradient flows, e.g. for an int stride).

    Optionally ``backward_graph(ctx, grad_out)``: the same gradients, but Tensors in and out, computed
    with differentiable minires ops from ``ctx.saved_tensors`` (see :class:`GraphContext`); the engine
    uses it for ``create_graph=True`` (double backward). When ``backward`` is written only with
    operators that Tensors have too (``*``, ``/``, ``@``, :func:`unbroadcast` ...), the op says
    ``backward_graph = backward``: one source for the math.
    """

    @staticmethod
    def forward(ctx, *args, **kwargs):
        raise NotImplementedError

    @staticmethod
    def backward(ctx, grad_out):
        raise NotImplementedError

    @classmethod
    def apply(cls, *args, **kwargs):
        needs = tuple(isinstance(a, Tensor) and a.requires_grad for a in args)
        ctx = Context(needs)
        raw = [a._data if isinstance(a, Tensor) else a for a in args]
        raw_kwargs = {k: v._data if isinstance(v, Tensor) else v for k, v in kwargs.items()} if kwargs else kwargs
        out = cls.forward(ctx, *raw, **raw_kwargs)
        if is_anomaly_enabled():
            _anomaly().check_forward(cls, args, kwargs, out)
        result = Tensor._wrap(out)
        _share_version_counter(result, args)
        if is_grad_enabled() and any(needs):
            inputs = tuple(a if n else None for a, n in zip(args, needs))
            result.requires_grad = True
            result.grad_fn = node = Node(cls, ctx, inputs)
            node.record_output(result)
            ctx.note_saved_roles(raw, out)
            ctx._versions = _saved_versions(cls.__name__, ctx._saved, args, kwargs, result)
        return result


# ----------------------------------------------------------------------------- version counters
# Every Tensor counts the in-place changes made to its data (``_version``, PyTorch's name). A view
# made by an op (reshape, transpose, indexing, detach) shares its base's counter, as in PyTorch.
# ``Function.apply`` records the version of each tensor whose memory an op saved for backward, and
# ``ctx.saved_tensors`` refuses to hand the arrays to backward once one of them has changed.
def _storage(array):
    """The array that owns ``array``'s memory (itself, or the base of a view)."""
    base = getattr(array, "base", None)
    while base is not None:
        array, base = base, getattr(base, "base", None)
    return array


def _share_version_counter(result, args) -> None:
    """If the op returned a view of an input's memory, the view counts that input's changes too."""
    if getattr(result._data, "base", None) is None:
        return
    storage = _storage(result._data)
    for a in args:
        if isinstance(a, Tensor) and _storage(a._data) is storage:
            result._version_counter = a._version_counter
            return


def _saved_versions(op: str, saved, inputs, keywords, output) -> list:
    """(counter, version now, (op, role, dtype, shape)) for each input or output tensor whose memory a
    saved array uses (role: the input's position or keyword, or "output").

    The tensor itself is not kept (the graph would hold every activation alive): only its counter,
    and its shape and dtype for the message.
    """
    if not saved:
        return ()
    owners = {}                             # id of the memory's owner -> (tensor, role); the first one wins
    for role, t in enumerate(inputs):
        if isinstance(t, Tensor):
            owners.setdefault(id(_storage(t._data)), (t, role))
    for role, t in keywords.items():
        if isinstance(t, Tensor):
            owners.setdefault(id(_storage(t._data)), (t, role))
    owners.setdefault(id(_storage(output._data)), (output, "output"))
    versions = []
    for array in saved:
        owner = owners.get(id(_storage(array)))
        if owner is not None:
            tensor, role = owner
            versions.append((tensor._version_counter, tensor._version_counter[0],
                             (op, role, tensor._data.dtype, tensor._data.shape)))
    return versions


def _check_versions(versions) -> None:
    for counter, expected, (op, role, dtype, shape) in versions:
        if counter[0] != expected:
            what = f"{op}'s {'input ' if isinstance(role, int) else ''}{role}, {dtype} of shape {tuple(shape)}"
            raise RuntimeError(
                "one of the variables needed for gradient computation has been modified by an inplace "
                f"operation: [{what}] is at version {counter[0]}; expected version {expected} instead. "
                "Hint: it was changed in place between forward and backward (an optimizer step, zero_, "
                "copy_, fill_, item assignment, a .data assignment, BatchNorm's running statistics); "
                "call backward() before changing it, or change a copy.")


# ----------------------------------------------------------------------------- the engine
class Step:
    """One node of a backward pass, as the engine runs it.

    ``tensor`` is the node's output, ``grad_out`` the gradient arriving at it (all contributions
    summed, after hooks), ``grads_in`` the gradients sent to each input (None where none flows).
    ``tensor`` is looked up when first read: an output the program has dropped gets its data-less
    stand-in (:meth:`Node.output`) only if someone asks for it, not on every ``backward()``.
    """

    __slots__ = ("node", "_tensor", "grad_out", "grads_in")

    def __init__(self, node: Node, tensor: "Tensor | None", grad_out, grads_in: tuple):
        self.node, self._tensor, self.grad_out, self.grads_in = node, tensor, grad_out, grads_in

    @property
    def tensor(self) -> "Tensor":
        if self._tensor is None:
            self._tensor = self.node.output()
        return self._tensor

    def __repr__(self):
        return f"Step({self.node!r}, grad_out shape {tuple(self.grad_out.shape)})"


def _vertex(t: "Tensor"):
    """The engine's vertex for the tensor ``t``: the node that computed it, or the leaf itself (what
    :class:`Node` keeps as its edges)."""
    return t.grad_fn if t.grad_fn is not None else t


def _graph_order(*roots: "Tensor") -> list:
    """The vertices (:func:`_vertex`: nodes and leaf tensors) reachable from ``roots``, each after all
    its inputs.

    Iterative depth-first search with an explicit stack, so a 1000-layer net cannot overflow
    Python's recursion limit. It follows the nodes' edges, so the outputs the program has dropped
    need no stand-ins (:meth:`Node.output`).
    """
    order, visited = [], set()
    stack = [(_vertex(r), False) for r in reversed(roots)]
    while stack:
        v, expanded = stack.pop()
        if expanded:
            order.append(v)
            continue
        if id(v) in visited:
            continue
        visited.add(id(v))
        stack.append((v, True))
        if isinstance(v, Node):
            for edge in v._edges:
                if edge is not None and id(edge) not in visited:
                    stack.append((edge, False))
    return order


def _topological_order(root: "Tensor", *more_roots: "Tensor") -> list:
    """Tensors reachable from ``root`` (and ``more_roots``) through ``grad_fn`` edges, each after all
    its inputs (:func:`_graph_order`'s vertices as tensors: a dropped output as its stand-in)."""
    return [v.output() if isinstance(v, Node) else v for v in _graph_order(root, *more_roots)]


def backward_steps(root: "Tensor", grad=None, retain_graph: bool = False, create_graph: bool = False,
                   capture: dict | None = None):
    r"""Run the backward pass from ``root`` lazily, yielding a :class:`Step` per graph node.

    ``Tensor.backward`` simply exhausts this generator. Leaves get ``.grad`` accumulated; tensors
    that called ``retain_grad()`` get their gradient stored; hooks may replace a gradient.

    ``create_graph``: the gradients are Tensors computed by differentiable ops (each op's
    ``backward_graph``), so they can be differentiated again. ``capture`` (for :func:`grad`): a dict
    whose keys are the ``id`` of tensors; their gradients are stored there, no ``.grad`` is touched,
    and only the nodes that lead to them run. ``root``/``grad`` may also be sequences (several outputs).
    """
    roots, seeds = _seed_gradients(root, grad, create_graph)
    pending, named = {}, {}                 # id of a vertex -> its gradient so far; -> the root tensor given for it
    for r, seed in zip(roots, seeds):
        key = id(_vertex(r))
        named[key] = r
        pending[key] = seed if key not in pending else pending[key] + seed
    order = _graph_order(*roots)
    if capture is not None:
        order = _leading_to(order, capture)
    for v in reversed(order):
        g = pending.pop(id(v), None)
        if g is None:
            continue
        node = v if isinstance(v, Node) else None
        t = named.get(id(v), v if node is None else node.live_output())   # None: a dropped output
        if t is not None:
            if t._hooks:
                g = _run_hooks(t, g)
            if capture is not None:
                if id(t) in capture:
                    capture[id(t)] = g
            elif node is None or t._retains_grad:
                t._accumulate_grad(g)
        if node is None:
            continue
        grads = node.apply_backward(g)
        if is_anomaly_enabled():
            _anomaly().check_backward(node, g, grads)
        for edge, gi in zip(node._edges, grads):
            if edge is None or gi is None:
                continue
            shape, dtype = _shape_and_dtype(edge)
            _check_grad_shape(node, shape, gi)
            gi = _in_dtype(dtype, gi)
            prev = pending.get(id(edge))
            pending[id(edge)] = gi if prev is None else _sum_of_gradients(prev, gi)
        yield Step(node, t, g, grads)
        if not retain_graph:
            node.release()


def _sum_of_gradients(a, b):
    """``a + b``, two gradients sent to one tensor: Tensors under ``create_graph`` (recorded), else
    arrays added by the registry's op ``"add"`` (split over the CPU threads where Numba is installed)."""
    if isinstance(a, Tensor) or isinstance(b, Tensor):
        return a + b
    return backend.lookup("add", a)[1].forward(a, b)


def _seed_gradients(root, grad, create_graph: bool):
    """The output tensors and the gradient each starts with: ones for a scalar, else ``grad`` (an array
    on the fast path; a Tensor, which may itself carry a graph, under ``create_graph``)."""
    roots = (root,) if isinstance(root, Tensor) else tuple(root)
    if grad is None:
        grads = (None,) * len(roots)
    else:
        grads = (grad,) if isinstance(root, Tensor) else tuple(grad)
    if len(grads) != len(roots):
        raise ValueError(f"backward: got {len(roots)} outputs but {len(grads)} gradients for them")
    return roots, tuple(_seed(r, g, create_graph, i) for i, (r, g) in enumerate(zip(roots, grads)))


def _seed(root, grad, create_graph, index):
    if not isinstance(root, Tensor) or not root.requires_grad:
        raise RuntimeError(f"backward: element {index} of the outputs does not require grad and has no grad_fn; "
                           "create the inputs with requires_grad=True")
    xp = backend.get_array_module(root.data)
    if grad is None:
        if root.data.size != 1:
            raise RuntimeError(
                f"backward: grad can be implicitly created only for scalar outputs, but the output has "
                f"shape {root.shape}. Reduce it first (e.g. .sum()) or pass the gradient of that shape "
                f"(backward(gradient=...), grad(..., grad_outputs=...)).")
        grad = xp.ones_like(root.data)
    elif not (create_graph and isinstance(grad, Tensor)):
        grad = grad.data if isinstance(grad, Tensor) else xp.asarray(grad, dtype=root.dtype)
    if tuple(grad.shape) != root.shape:
        raise ValueError(f"backward: grad has shape {tuple(grad.shape)} but the output has shape {root.shape}")
    return Tensor._wrap(grad) if create_graph and not isinstance(grad, Tensor) else grad


def _leading_to(order, targets) -> list:
    """The vertices of ``order`` (inputs first) from which some tensor with ``id`` in ``targets`` is reached."""
    needed = set()
    for v in order:
        tensor = v.live_output() if isinstance(v, Node) else v
        if ((tensor is not None and id(tensor) in targets)
                or (isinstance(v, Node) and any(e is not None and id(e) in needed for e in v._edges))):
            needed.add(id(v))
    return [v for v in order if id(v) in needed]


def _run_hooks(t, g):
    """``t``'s hooks in turn; each sees the gradient as a Tensor and may replace it."""
    graph = isinstance(g, Tensor)
    for hook in t._hooks:
        with _running(hook):
            replaced = hook(g if graph else Tensor._wrap(g))
        if replaced is not None:
            _check_hook_result(hook, t, replaced)
            new = as_tensor(replaced) if graph else (replaced.data if isinstance(replaced, Tensor) else replaced)
            if is_anomaly_enabled():
                _anomaly().check_hook(hook, t, g, new)
            g = new
    return g


def hook_name(hook) -> str:
    """A hook as its author wrote it: ``poison``, ``train.<locals>.<lambda>``."""
    return getattr(hook, "__qualname__", repr(hook))


def _check_hook_result(hook, t, replaced) -> None:
    shape = getattr(replaced, "shape", None)
    if shape is None or tuple(shape) != t.shape:
        what = f"a gradient of shape {tuple(shape)}" if shape is not None else f"a {type(replaced).__name__}"
        raise RuntimeError(f"hook {hook_name(hook)} on a tensor of shape {t.shape} returned {what}; a hook must "
                           f"return None (keep the gradient) or a gradient of shape {t.shape}")


def _run_to_the_end(steps, create_graph: bool) -> None:
    """Exhaust a backward pass; under ``create_graph`` everything in it records, even inside ``no_grad``."""
    with _grad_mode(True) if create_graph else contextlib.nullcontext():
        for _ in steps:
            pass


def _shape_and_dtype(edge) -> tuple:
    """``(shape, dtype)`` of the tensor an edge stands for (a leaf, or a node's output, alive or not)."""
    if isinstance(edge, Node):
        _, shape, dtype = edge._described
        return tuple(shape), dtype
    return edge.shape, edge.dtype


def _check_grad_shape(node, shape: tuple, gi):
    if tuple(gi.shape) != shape:
        raise RuntimeError(f"{node.name}.backward returned a gradient of shape {tuple(gi.shape)} "
                           f"for an input of shape {shape}; the op's backward is wrong")


def _in_dtype(dtype, gi):
    """The gradient ``gi`` in its input's ``dtype``, as PyTorch's engine casts it: NumPy's type promotion makes
    the gradient of a float32 tensor used with float64 values float64, and its ``.grad`` must stay float32."""
    if gi.dtype == dtype:
        return gi
    return _F().to(gi, dtype=dtype) if isinstance(gi, Tensor) else gi.astype(dtype)


# ----------------------------------------------------------------------------- Tensor
def _F():
    from . import functional  # late import: functional builds on this module
    return functional


class Tensor:
    """An n-dimensional array (NumPy or CuPy) that can record the ops applied to it.

    Attributes: ``data`` (the backend array), ``grad`` (a Tensor or None), ``requires_grad``,
    ``grad_fn`` (the :class:`Node` that made it, None for leaves), ``shape``, ``dtype``, ``device``.
    """

    __array_priority__ = 1000  # numpy_array + tensor -> Tensor.__radd__

    def __init__(self, data, requires_grad: bool = False, dtype=None, device=None):
        dtype = as_dtype(dtype)
        if isinstance(data, Tensor):
            data = data.data
        xp = backend.get_array_module(data)
        if xp is np and not isinstance(data, np.ndarray):
            data = np.asarray(data, dtype=dtype or _default_dtype(data))
        elif dtype is not None and data.dtype != dtype:
            data = data.astype(dtype)
        if device is not None:
            data = backend.to_device(data, device)
        if requires_grad and not xp.issubdtype(data.dtype, xp.floating):
            raise TypeError(f"tensor: only floating-point tensors can require grad, got dtype {data.dtype}; "
                            "pass dtype='float32' or 'float64'")
        self._data = data
        self._version_counter = [0]
        self.requires_grad = bool(requires_grad)
        self.grad = None
        self.grad_fn = None
        self._hooks = []
        self._retains_grad = False

    @classmethod
    def _wrap(cls, array) -> "Tensor":
        t = cls.__new__(cls)
        t._data, t.requires_grad, t.grad, t.grad_fn, t._hooks, t._retains_grad = array, False, None, None, [], False
        t._version_counter = [0]
        return t

    # -- the data and its version counter
    @property
    def data(self):
        """The backend array. Assigning to it (``t.data = a``, ``t.data -= a``) counts as an in-place change.

        Writing into the array itself (``t.data[...] = a``) bypasses the tensor and is not counted: use
        ``t[...] = a``, :meth:`copy_` or :meth:`zero_` instead.
        """
        return self._data

    @data.setter
    def data(self, array) -> None:
        self._data = array
        self._bump_version()

    def _bump_version(self) -> None:
        """Count an in-place change (made by an op that writes into ``data``, e.g. BatchNorm's statistics)."""
        self._version_counter[0] += 1

    @property
    def _version(self) -> int:
        """How many in-place changes this tensor's memory has seen (shared with its views)."""
        return self._version_counter[0]

    def _in_place(self, op: str, change) -> "Tensor":
        if self.requires_grad and is_grad_enabled():
            raise RuntimeError(f"{op}: in-place changes are not recorded in the graph, and this tensor requires "
                               "grad; make the change inside minires.no_grad() (as an optimizer does) or use "
                               "the out-of-place op")
        change(self._data)
        self._bump_version()
        return self

    def _as_data(self, value):
        value = value.data if isinstance(value, Tensor) else value
        return backend.to_device(value, self.device) if hasattr(value, "shape") else value

    def __setitem__(self, index, value) -> None:
        """``t[index] = value`` in place (``+=``, ``-=``, ... on a Tensor are out of place: they rebind the name)."""
        self._in_place("__setitem__", lambda a: a.__setitem__(index, self._as_data(value)))

    def copy_(self, source) -> "Tensor":
        """Copy ``source``'s values (a Tensor or an array, broadcast to this shape) into this tensor."""
        return self._in_place("copy_", lambda a: a.__setitem__(..., self._as_data(source)))

    def fill_(self, value) -> "Tensor":
        """Set every element to ``value``, in place."""
        return self._in_place("fill_", lambda a: a.fill(value))

    def zero_(self) -> "Tensor":
        """Set every element to 0, in place."""
        return self._in_place("zero_", lambda a: a.fill(0))

    # -- basic properties
    @property
    def shape(self) -> tuple:
        return tuple(self.data.shape)

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def size(self) -> int:
        return int(self.data.size)

    @property
    def device(self) -> str:
        return backend.device_of(self.data)

    @property
    def is_leaf(self) -> bool:
        return self.grad_fn is None

    @property
    def T(self) -> "Tensor":
        return self.transpose()

    def __len__(self):
        return self.shape[0]

    def numel(self) -> int:
        return self.size

    def dim(self) -> int:
        return self.ndim

    def __repr__(self):
        extra = f", grad_fn=<{self.grad_fn.name}>" if self.grad_fn else (", requires_grad=True" if self.requires_grad else "")
        dev = "" if self.device == "cpu" else f", device='{self.device}'"
        return f"tensor({np.array2string(self.numpy(), prefix='tensor(')}, dtype={self.dtype}{dev}{extra})"

    # -- conversion
    def numpy(self) -> np.ndarray:
        """The data as a NumPy array (copied from the GPU if needed; shares memory on the CPU)."""
        return backend.to_device(self.data, "cpu")

    def item(self):
        if self.size != 1:
            raise ValueError(f"item: only one-element tensors convert to a Python scalar, this one has shape {self.shape}")
        return self.numpy().reshape(()).item()

    def tolist(self):
        return self.numpy().tolist()

    def detach(self) -> "Tensor":
        """The same data, cut from the graph (sharing the version counter, as a view does)."""
        t = Tensor._wrap(self.data)
        t._version_counter = self._version_counter
        return t

    def to(self, device=None, dtype=None) -> "Tensor":
        """A copy on ``device`` and/or with ``dtype`` (differentiable: gradients flow back)."""
        if isinstance(device, (np.dtype, type)) or (isinstance(device, str) and device in _DTYPE_NAMES):
            device, dtype = None, device
        return _F().to(self, device=device, dtype=dtype)

    def cpu(self):
        return self.to("cpu")

    def cuda(self):
        return self.to("cuda")

    def float(self):
        return self.to(dtype=np.float32)

    def double(self):
        return self.to(dtype=np.float64)

    def requires_grad_(self, flag: bool = True) -> "Tensor":
        if flag and not np.issubdtype(self.dtype, np.floating):
            raise TypeError(f"requires_grad_: only floating-point tensors can require grad, got {self.dtype}")
        self.requires_grad = flag
        return self

    # -- autograd
    def backward(self, gradient=None, retain_graph: bool | None = None, create_graph: bool = False, *,
                 grad=None) -> None:
        """Accumulate d(self)/d(leaf) into every leaf's ``.grad``; ``gradient`` is needed for non-scalars.

        ``create_graph=True`` records the backward pass itself, so the ``.grad`` tensors have a
        ``grad_fn`` and can be differentiated again (double backward: Hessian-vector products,
        gradient penalties). ``retain_graph`` (keep the saved arrays for another backward) defaults to
        ``create_graph``, as in PyTorch. ``grad=`` is the older name of ``gradient``.
        """
        gradient = grad if gradient is None else gradient
        retain_graph = create_graph if retain_graph is None else retain_graph
        _run_to_the_end(backward_steps(self, gradient, retain_graph=retain_graph, create_graph=create_graph),
                        create_graph)

    def register_hook(self, fn):
        """Call ``fn(grad)`` with the gradient flowing into this tensor; a non-None return (of this tensor's
        shape) replaces it.

        Returns a handle whose ``remove()`` unregisters the hook.
        """
        if not self.requires_grad:
            raise RuntimeError("register_hook: this tensor does not require grad, so no gradient will reach it")
        self._hooks.append(fn)
        if self.grad_fn is not None:
            self.grad_fn.pin_output()
        return _HookHandle(self._hooks, fn)

    def retain_grad(self) -> None:
        """Keep ``.grad`` for this non-leaf tensor after backward (leaves always keep theirs)."""
        if not self.requires_grad:
            raise RuntimeError("retain_grad: this tensor does not require grad")
        self._retains_grad = True
        if self.grad_fn is not None:
            self.grad_fn.pin_output()

    def _accumulate_grad(self, g) -> None:
        if isinstance(g, Tensor):  # create_graph: keep the graph; out of place, PyTorch's rule
            self.grad = _F().clone(g) if self.grad is None else self.grad + g
        elif self.grad is None:
            # copy: g may alias another buffer (e.g. the same grad sent to both inputs of an add)
            self.grad = Tensor._wrap(g.copy())
        else:
            self.grad.data = self.grad.data + g

    def zero_grad(self) -> None:
        self.grad = None

    # -- operators (all differentiable through minires.functional)
    def __add__(self, o): return _F().add(self, o)
    def __radd__(self, o): return _F().add(o, self)
    def __sub__(self, o): return _F().sub(self, o)
    def __rsub__(self, o): return _F().sub(o, self)
    def __mul__(self, o): return _F().mul(self, o)
    def __rmul__(self, o): return _F().mul(o, self)
    def __truediv__(self, o): return _F().div(self, o)
    def __rtruediv__(self, o): return _F().div(o, self)
    def __pow__(self, o): return _F().pow(self, o)
    def __rpow__(self, o): return _F().pow(o, self)
    def __matmul__(self, o): return _F().matmul(self, o)
    def __rmatmul__(self, o): return _F().matmul(o, self)
    def __neg__(self): return _F().neg(self)
    def __getitem__(self, index): return _F().getitem(self, index)

    # comparisons give boolean tensors, outside the graph
    def _compare(self, other, op):
        other = other.data if isinstance(other, Tensor) else other
        return Tensor._wrap(op(self.data, other))

    def __eq__(self, o): return self._compare(o, lambda a, b: a == b)
    def __ne__(self, o): return self._compare(o, lambda a, b: a != b)
    def __lt__(self, o): return self._compare(o, lambda a, b: a < b)
    def __le__(self, o): return self._compare(o, lambda a, b: a <= b)
    def __gt__(self, o): return self._compare(o, lambda a, b: a > b)
    def __ge__(self, o): return self._compare(o, lambda a, b: a >= b)
    __hash__ = object.__hash__

    def __bool__(self):
        if self.size != 1:
            raise ValueError(f"the truth value of a tensor with shape {self.shape} is ambiguous; use .any() or .all()")
        return bool(self.item())

    def __float__(self):
        return float(self.item())

    def __int__(self):
        return int(self.item())

    def any(self): return bool(self.data.any())
    def all(self): return bool(self.data.all())

    # -- method forms of common ops
    def sum(self, axis=None, keepdims=False): return _F().sum(self, axis, keepdims)
    def mean(self, axis=None, keepdims=False): return _F().mean(self, axis, keepdims)
    def max(self, axis=None, keepdims=False): return _F().max(self, axis, keepdims)
    def var(self, axis=None, keepdims=False, unbiased=False): return _F().var(self, axis, keepdims, unbiased)
    def reshape(self, *shape): return _F().reshape(self, *shape)
    def view(self, *shape): return _F().reshape(self, *shape)
    def flatten(self, start_dim=0): return _F().flatten(self, start_dim)
    def transpose(self, *axes): return _F().transpose(self, *axes)
    def permute(self, *axes): return _F().permute(self, *axes)
    def exp(self): return _F().exp(self)
    def log(self): return _F().log(self)
    def sqrt(self): return _F().sqrt(self)
    def relu(self): return _F().relu(self)
    def abs(self): return _F().abs(self)
    def norm(self): return _F().sqrt(_F().sum(self * self))
    def argmax(self, axis=None): return Tensor._wrap(self.data.argmax(axis=axis))


class _HookHandle:
    def __init__(self, hooks, fn):
        self._hooks, self._fn = hooks, fn

    def remove(self):
        if self._fn in self._hooks:
            self._hooks.remove(self._fn)


def tensor(data, requires_grad: bool = False, dtype=None, device=None) -> Tensor:
    """Create a leaf :class:`Tensor`.

    ``dtype`` is a NumPy dtype or its name; a NumPy (or CuPy) array keeps its dtype unless one is
    given, Python floats become float32 and Python ints int64 (PyTorch's rule); ``device`` is
    ``"cpu"``, ``"cuda"`` or ``"cuda:N"``. The data is copied, so later changes to ``data`` do not
    reach the tensor.
    """
    if isinstance(data, Tensor):
        data = data.data
    xp = backend.get_array_module(data)
    array = xp.array(data, dtype=as_dtype(dtype) or (None if hasattr(data, "dtype") else _default_dtype(data)))
    return Tensor(array, requires_grad=requires_grad, device=device)


def as_tensor(x, like: Tensor | None = None) -> Tensor:
    """``x`` if it is a Tensor; otherwise a constant tensor (a Python number takes ``like``'s dtype)."""
    if isinstance(x, Tensor):
        return x
    if isinstance(x, numbers.Number) and like is not None:
        xp = backend.get_array_module(like.data)
        return Tensor._wrap(xp.asarray(x, dtype=like.dtype))
    return Tensor(x)


def grad(outputs, inputs, grad_outputs=None, retain_graph: bool | None = None, create_graph: bool = False,
         allow_unused: bool = False) -> tuple:
    """The gradients of ``outputs`` with respect to ``inputs``, as a tuple; no ``.grad`` is touched.

    PyTorch's ``torch.autograd.grad``: ``outputs`` and ``inputs`` are a Tensor or a sequence of them;
    ``grad_outputs`` gives the gradient to start each output with (needed for non-scalar outputs;
    None entries mean 1 for scalars). The result has one entry per input: the sum over the outputs of
    the vector-Jacobian products. An input that no output depends on raises, unless ``allow_unused``,
    which returns None for it. ``create_graph=True`` returns gradients with a graph (differentiate
    them again); ``retain_graph`` defaults to ``create_graph``. Tensor hooks run as in ``backward``.
    """
    inputs = (inputs,) if isinstance(inputs, Tensor) else tuple(inputs)
    for i, x in enumerate(inputs):
        if not isinstance(x, Tensor) or not x.requires_grad:
            raise RuntimeError(f"grad: input {i} does not require grad, so it has no gradient; "
                               "create it with requires_grad=True")
    outputs = (outputs,) if isinstance(outputs, Tensor) else tuple(outputs)
    if grad_outputs is not None:
        grad_outputs = (grad_outputs,) if isinstance(grad_outputs, Tensor) else tuple(grad_outputs)
    retain_graph = create_graph if retain_graph is None else retain_graph
    captured = dict.fromkeys(id(x) for x in inputs)
    _run_to_the_end(backward_steps(outputs, grad_outputs, retain_graph=retain_graph, create_graph=create_graph,
                                   capture=captured), create_graph)
    result = []
    for i, x in enumerate(inputs):
        g = captured[id(x)]
        if g is None and not allow_unused:
            raise RuntimeError(f"grad: input {i} (shape {x.shape}) was not used to compute the outputs, so it "
                               "has no gradient; pass allow_unused=True to get None for it")
        result.append(g if g is None or isinstance(g, Tensor) else Tensor._wrap(g.copy()))  # g may alias
    return tuple(result)

"""Module backward hooks: ``Module.register_full_backward_hook``, with PyTorch's semantics.

``hook(module, grad_input, grad_output)`` runs once per backward through a call of the module:
``grad_output`` holds the gradient with respect to the module's output, ``grad_input`` one entry per
positional argument, the gradient with respect to that input (None for non-tensors and inputs that
need no gradient). A tuple returned by the hook replaces ``grad_input``.

How: the call's tensor input and its output pass through identity ops (:class:`Probe`). The output
probe is where the gradient enters the module: it records ``grad_output``. The input probe's node
runs after every path *inside* the module has delivered its part (a residual shortcut around the
module does not pass through it), so the gradient it holds is exactly ``grad_input``: the hooks run
there, and what they return flows on.
"""
from __future__ import annotations

from ..autograd import Function, Tensor


class Probe(Function):
    """Identity; its backward hands the gradient to ``on_gradient``, whose return value flows on."""

    @staticmethod
    def forward(ctx, x, on_gradient=None):
        ctx.on_gradient = on_gradient
        return x

    @staticmethod
    def backward(ctx, g):
        return ctx.on_gradient(g)

    backward_graph = backward


class BackwardHookCall:
    """One forward call of a module with full backward hooks: wraps its input and output, and runs the
    hooks when the backward pass gets through it."""

    def __init__(self, module, hooks, inputs: tuple):
        self.module, self.hooks, self.n_args = module, hooks, len(inputs)
        self.grad_output = None
        self.input_position = self._only_input_needing_grad(inputs)

    def _only_input_needing_grad(self, inputs):
        positions = [i for i, x in enumerate(inputs) if isinstance(x, Tensor) and x.requires_grad]
        if len(positions) > 1:
            raise NotImplementedError(
                f"register_full_backward_hook: {type(self.module).__name__} was called with {len(positions)} "
                "tensor inputs that require grad; minires runs full backward hooks on modules with at most one "
                "(every layer and block here); hook the tensors with Tensor.register_hook instead")
        return positions[0] if positions else None

    def wrap_inputs(self, inputs: tuple) -> tuple:
        if self.input_position is None:
            return inputs
        i = self.input_position
        return inputs[:i] + (Probe.apply(inputs[i], on_gradient=self.reached_input),) + inputs[i + 1:]

    def wrap_output(self, output):
        if not isinstance(output, Tensor):
            raise NotImplementedError(f"register_full_backward_hook: {type(self.module).__name__} returned a "
                                      f"{type(output).__name__}; full backward hooks need a single Tensor output")
        return Probe.apply(output, on_gradient=self.reached_output) if output.requires_grad else output

    def reached_output(self, g):
        self.grad_output = (_as_tensor(g),)
        if self.input_position is None:   # no input wants a gradient: the hooks run now, grad_input all None
            self._run_hooks((None,) * self.n_args)
        return g

    def reached_input(self, g):
        grad_input = tuple(_as_tensor(g) if i == self.input_position else None for i in range(self.n_args))
        replaced = self._run_hooks(grad_input)[self.input_position]
        if replaced is None:
            return None
        if isinstance(g, Tensor):   # create_graph: gradients stay Tensors
            return _as_tensor(replaced)
        return replaced.data if isinstance(replaced, Tensor) else replaced

    def _run_hooks(self, grad_input: tuple) -> tuple:
        for hook in list(self.hooks.values()):
            result = hook(self.module, grad_input, self.grad_output)
            if result is not None:
                result = tuple(result)
                if len(result) != len(grad_input):
                    raise ValueError(f"full backward hook on {type(self.module).__name__} returned {len(result)} "
                                     f"gradients, but the module has {len(grad_input)} positional inputs")
                grad_input = result
        return grad_input


def _as_tensor(g):
    return g if isinstance(g, Tensor) else Tensor._wrap(g)

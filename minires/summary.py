"""``summary(model, input_shape)``: a per-layer table of output shapes, parameters and multiply-adds.

What is counted. **Parameters**: every element of every parameter (conv and fc weights and biases,
BN's :math:`\\gamma, \\beta`); buffers such as running statistics are not parameters. The total is
every parameter of the model; those in no row (a layer the pass did not run, or a parameter held by a
module with children) are counted and named under the table.
**MACs** (multiply-accumulates, the paper's "FLOPs" in Table 1): those of the conv layers
(:math:`N C_\\mathrm{out} H_\\mathrm{out} W_\\mathrm{out} C_\\mathrm{in} k_h k_w`) and the fully
connected layers (:math:`N \\cdot \\mathrm{in} \\cdot \\mathrm{out}`); BN, ReLU, pooling, the residual
adds and bias additions are not counted. Each layer reports its own count (``Module.macs``).

How. A forward hook on every leaf layer records what it receives and returns, during a forward
pass through the real model. By default the pass runs under :func:`minires.nn.shape_only`: leaf
layers return zeros of their output shape without computing, while the model's own ``forward`` code
(residual adds, shortcuts, flattening) runs for real, so ResNet-1202 or a 224x224 ImageNet net is
summarised in a fraction of a second. ``compute=True`` runs every op instead (in eval mode).

On the command line: ``minires summary resnet56`` (``--input-shape 3 64 64``, ``--compute``).
"""
from __future__ import annotations

import contextlib
import numbers
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from . import backend
from .autograd import Tensor, no_grad
from .checks import positive_int
from .nn import Module, shape_only


@dataclass
class LayerRow:
    """One call of a leaf layer: its name in the model, type, output shape, parameters and MACs.

    A layer called more than once shows its parameters at its first call only (0 after), so that the rows
    add up to the total."""

    name: str
    type: str
    output_shape: tuple
    params: int
    macs: int


@dataclass
class Summary:
    """The rows (one per leaf-layer call, in call order) and totals ``params`` (every parameter of the model)
    and ``macs`` (the sum of the rows). ``unlisted`` maps each module whose own parameters are in no row
    (a layer the pass did not run, such as a lesioned block's branch, or a module with children that holds
    a parameter itself) to their count, so that the rows and ``unlisted`` add up to ``params``."""

    model_name: str
    input_shape: tuple
    rows: list
    params: int
    macs: int
    unlisted: dict = field(default_factory=dict)

    def __str__(self):
        header = ("layer (type)", "output shape", "params", "MACs")
        lines = [(f"{r.name} ({r.type})", str(r.output_shape), f"{r.params:,}", f"{r.macs:,}") for r in self.rows]
        widths = [max(len(line[i]) for line in [header] + lines) for i in range(4)]

        def format_line(cells):
            return (f"{cells[0]:<{widths[0]}}  {cells[1]:<{widths[1]}}  "
                    f"{cells[2]:>{widths[2]}}  {cells[3]:>{widths[3]}}")

        rule = "-" * len(format_line(header))
        title, *totals = self.totals().splitlines()
        return "\n".join([title, rule, format_line(header), rule] + [format_line(line) for line in lines]
                         + [rule] + totals)

    def totals(self) -> str:
        """The model and its input, then the totals: the table without its rows (``--totals``; the MACs
        depend on the input, so it is named)."""
        return "\n".join([f"{self.model_name}, input {self.input_shape}",
                          f"parameters: {self.params:,} ({_short(self.params)}){self._unlisted_note()}",
                          f"multiply-accumulates (conv + fc): {self.macs:,} ({_short(self.macs)})"])

    def _unlisted_note(self) -> str:
        if not self.unlisted:
            return ""
        return (f", of which {sum(self.unlisted.values()):,} in no row above: {', '.join(self.unlisted)} "
                "(layers this pass did not run, or modules with children)")


def _short(count: int) -> str:
    """``40.55M``, ``1.81G``: the way the paper quotes sizes; ``4.2k`` or ``650`` below 0.01M."""
    if round(count / 1e6, 2) >= 1000:                              # 999,999,999 is 1.00G, not 1000.00M
        return f"{count / 1e9:.2f}G"
    if count >= 1e4:
        return f"{count / 1e6:.2f}M"
    return f"{count / 1e3:.1f}k" if count >= 1e3 else str(count)


def _leaf_names(model: Module) -> dict:
    return {id(m): name or type(m).__name__ for name, m in model.named_modules() if not any(m.children())}


def _own_param_count(module: Module) -> int:
    return sum(p.size for _, p in module._own_parameters())


def summary(model: Module, input_shape=None, compute: bool = False, name: str | None = None) -> Summary:
    """Summarise ``model`` on an input of ``input_shape``.

    ``input_shape`` is the shape of one input batch; a 3-tuple ``(C, H, W)`` means a batch of one
    (MACs are for the whole batch). Default: the model's ``default_input_shape`` (CIFAR nets 3x32x32,
    ImageNet nets 3x224x224). ``compute=True`` runs the real ops rather than shape inference. ``name``
    heads the table (default: the model's class, ``ResNet`` for plain nets too).
    """
    if input_shape is None:
        input_shape = getattr(model, "default_input_shape", None)
        if input_shape is None:
            raise ValueError(f"summary: {type(model).__name__} has no default_input_shape; pass input_shape, "
                             "e.g. (3, 32, 32)")
    input_shape = _checked_shape(input_shape)
    if len(input_shape) == 3:
        input_shape = (1,) + input_shape
    rows, counted = _record_rows(model, input_shape, compute)
    unlisted = {path or type(module).__name__: count for path, module in model.named_modules()
                if id(module) not in counted and (count := _own_param_count(module))}
    return Summary(name or type(model).__name__, input_shape, rows, params=sum(p.size for p in model.parameters()),
                   macs=sum(r.macs for r in rows), unlisted=unlisted)


def _checked_shape(input_shape) -> tuple:
    """``input_shape`` as a tuple of ints; TypeError or ValueError unless it is a sequence of positive integers."""
    is_sequence = isinstance(input_shape, (Sequence, np.ndarray)) and not isinstance(input_shape, (str, bytes))
    if not (is_sequence and len(input_shape) and all(positive_int.holds(n) for n in input_shape)):
        error = ValueError if is_sequence and all(isinstance(n, numbers.Integral) for n in input_shape) else TypeError
        raise error(f"summary: input_shape must be a tuple of positive integers, (C, H, W) for one input such as "
                    f"(3, 32, 32) or (N, C, H, W) for a batch, got {input_shape!r}")
    return tuple(int(n) for n in input_shape)


def _zeros_like_parameters(model: Module, shape: tuple) -> Tensor:
    """An input of zeros with the dtype and on the device of the model's parameters (float32 on the CPU if none)."""
    reference = next(iter(model.parameters()), None)
    if reference is None:
        return Tensor._wrap(np.zeros(shape, np.float32))
    return Tensor._wrap(backend.get_array_module(reference.data).zeros(shape, dtype=reference.dtype))


def _record_rows(model: Module, input_shape: tuple, compute: bool) -> tuple:
    """The rows, and the ids of the leaf layers that ran (their parameters are in the rows)."""
    names, rows, counted = _leaf_names(model), [], set()

    def record(module, inputs, output):
        params = 0 if id(module) in counted else _own_param_count(module)
        counted.add(id(module))
        rows.append(LayerRow(names[id(module)], type(module).__name__, output.shape, params,
                             module.macs(inputs[0].shape, output.shape)))

    leaves = [m for m in model.modules() if id(m) in names]
    handles = [m.register_forward_hook(record) for m in leaves]
    modes = [(m, m.training) for m in model.modules()]
    x = _zeros_like_parameters(model, input_shape)
    try:
        with no_grad(), (contextlib.nullcontext() if compute else shape_only()):
            model.eval()
            model(x)
    finally:
        for handle in handles:
            handle.remove()
        for module, training in modes:
            module.training = training
    return rows, counted


# ----------------------------------------------------------------------------- command line
def add_arguments(parser) -> None:
    from .train import model_name, models_in_words
    parser.add_argument("model", type=model_name, metavar="MODEL", help=f"{models_in_words()} (as minires train builds them)")
    parser.add_argument("--input-shape", type=positive_int, nargs=3, metavar=("C", "H", "W"),
                        help="input shape C H W; the model is built for C channels (default: the model's, 3 32 32 for "
                             "CIFAR, 3 224 224 for ImageNet)")
    parser.add_argument("--num-classes", type=positive_int, help="classes of the final layer (default: the model's)")
    parser.add_argument("--compute", action="store_true", help="run the real ops instead of shape inference")
    parser.add_argument("--totals", action="store_true", help="print only the totals, not every layer")


def run(args) -> int:
    from .train import build_model
    options = {} if args.num_classes is None else {"num_classes": args.num_classes}
    if args.input_shape is not None:
        options["in_channels"] = args.input_shape[0]       # MNIST's 1 channel, as minires train builds it
    result = summary(build_model(args.model, **options), args.input_shape, compute=args.compute, name=args.model)
    print(result.totals() if args.totals else result)
    return 0

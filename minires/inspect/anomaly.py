r"""Anomaly mode: find where a NaN or an Inf *started*, and say it in a student's terms.

Inside :func:`minires.detect_anomaly` the engine calls :func:`check_forward` after every op and
:func:`check_backward` after every node's backward. Both look at the op's inputs before they blame
its output:

* **forward** — an op whose output holds NaN/Inf is blamed only if all its inputs were finite (a
  division by zero, a log of a negative number). If an input already held NaN/Inf, the op merely
  passed it on and the message names where it came from: the data (a tensor that no op made: the
  input batch), a parameter or buffer by its state-dict name (``layer1.0.conv1.weight``), or the op
  that computed it before anomaly mode was on. An op that a tensor hook runs is placed in the backward
  pass, in that hook.
* **backward** — a node is blamed when the gradient arriving at its output is finite and one it
  sends to an input is not (:math:`\sqrt{x}` at 0: finite forward, :math:`\bar x = \bar y/(2\sqrt x)
  = \infty`), unless the values its forward saved for backward already hold NaN/Inf: then the forward
  pass made them (outside anomaly mode) and the backward only carried them on. A non-finite gradient
  that *arrives* came from ``backward(grad=...)``, a hook, or an overflowing sum; a tensor hook that
  turns a finite gradient into NaN/Inf is named as soon as it returns (on a parameter, no op's
  backward would ever see its result).

Each message names the module path (``layer1.0.conv1``, from :mod:`minires.scope`), the op, the
shapes, and the source line of the forward pass that ran the op (with the line of your own code
that called into minires when the two differ). The line is recorded at forward time only while
anomaly mode is on, so normal runs pay nothing.
"""
from __future__ import annotations

import linecache
import sys
from pathlib import Path

from .. import backend, scope
from ..autograd import Tensor, differentiated_node, hook_name, running_hook

_PACKAGE = Path(__file__).resolve().parent.parent
# frames inside these are the framework's plumbing, never "the line that ran the op"
_ENGINE = tuple(str(_PACKAGE / name) for name in
                ("autograd.py", "scope.py", "backend.py", "gradcheck.py", "functional", "nn", "inspect", "cpu", "gpu"))


def forward_trace() -> tuple:
    """The current call stack as ``(file, line, function)`` tuples, innermost first (cheap: no source read)."""
    frames, frame = [], sys._getframe(1)
    while frame is not None:
        frames.append((frame.f_code.co_filename, frame.f_lineno, frame.f_code.co_name))
        frame = frame.f_back
    return tuple(frames)


def _source_lines(trace) -> list[str]:
    """Where the op ran: the innermost frame outside minires' engine, and the innermost frame of the
    user's own code (outside the package) when that is a different one."""
    if not trace:
        return ["  forward line: not recorded (run the forward pass inside detect_anomaly() too to see it)"]
    ran = next((f for f in trace if not str(Path(f[0]).resolve()).startswith(_ENGINE)), trace[-1])
    yours = next((f for f in trace if not str(Path(f[0]).resolve()).startswith(str(_PACKAGE))), None)
    lines = ["  forward line: " + _frame_text(ran)]
    if yours is not None and yours != ran:
        lines.append("  called from:  " + _frame_text(yours))
    return lines


def _frame_text(frame) -> str:
    file, line, function = frame
    code = linecache.getline(file, line).strip()
    return f"{file}:{line}, in {function}" + (f"\n      {code}" if code else "")


def _count_bad(array) -> tuple[int, int] | None:
    """(number of NaN, number of Inf) in a floating array, or None if it is all finite (or not floating)."""
    if isinstance(array, Tensor):
        array = array.data
    if array is None or not hasattr(array, "dtype"):
        return None
    xp = backend.get_array_module(array)
    if not xp.issubdtype(array.dtype, xp.floating) or bool(xp.isfinite(array).all()):
        return None
    return int(xp.isnan(array).sum()), int(xp.isinf(array).sum())


def _bad_text(counts, array) -> str:
    nan, inf = counts
    return f"{nan} NaN and {inf} Inf among {array.size} values"


def _module_text(path) -> str:
    return "outside any module" if path is None else f"in module `{scope.display(path)}`"


def _inputs(args, kwargs) -> list:
    """``(key, value)`` for each input of an op: its position, or its keyword (``running_var``)."""
    return [*enumerate(args), *kwargs.items()]


def _input_text(key) -> str:
    return f"input {key}" if isinstance(key, int) else f"input `{key}`"


def _shapes_text(inputs) -> str:
    parts = []
    for key, a in inputs:
        data = a.data if isinstance(a, Tensor) else a
        keyword = "" if isinstance(key, int) else f"{key}="
        if hasattr(data, "shape"):
            parts.append(f"{keyword}{tuple(data.shape)} {data.dtype}")
        elif a is not None:
            parts.append(f"{keyword}{a!r}")
    return ", ".join(parts)


def _state_name(tensor, named) -> str | None:
    """``layer1.0.conv1.weight`` if ``tensor`` is among the ``named`` tensors of the running model."""
    return next((name for name, t in named if t is tensor), None)


def _origin_text(fn, path, arg, key, counts) -> str:
    """Where a non-finite input of op ``fn`` came from, in words: a headline and the details."""
    data = arg.data if isinstance(arg, Tensor) else arg
    arrived = (f"reached {fn.__name__} {_module_text(path)} as its {_input_text(key)} (shape {tuple(data.shape)}, "
               f"{_bad_text(counts, data)})")
    if isinstance(arg, Tensor) and arg.grad_fn is not None:
        node = arg.grad_fn
        return (f"the NaN/Inf was made before detect_anomaly() was switched on.\n  The tensor that {arrived} was "
                f"computed by {node.name} {_module_text(node.module_path)}; run that part inside "
                "detect_anomaly() too to find the op that made it.")
    root = scope.current_root() if isinstance(arg, Tensor) else None
    if root is not None and (name := _state_name(arg, root.named_parameters())) is not None:
        return (f"the NaN/Inf came from parameter `{name}`, not from an op.\n  It {arrived}. The weight was broken "
                "before this forward pass: a previous update with a non-finite gradient (too high a learning "
                "rate?), a bad checkpoint, or an initialisation that divided by zero.")
    if root is not None and (name := _state_name(arg, root.named_buffers())) is not None:
        return (f"the NaN/Inf came from buffer `{name}`, not from an op.\n  It {arrived}. The buffer was broken "
                "before this forward pass: a running statistic updated in training mode from a batch that held "
                "NaN/Inf, or a bad checkpoint.")
    return (f"the NaN/Inf came in with the data, not from an op.\n  A tensor that no op computed (the input batch, "
            f"or a tensor you created) {arrived}. Check the data: its file, its loading and its transforms "
            "(e.g. normalising by a standard deviation of 0).")


def _pass_text() -> str:
    """Where an op runs: the forward pass, or the backward pass inside a tensor hook."""
    hook = running_hook()
    return "forward pass" if hook is None else f"backward pass, in hook {hook_name(hook)}"


def check_forward(fn, args, kwargs, out) -> None:
    """Raise ``FloatingPointError`` if ``out`` (op ``fn`` applied to ``args`` and ``kwargs``) holds NaN/Inf,
    naming the origin."""
    counts = _count_bad(out)
    if counts is None:
        return
    inputs = _inputs(args, kwargs)
    node = differentiated_node()
    if node is not None:
        _raise_in_double_backward(node, fn, inputs, out, counts)
    path, trace = scope.current_path(), forward_trace()
    for key, arg in inputs:
        arg_counts = _count_bad(arg)
        if arg_counts is not None:
            head = f"anomaly in the {_pass_text()}: " + _origin_text(fn, path, arg, key, arg_counts)
            raise FloatingPointError("\n".join([head] + _source_lines(trace)))
    head = (f"anomaly in the {_pass_text()}: {fn.__name__}.forward {_module_text(path)} turned finite inputs into "
            f"{_bad_text(counts, out)}.\n  op: {fn.__name__}, inputs {_shapes_text(inputs)} -> output "
            f"{tuple(out.shape)}. Look for a division by zero, a log or sqrt of a negative number, or an overflow.")
    raise FloatingPointError("\n".join([head] + _source_lines(trace)))


def _raise_in_double_backward(node, fn, inputs, out, counts) -> None:
    """An op of ``node``'s differentiable backward (``create_graph=True``) made NaN/Inf: the backward
    pass is to blame, at the node being differentiated, whose forward line is the one to show."""
    where = f"{node.name} {_module_text(node.module_path)}"
    arrived = next((key for key, a in inputs if _count_bad(a) is not None), None)
    if arrived is None:
        what = f"turned finite values into {_bad_text(counts, out)}"
        hint = ("The derivative is infinite or undefined where the forward pass evaluated it (e.g. sqrt or log "
                "at 0, a division by a tiny number), even if the forward values were finite.")
    else:
        what = f"received a non-finite {_input_text(arrived)} and passed it on ({_bad_text(counts, out)})"
        hint = "The incoming gradient or a saved value already held it."
    head = (f"anomaly in the backward pass (create_graph=True): while computing the gradient of {where}, "
            f"its differentiable backward ran {fn.__name__}, which {what}.\n  op: {fn.__name__}, inputs "
            f"{_shapes_text(inputs)} -> output {tuple(out.shape)}. {hint} The op being differentiated was "
            "created by:")
    raise FloatingPointError("\n".join([head] + _source_lines(node.trace)))


def check_hook(hook, tensor, grad_in, grad_out) -> None:
    """Raise ``FloatingPointError`` if ``hook`` on ``tensor`` turned a finite gradient into NaN/Inf."""
    counts = _count_bad(grad_out)
    if counts is None or _count_bad(grad_in) is not None:
        return
    what = "a leaf tensor" if tensor.grad_fn is None else (f"the output of {tensor.grad_fn.name} "
                                                          f"{_module_text(tensor.grad_fn.module_path)}")
    raise FloatingPointError(f"anomaly in the backward pass: hook {hook_name(hook)} on "
                             f"{what} of shape {tensor.shape} turned a finite gradient into "
                             f"{_bad_text(counts, grad_out)}.")


def _bad_saved_value(node):
    """``(position, array, (NaN count, Inf count))`` of the first value ``node``'s forward saved for its
    backward that holds NaN/Inf, or None."""
    for position, array in enumerate(node.ctx.saved_tensors):
        counts = _count_bad(array)
        if counts is not None:
            return position, array, counts
    return None


def check_backward(node, grad_out, grads) -> None:
    """Raise ``FloatingPointError`` at the first node whose backward made a gradient non-finite."""
    where = f"{node.name} {_module_text(node.module_path)}"
    arrived = _count_bad(grad_out)
    if arrived is not None:
        head = (f"anomaly in the backward pass: the gradient arriving at the output of {where} (shape "
                f"{tuple(grad_out.shape)}) already holds {_bad_text(arrived, grad_out)}, before its backward "
                "ran. No op made it: it was passed to backward(grad=...), returned by a hook, or the sum of "
                "finite contributions overflowed.")
        raise FloatingPointError("\n".join([head] + _source_lines(node.trace)))
    for index, g in enumerate(grads):
        counts = _count_bad(g)
        if counts is not None and (saved := _bad_saved_value(node)) is not None:
            position, array, saved_counts = saved
            head = (f"anomaly in the backward pass: the values that {where} saved in its forward pass hold NaN/Inf "
                    f"(saved value {position}, shape {tuple(array.shape)}: {_bad_text(saved_counts, array)}), so "
                    f"its backward carried them into the gradient for its input {index} ({_bad_text(counts, g)}). "
                    "The NaN/Inf was made in the forward pass, before this backward; run the forward pass inside "
                    "detect_anomaly() to find the op or the data that made it. The op was created by:")
            raise FloatingPointError("\n".join([head] + _source_lines(node.trace)))
        if counts is not None:
            head = (f"anomaly in the backward pass: {node.name}.backward {_module_text(node.module_path)} turned a "
                    f"finite incoming gradient (shape {tuple(grad_out.shape)}) into {_bad_text(counts, g)} in the "
                    f"gradient for its input {index} (shape {tuple(g.shape)}). The derivative is infinite or "
                    "undefined where the forward pass evaluated it (e.g. sqrt or log at 0, a division by a tiny "
                    "number), even if the forward values were finite. The op was created by:")
            raise FloatingPointError("\n".join([head] + _source_lines(node.trace)))

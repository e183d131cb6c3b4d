"""The autograd graph of an expression, at the level a student thinks in: layers, blocks, stages.

:func:`graph_view` turns the graph behind a tensor into plain data (a :class:`GraphView`) that both
drawings use: :func:`to_dot` (Graphviz's DOT text) and :func:`minires.inspect.svg.to_svg` (an SVG
that minires lays out itself, no system program needed).

* Ops are boxes labelled with the step at which the backward pass visits them, the module that ran
  them and the op, e.g. ``#31 layer2.1.conv1 · Conv2d 16→32, 3x3 s2``, and their output shape.
  Leaves are ellipses: parameters by their state-dict name (pass ``names=model``), other leaves
  ``leaf``. Edges point the way the data flows (input -> op).
* Nodes are grouped in nested clusters per module path (stage ``layer2`` ⊃ block ``layer2.1`` ⊃
  layer ``layer2.1.conv1``). ``depth=2`` (or ``collapse="block"``) draws one node per block,
  ``depth=1`` (``collapse="stage"``) one per stage.
* In a residual block, the edges of the shortcut (the input going around the branch to the add,
  through the ``downsample`` module if there is one) are marked as the skip path.
* After a backward pass, pass the :class:`~minires.inspect.BackwardStepper` that ran it: each op then
  shows the norm of the gradient that arrived at its output, and each leaf the norm of the gradient
  that pass sent it (not ``.grad``, which may hold earlier passes too). Without a stepper, leaves show
  the norm of their ``.grad`` (after a plain ``backward()``).

::

    stepper = BackwardStepper(loss, retain_graph=True, names=model).finish()
    print(to_dot(loss, stepper=stepper, names=model, collapse="block"))
    render(to_dot(loss, names=model), "graph.svg")   # Graphviz if installed, else minires' own SVG
"""
from __future__ import annotations

import shutil
import subprocess
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from .. import scope
from ..autograd import Tensor, _topological_order
from .stepper import array_norm, check_root, node_numbers, parameter_names

COLLAPSE_DEPTHS = {"stage": 1, "block": 2}
RESIDUAL_ADDS = ("Add", "AddReLU")
SHORTCUT_MODULES = ("downsample", "shortcut")


@dataclass
class Vertex:
    """One drawn node: an op (``kind="op"``), a leaf (``"leaf"``) or a collapsed module (``"group"``).

    ``module`` is the module path the vertex belongs to (None: outside every module), ``steps`` the
    backward-pass step numbers of the ops it stands for, ``skip`` whether it lies on a shortcut.
    """

    key: str
    kind: str
    lines: list
    module: str | None
    steps: list = field(default_factory=list)
    skip: bool = False

    @property
    def label(self) -> str:
        return "\n".join(self.lines)


@dataclass
class GraphView:
    """Vertices (inputs before the ops that use them), edges ``(source key, target key, is_skip)``,
    and the clusters: ``{module path: label}`` for every module that has vertices inside it."""

    vertices: list
    edges: list
    clusters: dict


def _shape_text(shape) -> str:
    return "x".join(str(n) for n in shape) or "scalar"


def op_detail(node) -> str:
    """A few words on an op's configuration: ``16→32, 3x3 s2`` for a convolution, ``64→10`` for a linear layer."""
    weight = node.inputs[1] if len(node.inputs) > 1 else None
    if node.name == "Conv2d" and weight is not None:
        c_out, c_in, kh, kw = weight.shape
        stride = node.ctx.stride[0] if node.ctx.stride[0] == node.ctx.stride[1] else node.ctx.stride
        return f"{c_in}→{c_out}, {kh}x{kw}" + (f" s{stride}" if stride != 1 else "")
    if node.name == "Linear" and weight is not None:
        return f"{weight.shape[1]}→{weight.shape[0]}"
    return ""


def _op_lines(t: Tensor, number, arrived) -> list:
    node = t.grad_fn
    head = f"{node.name} {op_detail(node)}".rstrip()
    if node.module_path is not None:
        head = f"{scope.display(node.module_path)} · {head}"
    lines = [f"#{number} {head}", _shape_text(t.shape)]
    if number in arrived:
        lines.append(f"|grad| {arrived[number]:.3e}")
    return lines


def _leaf_lines(t: Tensor, names: dict, sent: dict | None) -> list:
    """Name, shape and gradient norm: of what a stepper's pass ``sent`` the leaf, or (no stepper) of ``.grad``."""
    lines = [names.get(id(t), "leaf"), _shape_text(t.shape)]
    if sent is None:
        grad = t.grad.data if t.grad is not None else None
    else:
        grad = sent.get(id(t))
    if grad is not None:
        lines.append(f"|grad| {array_norm(grad):.3e}")
    return lines


def sent_to_leaves(order, numbers: dict, stepper) -> dict:
    """``{id(leaf): gradient}``: the sum of what the stepper's pass sent to each leaf of the graph."""
    records = {r.index: r for r in stepper.history}
    sent = {}
    for t in order:
        record = records.get(numbers.get(id(t)))
        if t.grad_fn is None or record is None:
            continue
        for inp, g in zip(t.grad_fn.inputs, record.grads_in):
            if inp is not None and inp.grad_fn is None and g is not None:
                sent[id(inp)] = g if id(inp) not in sent else sent[id(inp)] + g
    return sent


def _leaf_module(name: str | None) -> str | None:
    """The module a parameter belongs to, from its name: ``layer1.0.conv1.weight`` -> ``layer1.0.conv1``."""
    if name is None:
        return None
    return name.rpartition(".")[0]


def skip_edges(order) -> set:
    """``(id(source tensor), id(target tensor))`` for every edge of a residual block's shortcut.

    A residual add in block ``B`` has two inputs: one from the branch (made inside ``B`` but not
    in its ``downsample``) and the shortcut. The shortcut edge runs from the other input to the add,
    and on back through ``B.downsample``'s ops (subsample/pad or projection) to the block input.
    """
    edges = set()
    for t in order:
        node = t.grad_fn
        if node is None or node.name not in RESIDUAL_ADDS or not node.module_path:
            continue
        block = node.module_path
        inputs = [i for i in node.inputs if i is not None]
        shortcut = [i for i in inputs if not _in_branch(i, block)]
        if len(inputs) != 2 or len(shortcut) != 1:
            continue
        edges.add((id(shortcut[0]), id(t)))
        source = shortcut[0]
        while source.grad_fn is not None and _in_shortcut_module(source.grad_fn.module_path, block):
            data_input = source.grad_fn.inputs[0]
            if data_input is None:
                break
            edges.add((id(data_input), id(source)))
            source = data_input
    return edges


def _in_shortcut_module(path, block) -> bool:
    return path is not None and any(path == f"{block}.{name}" or path.startswith(f"{block}.{name}.")
                                    for name in SHORTCUT_MODULES)


def _in_branch(t: Tensor, block: str) -> bool:
    path = t.grad_fn.module_path if t.grad_fn is not None else None
    return path is not None and path.startswith(block + ".") and not _in_shortcut_module(path, block)


def _ancestors(path: str | None) -> list:
    """``layer2.1.conv1`` -> ``["layer2", "layer2.1", "layer2.1.conv1"]``; none for the root or outside."""
    if not path:
        return []
    parts = path.split(".")
    return [".".join(parts[:k]) for k in range(1, len(parts) + 1)]


def _module_types(names) -> dict:
    return {path: type(m).__name__ for path, m in names.named_modules()} if hasattr(names, "named_modules") else {}


def graph_view(root: Tensor, stepper=None, names=None, depth: int | None = None,
               collapse: str | None = None) -> GraphView:
    """The graph behind ``root`` as plain data (see the module docstring for the options)."""
    check_root(root, "to_dot")
    if stepper is not None and getattr(stepper, "root", None) is not root:
        raise ValueError("to_dot: the stepper ran the backward pass of another tensor, so its gradient norms "
                         "belong to another graph; pass the BackwardStepper made from this root "
                         "(BackwardStepper(root, retain_graph=True)), or no stepper")
    depth = _depth(depth, collapse)
    numbers = node_numbers(root) if root.grad_fn is not None else {}
    param_names = parameter_names(names)
    arrived = {r.index: r.grad_out_norm for r in stepper.history} if stepper is not None else {}
    order = _topological_order(root)
    sent = sent_to_leaves(order, numbers, stepper) if stepper is not None else None
    skips = skip_edges(order)
    vertices, key_of = [], {}
    for t in order:
        key_of[id(t)] = f"n{numbers[id(t)]}" if t.grad_fn is not None else f"l{len(key_of)}"
        if t.grad_fn is not None:
            vertices.append(Vertex(key_of[id(t)], "op", _op_lines(t, numbers[id(t)], arrived),
                                   t.grad_fn.module_path, [numbers[id(t)]]))
        else:
            vertices.append(Vertex(key_of[id(t)], "leaf", _leaf_lines(t, param_names, sent),
                                   _leaf_module(param_names.get(id(t)))))
    edges = [(key_of[id(i)], key_of[id(t)], (id(i), id(t)) in skips)
             for t in order if t.grad_fn is not None for i in t.grad_fn.inputs if i is not None]
    on_shortcut = {a for a, _, skip in edges if skip} & {b for _, b, skip in edges if skip}
    for v in vertices:
        v.skip = v.key in on_shortcut           # the shortcut's own ops (subsample/pad, projection)
    view = GraphView(vertices, edges, {})
    types = _module_types(names)
    if depth is not None:
        view = _collapsed(view, depth, arrived, types)
    for path in _cluster_paths(view):
        view.clusters[path] = f"{path} · {types[path]}" if path in types else path
    return view


def _containers(view: GraphView) -> set:
    """Module paths that hold other modules' vertices (stages, blocks); a collapsed block is a module too."""
    return {p for v in view.vertices
            for p in (_ancestors(v.module) if v.kind == "group" else _ancestors(v.module)[:-1])}


def _cluster_paths(view: GraphView) -> list:
    """Modules drawn as boxes: those holding other modules' vertices (stages, blocks) and layers with
    parameters (a conv with its weight). A parameter-free layer (a ReLU, perhaps called twice by its
    block) is named in its op's label instead."""
    containers = _containers(view)
    with_parameters = {v.module for v in view.vertices if v.kind == "leaf" and v.module}
    return [p for v in view.vertices for p in _ancestors(v.module) if p in containers | with_parameters]


def _depth(depth, collapse):
    if collapse is None or collapse == "layer":
        return depth
    if collapse not in COLLAPSE_DEPTHS:
        raise ValueError(f"to_dot: collapse={collapse!r} is not one of 'layer', 'block', 'stage' "
                         "(or pass depth=N to keep N levels of module paths)")
    return COLLAPSE_DEPTHS[collapse]


def _truncate(path: str | None, depth: int, containers: set) -> str | None:
    """The module at ``depth`` levels that ``path`` lies in, if that module holds other modules."""
    parts = path.split(".") if path else []
    prefix = ".".join(parts[:depth])
    return prefix if len(parts) >= depth and prefix in containers else None


def _collapsed(view: GraphView, depth: int, arrived: dict, types: dict) -> GraphView:
    """One vertex per module at ``depth`` levels of path (``layer2.1`` at depth 2) for everything inside it;
    a single layer at that depth (the stem's ``conv1``) keeps its op."""
    containers = _containers(view)
    groups, members, new_key = {}, {}, {}
    for v in view.vertices:
        path = _truncate(v.module, depth, containers)
        if path is None:
            new_key[v.key] = v.key
            continue
        new_key[v.key] = f"g:{path}"
        members.setdefault(path, []).append(v)
    for path, vs in members.items():
        ops = [v for v in vs if v.kind == "op"]
        steps = sorted(s for v in ops for s in v.steps)
        out = next(v for v in ops if v.steps[0] == steps[0]) if ops else vs[0]
        parameters = len(vs) - len(ops)       # only named parameters are drawn inside their module
        lines = [f"{path} · {types[path]}" if path in types else path,
                 f"{len(ops)} ops" + (f", {parameters} parameters" if parameters else ""), out.lines[1]]
        if steps and steps[0] in arrived:
            lines.append(f"|grad| {arrived[steps[0]]:.3e}")
        has_shortcut = any(skip and new_key[target] == f"g:{path}" for _, target, skip in view.edges)
        if has_shortcut:
            lines.insert(1, "residual: has a shortcut")
        groups[path] = Vertex(f"g:{path}", "group", lines, ".".join(path.split(".")[:-1]) or None, steps,
                              has_shortcut)
    vertices, seen = [], set()
    for v in view.vertices:
        key = new_key[v.key]
        if key not in seen:
            seen.add(key)
            vertices.append(v if key == v.key else groups[key[2:]])
    edges, seen_edges = [], set()
    for source, target, skip in view.edges:    # a shortcut inside a group is no separate edge any more
        pair = (new_key[source], new_key[target])
        if pair[0] != pair[1] and pair not in seen_edges:
            seen_edges.add(pair)
            edges.append((pair[0], pair[1], skip and source == pair[0] and target == pair[1]))
    return GraphView(vertices, edges, {})


# ----------------------------------------------------------------------------- DOT
def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


_DOT_SHAPES = {"op": "box", "leaf": "ellipse", "group": "box3d"}


class DotText(str):
    """DOT text that remembers the :class:`GraphView` it was written from, so that :func:`render`
    can draw it without Graphviz."""

    view: GraphView
    title: str | None


def to_dot(root: Tensor, stepper=None, names=None, title: str | None = None, depth: int | None = None,
           collapse: str | None = None) -> DotText:
    """DOT text for the graph that produced ``root`` (see the module docstring).

    ``stepper``: a BackwardStepper whose history supplies the gradient norms at each op.
    ``names``: a Module (labels parameters and names the clusters' module types) or a ``{name: tensor}`` dict.
    ``depth`` / ``collapse``: draw one node per module at that depth (``"block"`` = 2, ``"stage"`` = 1).
    """
    view = graph_view(root, stepper=stepper, names=names, depth=depth, collapse=collapse)
    lines = ["digraph autograd {", "  rankdir=BT;", '  node [fontname="Helvetica", fontsize=10];']
    if title:
        lines.append(f"  labelloc=t; label={_quote(title)};")
    lines += _dot_clusters(view, None, "  ")
    for source, target, skip in view.edges:
        lines.append(f"  {_quote(source)} -> {_quote(target)}" + (' [color="#d62728", penwidth=2];' if skip else ";"))
    lines.append("}")
    text = DotText("\n".join(lines) + "\n")
    text.view, text.title = view, title
    return text


def _dot_clusters(view: GraphView, parent: str | None, indent: str) -> list:
    """The vertices directly in module ``parent``, then one nested ``subgraph cluster_...`` per child module."""
    lines = []
    for v in view.vertices:
        if _home(v, view) == parent:
            style = ', color="#d62728"' if v.skip else ""
            lines.append(f"{indent}{_quote(v.key)} [label={_quote(v.label)}, shape={_DOT_SHAPES[v.kind]}{style}];")
    for path, label in view.clusters.items():
        if _parent_cluster(path, view) == parent:
            lines.append(f"{indent}subgraph {_quote('cluster_' + path)} {{")
            lines.append(f"{indent}  label={_quote(label)}; style=rounded; color=\"#999999\";")
            lines += _dot_clusters(view, path, indent + "  ")
            lines.append(f"{indent}}}")
    return lines


def _home(v: Vertex, view: GraphView) -> str | None:
    """The innermost cluster a vertex is drawn in."""
    return v.module if v.module in view.clusters else None


def _parent_cluster(path: str, view: GraphView) -> str | None:
    enclosing = [p for p in _ancestors(path)[:-1] if p in view.clusters]
    return enclosing[-1] if enclosing else None


# ----------------------------------------------------------------------------- images
def have_graphviz() -> bool:
    """Whether Graphviz's ``dot`` program is on the PATH."""
    return shutil.which("dot") is not None


def render(dot_text: str, path, fmt: str | None = None, engine: str = "auto") -> Path:
    """Write the graph as an image; the format comes from the suffix (png, svg, pdf) or ``fmt``.

    ``engine="graphviz"`` runs Graphviz's ``dot``; ``engine="minires"`` writes minires' own SVG
    (:func:`minires.inspect.svg.to_svg`, no system program); ``"auto"`` uses Graphviz when it is
    installed and otherwise falls back to minires' SVG, with a warning when that changes the file
    (``graph.png`` becomes ``graph.svg``). Returns the path written. Only text made by
    :func:`to_dot` can be drawn without Graphviz.
    """
    path = Path(path)
    fmt = fmt or path.suffix.lstrip(".") or "svg"
    if engine not in ("auto", "graphviz", "minires"):
        raise ValueError(f"render: engine={engine!r}; choose 'auto', 'graphviz' or 'minires'")
    if engine == "graphviz" or (engine == "auto" and have_graphviz()):
        if not have_graphviz():
            raise RuntimeError("render: Graphviz's `dot` program is not installed (apt-get install graphviz); "
                               "use engine='minires' for minires' own SVG")
        subprocess.run(["dot", f"-T{fmt}", "-o", str(path)], input=str(dot_text).encode(), check=True)
        return path
    why = "engine='minires' draws SVG only" if engine == "minires" else "Graphviz's `dot` is not installed"
    if not isinstance(dot_text, DotText):
        raise RuntimeError(f"render: {why}, and minires can draw only the DOT text that to_dot() returned (this is "
                           "other text); pass to_dot's result" + ("" if engine == "minires" else " or install graphviz"))
    from .svg import view_to_svg
    if fmt != "svg":
        svg_path = path.with_suffix(".svg")
        warnings.warn(f"render: {why}, so minires drew the graph itself as SVG: wrote {svg_path} instead of "
                      f"{path.name}", stacklevel=2)
        path = svg_path
    path.write_text(view_to_svg(dot_text.view, title=dot_text.title), encoding="utf-8")
    return path

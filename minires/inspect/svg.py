"""Draw an autograd graph as SVG with no system program: minires' own simple layered layout.

The layout, in four steps (the textbook "layered" drawing, without its refinements):

1. **Ranks.** A vertex's rank is the length of the longest path from it to the output, so the output
   is at the top (rank 0) and every op sits above all its inputs; data flows up, the backward pass
   reads down the page.
2. **Order in a rank.** Going down from the output, each vertex wants the mean x of the ops that
   use it (the barycenter); a rank is sorted by that wish and packed left to right without overlap.
3. **Clusters.** Each module is a rounded box around everything inside it, padded by how many
   boxes it holds, labelled with its path (``layer2.1 · BasicBlock``).
4. **Edges.** Cubic curves from an input's top to its op's bottom; an edge that spans several
   ranks bows sideways so that it passes beside the chain of ops between them. Shortcut edges are
   drawn thick and red.

Every element carries the graph's keys (``id="v-n12"`` for step 12's op, ``id="e-3"`` for the
fourth edge, ``data-steps``, ``data-source``), which the
stepper page (:mod:`minires.inspect.page`) uses to highlight the current node.
"""
from __future__ import annotations

from dataclasses import dataclass
from html import escape

from .graph import GraphView, Vertex, _ancestors, graph_view

CHAR_W, LINE_H, PAD_X, PAD_Y = 6.7, 14.0, 8.0, 6.0
GAP_X, GAP_Y, CLUSTER_PAD, MARGIN = 18.0, 40.0, 6.0, 20.0
COLORS = {"op": "#e8f0fe", "leaf": "#f4f4f4", "group": "#fff4e0"}


@dataclass
class Box:
    x: float      # centre
    y: float      # centre
    w: float
    h: float


def ranks(view: GraphView) -> dict:
    """``{key: rank}``: the longest path (in edges) from each vertex to the output (the last vertex)."""
    rank = {v.key: 0 for v in view.vertices}
    into = {}
    for source, target, _ in view.edges:
        into.setdefault(target, []).append(source)
    for v in reversed(view.vertices):                 # consumers before their inputs
        for source in into.get(v.key, ()):
            rank[source] = max(rank[source], rank[v.key] + 1)
    return rank


def layout(view: GraphView) -> dict:
    """``{key: Box}``: the position and size of every vertex (see the module docstring)."""
    rank = ranks(view)
    sizes = {v.key: (max(len(line) for line in v.lines) * CHAR_W + 2 * PAD_X, len(v.lines) * LINE_H + 2 * PAD_Y)
             for v in view.vertices}
    pitch = max(h for _, h in sizes.values()) + GAP_Y
    users = {}
    for source, target, _ in view.edges:
        users.setdefault(source, []).append(target)
    rows = {}
    for index, v in enumerate(view.vertices):
        rows.setdefault(rank[v.key], []).append((index, v.key))
    kinds = {v.key: v.kind for v in view.vertices}
    boxes = {}
    for r in sorted(rows):      # ties: ops before leaves, so the data path stays straight
        wish = {}
        for index, key in rows[r]:
            placed = [boxes[u].x for u in users.get(key, ()) if u in boxes]
            wish[key] = (sum(placed) / len(placed) if placed else 0.0, kinds[key] == "leaf", index)
        x_edge = None
        for key in sorted(wish, key=wish.get):
            w, h = sizes[key]
            x = wish[key][0] if x_edge is None else max(wish[key][0], x_edge + GAP_X + w / 2)
            boxes[key] = Box(x, r * pitch, w, h)
            x_edge = x + w / 2
    return boxes


def cluster_boxes(view: GraphView, boxes: dict) -> dict:
    """``{module path: (x0, y0, x1, y1)}``, each cluster's box around its vertices and inner boxes."""
    members = {path: [] for path in view.clusters}
    for v in view.vertices:
        for path in _ancestors(v.module):
            if path in members:
                members[path].append(boxes[v.key])
    nesting = {path: max((len(_ancestors(v.module)) for v in view.vertices if v.module and
                          (v.module == path or v.module.startswith(path + "."))), default=0) - len(_ancestors(path))
               for path in view.clusters}
    out = {}
    for path, inside in members.items():
        pad = CLUSTER_PAD * (1 + nesting[path])
        label_room = LINE_H * (1 + nesting[path])    # nested labels stack instead of overlapping
        out[path] = (min(b.x - b.w / 2 for b in inside) - pad, min(b.y - b.h / 2 for b in inside) - label_room,
                     max(b.x + b.w / 2 for b in inside) + pad, max(b.y + b.h / 2 for b in inside) + pad)
    return out


def _edge_path(a: Box, b: Box, bow: float) -> str:
    """A curve from the top of input ``a`` up to the bottom of op ``b``."""
    x0, y0, x1, y1 = a.x, a.y - a.h / 2, b.x, b.y + b.h / 2
    mid = (y0 + y1) / 2
    return f"M{x0:.1f},{y0:.1f} C{x0 - bow:.1f},{mid:.1f} {x1 - bow:.1f},{mid:.1f} {x1:.1f},{y1:.1f}"


def _vertex_svg(v: Vertex, box: Box) -> str:
    shape = (f'<ellipse cx="{box.x:.1f}" cy="{box.y:.1f}" rx="{box.w / 2:.1f}" ry="{box.h / 2:.1f}"/>'
             if v.kind == "leaf" else
             f'<rect x="{box.x - box.w / 2:.1f}" y="{box.y - box.h / 2:.1f}" width="{box.w:.1f}" '
             f'height="{box.h:.1f}" rx="{3 if v.kind == "op" else 8}"/>')
    top = box.y - box.h / 2 + PAD_Y + LINE_H * 0.8
    text = "".join(f'<tspan x="{box.x:.1f}" y="{top + k * LINE_H:.1f}">{escape(line)}</tspan>'
                   for k, line in enumerate(v.lines))
    classes = f"node {v.kind}" + (" skip" if v.skip else "")
    return (f'<g class="{classes}" id="v-{escape(v.key)}" data-key="{escape(v.key)}" '
            f'data-module="{escape(v.module or "")}" data-steps="{" ".join(map(str, v.steps))}" '
            f'fill="{COLORS[v.kind]}"><title>{escape(v.label)}</title>{shape}<text>{text}</text></g>')


STYLE = """
.node rect, .node ellipse { stroke: #444; stroke-width: 1; }
.node.skip rect { stroke: #d62728; stroke-width: 2; }
.node text { font: 11px monospace; fill: #111; text-anchor: middle; }
.cluster rect { fill: none; stroke: #9aa; stroke-dasharray: 4 2; }
.cluster text { font: 11px monospace; fill: #567; }
.edge { fill: none; stroke: #777; stroke-width: 1; }
.edge.skip { stroke: #d62728; stroke-width: 2.5; }
.title { font: bold 14px sans-serif; }
"""


def view_to_svg(view: GraphView, title: str | None = None) -> str:
    """The SVG text of a :class:`~minires.inspect.graph.GraphView`."""
    boxes = layout(view)
    clusters = cluster_boxes(view, boxes)
    rank = ranks(view)
    x0 = min([b.x - b.w / 2 for b in boxes.values()] + [c[0] for c in clusters.values()]) - MARGIN
    y0 = min([b.y - b.h / 2 for b in boxes.values()] + [c[1] for c in clusters.values()]) - MARGIN
    y0 -= 24 if title else 0
    x1 = max([b.x + b.w / 2 for b in boxes.values()] + [c[2] for c in clusters.values()]) + MARGIN
    y1 = max([b.y + b.h / 2 for b in boxes.values()] + [c[3] for c in clusters.values()]) + MARGIN
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="graph" viewBox="{x0:.1f} {y0:.1f} {x1 - x0:.1f} '
             f'{y1 - y0:.1f}" width="{x1 - x0:.0f}" height="{y1 - y0:.0f}">',
             f"<style>{STYLE}</style>",
             '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" markerHeight="8" '
             'markerUnits="userSpaceOnUse" '
             'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#777"/></marker></defs>']
    if title:
        parts.append(f'<text class="title" x="{x0 + MARGIN:.1f}" y="{y0 + MARGIN:.1f}">{escape(title)}</text>')
    for path, (cx0, cy0, cx1, cy1) in sorted(clusters.items(), key=lambda item: len(_ancestors(item[0]))):
        parts.append(f'<g class="cluster" data-module="{escape(path)}"><rect x="{cx0:.1f}" y="{cy0:.1f}" '
                     f'width="{cx1 - cx0:.1f}" height="{cy1 - cy0:.1f}" rx="6"/><text x="{cx0 + 4:.1f}" '
                     f'y="{cy0 + LINE_H - 3:.1f}">{escape(view.clusters[path])}</text></g>')
    for index, (source, target, skip) in enumerate(view.edges):
        span = rank[source] - rank[target]
        bow = 0.0 if span <= 1 else min(40.0 + 12.0 * span, 160.0)
        parts.append(f'<path class="edge{" skip" if skip else ""}" id="e-{index}" data-source="{escape(source)}" '
                     f'data-target="{escape(target)}" d="{_edge_path(boxes[source], boxes[target], bow)}" '
                     'marker-end="url(#arrow)"/>')
    parts += [_vertex_svg(v, boxes[v.key]) for v in view.vertices]
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def to_svg(root, stepper=None, names=None, title: str | None = None, depth: int | None = None,
           collapse: str | None = None) -> str:
    """SVG text of the graph behind ``root``; the options are :func:`~minires.inspect.to_dot`'s."""
    return view_to_svg(graph_view(root, stepper=stepper, names=names, depth=depth, collapse=collapse), title=title)

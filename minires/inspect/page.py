"""The backward stepper as one interactive web page: a static, self-contained HTML file.

:func:`stepper_page` (or :meth:`BackwardStepper.to_html`) writes a page that needs no server and no
network (CSS, JavaScript and the SVG graph are inline). Open it in any browser and step forward and
back through the backward pass with the buttons or the arrow keys. Each step shows the node's
module path, op, output shape, the norm of the gradient that arrived at it and the gradients it
sent on; the graph (drawn by :mod:`minires.inspect.svg`) highlights the current node, marks the
nodes already visited, and, inside a residual block, highlights the block's shortcut (the skip
path the gradient takes around the branch). A second view shows one node per block.

::

    loss = F.cross_entropy(model(x), y)
    stepper_page(loss, "backward.html", names=model)      # runs the backward pass, writes the page
"""
from __future__ import annotations

import json
from html import escape
from pathlib import Path

from .graph import graph_view
from .stepper import BackwardStepper
from .svg import view_to_svg

PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>__TITLE__</title>
<style>
body { font: 14px sans-serif; margin: 0; display: flex; height: 100vh; }
#panel { width: 360px; padding: 12px; border-right: 1px solid #ccc; overflow-y: auto; flex: none; }
#graphs { flex: 1; overflow: auto; }
button { font-size: 14px; margin: 2px; }
dt { font-weight: bold; margin-top: 6px; } dd { margin: 0 0 0 8px; font-family: monospace; }
#help { color: #666; font-size: 12px; }
svg .node.done rect, svg .node.done ellipse { fill: #e3f2e1; }
svg .node.current rect, svg .node.current ellipse { stroke: #ff7f0e; stroke-width: 4; fill: #fff0dd; }
svg .edge.skip.active { stroke: #ff2020; stroke-width: 6; }
</style></head>
<body>
<div id="panel">
<h3>__TITLE__</h3>
<div><button id="first" title="Home">first</button><button id="back" title="left arrow">&#9664; back</button>
<button id="next" title="right arrow">next &#9654;</button><button id="last" title="End">last</button></div>
<div><button id="toggle">one node per block</button></div>
<p id="position"></p>
<dl>
<dt>node</dt><dd>#<span id="step-index"></span></dd>
<dt>module</dt><dd id="step-module"></dd>
<dt>op</dt><dd id="step-op"></dd>
<dt>output shape</dt><dd id="step-shape"></dd>
<dt>|gradient arriving|</dt><dd id="step-grad"></dd>
<dt>gradients sent on (norm)</dt><dd><ul id="step-sends"></ul></dd>
<dt>shortcut</dt><dd id="step-skip"></dd>
</dl>
<p id="help">The backward pass starts at the output (top of the graph) and moves down. Green: nodes whose
backward has run; orange: the current one. Red edges are residual shortcuts; the shortcut of the block
you are in is drawn thick. Keys: &larr; &rarr; (or &uarr; &darr;), Home, End.</p>
</div>
<div id="graphs"><div id="full">__FULL__</div><div id="blocks" hidden>__BLOCKS__</div></div>
<script>
const STEPS = __STEPS__;
let current = 0;
function mark(selector, cls, on) { document.querySelectorAll(selector).forEach(e => e.classList.toggle(cls, on)); }
function show(i) {
  current = Math.max(0, Math.min(STEPS.length - 1, i));
  const s = STEPS[current];
  document.getElementById("position").textContent = "step " + (current + 1) + " of " + STEPS.length;
  document.getElementById("step-index").textContent = s.index;
  document.getElementById("step-module").textContent = s.module;
  document.getElementById("step-op").textContent = s.op;
  document.getElementById("step-shape").textContent = s.shape;
  document.getElementById("step-grad").textContent = s.grad;
  const sends = document.getElementById("step-sends");
  sends.replaceChildren(...s.sends.map(t => { const li = document.createElement("li"); li.textContent = t; return li; }));
  document.getElementById("step-skip").textContent = s.block ? s.block + " (highlighted)" : "-";
  mark(".node", "current", false); mark(".node", "done", false); mark(".active", "active", false);
  STEPS.forEach((t, k) => { if (k < current) t.vertices.forEach(v => mark('[id="' + v + '"]', "done", true)); });
  s.vertices.forEach(v => mark('[id="' + v + '"]', "current", true));
  s.skip.forEach(e => mark('[id="' + e + '"]', "active", true));
  const shown = document.querySelector((document.getElementById("full").hidden ? "#blocks" : "#full") + " .current");
  if (shown && shown.scrollIntoView) shown.scrollIntoView({block: "center", inline: "nearest"});
}
document.getElementById("next").onclick = () => show(current + 1);
document.getElementById("back").onclick = () => show(current - 1);
document.getElementById("first").onclick = () => show(0);
document.getElementById("last").onclick = () => show(STEPS.length - 1);
document.getElementById("toggle").onclick = (event) => {
  const full = document.getElementById("full"), blocks = document.getElementById("blocks");
  full.hidden = !full.hidden; blocks.hidden = !blocks.hidden;
  event.target.textContent = full.hidden ? "every op" : "one node per block";
  show(current);
};
document.addEventListener("keydown", (event) => {
  const moves = {ArrowRight: 1, ArrowDown: 1, ArrowLeft: -1, ArrowUp: -1};
  if (event.key in moves) { show(current + moves[event.key]); event.preventDefault(); }
  if (event.key === "Home") show(0);
  if (event.key === "End") show(STEPS.length - 1);
});
show(0);
</script>
</body></html>
"""


def _prefixed(svg: str, prefix: str) -> str:
    """Give one drawing's element ids a prefix, so that two drawings can share a page."""
    return svg.replace('id="v-', f'id="{prefix}v-').replace('id="e-', f'id="{prefix}e-')


def _shortcut_edges(view) -> dict:
    """``{block path: [edge id, ...]}``: the skip-path edges of each residual block, by the block
    (the module path of the add, or of the shortcut module's parent) they lead into."""
    module_of = {v.key: v.module or "" for v in view.vertices}
    blocks = {}
    for index, (_, target, skip) in enumerate(view.edges):
        if skip:
            path = module_of[target]
            block = path.split(".downsample")[0].split(".shortcut")[0]
            blocks.setdefault(block, []).append(f"e-{index}")
    return blocks


def _block_of(module: str | None, blocks: dict) -> str | None:
    """The innermost residual block that ``module`` lies in."""
    inside = [b for b in blocks if module is not None and (module == b or module.startswith(b + "."))]
    return max(inside, key=len) if inside else None


def page_steps(stepper: BackwardStepper, full, blocks_view) -> list:
    """One plain dict per stepped node: the texts the page shows and the SVG ids it highlights."""
    shortcuts = _shortcut_edges(full)
    group_of = {s: v.key for v in blocks_view.vertices for s in v.steps}
    steps = []
    for record in stepper.history:
        block = _block_of(record.module, shortcuts)
        sends = [f"→ {s['to']} {s['shape']}: {s['grad_norm']:.4e}" for s in record.row()["sends"]]
        steps.append({"index": record.index, "module": record.where, "op": record.op,
                      "shape": str(record.output_shape), "grad": f"{record.grad_out_norm:.4e}", "sends": sends,
                      "block": block, "vertices": [f"full-v-n{record.index}", f"blocks-v-{group_of[record.index]}"],
                      "skip": [f"full-{e}" for e in shortcuts.get(block, [])]})
    return steps


def write_page(stepper: BackwardStepper, path, title: str | None = None) -> Path:
    """Write the page for ``stepper`` (running the rest of its backward pass first); return the path."""
    stepper.finish()
    if not stepper.history:
        raise ValueError("stepper_page: the backward pass has no steps to show")
    full = graph_view(stepper.root, stepper=stepper, names=stepper.names)
    blocks = graph_view(stepper.root, stepper=stepper, names=stepper.names, collapse="block")
    title = title or "backward pass, step by step"
    steps = json.dumps(page_steps(stepper, full, blocks)).replace("</", "<\\/")
    page = (PAGE.replace("__TITLE__", escape(title)).replace("__STEPS__", steps)
            .replace("__FULL__", _prefixed(view_to_svg(full), "full-"))
            .replace("__BLOCKS__", _prefixed(view_to_svg(blocks), "blocks-")))
    path = Path(path)
    path.write_text(page, encoding="utf-8")
    return path


def stepper_page(root, path, names=None, title: str | None = None, **kwargs) -> Path:
    """Run the backward pass from ``root`` in a :class:`BackwardStepper` and write its page to ``path``.

    ``names``: the model (labels parameters, names the modules' types); other keyword arguments go to
    the stepper (``grad=``, ``retain_graph=``). Gradients land in ``.grad`` as with ``backward()``.
    """
    return write_page(BackwardStepper(root, names=names, **kwargs), path, title=title)

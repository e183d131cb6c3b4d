"""Layer-level views: module paths on graph nodes and stepper records, clustered DOT, minires' own SVG,
and the interactive stepper page clicked through in a real headless browser."""
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

import minires as mr
import minires.functional as F
from minires import nn, scope
from minires.autograd import _topological_order
from minires.inspect import BackwardStepper, render, stepper_page, to_dot, to_svg
from minires.inspect import graph as graph_module
from minires.inspect.svg import layout, ranks
from minires.inspect.graph import graph_view
from minires.models.resnet import cifar_resnet

SVG = "{http://www.w3.org/2000/svg}"


def resnet8(**kwargs):
    mr.random.manual_seed(0)
    return cifar_resnet(8, width=4, **kwargs).double()


def loss_of(model, batch=2):
    x = mr.tensor(np.random.default_rng(1).standard_normal((batch, 3, 8, 8)))
    return F.cross_entropy(model(x), np.arange(batch) % 10)


def ops(root):
    return [t.grad_fn for t in _topological_order(root) if t.grad_fn is not None]


def names_of(model, kind):
    return [name for name, m in model.named_modules() if isinstance(m, kind)]


# ----------------------------------------------------------------------------- module paths
def test_every_node_carries_the_path_of_the_module_that_made_it():
    model = resnet8()
    nodes = ops(loss_of(model))
    by_op = {}
    for node in nodes:
        by_op.setdefault(node.name, []).append(node.module_path)
    assert sorted(by_op["Conv2d"]) == sorted(names_of(model, nn.Conv2d))        # one node per conv, by its name
    assert sorted(by_op["BatchNormTrain"]) == sorted(names_of(model, nn.BatchNorm2d))
    assert by_op["Linear"] == ["fc"] and by_op["Reshape"] == [""]                 # flatten: the model's own op
    assert by_op["CrossEntropy"] == [None]                                        # called outside any module
    assert sorted(by_op["Add"]) == ["layer1.0", "layer2.0", "layer3.0"]           # the residual adds
    assert scope.current_path() is None                                           # the stack is empty again


def test_paths_follow_a_replaced_module_and_name_modules_built_inside_forward():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 2).double()

        def forward(self, x):
            return nn.ReLU()(self.fc(x))                  # a module that is not part of the tree

    net, x = Net(), mr.tensor(np.ones((1, 3)))
    assert [n.module_path for n in ops(net(x))] == ["fc", "<ReLU>"]
    net.fc = nn.Sequential(nn.Linear(3, 2).double())
    assert [n.module_path for n in ops(net(x))] == ["fc.0", "<ReLU>"]


def test_the_module_stack_unwinds_when_a_layer_raises():
    with pytest.raises(ValueError, match="conv1"):
        resnet8()(mr.tensor(np.ones((1, 5, 8, 8))))      # 5 channels into a 3-channel conv
    assert scope.current_path() is None and scope.current_root() is None


def test_stepper_records_carry_module_paths():
    model = resnet8()
    records = BackwardStepper(loss_of(model), names=model).finish().history
    convs = [r for r in records if r.op == "Conv2d"]
    assert [r.module for r in convs] == names_of(model, nn.Conv2d)[::-1]          # backward visits output first
    assert records[0].where == "-" and records[0].op == "CrossEntropy"
    reshape = next(r for r in records if r.op == "Reshape")
    assert reshape.where == "(model)" and reshape.row()["module"] == "(model)"
    add = next(r for r in records if r.module == "layer3.0" and r.op == "Add")
    assert "layer3.0.relu" in records[records.index(add) - 1].text()
    assert any(label.endswith("@ layer3.0.bn2") for label in add.input_labels)


# ----------------------------------------------------------------------------- DOT
def test_dot_groups_ops_in_clusters_per_stage_block_and_layer_with_readable_labels():
    model = resnet8()
    loss = loss_of(model)
    dot = to_dot(loss, names=model)
    steps = len(BackwardStepper(loss_of(model)).finish().history)
    assert len(re.findall(r"shape=box[,\]]", dot)) == steps                     # one box per op
    assert dot.count("shape=ellipse]") == len(list(model.parameters()))
    for cluster in ("layer2 · Sequential", "layer2.0 · BasicBlock", "layer2.0.conv1 · Conv2d"):
        assert f'label="{cluster}";' in dot
    # nested: the block's cluster opens inside the stage's, the layer's inside the block's
    assert dot.index('"cluster_layer2"') < dot.index('"cluster_layer2.0"') < dot.index('"cluster_layer2.0.conv1"')
    label = re.search(r'label="(#\d+ layer2\.0\.conv1 · Conv2d 4→8, 3x3 s2)\\n2x8x4x4"', dot).group(1)
    assert f"`{label}`" in (Path(__file__).resolve().parents[1] / "README.md").read_text()   # the README's example
    assert re.search(r'label="#\d+ fc · Linear 16→10\\n2x10"', dot)
    assert '"layer2.0.conv1.weight\\n8x4x3x3"' in dot


@pytest.mark.parametrize("shortcut, residual, per_block", [("A", True, (1, 3, 3)), ("B", True, (1, 3, 3)),
                                                          ("A", False, (0, 0, 0))])
def test_dot_marks_the_shortcut_edges_of_each_residual_block(shortcut, residual, per_block):
    # identity: block input -> add (1 edge); option A: input -> subsample -> pad -> add; option B:
    # input -> 1x1 conv -> BN -> add (3 edges each); a plain net has none
    view = graph_view(loss_of(resnet8(shortcut=shortcut, residual=residual)))
    module_of = {v.key: v.module for v in view.vertices}
    skips = [module_of[target] for _, target, skip in view.edges if skip]
    counted = tuple(sum(1 for m in skips if m.startswith(block)) for block in ("layer1.0", "layer2.0", "layer3.0"))
    assert counted == per_block
    dot = to_dot(loss_of(resnet8(shortcut=shortcut, residual=residual)))
    assert dot.count('color="#d62728", penwidth=2') == sum(per_block)


def test_dot_collapses_to_one_node_per_block_or_per_stage():
    model = resnet8()
    loss = loss_of(model)
    dot = to_dot(loss, names=model, collapse="block")
    blocks = [name for name, _ in graph_module_blocks(model)]
    for block in blocks:
        assert f'"g:{block}" [label="{block} · BasicBlock\\nresidual: has a shortcut' in dot
    assert "layer2.0.conv1 ·" not in dot and "Conv2d 4→8" not in dot            # the block's insides are gone
    assert '"g:layer1.0" -> "g:layer2.0";' in dot and '"g:layer2.0" -> "g:layer3.0";' in dot
    assert dot.index('"cluster_layer2"') < dot.index('"g:layer2.0" [label') < dot.index('"cluster_layer3"')
    view = graph_view(loss, collapse="stage")
    groups = [v for v in view.vertices if v.kind == "group"]
    assert [g.lines[0] for g in groups] == ["layer1", "layer2", "layer3"]
    every_step = sorted(s for v in graph_view(loss).vertices for s in v.steps)
    assert sorted(s for v in view.vertices for s in v.steps) == every_step       # every op is in exactly one vertex
    assert graph_view(loss, depth=2).edges == graph_view(loss, collapse="block").edges
    with pytest.raises(ValueError, match="collapse='blocks' is not one of"):
        to_dot(loss, collapse="blocks")


def graph_module_blocks(model):
    from minires.inspect import residual_blocks
    return residual_blocks(model)


# ----------------------------------------------------------------------------- SVG
def test_svg_has_one_element_per_vertex_and_edge_and_labelled_clusters(browser, tmp_path):
    model = resnet8()
    loss = loss_of(model)
    stepper = BackwardStepper(loss, names=model, retain_graph=True).finish()
    svg = to_svg(loss, stepper=stepper, names=model, title="ResNet-8")
    root = ET.fromstring(svg)                                                     # well-formed XML
    nodes = root.findall(f".//{SVG}g[@data-key]")
    assert len([g for g in nodes if "op" in g.get("class").split()]) == len(stepper.history)
    assert len([g for g in nodes if "leaf" in g.get("class").split()]) == len(list(model.parameters()))
    assert len(root.findall(f".//{SVG}path[@data-source]")) == sum(len([i for i in n.inputs if i is not None])
                                                                   for n in ops(loss))
    cluster_labels = {g.find(f"{SVG}text").text for g in root.findall(f".//{SVG}g[@class='cluster']")}
    assert {"layer1 · Sequential", "layer3.0 · BasicBlock", "layer3.0.conv1 · Conv2d"} <= cluster_labels
    conv = root.find(f".//{SVG}g[@id='v-n{stepper.history[-1].index}']")          # the first conv, visited last
    first_conv = f"#{stepper.history[-1].index} conv1 · Conv2d 3→4, 3x3"
    assert [t.text for t in conv.iter(f"{SVG}tspan")][:2] == [first_conv, "2x4x8x8"]
    path = tmp_path / "graph.svg"
    path.write_text(svg)
    page = browser.new_page()
    errors = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(path.as_uri())
    assert page.eval_on_selector_all("g.node", "els => els.length") == len(nodes) and errors == []


def test_layout_puts_every_op_above_its_inputs_without_overlaps():
    view = graph_view(loss_of(resnet8()))
    boxes, rank = layout(view), ranks(view)
    for source, target, _ in view.edges:
        assert rank[source] > rank[target] and boxes[source].y > boxes[target].y
    rows = {}
    for key, box in boxes.items():
        rows.setdefault(rank[key], []).append(box)
    for row in rows.values():
        row.sort(key=lambda b: b.x)
        assert all(a.x + a.w / 2 <= b.x - b.w / 2 for a, b in zip(row, row[1:]))


def test_render_falls_back_to_minires_svg_without_graphviz_and_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr(graph_module, "have_graphviz", lambda: False)
    dot = to_dot(loss_of(resnet8()))
    with pytest.warns(UserWarning, match="Graphviz's `dot` is not installed.*graph.svg instead of graph.png"):
        written = render(dot, tmp_path / "graph.png")
    assert written == tmp_path / "graph.svg" and not (tmp_path / "graph.png").exists()
    assert ET.parse(written).getroot().tag == f"{SVG}svg"
    monkeypatch.setattr(graph_module, "have_graphviz", lambda: True)            # chosen, even with Graphviz
    own = render(dot, tmp_path / "own.svg", engine="minires")
    assert own.read_text() == (tmp_path / "graph.svg").read_text()
    monkeypatch.setattr(graph_module, "have_graphviz", lambda: False)
    with pytest.raises(RuntimeError, match="apt-get install graphviz"):
        render(dot, tmp_path / "g.png", engine="graphviz")
    with pytest.raises(RuntimeError, match="can draw only the DOT text that to_dot"):
        render("digraph { a -> b }", tmp_path / "g.svg")


# ----------------------------------------------------------------------------- the stepper page
def shown(page) -> dict:
    return {key: page.inner_text(f"#step-{key}") for key in ("index", "module", "op", "grad", "shape")}


def expected(record) -> dict:
    return {"index": str(record.index), "module": record.where, "op": record.op,
            "grad": f"{record.grad_out_norm:.4e}", "shape": str(record.output_shape)}


def test_stepper_page_steps_through_the_backward_pass_in_a_browser(browser, tmp_path):
    model = resnet8()
    loss = loss_of(model)
    stepper = BackwardStepper(loss, names=model)
    path = stepper.to_html(tmp_path / "backward.html", title="ResNet-8, one batch")
    records = stepper.history
    assert stepper.done and records[0].grad_out_norm == 1.0                       # d loss / d loss
    html = path.read_text()
    assert "http://" not in html.replace("http://www.w3.org/2000/svg", "") and "https://" not in html
    page = browser.new_page()
    errors = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(path.as_uri())
    assert shown(page) == expected(records[0])
    for _ in range(12):
        page.click("#next")
    assert shown(page) == expected(records[12]) and page.inner_text("#position") == f"step 13 of {len(records)}"
    assert page.get_attribute("#full .node.current", "id") == f"full-v-n{records[12].index}"
    assert page.eval_on_selector_all("#full .node.done", "els => els.length") == 12
    page.click("#back")
    assert shown(page) == expected(records[11])
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")
    assert shown(page) == expected(records[13])
    # inside block layer2.0 (option A: subsample + pad shortcut), its three shortcut edges light up
    inside = next(k for k, r in enumerate(records) if r.module == "layer2.0.conv2")
    page.keyboard.press("Home")
    assert page.eval_on_selector_all("#full .edge.skip.active", "els => els.length") == 0   # the loss: no block
    for _ in range(inside):
        page.keyboard.press("ArrowRight")
    assert shown(page) == expected(records[inside]) and page.inner_text("#step-skip") == "layer2.0 (highlighted)"
    active = page.eval_on_selector_all("#full .edge.skip.active", "els => els.map(e => e.dataset.target)")
    add = next(r for r in records if r.module == "layer2.0" and r.op == "Add")
    assert len(active) == 3 and f"n{add.index}" in active
    page.click("#toggle")                                                         # one node per block
    assert page.is_hidden("#full") and page.get_attribute("#blocks .node.current", "id") == "blocks-v-g:layer2.0"
    page.keyboard.press("End")
    assert shown(page) == expected(records[-1]) and records[-1].module == "conv1"
    assert errors == []


def test_stepper_page_shortcut_writes_the_page_and_the_gradients(tmp_path):
    model = resnet8()
    path = stepper_page(loss_of(model), tmp_path / "p.html", names=model)
    reference = resnet8()
    loss_of(reference).backward()
    assert path.exists() and "<svg" in path.read_text()
    for (name, p), (_, q) in zip(model.named_parameters(), reference.named_parameters()):
        np.testing.assert_array_equal(p.grad.numpy(), q.grad.numpy(), err_msg=name)


def test_the_readme_example_runs_and_its_anomaly_blames_the_data(tmp_path, monkeypatch, capsys):
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    section = readme.split("## Inspecting gradients", 1)[1].split("\n## ", 1)[0]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FloatingPointError, match="came in with the data, not from an op") as caught:
        exec(compile(code, "README.md", "exec"), {})
    assert "reached Conv2d in module `conv1` as its input 0" in str(caught.value)
    said = re.search(r"print\(stepper\.step\(\)\) +# (#0 +- +CrossEntropy) \.\.\.", code)
    assert said and capsys.readouterr().out.split()[:3] == said.group(1).split()   # the step printed is the one said
    for name in ("backward.html", "backward-2.html", "graph.svg", "blocks.svg"):
        assert (tmp_path / name).stat().st_size > 1000, name


def test_render_with_engine_minires_does_not_claim_graphviz_is_missing(tmp_path, monkeypatch):
    monkeypatch.setattr(graph_module, "have_graphviz", lambda: True)
    dot = to_dot((mr.tensor([1.0, 2.0], requires_grad=True) * 2.0).sum())
    with pytest.warns(UserWarning) as warned:
        written = render(dot, tmp_path / "graph.png", engine="minires")
    message = str(warned[0].message)
    assert written == tmp_path / "graph.svg" and "not installed" not in message
    assert message.startswith("render: engine='minires' draws SVG only, so minires drew the graph itself as SVG")
    with pytest.raises(RuntimeError) as caught:
        render("digraph { a -> b }", tmp_path / "g.svg", engine="minires")
    assert "not installed" not in str(caught.value) and "can draw only the DOT text that to_dot" in str(caught.value)


def test_a_collapsed_block_does_not_claim_zero_parameters_when_they_are_not_named():
    model = resnet8()
    loss = loss_of(model)
    unnamed = {v.key: v.lines for v in graph_view(loss, collapse="block").vertices}
    named = {v.key: v.lines for v in graph_view(loss, names=model, collapse="block").vertices}
    block = dict(graph_module_blocks(model))["layer1.0"]
    assert f"7 ops, {len(list(block.parameters()))} parameters" in named["g:layer1.0"]
    assert "7 ops" in unnamed["g:layer1.0"] and not any("parameters" in line for line in unnamed["g:layer1.0"])

"""minires.inspect: the backward stepper, recorders, the skip-path split, graph export, anomaly mode."""
import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest

import minires as mr
import minires.functional as F
from minires import nn
from minires.inspect import (BackwardStepper, LayerRecorder, SkipPathSplit, detect_anomaly, have_graphviz,
                             plot_layer_curves, plot_skip_split, render, to_dot)
from minires.models.blocks import BasicBlock
from minires.models.resnet import cifar_resnet


def leaf(shape, seed=0):
    return mr.tensor(np.random.default_rng(seed).standard_normal(shape), requires_grad=True)


def block_and_input(stride, seed):
    """A float64 BasicBlock (stride 2 exercises option A's subsample + pad) and an input batch."""
    mr.random.manual_seed(seed)
    block = BasicBlock(4, 4 * stride, stride=stride).double()
    return block, leaf((3, 4, 6, 6), seed)


def twin(block):
    other = BasicBlock(block.conv1.in_channels, block.conv1.out_channels, stride=block.conv1.stride[0]).double()
    other.load_state_dict(block.state_dict())
    return other


# ----------------------------------------------------------------------------- stepper
def test_matmul_step_sends_the_textbook_gradients():
    x, w = leaf((4, 3), 1), leaf((3, 2), 2)
    stepper = BackwardStepper((x @ w).sum(), names={"w": w})
    records = list(stepper)
    assert [r.op for r in records] == ["Sum", "MatMul"]
    matmul = records[1]
    ones = np.ones((4, 2))
    np.testing.assert_allclose(matmul.grads_in[0], ones @ w.numpy().T)   # x̄ = ȳ Wᵀ
    np.testing.assert_allclose(matmul.grads_in[1], x.numpy().T @ ones)   # W̄ = xᵀ ȳ
    assert matmul.input_labels[1] == "w" and matmul.input_shapes == ((4, 3), (3, 2))
    assert matmul.grad_out_norm == pytest.approx(np.sqrt(8))
    assert stepper.done and "MatMul" in str(stepper) and "<table>" in stepper._repr_html_()


@pytest.mark.parametrize("stride", [1, 2])
def test_stepping_a_resnet_block_gives_exactly_the_gradients_of_backward(stride):
    block, x = block_and_input(stride, seed=stride)
    other, x2 = twin(block), mr.tensor(x.numpy(), requires_grad=True)
    weights = mr.tensor(np.random.default_rng(9).standard_normal((3, 4 * stride, 6 // stride, 6 // stride)))
    (block(x) * weights).sum().backward()
    stepper = BackwardStepper((other(x2) * weights).sum(), names=other)
    assert stepper.run() is None and stepper.done      # nothing to break on, all the way through
    assert [r.op for r in stepper.history].count("Conv2d") == 2 and len(stepper.history) >= 8
    np.testing.assert_array_equal(x2.grad.numpy(), x.grad.numpy())
    for (name, p), (_, q) in zip(block.named_parameters(), other.named_parameters()):
        assert np.array_equal(p.grad.numpy(), q.grad.numpy()), name


def test_step_by_step_is_resumable_and_labels_inputs_by_step_number():
    x = leaf((5,))
    stepper = BackwardStepper((x.relu() * 3.0).sum())
    first = stepper.step()
    assert first.index == 0 and first.op == "Sum" and first.input_labels == ("#1 Mul",)
    assert x.grad is None                                  # the leaf is reached later
    stepper.finish()
    np.testing.assert_array_equal(x.grad.numpy(), 3.0 * (x.numpy() > 0))
    assert stepper.step() is None


def test_run_breaks_at_the_first_non_finite_gradient_and_names_the_op():
    x = mr.tensor([0.0, 4.0], dtype="float64", requires_grad=True)
    stepper = BackwardStepper((x.sqrt() * 2.0).sum())
    with np.errstate(divide="ignore"):
        broke = stepper.run()
    assert broke.op == "Sqrt" and not broke.finite
    assert "non-finite" in stepper.break_reason and "Sqrt" in stepper.break_reason


def test_run_breaks_on_norm_thresholds():
    x = leaf((10,))
    big = BackwardStepper((x * 1000.0).sum(), max_norm=100.0).run()
    assert big.op == "Mul" and big.grads_in_norms[0] == pytest.approx(1000.0 * np.sqrt(10))
    small = BackwardStepper((x * 1e-6).sum(), min_norm=1e-3).run()
    assert small.op == "Mul"


# ----------------------------------------------------------------------------- anomaly mode
def test_anomaly_mode_names_the_op_whose_forward_made_a_nan():
    x = mr.tensor([1.0, -1.0], dtype="float64", requires_grad=True)
    with detect_anomaly(), np.errstate(invalid="ignore"), pytest.raises(FloatingPointError, match=r"Log\.forward"):
        x.log()


def test_anomaly_mode_names_the_op_whose_backward_made_an_inf():
    x = mr.tensor([0.0, 1.0], dtype="float64", requires_grad=True)
    y = x.sqrt().sum()                       # forward is finite: sqrt(0) = 0
    with detect_anomaly(), np.errstate(divide="ignore"), pytest.raises(FloatingPointError, match=r"Sqrt\.backward"):
        y.backward()


# ----------------------------------------------------------------------------- graph export
def test_dot_export_has_one_vertex_per_tensor_and_one_edge_per_input():
    x, w = leaf((4, 3), 1), leaf((3, 2), 2)
    y = (x @ w).relu().sum()
    dot = to_dot(y, names={"w": w, "x": x}, title="tiny")
    assert dot.startswith("digraph autograd {") and dot.rstrip().endswith("}")
    assert dot.count("shape=box") == 3 and dot.count("shape=ellipse") == 2
    assert dot.count("->") == 4                                     # x, w -> MatMul -> ReLU -> Sum
    for label in ('"#2 MatMul\\n4x2"', '"#1 ReLU\\n4x2"', '"#0 Sum\\nscalar"', '"w\\n3x2"', '"x\\n4x3"'):
        assert label in dot
    assert "|grad|" not in dot                                      # nothing to show before backward


def test_dot_export_after_backward_shows_gradient_norms():
    x = leaf((4,), 3)
    y = (x * 2.0).sum()
    stepper = BackwardStepper(y).finish()
    dot = to_dot(y, stepper=stepper, names={"x": x})
    assert f"|grad| {2 * np.sqrt(4):.3e}" in dot                    # x̄ = 2, four of them
    assert f"#0 Sum\\nscalar\\n|grad| {1.0:.3e}" in dot


def test_render_with_graphviz_writes_a_png(tmp_path):
    if not have_graphviz():
        pytest.skip("Graphviz's dot is not installed (the SVG fallback is tested in test_inspect_views.py)")
    written = render(to_dot((leaf((2,)) * 2.0).sum()), tmp_path / "graph.png")
    assert written.exists() and written.read_bytes()[:4] == b"\x89PNG"


# ----------------------------------------------------------------------------- recorders
def small_model(seed=0):
    mr.random.manual_seed(seed)
    layers = nn.Conv2d(2, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(), nn.Linear(48, 5)
    return nn.Sequential(*layers).double()


def test_layer_recorder_matches_direct_computation():
    model = small_model()
    x = mr.tensor(np.random.default_rng(0).standard_normal((4, 2, 4, 4)))
    conv, lr = model[0], 0.1
    recorder = LayerRecorder(model, steps=[1])
    for step in range(3):
        if step == 1:   # what the recorder should see at step 1, computed directly
            conv_out = F.conv2d(x, conv.weight.detach(), conv.bias.detach(), padding=1).numpy()
            w_before = conv.weight.numpy().copy()
            bn_shift = model[1].bias.numpy().mean()
        with recorder.step(step):
            model.zero_grad()
            model(x).sum().backward()
            for p in model.parameters():
                p.data = p.data - lr * p.grad.data
        if step == 1:
            g = conv.weight.grad.numpy().copy()
            expected_ratio = lr * np.linalg.norm(g) / np.linalg.norm(w_before)
    rows = {r["layer"]: r for r in recorder.table()}
    assert set(rows) == {"0", "1", "4"} and all(r["step"] == 1 for r in rows.values())
    assert rows["0"]["update_ratio"] == pytest.approx(expected_ratio, rel=1e-12)
    assert rows["0"]["weight_grad_norm"] == pytest.approx(np.linalg.norm(g), rel=1e-12)
    assert rows["0"]["act_mean"] == pytest.approx(conv_out.mean(), rel=1e-10)
    assert rows["0"]["act_std"] == pytest.approx(conv_out.std(), rel=1e-10)
    assert rows["4"]["act_grad_norm"] == pytest.approx(np.sqrt(4 * 5))          # d(sum)/d(logits) = 1
    assert rows["1"]["act_mean"] == pytest.approx(bn_shift, abs=1e-12)   # batch-normalised: each channel's mean is β
    steps, names, values = recorder.array("weight_grad_norm")
    assert steps.tolist() == [1] and names == ["0", "1", "4"] and values.shape == (1, 3)
    assert recorder.plot("act_grad_norm").get_title()
    recorder.close()
    with recorder.step(1):
        model(x)
    assert len(recorder.table()) == 3                                         # hooks are gone


def test_layer_curves_name_the_layers_a_log_scale_cannot_draw():
    values = np.array([[1.0, 0.0, 2.0, 0.0], [1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 0.0, 0.0], [np.nan, 1.0, np.inf, -1.0]])
    ax = plot_layer_curves(values, ["step 0", "step 1", "step 2", "step 3"], "weight_grad_norm")
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "step 0 (layers 2, 4 zero: not drawable on a log scale, marked x at the bottom)",
        "step 1",
        "step 2 (all zero: not drawable on a log scale, marked x at the bottom)",
        "step 3 (layers 1, 3, 4 negative or NaN/Inf: not drawable on a log scale, marked x at the bottom)"]
    assert floor_marks(ax) == [[2, 4], [1, 2, 3, 4], [1, 3, 4]]
    linear = plot_layer_curves(values[:1], ["step 0"], "act_mean")              # a linear axis draws zero
    assert [t.get_text() for t in linear.get_legend().get_texts()] == ["step 0"] and not floor_marks(linear)


def test_layer_recorder_rejects_unknown_layers_and_metrics():
    with pytest.raises(ValueError, match="Sequential has no module named nope"):
        LayerRecorder(small_model(), layers=["nope"])
    with pytest.raises(ValueError, match="no layer of Sequential matches"):
        LayerRecorder(small_model(), layers=lambda name, module: False)
    with pytest.raises(ValueError, match=r"every=0: record every N-th step needs N >= 1"):
        LayerRecorder(small_model(), every=0)
    with pytest.raises(ValueError, match="unknown metric"):
        LayerRecorder(small_model(), layers=nn.Conv2d).array("speed")


@pytest.mark.parametrize("tool", [LayerRecorder, SkipPathSplit])
def test_inspect_tools_refuse_what_is_not_a_module(tool):
    with pytest.raises(TypeError, match=rf"{tool.__name__}: expected a minires nn.Module \(the model or a layer\), "
                                        r"got int"):
        tool(3)


# ----------------------------------------------------------------------------- skip-path split
def test_skip_split_parts_add_up_and_the_branch_part_is_the_branch_vjp():
    mr.random.manual_seed(3)
    model = cifar_resnet(8, width=4).double()
    x = mr.tensor(np.random.default_rng(1).standard_normal((4, 3, 8, 8)))
    with SkipPathSplit(model) as split:
        loss = F.cross_entropy(model(x), np.array([0, 1, 2, 3]))
    for c in split.captures:
        c.x.retain_grad()
        c.branch_out.retain_grad()
    rows = split.backward(loss)
    assert [r["block"] for r in rows] == ["layer1.0", "layer2.0", "layer3.0"]
    for k, (capture, block) in enumerate(zip(split.captures, model.blocks())):
        identity, branch = split.parts(k)
        np.testing.assert_allclose(identity + branch, capture.x.grad.numpy(), rtol=1e-12, atol=1e-15)
        # independently: the branch's vector-Jacobian product of the gradient at F(x)
        x_again = capture.x.detach().requires_grad_()
        block.branch(x_again).backward(capture.branch_out.grad)
        np.testing.assert_allclose(branch, x_again.grad.numpy(), rtol=1e-10, atol=1e-14)
    # layer1.0 has an identity shortcut: its identity part is exactly the gradient at F(x) (dF+x/dx = I)
    np.testing.assert_array_equal(split.parts(0)[0], split.captures[0].branch_out.grad.numpy())


def test_skip_split_of_a_plain_net_has_no_identity_part():
    model = cifar_resnet(8, width=4, residual=False).double()
    x = mr.tensor(np.random.default_rng(1).standard_normal((2, 3, 8, 8)))
    with SkipPathSplit(model) as split:
        loss = model(x).sum()
    rows = split.backward(loss)
    assert all(r["identity_norm"] == 0.0 and r["branch_share"] == 1.0 for r in rows)


def floor_marks(ax):
    """x positions of the marks a log plot puts at the bottom of its axis for values it cannot draw."""
    return [list(line.get_xdata()) for line in ax.lines if line.get_transform() == ax.get_xaxis_transform()]


def test_skip_split_plot_says_a_plain_net_has_no_identity_path_to_draw():
    model = cifar_resnet(8, width=4, residual=False).double()
    x = mr.tensor(np.random.default_rng(1).standard_normal((2, 3, 8, 8)))
    with SkipPathSplit(model) as split:
        loss = model(x).sum()
    ax = plot_skip_split(split.backward(loss))
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "through the shortcut (all zero: not drawable on a log scale, marked x at the bottom)",
        "through the residual branch", "total (sum of both)"]
    assert floor_marks(ax) == [[1, 2, 3]]
    assert ax.get_ylim()[0] > 1e-10                      # nothing drawn at a stand-in 1e-30


def test_skip_split_measures_each_backward_afresh():
    mr.random.manual_seed(3)
    model = cifar_resnet(8, width=4).double()
    x = mr.tensor(np.random.default_rng(1).standard_normal((4, 3, 8, 8)))
    split = SkipPathSplit(model)
    rows = []
    for _ in range(2):                                   # two iterations of one loop, same weights and batch
        with split:
            loss = F.cross_entropy(model(x), np.array([0, 1, 2, 3]))
        rows.append(split.backward(loss))
    assert rows[1] == rows[0]                            # not the sum of both passes


def test_skip_split_refuses_a_loss_it_did_not_watch():
    model = cifar_resnet(8, width=4).double()
    x = mr.tensor(np.random.default_rng(1).standard_normal((2, 3, 8, 8)))
    split = SkipPathSplit(model)
    with pytest.raises(ValueError, match=r"no block ran inside `with SkipPathSplit\(model\)`"):
        split.backward(model(x).sum())
    with split:
        model(x)
    unwatched = model(x).sum()                           # a second forward pass, outside the `with`
    with pytest.raises(ValueError, match=r"the loss does not depend on the inputs captured for layer1\.0, "
                                         r"layer2\.0, layer3\.0"):
        split.backward(unwatched)


def test_graph_refuses_a_stepper_of_another_backward_pass():
    x = leaf((2,), 4)
    stepped, drawn = (x * 2.0).sum(), (x.relu() * 100.0).sum()
    stepper = BackwardStepper(stepped).finish()
    with pytest.raises(ValueError, match=r"to_dot: the stepper ran the backward pass of another tensor"):
        to_dot(drawn, stepper=stepper)           # its norms would land on this graph's ops by step number


@pytest.mark.parametrize("make, error, words", [
    (lambda: np.ones(3), TypeError, "expected a minires Tensor .*got ndarray"),
    (lambda: mr.tensor([1.0, 2.0]) * 2.0, ValueError, r"has no graph: it was computed under no_grad\(\)")])
def test_stepper_and_graph_refuse_what_has_no_graph(make, error, words):
    for tool in (BackwardStepper, to_dot):
        with pytest.raises(error, match=f"{tool.__name__}: .*{words}"):
            tool(make())


def test_layer_recorder_names_a_layer_that_does_not_exist_and_takes_one_name_as_a_string():
    model = cifar_resnet(8, width=4)
    with pytest.raises(ValueError, match=r"ResNet has no module named layer9\.0\.conv1 \(names as in a state "
                                         r"dict: conv1, bn1, relu, layer1"):
        LayerRecorder(model, layers=["layer1.0.conv1", "layer9.0.conv1"])
    assert LayerRecorder(model, layers="layer2.0.conv1").layer_names == ["layer2.0.conv1"]


def test_layer_recorder_says_when_it_has_recorded_nothing():
    model = small_model()
    recorder = LayerRecorder(model, steps=[5])
    with recorder.step(0):                                   # not a chosen step
        model(mr.tensor(np.ones((1, 2, 4, 4)))).sum().backward()
    for look in (recorder.array, recorder.plot):
        with pytest.raises(ValueError, match=r"nothing recorded yet.*steps \[5\]"):
            look("act_mean")


def test_a_record_says_none_not_nan_where_no_gradient_flows():
    x = leaf((3,), 5)
    _, mul = BackwardStepper((x * 2.0).sum()).finish().history    # 2.0 is a constant: no gradient goes to it
    assert mul.input_labels == ("leaf", "-") and mul.grads_in[1] is None
    assert mul.grads_in_norms == (pytest.approx(2.0 * np.sqrt(3)), None)
    assert mul.finite and [s["to"] for s in mul.row()["sends"]] == ["leaf"]


def test_update_ratio_of_a_zero_weight_is_infinite_not_a_huge_number():
    model = small_model()
    model[1].weight.data = np.zeros(3)                      # BN's γ at 0, as zero_init_residual leaves it
    model[1].bias.data = np.ones(3)                         # β > 0: the ReLU after it lets the gradient through
    recorder = LayerRecorder(model, layers=nn.BatchNorm2d, steps=[0])
    with recorder.step(0):
        out = model(mr.tensor(np.random.default_rng(0).standard_normal((4, 2, 4, 4))))
        (out * mr.tensor(np.random.default_rng(1).standard_normal(out.shape))).sum().backward()
        model[1].weight.data = model[1].weight.data - 0.1 * model[1].weight.grad.data
    (row,) = recorder.table()
    assert row["weight_norm"] == 0.0 and row["weight_grad_norm"] > 0
    assert row["update_ratio"] == np.inf                    # ||ΔW|| / ||W|| with ||W|| = 0


def test_a_layer_called_twice_keeps_the_last_calls_statistics_for_every_metric():
    class Twice(nn.Module):                                  # one Linear, applied twice (shared weights)
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 3).double()

        def forward(self, x):
            return self.fc(self.fc(x) * 10.0)

    model, x = Twice(), mr.tensor(np.random.default_rng(0).standard_normal((2, 3)))
    recorder = LayerRecorder(model, steps=[0])
    with recorder.step(0):
        out = model(x)
        out.sum().backward()
    (row,) = recorder.table()
    assert row["act_mean"] == pytest.approx(out.numpy().mean(), rel=1e-12)
    assert row["act_grad_norm"] == pytest.approx(np.sqrt(6))  # d(sum)/d(last output) = ones of shape (2, 3)


def test_graph_with_a_stepper_labels_parameters_with_that_pass_gradient_not_an_accumulated_grad():
    x = leaf((3,), 6)
    (x * 5.0).sum().backward()                               # an earlier pass: x.grad = 5, not zeroed
    loss = (x * 2.0).sum()
    stepper = BackwardStepper(loss).finish()                 # x.grad is now 5 + 2 = 7, as in PyTorch
    assert x.grad.numpy().tolist() == [7.0, 7.0, 7.0]
    dot = to_dot(loss, stepper=stepper, names={"x": x})
    assert f'"x\\n3\\n|grad| {2.0 * np.sqrt(3):.3e}"' in dot      # this pass sent 2 to each element


@pytest.mark.parametrize("names", [3, [leaf((2,))]])
def test_names_must_be_a_module_or_a_dict(names):
    loss = (leaf((2,)) * 2.0).sum()
    for tool in (BackwardStepper, to_dot):
        with pytest.raises(TypeError, match=r"names= must be a Module or a \{name: tensor\} dict, got "):
            tool(loss, names=names)


def test_layer_recorder_says_none_for_what_it_did_not_measure_and_keeps_nan_for_a_nan():
    model = small_model()
    recorder = LayerRecorder(model, layers=nn.Conv2d, steps=[0, 1])
    x = mr.tensor(np.random.default_rng(0).standard_normal((2, 2, 4, 4)))
    with recorder.step(0):
        model(x)                                              # a forward pass only: no gradient to measure
    with recorder.step(1):
        model(x * np.nan).sum().backward()                    # a real NaN, measured
    first, second = recorder.table()
    assert first["act_grad_norm"] is None and first["weight_grad_norm"] is None
    assert first["update_ratio"] == 0.0 and first["weight_norm"] > 0   # measured: the weight did not move
    assert np.isnan(second["act_mean"]) and np.isnan(second["weight_grad_norm"])
    steps, _, values = recorder.array("weight_grad_norm")       # arrays (for plots) hold NaN for both
    assert steps.tolist() == [0, 1] and np.isnan(values).all()

"""The graph keeps only what backward needs: dropped intermediate tensors are freed, yet gradients,
hooks and the graph walk are unchanged."""
import gc
import weakref

import numpy as np

import minires as mr
import minires.functional as F


def chain(x):
    """exp(relu(x * 3)).sum(), returning the loss and a weak reference to the dropped ``x * 3``."""
    scaled = x * 3.0
    dropped = weakref.ref(scaled)
    loss = F.exp(F.relu(scaled)).sum()
    return loss, dropped


def test_an_intermediate_the_program_dropped_is_freed_and_backward_is_still_right():
    x = mr.tensor(np.array([-1.0, 0.5, 2.0]), requires_grad=True)
    loss, dropped = chain(x)
    gc.collect()
    assert dropped() is None  # neither the graph nor the ctx of relu (which keeps its output) holds it
    loss.backward()
    expected = np.where(x.numpy() > 0, 3 * np.exp(3 * x.numpy()), 0.0)
    np.testing.assert_allclose(x.grad.numpy(), expected, rtol=1e-12)


def test_the_graph_walk_sees_a_stand_in_of_the_right_shape():
    x = mr.tensor(np.ones((2, 3)), requires_grad=True)
    loss, _ = chain(x)
    gc.collect()
    relu_node = loss.grad_fn.inputs[0].grad_fn.inputs[0].grad_fn   # sum <- exp <- relu
    (stand_in,) = relu_node.inputs
    assert relu_node.name == "ReLU"
    assert stand_in.shape == (2, 3) and stand_in.dtype == x.dtype
    assert stand_in.grad_fn.name == "Mul" and relu_node.inputs[0] is stand_in  # one stand-in per node


def test_a_hook_on_a_tensor_the_program_dropped_still_runs():
    x = mr.tensor(np.array([1.0, 2.0]), requires_grad=True)
    seen = []
    scaled = x * 3.0
    scaled.register_hook(lambda g: seen.append(g.numpy().copy()))
    loss = (scaled * scaled).sum()
    del scaled
    gc.collect()
    loss.backward()
    np.testing.assert_allclose(seen[0], 2 * 3 * np.array([1.0, 2.0]))


def test_a_training_step_leaves_nothing_for_the_garbage_collector():
    """Every node, context and stand-in of a step is freed by reference counting when the step ends: a
    stand-in points at its node, so the node drops it after its backward (else each step left a few
    hundred objects in reference loops, freed only by the collector's passes)."""
    from minires import models, optim
    model = models.cifar_resnet(8, width=2)
    optimizer = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x, y = mr.tensor(np.random.default_rng(0).standard_normal((4, 3, 8, 8)), dtype="float32"), np.array([0, 1, 2, 3])

    def step():
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()

    step()
    gc.collect()
    gc.disable()
    try:
        step()
        assert gc.collect() == 0
    finally:
        gc.enable()


def test_with_retain_graph_the_stand_ins_stay_for_the_second_backward():
    x = mr.tensor(np.array([-1.0, 0.5, 2.0]), requires_grad=True)
    loss, _ = chain(x)
    gc.collect()
    loss.backward(retain_graph=True)
    first = x.grad.numpy().copy()
    loss.backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * first, rtol=1e-12)


def test_backward_builds_no_stand_ins_but_a_step_shows_one_when_asked(monkeypatch):
    """The engine walks the nodes' edges, so ``backward()`` makes no stand-in for the dropped ``x * 3``
    (each one costs a few microseconds a node); the steps of :func:`~minires.autograd.backward_steps`
    still show it as the node's tensor, with its shape, when read."""
    from minires.autograd import Node, backward_steps
    built = []
    output = Node.output
    monkeypatch.setattr(Node, "output", lambda node: built.append(node.name) or output(node))
    x = mr.tensor(np.array([-1.0, 0.5, 2.0]), requires_grad=True)
    loss, dropped = chain(x)
    gc.collect()
    assert dropped() is None
    loss.backward(retain_graph=True)
    assert built == []
    steps = {step.node.name: step for step in backward_steps(loss)}
    assert built == []
    assert steps["Mul"].tensor.shape == (3,) and steps["Mul"].tensor.grad_fn is steps["Mul"].node
    assert built == ["Mul"]

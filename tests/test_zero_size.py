"""Zero-size batches through every op and layer of the nets, forward and backward, as PyTorch does them.

Each case runs the op in minires and in PyTorch (the ``torch_oracle``) on a batch of 0 images and
compares the output (shape and values; PyTorch's mean cross-entropy of nothing is nan) and every
input's gradient (PyTorch: the gradient of a weight over no images is zero, not missing).
"""
import numpy as np
import pytest
from test_models import check_parity, torch_resnet

import minires as mr
from minires import functional as F
from minires import models, nn

RNG = np.random.default_rng(0)
X = np.zeros((0, 4, 6, 6))
W = RNG.normal(size=(5, 4, 3, 3))
B = RNG.normal(size=5)


def _compare(torch, ours_fn, torch_fn, *arrays):
    ours_in = [mr.tensor(a, requires_grad=True) for a in arrays]
    theirs_in = [torch.tensor(a, requires_grad=True) for a in arrays]
    ours, theirs = ours_fn(*ours_in), torch_fn(*theirs_in)
    assert ours.shape == tuple(theirs.shape)
    np.testing.assert_array_equal(ours.numpy(), theirs.detach().numpy())    # nan == nan here
    (ours if ours.size == 1 else ours.sum()).backward()
    (theirs if theirs.numel() == 1 else theirs.sum()).backward()
    for a, b in zip(ours_in, theirs_in):
        assert a.grad is not None and a.grad.shape == tuple(b.grad.shape)
        np.testing.assert_array_equal(a.grad.numpy(), b.grad.numpy())


def test_conv2d(torch_oracle):
    tf = torch_oracle.nn.functional
    _compare(torch_oracle, lambda x, w, b: F.conv2d(x, w, b, padding=1), lambda x, w, b: tf.conv2d(x, w, b, padding=1),
             X, W, B)
    _compare(torch_oracle, lambda x, w: F.conv2d(x, w, stride=2, padding=1),
             lambda x, w: tf.conv2d(x, w, stride=2, padding=1), X, W)


def test_linear_relu_add_flatten(torch_oracle):
    tf, rows = torch_oracle.nn.functional, np.zeros((0, 4))
    _compare(torch_oracle, lambda x, w, b: F.linear(x, w, b), tf.linear, rows, RNG.normal(size=(3, 4)), RNG.normal(size=3))
    _compare(torch_oracle, F.relu, tf.relu, X)
    _compare(torch_oracle, lambda a, b: a + b, lambda a, b: a + b, X, X)
    _compare(torch_oracle, lambda x: x.flatten(1), lambda x: x.flatten(1), X)


def test_pools(torch_oracle):
    tf = torch_oracle.nn.functional
    _compare(torch_oracle, lambda x: F.max_pool2d(x, 2), lambda x: tf.max_pool2d(x, 2), X)
    _compare(torch_oracle, lambda x: F.avg_pool2d(x, 2), lambda x: tf.avg_pool2d(x, 2), X)
    _compare(torch_oracle, lambda x: F.adaptive_avg_pool2d(x, 1), lambda x: tf.adaptive_avg_pool2d(x, 1), X)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")   # NumPy's "mean of empty slice": the nan is the answer
def test_cross_entropy_of_no_examples_is_nan(torch_oracle):
    labels = np.zeros(0, np.int64)
    _compare(torch_oracle, lambda z: F.cross_entropy(z, labels),
             lambda z: torch_oracle.nn.functional.cross_entropy(z, torch_oracle.from_numpy(labels)), np.zeros((0, 10)))


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_batchnorm_module(torch_oracle, training):
    ours, theirs = nn.BatchNorm2d(4).double(), torch_oracle.nn.BatchNorm2d(4).double()
    ours.train(training)
    theirs.train(training)
    x = mr.tensor(X, requires_grad=True)
    tx = torch_oracle.tensor(X, requires_grad=True)
    y, ty = ours(x), theirs(tx)
    assert y.shape == tuple(ty.shape) == X.shape
    y.sum().backward()
    ty.sum().backward()
    for name, p in ours.named_parameters():
        np.testing.assert_array_equal(p.grad.numpy(), dict(theirs.named_parameters())[name].grad.numpy())
    for key, value in ours.state_dict().items():      # running statistics untouched; the counter counts
        np.testing.assert_array_equal(value, theirs.state_dict()[key].numpy(), err_msg=key)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_a_whole_resnet20_on_a_batch_of_no_images(torch_oracle):
    model = models.resnet20()
    reference = torch_resnet(torch_oracle, "basic", (3, 3, 3), (16, 32, 64), shortcut="A")
    check_parity(torch_oracle, model, reference, (0, 3, 32, 32))
    assert all(p.grad is not None and not p.grad.numpy().any() for p in model.parameters())

"""Anomaly mode finds where a NaN/Inf started: the data, a parameter, a forward op, or a backward op.

Each test plants one fault and checks that the message names the origin (not the op that merely
passed the NaN on), the module path, the shapes, and the source line of the forward pass.
"""
import numpy as np
import pytest

import minires as mr
from minires import nn
from minires.models.resnet import cifar_resnet

THIS_FILE = __file__


def line_of(marker: str) -> int:
    """The line number in this file of the line that holds ``marker`` (a comment on a planted fault)."""
    with open(THIS_FILE) as f:
        hits = [k for k, line in enumerate(f, 1) if marker in line and "line_of(" not in line]
    assert len(hits) == 1, marker
    return hits[0]


def small_resnet():
    mr.random.manual_seed(0)
    return cifar_resnet(8, width=4).double()


def batch(nan_at=None):
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8))
    if nan_at is not None:
        x[nan_at] = np.nan
    return mr.tensor(x)


class Head(nn.Module):
    """A student's head with a planted fault in its forward."""

    def __init__(self, fault):
        super().__init__()
        self.fc, self.fault = nn.Linear(10, 3).double(), fault

    def forward(self, h):
        h = self.fc(h)
        if self.fault == "divide":
            h = h / 0.0                               # planted: division by zero
        if self.fault == "sqrt":
            h = (h * 0.0).sqrt()                      # planted: sqrt at 0
        return h


class Net(nn.Module):
    def __init__(self, fault=None):
        super().__init__()
        self.body, self.head = small_resnet(), Head(fault)

    def forward(self, x):
        return self.head(self.body(x))


def anomaly_message(run) -> str:
    with mr.detect_anomaly(), np.errstate(all="ignore"), pytest.raises(FloatingPointError) as caught:
        run()
    return str(caught.value)


def test_a_nan_in_the_input_is_blamed_on_the_data_not_on_the_first_conv():
    model = small_resnet()
    message = anomaly_message(lambda: model(batch(nan_at=(1, 2, 3, 4))))  # planted: NaN in the input
    assert message.startswith("anomaly in the forward pass: the NaN/Inf came in with the data, not from an op.")
    assert ("reached Conv2d in module `conv1` as its input 0 (shape (2, 3, 8, 8), 1 NaN and 0 Inf among 384 values)"
            in message)
    assert "produced NaN" not in message and "turned finite inputs" not in message
    # the forward line is the model's `x = self.conv1(x)`; the user's own line is the call of the model
    assert "minires/models/resnet.py:" in message and "x = self.conv1(x)" in message
    assert f"called from:  {THIS_FILE}:{line_of('# planted: NaN in the input')}" in message


def test_a_nan_in_a_weight_is_blamed_on_that_parameter_by_its_state_dict_name():
    model = small_resnet()
    model.layer2[0].conv2.weight.data[3, 1, 0, 2] = np.nan
    message = anomaly_message(lambda: model(batch()))
    assert "the NaN/Inf came from parameter `layer2.0.conv2.weight`, not from an op." in message
    assert "reached Conv2d in module `layer2.0.conv2` as its input 1 (shape (8, 8, 3, 3), 1 NaN and 0 Inf" in message
    assert "self.conv2(" in message                      # BasicBlock.branch's line that runs conv2


def test_a_division_by_zero_in_a_users_forward_is_blamed_on_that_line():
    net = Net(fault="divide")
    message = anomaly_message(lambda: net(batch()))
    assert message.startswith("anomaly in the forward pass: Div.forward in module `head` turned finite inputs "
                              "into 0 NaN and 6 Inf among 6 values.")
    assert "op: Div, inputs (2, 3) float64, () float64 -> output (2, 3)" in message
    assert f"forward line: {THIS_FILE}:{line_of('# planted: division by zero')}, in forward" in message
    assert "h = h / 0.0" in message


def test_an_infinite_gradient_of_a_finite_forward_is_blamed_on_the_backward_of_its_op():
    net = Net(fault="sqrt")

    def forward_and_backward():
        out = net(batch())
        assert np.isfinite(out.numpy()).all()           # the forward pass is fine: sqrt(0) = 0
        out.sum().backward()

    message = anomaly_message(forward_and_backward)
    assert message.startswith("anomaly in the backward pass: Sqrt.backward in module `head` turned a finite "
                              "incoming gradient (shape (2, 3)) into 0 NaN and 6 Inf among 6 values in the "
                              "gradient for its input 0 (shape (2, 3)).")
    assert f"forward line: {THIS_FILE}:{line_of('# planted: sqrt at 0')}, in forward" in message
    assert "h = (h * 0.0).sqrt()" in message


def test_an_infinite_gradient_in_a_double_backward_is_blamed_on_the_backward_not_the_forward():
    net = Net(fault="sqrt")

    def forward_and_double_backward():
        out = net(batch())
        mr.autograd.grad(out.sum(), [net.head.fc.weight], create_graph=True)

    message = anomaly_message(forward_and_double_backward)
    assert message.startswith("anomaly in the backward pass (create_graph=True): while computing the gradient "
                              "of Sqrt in module `head`, its differentiable backward ran ")
    assert "which turned finite values into 0 NaN and 6 Inf among 6 values" in message
    assert "forward pass:" not in message
    assert f"forward line: {THIS_FILE}:{line_of('# planted: sqrt at 0')}, in forward" in message


def test_a_backward_outside_anomaly_forward_says_how_to_get_the_line():
    out = Net(fault="sqrt")(batch())                     # forward without anomaly mode: no line recorded
    message = anomaly_message(lambda: out.sum().backward())
    assert "Sqrt.backward in module `head`" in message
    assert "not recorded (run the forward pass inside detect_anomaly() too" in message


def test_a_non_finite_seed_gradient_is_blamed_on_the_caller():
    x = mr.tensor([1.0, 2.0], dtype="float64", requires_grad=True)
    message = anomaly_message(lambda: (x * 2.0).backward(grad=np.array([np.inf, 1.0])))
    assert "the gradient arriving at the output of Mul outside any module (shape (2,)) already holds 0 NaN and " \
           "1 Inf among 2 values" in message and "backward(grad=...)" in message


def test_forward_stacks_are_recorded_only_in_anomaly_mode():
    x = mr.tensor([1.0], dtype="float64", requires_grad=True)
    assert (x * 2.0).grad_fn.trace is None
    with mr.detect_anomaly():
        traced = (x * 2.0).grad_fn.trace
    assert traced[0][2] == "__init__" and any(frame[0] == THIS_FILE for frame in traced)


def test_a_nan_in_a_running_statistic_is_blamed_on_that_buffer_not_on_batch_norm():
    model = small_resnet().eval()                        # eval: BN normalises with its running statistics
    model.layer1[0].bn1.running_var.data[2] = np.nan     # passed to the op by keyword, not by position
    message = anomaly_message(lambda: model(batch()))
    assert "the NaN/Inf came from buffer `layer1.0.bn1.running_var`, not from an op." in message
    assert ("reached BatchNormEval in module `layer1.0.bn1` as its input `running_var` (shape (4,), 1 NaN and "
            "0 Inf among 4 values)") in message
    assert "turned finite inputs" not in message


def test_a_nan_made_in_a_forward_pass_outside_anomaly_mode_is_not_blamed_on_a_backward():
    model = small_resnet()
    loss = model(batch(nan_at=(0, 1, 2, 3))).sum()      # forward without anomaly mode: fc's input holds NaN
    message = anomaly_message(lambda: loss.backward())
    assert message.startswith("anomaly in the backward pass: the values that Linear in module `fc` saved in its "
                              "forward pass hold NaN/Inf (saved value 0, shape (2, 16): 32 NaN and 0 Inf among 32 "
                              "values), so its backward carried them into the gradient for its input 1 (160 NaN")
    assert "derivative is infinite" not in message and "turned a finite incoming gradient" not in message
    assert "run the forward pass inside detect_anomaly() to find the op or the data that made it" in message


def poison(grad):
    return np.full(grad.shape, np.nan)                  # planted: a hook that makes the gradient NaN


def test_a_hook_that_makes_a_parameters_gradient_nan_is_named():
    model = small_resnet()
    model.fc.weight.register_hook(poison)               # on a leaf: no op's backward ever sees its result
    loss = model(batch()).sum()
    message = anomaly_message(lambda: loss.backward())
    assert message.startswith("anomaly in the backward pass: hook poison on a leaf tensor of shape (10, 16) turned "
                              "a finite gradient into 160 NaN and 0 Inf among 160 values.")


def divide_by_zero(grad):
    return grad / (grad * 0.0).sum()                    # planted: a hook whose own op divides by zero


def test_an_op_run_by_a_hook_is_placed_in_the_backward_pass_not_the_forward():
    x = mr.tensor([1.0, 2.0], dtype="float64", requires_grad=True)
    y = x * 3.0
    y.register_hook(divide_by_zero)
    message = anomaly_message(lambda: y.sum().backward())
    assert message.startswith("anomaly in the backward pass, in hook divide_by_zero: Div.forward outside any module "
                              "turned finite inputs into")
    assert f"forward line: {THIS_FILE}:{line_of('# planted: a hook whose own op')}" in message

"""gradcheck itself must catch wrong gradients (a check that cannot fail checks nothing)."""
import numpy as np
import pytest

import minires as mr
from minires.autograd import Function


class WrongSquare(Function):
    """y = x^2 with a planted bug: the backward forgets the factor 2 on the last element."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        grad = 2 * x * g
        grad.reshape(-1)[-1] /= 2
        return grad


def test_full_mode_names_input_element_and_values():
    x = mr.tensor(np.array([[1.0, 2.0], [3.0, 4.0]]), requires_grad=True)
    with pytest.raises(mr.GradcheckError) as info:
        mr.gradcheck(WrongSquare.apply, [x], mode="full")
    report = str(info.value)
    assert "input 0" in report and "d output(1, 1) / d input(1, 1)" in report
    assert "analytic 4" in report and "numerical 8" in report


def test_directional_mode_catches_the_same_bug():
    x = mr.tensor(np.random.default_rng(0).uniform(1, 2, (30, 30)), requires_grad=True)
    with pytest.raises(mr.GradcheckError, match="random direction"):
        mr.gradcheck(WrongSquare.apply, [x], mode="directional")


def test_auto_mode_switches_to_directional_for_large_inputs_and_passes_correct_ops():
    x = mr.tensor(np.random.default_rng(1).standard_normal((50, 40)), requires_grad=True)
    assert mr.gradcheck(lambda a: (a * a).sum(axis=0), [x])


def test_requires_float64_and_something_to_check():
    with pytest.raises(TypeError, match="float64"):
        mr.gradcheck(lambda a: a * a, [mr.tensor([1.0], requires_grad=True)])
    with pytest.raises(ValueError, match="nothing to check"):
        mr.gradcheck(lambda a: a * a, [mr.tensor([1.0], dtype="float64")])


def test_inputs_are_restored_after_checking():
    data = np.array([0.5, -1.5])
    x = mr.tensor(data, requires_grad=True)
    mr.gradcheck(lambda a: a.exp(), [x], mode="full")
    mr.gradcheck(lambda a: a.exp(), [x], mode="directional")
    np.testing.assert_array_equal(x.numpy(), data)
    assert x.grad is None


class NaNSquare(Function):
    """y = x^2 with a planted bug: the backward gives NaN."""

    @staticmethod
    def forward(ctx, x):
        return x * x

    @staticmethod
    def backward(ctx, g):
        return g * np.nan


def test_a_nan_gradient_is_counted_among_the_entries_out_of_tolerance():
    """A NaN analytic gradient fails the check, and the report counts it (not "0 of 4 entries")."""
    x = mr.tensor(np.array([1.0, 2.0]), requires_grad=True)
    with pytest.raises(mr.GradcheckError, match="analytic nan") as info:
        mr.gradcheck(NaNSquare.apply, [x], mode="full")
    assert "4 of 4 entries out of tolerance" in str(info.value)


def test_the_gradcheck_command_reports_an_op_that_raises_and_checks_the_rest(monkeypatch, capsys):
    """A broken kernel or install stopped the table at that op, unnamed, and left the later ops unchecked."""
    from minires import selfcheck
    from minires.cli import main

    def broken(*args, **kwargs):
        raise RuntimeError("kernel failed to compile")

    monkeypatch.setattr(selfcheck.F, "max_pool2d", broken)
    assert main(["gradcheck"]) == 1
    lines = capsys.readouterr().out.splitlines()
    failed = next(i for i, line in enumerate(lines) if line.startswith("max_pool2d/avg_pool2d"))
    assert "FAIL" in lines[failed] and "raised RuntimeError: kernel failed to compile" in lines[failed + 1]
    assert lines[failed + 2].startswith("cross_entropy") and "PASS" in lines[failed + 2]
    assert lines[-1] == "1 failed"

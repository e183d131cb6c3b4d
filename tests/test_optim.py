"""SGD and the learning-rate schedules against torch.optim (float64), and against the paper's numbers."""
import numpy as np
import pytest

import minires as mr
from minires import optim

SETTINGS = [
    dict(lr=0.1),
    dict(lr=0.1, momentum=0.9),
    dict(lr=0.05, momentum=0.9, weight_decay=1e-4),
    dict(lr=0.1, momentum=0.9, weight_decay=5e-4, nesterov=True),
    dict(lr=0.02, momentum=0.8, dampening=0.3, weight_decay=1e-3),
]


def _problem(seed):
    """Two parameters and a few steps' worth of fixed gradients (float64)."""
    rng = np.random.default_rng(seed)
    weights = [rng.normal(size=(4, 3)), rng.normal(size=(3,))]
    grads = [[rng.normal(size=w.shape) for w in weights] for _ in range(5)]
    return weights, grads


def _run_minires(settings, weights, grads, skip_second_at=None):
    params = [mr.tensor(w, requires_grad=True) for w in weights]
    opt = optim.SGD(params, **settings)
    for t, step_grads in enumerate(grads):
        opt.zero_grad()
        for i, (p, g) in enumerate(zip(params, step_grads)):
            if not (i == 1 and t == skip_second_at):
                p.grad = mr.tensor(g)
        opt.step()
    return [p.numpy() for p in params]


@pytest.mark.parametrize("settings", SETTINGS, ids=lambda s: ",".join(f"{k}={v}" for k, v in s.items()))
def test_sgd_matches_torch(torch_oracle, settings):
    torch = torch_oracle
    weights, grads = _problem(0)
    tparams = [torch.tensor(w, requires_grad=True) for w in weights]
    topt = torch.optim.SGD(tparams, **settings)
    for t, step_grads in enumerate(grads):
        topt.zero_grad()
        for i, (p, g) in enumerate(zip(tparams, step_grads)):
            if not (i == 1 and t == 2):  # a parameter without a gradient is left alone
                p.grad = torch.tensor(g)
        topt.step()
    ours = _run_minires(settings, weights, grads, skip_second_at=2)
    for a, b in zip(ours, tparams):
        np.testing.assert_allclose(a, b.detach().numpy(), rtol=1e-14, atol=1e-15)


def test_sgd_positional_arguments_mean_what_they_mean_in_torch(torch_oracle):
    """``SGD(params, lr, momentum, dampening, weight_decay, nesterov)``: a call copied from PyTorch with
    positional settings gets the same update (here dampening 0 and weight decay 5e-4)."""
    torch = torch_oracle
    weights, grads = _problem(1)
    ours = [mr.tensor(w, requires_grad=True) for w in weights]
    theirs = [torch.tensor(w, requires_grad=True) for w in weights]
    opt, topt = optim.SGD(ours, 0.1, 0.9, 0.0, 5e-4), torch.optim.SGD(theirs, 0.1, 0.9, 0.0, 5e-4)
    for step_grads in grads:
        for p, t, g in zip(ours, theirs, step_grads):
            p.grad, t.grad = mr.tensor(g), torch.tensor(g)
        opt.step()
        topt.step()
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a.numpy(), b.detach().numpy(), rtol=1e-14, atol=1e-15)


def test_sgd_first_step_is_plain_gradient_step():
    """By hand: p - lr * (g + wd p) on step one, whatever the momentum."""
    w, g = np.array([1.0, -2.0]), np.array([0.5, 0.25])
    p = mr.tensor(w, requires_grad=True)
    p.grad = mr.tensor(g)
    optim.SGD([p], lr=0.1, momentum=0.9, weight_decay=0.01).step()
    np.testing.assert_allclose(p.numpy(), w - 0.1 * (g + 0.01 * w), rtol=1e-15)


def test_sgd_state_dict_resumes_exactly():
    weights, grads = _problem(1)
    settings = dict(lr=0.1, momentum=0.9, weight_decay=1e-4, nesterov=True)
    straight = _run_minires(settings, weights, grads)

    params = [mr.tensor(w, requires_grad=True) for w in weights]
    first = optim.SGD(params, **settings)
    for step_grads in grads[:3]:
        for p, g in zip(params, step_grads):
            p.grad = mr.tensor(g)
        first.step()
    saved = first.state_dict()
    resumed_params = [mr.tensor(p.numpy(), requires_grad=True) for p in params]
    second = optim.SGD(resumed_params, lr=1.0)  # settings come from the state dict
    second.load_state_dict(saved)
    for step_grads in grads[3:]:
        for p, g in zip(resumed_params, step_grads):
            p.grad = mr.tensor(g)
        second.step()
    for a, b in zip(straight, resumed_params):
        np.testing.assert_array_equal(a, b.numpy())


def test_sgd_rejects_bad_settings():
    p = mr.tensor([1.0], requires_grad=True)
    with pytest.raises(ValueError, match="Nesterov"):
        optim.SGD([p], lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="lr"):
        optim.SGD([p], lr=-1)
    with pytest.raises(TypeError, match="requires_grad"):
        optim.SGD([mr.tensor([1.0])], lr=0.1)
    with pytest.raises(ValueError, match="empty"):
        optim.SGD([], lr=0.1)


def test_sgd_over_a_frozen_parameter_says_which_and_how_to_leave_it_out():
    model = mr.nn.Linear(3, 2).requires_grad_(False)
    with pytest.raises(TypeError, match=r"a parameter of shape \(2, 3\) has requires_grad=False.*if p.requires_grad"):
        optim.SGD(model.parameters(), lr=0.1)


def _lrs(scheduler, steps):
    out = []
    for _ in range(steps):
        out.append(scheduler.get_last_lr()[0])
        scheduler.step()
    return out


@pytest.mark.filterwarnings("ignore:Detected call of")  # torch: no optimizer.step() in a schedule-only test
def test_multistep_matches_torch(torch_oracle):
    torch = torch_oracle
    tp = torch.zeros(1, requires_grad=True)
    topt = torch.optim.SGD([tp], lr=0.1)
    expected = _lrs(torch.optim.lr_scheduler.MultiStepLR(topt, milestones=[3, 7, 7, 11], gamma=0.2), 15)
    p = mr.tensor([0.0], requires_grad=True)
    ours = _lrs(optim.MultiStepLR(optim.SGD([p], lr=0.1), milestones=[3, 7, 7, 11], gamma=0.2), 15)
    np.testing.assert_allclose(ours, expected, rtol=1e-13)


def test_warmup_is_the_resnet110_recipe():
    """Paper sec. 4.2: lr 0.01 for the first ~400 iterations, then 0.1."""
    p = mr.tensor([0.0], requires_grad=True)
    sched = optim.MultiStepLR(optim.SGD([p], lr=0.1), milestones=[1000], warmup=400)
    lrs = _lrs(sched, 1001)
    assert lrs[0] == pytest.approx(0.01) and lrs[399] == pytest.approx(0.01)
    assert lrs[400] == pytest.approx(0.1) and lrs[999] == pytest.approx(0.1)
    assert lrs[1000] == pytest.approx(0.01)


def test_paper_schedule_milestones():
    """0.1, divided by 10 at 32k and 48k iterations (paper sec. 4.2)."""
    p = mr.tensor([0.0], requires_grad=True)
    sched = optim.paper_schedule(optim.SGD([p], lr=0.1, momentum=0.9, weight_decay=1e-4))
    rates = {}
    for t in range(64_000):
        if t in (0, 31_999, 32_000, 47_999, 48_000, 63_999):
            rates[t] = sched.get_last_lr()[0]
        sched.step()
    assert rates[0] == rates[31_999] == pytest.approx(0.1)
    assert rates[32_000] == rates[47_999] == pytest.approx(0.01)
    assert rates[48_000] == rates[63_999] == pytest.approx(0.001)
    short = optim.paper_schedule(optim.SGD([p], lr=0.1), iterations=640)
    assert short.milestones == [320, 480]


def test_scheduler_state_dict_round_trip():
    p = mr.tensor([0.0], requires_grad=True)
    a = optim.MultiStepLR(optim.SGD([p], lr=0.1), milestones=[2, 4], warmup=1)
    for _ in range(3):
        a.step()
    opt_b = optim.SGD([p], lr=0.1)
    b = optim.MultiStepLR(opt_b, milestones=[2, 4], warmup=1)
    b.load_state_dict(a.state_dict())
    assert opt_b.param_groups[0]["lr"] == a.get_last_lr()[0]
    assert _lrs(a, 4) == _lrs(b, 4)


class _CountingArray(np.ndarray):
    """An array that counts the NumPy operations (ufunc calls, each one launch on a GPU) run on it."""
    calls = 0

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        _CountingArray.calls += 1
        inputs = tuple(np.asarray(a) if isinstance(a, _CountingArray) else a for a in inputs)
        if "out" in kwargs:
            kwargs["out"] = tuple(np.asarray(a) if isinstance(a, _CountingArray) else a for a in kwargs["out"])
        result = getattr(ufunc, method)(*inputs, **kwargs)
        return result.view(_CountingArray) if isinstance(result, np.ndarray) else result


def _operations(update, *arrays, **settings) -> int:
    _CountingArray.calls = 0
    update(*(a.view(_CountingArray) for a in arrays), **settings)
    return _CountingArray.calls


def test_the_readable_updates_take_the_seven_operations_the_fused_kernels_replace():
    """"seven array operations" (minires.optim.sgd_update, kernels/optim.cu) for SGD with momentum and weight
    decay, and the seven of the running-statistics update (kernels/batchnorm.cu): counted here."""
    from pathlib import Path
    from minires.functional.norm import update_running_stats
    kernels = Path(__file__).parents[1] / "kernels"
    sgd = _operations(mr.optim.sgd_update, *np.ones((3, 4)), lr=0.1, momentum=0.9, weight_decay=1e-4,
                      dampening=0.0, nesterov=False)
    running = _operations(update_running_stats, *np.ones((4, 4)), momentum=0.1, m=8)
    words = {7: "seven"}
    assert sgd == running == 7
    assert f"instead of {words[sgd]} array operations" in " ".join(mr.optim.sgd_update.__doc__.split())
    assert f"takes {words[sgd]} array operations ({words[sgd]} launches)" in " ".join((kernels / "optim.cu").read_text().split())
    assert f"(one launch instead of {words[running]} array operations)" in (kernels / "batchnorm.cu").read_text()

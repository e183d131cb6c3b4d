r"""Stochastic gradient descent and learning-rate schedules (PyTorch's names and update rules).

SGD with momentum :math:`\mu`, dampening :math:`\tau`, weight decay :math:`\lambda` and learning
rate :math:`\eta`, for each parameter :math:`p` with gradient :math:`g` (``torch.optim.SGD``):

.. math::
    g \leftarrow g + \lambda p, \qquad
    b \leftarrow \begin{cases} g & \text{first step} \\ \mu b + (1 - \tau) g & \text{after} \end{cases}, \qquad
    d = \begin{cases} g + \mu b & \text{Nesterov} \\ b & \text{otherwise} \end{cases}, \qquad
    p \leftarrow p - \eta d.

The paper's CIFAR protocol (sec. 4.2): :math:`\eta = 0.1`, :math:`\mu = 0.9`,
:math:`\lambda = 10^{-4}`, batch 128, :math:`\eta` divided by 10 at 32k and 48k iterations, stop
at 64k — :func:`paper_schedule`. ResNet-110 first warms up at :math:`\eta = 0.01` for about 400
iterations (``paper_schedule(opt, warmup=400)``).

Schedulers follow PyTorch: construction sets the step-0 rate, ``step()`` advances by one (an
iteration or an epoch, as the caller decides), and ``state_dict()`` / ``load_state_dict()`` let a
checkpoint resume them.
"""
from __future__ import annotations

import bisect

import numpy as np

from . import backend
from .autograd import Tensor

PAPER_ITERATIONS = 64_000
PAPER_MILESTONES = (32_000, 48_000)


def sgd_update(param, grad, buffer, lr, momentum, weight_decay, dampening, nesterov):
    """One SGD update of the array ``param`` in place (the rule in the module docstring); returns the
    momentum buffer (``buffer`` updated in place, a new one on the first step, None without momentum).

    The readable definition, written with array operators, so it runs on NumPy and on CuPy arrays
    (the ``sgd`` implementations ``numpy`` and ``cupy-ops``); on a GPU the default is ``cupy``, the
    same update fused into one kernel (``kernels/optim.cu``) instead of seven array operations.
    """
    d = grad
    if weight_decay:
        d = d + weight_decay * param
    if momentum:
        if buffer is None:
            buffer = d.copy()
        else:
            buffer *= momentum
            buffer += (1 - dampening) * d
        d = d + momentum * buffer if nesterov else buffer
    param -= lr * d
    return buffer


backend.register("sgd", "numpy", device="cpu")(sgd_update)
backend.register("sgd", "cupy-ops", device="cuda")(sgd_update)


class SGD:
    """``SGD(params, lr, momentum=0, dampening=0, weight_decay=0, nesterov=False)``: the arguments in
    ``torch.optim.SGD``'s order, so positional calls copied from PyTorch mean the same here.

    ``params`` is an iterable of parameters, or of dicts ``{"params": [...], "lr": ...}`` (parameter
    groups with their own settings, as in PyTorch). Parameters whose ``.grad`` is None are skipped.
    """

    def __init__(self, params, lr: float, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False):
        self.defaults = dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                             nesterov=nesterov)
        self.param_groups = [self._make_group(g) for g in _as_groups(params)]
        self.state = {}  # parameter -> {"momentum_buffer": array}

    def _make_group(self, group: dict) -> dict:
        group = {**self.defaults, **group, "params": list(group["params"])}
        for p in group["params"]:
            if not isinstance(p, Tensor):
                raise TypeError(f"SGD: every parameter must be a Tensor with requires_grad=True, got {type(p).__name__}")
            if not p.requires_grad:
                raise TypeError(f"SGD: a parameter of shape {p.shape} has requires_grad=False, so it would never be "
                                "updated; pass only the trained ones, e.g. [p for p in model.parameters() if "
                                "p.requires_grad] (PyTorch accepts and silently skips it)")
        if group["lr"] < 0 or group["momentum"] < 0 or group["weight_decay"] < 0:
            raise ValueError(f"SGD: lr, momentum and weight_decay must be >= 0, got lr={group['lr']}, "
                             f"momentum={group['momentum']}, weight_decay={group['weight_decay']}")
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError("SGD: Nesterov momentum needs momentum > 0 and dampening = 0")
        return group

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Forget the gradients (``None``, or zeros with ``set_to_none=False``)."""
        for p in self._params():
            if set_to_none or p.grad is None:
                p.grad = None
            else:
                p.grad.data[...] = 0
                p.grad._bump_version()

    def step(self) -> None:
        """One update of every parameter that has a gradient (the rule in the module docstring), by
        the ``sgd`` implementation of the parameter's device (:func:`sgd_update` on the CPU)."""
        for group in self.param_groups:
            settings = (group["lr"], group["momentum"], group["weight_decay"], group["dampening"], group["nesterov"])
            for p in group["params"]:
                if p.grad is None:
                    continue
                update = backend.lookup("sgd", p.data)[1]
                buffer = update(p.data, p.grad.data, self.state.get(p, {}).get("momentum_buffer"), *settings)
                if buffer is not None:
                    self.state.setdefault(p, {})["momentum_buffer"] = buffer
                p._bump_version()

    def _params(self):
        return [p for group in self.param_groups for p in group["params"]]

    # -- checkpointing (PyTorch's layout: parameters are numbered in group order)
    def state_dict(self) -> dict:
        """``{"state": {index: {"momentum_buffer": ndarray}}, "param_groups": [{..., "params": [indices]}]}``."""
        index = {id(p): i for i, p in enumerate(self._params())}
        groups, start = [], 0
        for group in self.param_groups:
            settings = {k: v for k, v in group.items() if k != "params"}
            groups.append({**settings, "params": list(range(start, start + len(group["params"])))})
            start += len(group["params"])
        state = {index[id(p)]: {k: backend.to_device(v, "cpu").copy() for k, v in s.items()}
                 for p, s in self.state.items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict) -> None:
        params = self._params()
        groups = state_dict["param_groups"]
        sizes = [len(g["params"]) for g in groups]
        if sizes != [len(g["params"]) for g in self.param_groups]:
            raise ValueError(f"SGD.load_state_dict: the saved groups hold {sizes} parameters but this "
                             f"optimizer's hold {[len(g['params']) for g in self.param_groups]}; "
                             "build it over the same model")
        for group, saved in zip(self.param_groups, groups):
            group.update({k: v for k, v in saved.items() if k != "params"})
        self.state = {}
        for i, saved in state_dict["state"].items():
            p = params[int(i)]
            for name, value in saved.items():
                array = np.asarray(value)
                if array.shape != p.shape:
                    raise ValueError(f"SGD.load_state_dict: {name} of parameter {i} has shape {array.shape}, "
                                     f"the parameter {p.shape}")
                self.state.setdefault(p, {})[name] = backend.to_device(array.astype(p.dtype), p.device)

    def __repr__(self):
        return f"SGD({', '.join(f'{k}={v}' for k, v in self.defaults.items())})"


def _as_groups(params):
    params = list(params)
    if not params:
        raise ValueError("SGD: got an empty parameter list; pass model.parameters()")
    return params if isinstance(params[0], dict) else [{"params": params}]


# ----------------------------------------------------------------------------- schedules
class LRScheduler:
    """Base class: sets every group's ``lr`` to ``lr_at(t)`` at step ``t`` (``last_epoch`` in PyTorch)."""

    def __init__(self, optimizer, last_epoch: int = -1):
        self.optimizer = optimizer
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
        self.base_lrs = [group["initial_lr"] for group in optimizer.param_groups]
        self.last_epoch = last_epoch
        self.step()

    def lr_at(self, t: int, base_lr: float) -> float:
        raise NotImplementedError

    def step(self) -> None:
        self.last_epoch += 1
        self._apply()

    def _apply(self) -> None:
        for group, base in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = self.lr_at(self.last_epoch, base)

    def get_last_lr(self) -> list:
        return [group["lr"] for group in self.optimizer.param_groups]

    def state_dict(self) -> dict:
        return {k: v for k, v in vars(self).items() if k != "optimizer"}

    def load_state_dict(self, state: dict) -> None:
        self.__dict__.update(state)
        self._apply()


class MultiStepLR(LRScheduler):
    r"""Multiply the rate by ``gamma`` at each milestone: :math:`\eta_t = \eta_0\,\gamma^{\#\{m \le t\}}`.

    ``warmup`` > 0 adds the paper's ResNet-110 warm-up: for ``t < warmup`` the rate is further
    multiplied by ``warmup_factor`` (0.1: 0.01 instead of 0.1). Without warm-up this is exactly
    ``torch.optim.lr_scheduler.MultiStepLR``.
    """

    def __init__(self, optimizer, milestones, gamma: float = 0.1, last_epoch: int = -1,
                 warmup: int = 0, warmup_factor: float = 0.1):
        self.milestones = sorted(int(m) for m in milestones)
        self.gamma, self.warmup, self.warmup_factor = gamma, int(warmup), warmup_factor
        super().__init__(optimizer, last_epoch)

    def lr_at(self, t: int, base_lr: float) -> float:
        lr = base_lr * self.gamma ** bisect.bisect_right(self.milestones, t)
        return lr * self.warmup_factor if t < self.warmup else lr


def paper_schedule(optimizer, iterations: int = PAPER_ITERATIONS, warmup: int = 0) -> MultiStepLR:
    """The paper's CIFAR schedule, stepped once per *iteration*: the rate set on the optimizer (0.1)
    is divided by 10 at 50% and 75% of ``iterations`` (32k and 48k of 64k); training stops at
    ``iterations``. ``warmup=400`` adds the ResNet-110 warm-up at a tenth of the rate.
    A shorter ``iterations`` scales the milestones with it, for quick versions of the protocol.
    """
    milestones = [round(m * iterations / PAPER_ITERATIONS) for m in PAPER_MILESTONES]
    return MultiStepLR(optimizer, milestones, gamma=0.1, warmup=warmup)


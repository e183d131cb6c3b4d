"""minires: a from-scratch deep-learning framework for teaching residual networks.

Quick tour::

    import minires as mr
    x = mr.tensor([[1.0, 2.0]], requires_grad=True)
    y = (x * x).sum()
    y.backward()
    x.grad            # tensor([[2., 4.]])
"""
from . import backend, functional
from . import gpu  # registers the CUDA implementations; imports neither CuPy nor Numba
from . import cpu  # registers the fast CPU implementations (Numba kernels compile on first use)
from .autograd import (Function, Tensor, detect_anomaly, enable_grad, is_grad_enabled, no_grad,
                       tensor)
from .gradcheck import GradcheckError, gradcheck, gradgradcheck
from . import data, inspect, models, nn, optim
from .random import manual_seed
from .summary import summary

__version__ = "0.1.0"

"""Differentiable ops, one file per family. Each op is a ``Function`` subclass (CamelCase) whose
docstring states its forward and backward math, plus the lowercase function users call.

Also reachable as ``minires.nn.functional`` (PyTorch's spelling).
"""
from .conv import conv2d
from .elementwise import (abs, add, add_relu, clone, div, exp, log, maximum, mul, neg, pow, relu, sqrt, sub, to,
                          unbroadcast)
from .linear import linear, matmul
from .loss import cross_entropy, log_softmax, nll_loss, softmax
from .norm import batch_norm
from .pool import adaptive_avg_pool2d, avg_pool2d, global_avg_pool2d, max_pool2d
from .reduce import max, mean, sum, var
from .shape import cat, concatenate, flatten, getitem, pad, permute, reshape, transpose

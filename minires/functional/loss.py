r"""Softmax, log-softmax and the classification losses.

Everything goes through the log-sum-exp with the maximum taken out,

.. math::  \operatorname{lse}(z) = \log \sum_k e^{z_k} = M + \log \sum_k e^{z_k - M}, \qquad M = \max_k z_k,

so no exponent is ever positive: logits of 1000 neither overflow nor turn the loss into ``inf``.
"""
from __future__ import annotations

from .. import backend
from ..autograd import Function
from .elementwise import array_of


def _log_softmax_array(z, axis):
    r""":math:`z - \operatorname{lse}(z)` along ``axis``, computed stably (plain arrays)."""
    xp = backend.get_array_module(z)
    shifted = z - z.max(axis=axis, keepdims=True)
    shifted -= xp.log(xp.exp(shifted).sum(axis=axis, keepdims=True))
    return shifted


class LogSoftmax(Function):
    r"""Forward :math:`y_i = z_i - \operatorname{lse}(z)` along ``axis``.
    Backward :math:`\bar z_i = \bar y_i - p_i \sum_k \bar y_k` with :math:`p = e^{y}` (the softmax),
    since :math:`\partial y_i / \partial z_k = \delta_{ik} - p_k`.
    """

    @staticmethod
    def forward(ctx, z, axis=-1):
        y = _log_softmax_array(z, axis)
        ctx.axis = axis
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        xp = backend.get_array_module(y)
        return g - xp.exp(y) * g.sum(axis=ctx.axis, keepdims=True)

    @staticmethod
    def backward_graph(ctx, g):
        (y,) = ctx.saved_tensors   # the output, in the graph: p = exp(y) depends on z through this op
        return g - y.exp() * g.sum(axis=ctx.axis, keepdims=True)


class Softmax(Function):
    r"""Forward :math:`p_i = e^{z_i - \operatorname{lse}(z)}` along ``axis``.
    Backward :math:`\bar z_i = p_i \big(\bar p_i - \sum_k \bar p_k p_k\big)`, since
    :math:`\partial p_k / \partial z_i = p_k (\delta_{ik} - p_i)`.
    """

    @staticmethod
    def forward(ctx, z, axis=-1):
        p = backend.get_array_module(z).exp(_log_softmax_array(z, axis))
        ctx.axis = axis
        ctx.save_for_backward(p)
        return p

    @staticmethod
    def backward(ctx, g):
        (p,) = ctx.saved_tensors
        return p * (g - (g * p).sum(axis=ctx.axis, keepdims=True))

    backward_graph = backward


def _class_ids(op, scores, labels):
    """Validate (N, C) ``scores`` and N integer ``labels`` in [0, C); return the labels as an array."""
    if scores.ndim != 2:
        raise ValueError(f"{op}: expected scores of shape (N, num_classes), got shape {tuple(scores.shape)}; "
                         "flatten the extra axes first")
    if scores.dtype.kind != "f":
        raise TypeError(f"{op}: scores must be floating point, got {scores.dtype}; use .float()")
    xp = backend.get_array_module(scores)
    labels = xp.asarray(array_of(labels))
    if labels.dtype.kind not in "iu":
        raise TypeError(f"{op}: labels must be integer class ids, got dtype {labels.dtype}; "
                        "convert them with .astype(np.int64)")
    batch, classes = scores.shape
    if labels.shape != (batch,):
        raise ValueError(f"{op}: scores {tuple(scores.shape)} need {batch} labels of shape ({batch},), "
                         f"got labels of shape {tuple(labels.shape)}")
    bad = labels[(labels < 0) | (labels >= classes)]
    if bad.size:
        raise ValueError(f"{op}: label {int(bad[0])} is out of range for {classes} classes; "
                         f"labels must lie in [0, {classes - 1}] (there is no ignore_index: drop the examples "
                         "to ignore, e.g. PyTorch's -100, before the loss)")
    return labels


def _mean_negative_picked(log_p, labels):
    r""":math:`-\frac1N \sum_n` ``log_p[n, labels[n]]``, as a 0-d array."""
    xp = backend.get_array_module(log_p)
    return xp.asarray(-log_p[xp.arange(log_p.shape[0]), labels].mean())


def _subtract_one_hot(array, labels):
    """In place: ``array[n, labels[n]] -= 1`` for every row n (probabilities become ``p - onehot``)."""
    xp = backend.get_array_module(array)
    array[xp.arange(array.shape[0]), labels] -= 1


def _one_hot(like, labels, shape=None):
    """Zeros of ``shape`` (default ``like``'s) and ``like``'s dtype, with a 1 at ``[n, labels[n]]``."""
    xp = backend.get_array_module(like)
    one_hot = xp.zeros(like.shape if shape is None else shape, dtype=like.dtype)
    one_hot[xp.arange(one_hot.shape[0]), labels] = 1
    return one_hot


class CrossEntropy(Function):
    r"""Mean cross-entropy of logits :math:`z \in \mathbb{R}^{N \times C}` against class ids :math:`t`,
    fused with the log-softmax.

    Forward :math:`L = \frac1N \sum_n \big(\operatorname{lse}(z_n) - z_{n, t_n}\big)`.
    Backward :math:`\bar z_{n,k} = \frac{\bar L}{N}\big(p_{n,k} - [k = t_n]\big)`, with
    :math:`p_n = \operatorname{softmax}(z_n)`: the gradient of :math:`\operatorname{lse}` is the
    softmax, and the picked logit contributes the one-hot.
    """

    @staticmethod
    def forward(ctx, z, labels=None):
        log_p = _log_softmax_array(z, axis=1)
        ctx.labels = labels
        ctx.save_for_backward(log_p, z)
        return _mean_negative_picked(log_p, labels)

    @staticmethod
    def backward(ctx, g):
        log_p, _ = ctx.saved_tensors
        xp = backend.get_array_module(log_p)
        gz = xp.exp(log_p)
        _subtract_one_hot(gz, ctx.labels)
        gz *= g / log_p.shape[0]
        return gz

    @staticmethod
    def backward_graph(ctx, g):
        r"""The same formula on Tensors, with :math:`p = \operatorname{softmax}(z)` recomputed from the
        logits in the graph (its derivative is the softmax's), the one-hot a constant."""
        log_p, z = ctx.saved_tensors
        return (softmax(z, axis=1) - _one_hot(log_p.data, ctx.labels)) * (g / z.shape[0])


class NLLLoss(Function):
    r"""Mean negative log-likelihood of log-probabilities :math:`y \in \mathbb{R}^{N \times C}`.

    Forward :math:`L = -\frac1N \sum_n y_{n, t_n}`.
    Backward :math:`\bar y_{n,k} = -\frac{\bar L}{N} [k = t_n]`.
    """

    @staticmethod
    def forward(ctx, log_p, labels=None):
        ctx.labels, ctx.shape = labels, log_p.shape
        return _mean_negative_picked(log_p, labels)

    @staticmethod
    def backward(ctx, g):
        gy = backend.get_array_module(g).zeros(ctx.shape, dtype=g.dtype)
        _subtract_one_hot(gy, ctx.labels)
        gy *= g / ctx.shape[0]
        return gy

    @staticmethod
    def backward_graph(ctx, g):
        return (g / -ctx.shape[0]) * _one_hot(g.data, ctx.labels, ctx.shape)


def log_softmax(x, axis=-1):
    """Logarithm of the softmax along ``axis``, computed stably (``torch.nn.functional.log_softmax``)."""
    return LogSoftmax.apply(x, axis=axis)


def softmax(x, axis=-1):
    """Softmax along ``axis``, computed stably (``torch.nn.functional.softmax``)."""
    return Softmax.apply(x, axis=axis)


def cross_entropy(logits, labels):
    """Mean cross-entropy of (N, C) ``logits`` against N integer class ids ``labels`` (a Tensor, array
    or list), as ``torch.nn.functional.cross_entropy`` with its defaults, except that there is no
    ``ignore_index``: every label must lie in [0, C) (PyTorch skips labels of -100)."""
    labels = _class_ids("cross_entropy", array_of(logits), labels)
    return CrossEntropy.apply(logits, labels=labels)


def nll_loss(log_probs, labels):
    """Mean negative log-likelihood of (N, C) log-probabilities (e.g. from :func:`log_softmax`) against
    N integer class ids, as ``torch.nn.functional.nll_loss`` with its defaults, except that there is no
    ``ignore_index``: every label must lie in [0, C) (PyTorch skips labels of -100)."""
    labels = _class_ids("nll_loss", array_of(log_probs), labels)
    return NLLLoss.apply(log_probs, labels=labels)

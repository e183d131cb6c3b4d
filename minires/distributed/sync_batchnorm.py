r"""Synchronized batch normalization: every rank normalizes with the statistics of the *global* batch.

With per-rank BN (the default in data-parallel training) each rank normalizes its B examples with
their own mean and variance, so K ranks of batch B do not compute what one process with batch KB
computes. Synchronized BN closes that gap at the price of two small all-reduces per BN layer and
step (2C + 1 numbers forward, 2C backward), and makes data-parallel training reproduce
single-process training exactly. It matters most when B is small.

``convert_sync_batchnorm(model, comm)`` turns every BatchNorm layer of a model into a
:class:`SyncBatchNorm` (PyTorch's name and function), keeping its parameters and running statistics.
"""
from __future__ import annotations

from .. import backend
from ..autograd import Function
from ..functional.norm import (_array, _blend_into, _channel_sum, _channel_view, _check_batch_norm_args,
                               _values_per_channel, batch_norm, bump_running_versions)
from ..nn.layers import _BatchNorm


class SyncBatchNormTrain(Function):
    r"""Batch normalization in training mode over the union of all ranks' batches.

    Rank :math:`r` holds :math:`m_r` values :math:`x_i` of a channel; :math:`M = \sum_r m_r`.

    **Forward.** One all-reduce of the per-channel sum, sum of squares and count:

    .. math::
        S = \sum_r \sum_{i \in r} x_i, \qquad Q = \sum_r \sum_{i \in r} x_i^2, \qquad
        \mu = \frac{S}{M}, \qquad \sigma^2 = \frac{Q}{M} - \mu^2, \qquad s = (\sigma^2 + \epsilon)^{-1/2},

    then each rank normalizes its own values, :math:`\hat x_i = (x_i - \mu)\,s`,
    :math:`y_i = \gamma \hat x_i + \beta`. The running statistics get :math:`\mu` and the unbiased
    :math:`\tfrac{M}{M-1}\sigma^2`, identically on every rank. (:math:`Q/M - \mu^2` cancels digits
    when :math:`|\mu| \gg \sigma`; the statistics are combined in float64 to keep that harmless.)

    **Backward.** The closed form of :class:`minires.functional.norm.BatchNormTrain`, with its two sums
    taken over the global batch by a second all-reduce:

    .. math::
        \bar\beta = \sum_r \sum_{i \in r} \bar y_i, \qquad
        \bar\gamma = \sum_r \sum_{i \in r} \bar y_i \hat x_i, \qquad
        \bar x_j = \gamma s \Big(\bar y_j - \frac{\bar\beta}{M} - \hat x_j \frac{\bar\gamma}{M}\Big).

    Here :math:`\bar y` on rank :math:`r` is the gradient of that rank's own loss :math:`L_r`, and the
    training loss is the average :math:`L = \frac1K \sum_r L_r`; so :math:`\bar x` above is :math:`K`
    times :math:`\partial L / \partial x`, and so is every gradient upstream of it on this rank. The
    parameter gradients returned are the *local* sums :math:`\sum_{i \in r} \bar y_i` and
    :math:`\sum_{i \in r} \bar y_i \hat x_i` (again :math:`K` times rank :math:`r`'s share). The
    gradient all-reduce that averages every parameter's gradient over the ranks then divides by
    :math:`K` and sums the shares: exactly :math:`\partial L / \partial \theta`.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, *, comm, running_mean=None, running_var=None, momentum=0.1, eps=1e-5):
        xp = backend.get_array_module(x)
        channels = x.shape[1]
        local = [_channel_sum(x), _channel_sum(x, x), xp.asarray([_values_per_channel(x.shape)])]
        stats = comm.allreduce_sum(xp.concatenate([s.astype(xp.float64) for s in local]))
        count = stats[-1].astype(x.dtype)  # an array of x's dtype, so that dividing by it keeps that dtype
        mean64 = stats[:channels] / count
        var64 = xp.maximum(stats[channels:2 * channels] / count - mean64 * mean64, 0.0)
        mean, var = mean64.astype(x.dtype), var64.astype(x.dtype)
        invstd = 1 / xp.sqrt(var + eps)
        if running_mean is not None:
            _blend_into(running_mean, mean, momentum)
            _blend_into(running_var, var * (count / (count - 1)), momentum)
        ctx.comm, ctx.count = comm, count
        ctx.save_for_backward(x, weight, mean, invstd)
        return _affine(x - _channel_view(mean, x.ndim), invstd, weight, bias)

    @staticmethod
    def backward(ctx, gy):
        x, weight, mean, invstd = ctx.saved_tensors
        xp = backend.get_array_module(gy)
        channels, ndim = x.shape[1], x.ndim
        xhat = (x - _channel_view(mean, ndim)) * _channel_view(invstd, ndim)
        gbias, gweight = _channel_sum(gy), _channel_sum(gy, xhat)
        sums = ctx.comm.allreduce_sum(xp.concatenate([gbias, gweight]))
        gx = gy - _channel_view(sums[:channels] / ctx.count, ndim)
        gx -= xhat * _channel_view(sums[channels:] / ctx.count, ndim)
        gx *= _channel_view(invstd if weight is None else weight * invstd, ndim)
        return (gx if ctx.needs_input_grad[0] else None,
                gweight if ctx.needs_input_grad[1] else None,
                gbias if ctx.needs_input_grad[2] else None)


def _affine(centred, invstd, weight, bias):
    r""":math:`\gamma\,(x - \mu)\,s + \beta` per channel, in place on the centred input."""
    ndim = centred.ndim
    centred *= _channel_view(invstd if weight is None else weight * invstd, ndim)
    if bias is not None:
        centred += _channel_view(bias, ndim)
    return centred


def sync_batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1,
                    eps=1e-5, *, comm):
    r"""``minires.functional.batch_norm`` with training statistics taken over every rank of ``comm``.

    Same arguments and semantics; evaluation mode (running statistics, no communication) is plain
    ``batch_norm``.
    """
    if not training:
        return batch_norm(input, running_mean, running_var, weight, bias, training, momentum, eps)
    _check_batch_norm_args(_array(input), _array(running_mean), _array(running_var), weight, bias, training)
    out = SyncBatchNormTrain.apply(input, weight, bias, comm=comm, running_mean=_array(running_mean),
                                   running_var=_array(running_var), momentum=momentum, eps=eps)
    bump_running_versions(running_mean, running_var)
    return out



class SyncBatchNorm(_BatchNorm):
    """A BatchNorm layer (any of (N, C), (N, C, L), (N, C, H, W)) whose training statistics are global.

    Same parameters, buffers and state-dict names as ``BatchNorm1d``/``BatchNorm2d``, so checkpoints
    move freely between the two. Build it with :func:`convert_sync_batchnorm`.
    """

    ndims, layout = (2, 3, 4), "(N, C), (N, C, L) or (N, C, H, W)"

    def __init__(self, num_features: int, comm, **options):
        super().__init__(num_features, **options)
        self.comm = comm

    def _batch_norm(self, *args):
        return sync_batch_norm(*args, comm=self.comm)


def convert_sync_batchnorm(module, comm):
    """Replace every BatchNorm layer inside ``module`` by a :class:`SyncBatchNorm` over ``comm``, in place.

    The new layers hold the *same* parameter and buffer tensors, so an optimizer built before the call
    keeps working. Returns the module (the new layer, when ``module`` itself is a BatchNorm layer).
    """
    if isinstance(module, _BatchNorm) and not isinstance(module, SyncBatchNorm):
        return _synchronized(module, comm)
    for name, child in list(module.named_children()):
        setattr(module, name, convert_sync_batchnorm(child, comm))
    return module


def _synchronized(bn, comm):
    sync = SyncBatchNorm(bn.num_features, comm, eps=bn.eps, momentum=bn.momentum, affine=bn.affine,
                         track_running_stats=bn.track_running_stats)
    sync.weight, sync.bias = bn.weight, bn.bias
    for name, buffer in bn.named_buffers():
        setattr(sync, name, buffer)
    return sync.train(bn.training)

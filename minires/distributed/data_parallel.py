"""The three pieces of synchronous data-parallel SGD besides the communicator.

1. :func:`broadcast_state`: at the start, every rank takes rank 0's parameters and buffers, so all
   replicas start identical (and stay identical: they all apply the same averaged gradient).
2. :class:`DistributedSampler`: each rank reads only its share of every global batch.
3. :func:`allreduce_gradients`: after ``backward()``, every rank's gradients are replaced by their
   average over the ranks, with one all-reduce of one flat buffer (one call per step instead of one
   per parameter: a ResNet-110 has 330 parameter tensors, and each call pays the network's latency).
"""
from __future__ import annotations

import numpy as np

from .. import backend
from ..autograd import Tensor


def broadcast_state(module, comm, root: int = 0) -> None:
    """Overwrite every parameter and buffer of ``module`` with rank ``root``'s, in place."""
    for tensor in list(module.parameters()) + list(module.buffers()):
        comm.broadcast(tensor.data, root=root)


def average_buffers(module, comm) -> None:
    """Average the floating-point buffers (BN running statistics) over the ranks, in place.

    With per-rank BN each replica's running statistics follow its own shard; averaging them before
    evaluating or saving makes the replicas identical again (with synchronized BN they already are).
    """
    if comm.world_size == 1:
        return
    for tensor in module.buffers():
        if tensor.dtype.kind == "f":
            comm.allreduce_sum(tensor.data)
            tensor.data /= comm.world_size


def allreduce_gradients(parameters, comm) -> None:
    r"""Replace each parameter's ``.grad`` by its average over the ranks: :math:`g \leftarrow \frac1K\sum_r g_r`.

    All gradients travel in one flat buffer. A parameter without a gradient on some rank counts as a
    zero gradient there (and gets the average, like the others). Like PyTorch's DistributedDataParallel,
    it refuses parameters of which none requires a gradient.
    """
    if comm.world_size == 1:
        return
    params = [p for p in parameters if p.requires_grad]
    if not params:
        raise RuntimeError(f"allreduce_gradients: none of the parameters requires a gradient, so there is nothing "
                           f"to average over the {comm.world_size} ranks; set requires_grad=True on the parameters to train, "
                           "or leave out the all-reduce for a frozen model")
    xp = backend.get_array_module(params[0].data)
    flat = xp.concatenate([(xp.zeros_like(p.data) if p.grad is None else p.grad.data).ravel() for p in params])
    comm.allreduce_sum(flat)
    flat /= comm.world_size
    offset = 0
    for p in params:
        average = flat[offset:offset + p.size].reshape(p.shape).astype(p.dtype, copy=False)
        offset += p.size
        if p.grad is None:
            p.grad = Tensor._wrap(average.copy())
        else:
            p.grad.data[...] = average
            p.grad._bump_version()


class DistributedSampler:
    """The indices of one rank's share of every batch of a seeded shuffle (PyTorch's interface).

    Epoch ``e`` shuffles ``range(len(dataset))`` with a generator seeded by ``(seed, e)``, the same on
    every rank, and rank ``r`` of ``K`` takes positions ``r, r + K, r + 2K, ...``. A DataLoader that
    cuts this rank's indices into batches of ``B`` then gives, at step ``t``, this rank's part of the
    global batch ``order[tKB : (t+1)KB]``: the ``K`` ranks together see exactly the batch of ``KB``
    that a single process would see. With ``drop_last=True`` (for training) the last
    ``len(dataset) mod K`` indices of each order are left out, so that every rank has the same
    number of examples at every step; with ``drop_last=False`` (for evaluation) the shares cover the
    whole dataset and differ in length by at most one (PyTorch pads them with repeats instead).

    Call ``set_epoch(e)`` before each epoch (the DataLoader does, when given a sampler).
    """

    def __init__(self, dataset, num_replicas: int, rank: int, shuffle: bool = True, seed: int = 0,
                 drop_last: bool = True):
        if not 0 <= rank < num_replicas:
            raise ValueError(f"DistributedSampler: rank {rank} is not in range(num_replicas={num_replicas})")
        if len(dataset) < num_replicas:
            raise ValueError(f"DistributedSampler: {len(dataset)} examples cannot be shared among {num_replicas} "
                             "ranks; use fewer ranks or more data")
        self.dataset_size, self.num_replicas, self.rank = len(dataset), int(num_replicas), int(rank)
        self.shuffle, self.seed, self.drop_last, self.epoch = shuffle, int(seed), drop_last, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(range(self.rank, self._end(), self.num_replicas))

    def _end(self) -> int:
        """Where the shares stop: before the remainder with ``drop_last``, else at the end."""
        return self.dataset_size - self.dataset_size % self.num_replicas if self.drop_last else self.dataset_size

    def __iter__(self):
        n = self.dataset_size
        order = np.random.default_rng([self.seed, self.epoch]).permutation(n) if self.shuffle else np.arange(n)
        return iter(order[self.rank:self._end():self.num_replicas].tolist())


def per_rank_batch(batch_size: int, comm) -> int:
    """Each rank's share of the global batch ``batch_size`` (which must divide evenly)."""
    if batch_size % comm.world_size:
        low = batch_size - batch_size % comm.world_size
        raise ValueError(f"batch size {batch_size} is the global batch and must divide among {comm.world_size} "
                         f"ranks; use {f'{low} or ' if low else ''}{low + comm.world_size}")
    return batch_size // comm.world_size


def data_shards(comm, train_set, test_set, seed: int):
    """(training sampler, evaluation sampler) for this rank, or (None, None) for a single process.

    Training shards every seeded shuffle (equal shares); evaluation splits the held-out set without
    shuffling or leaving anything out, so the ranks' sums add up to the whole set's.
    """
    if comm.world_size == 1:
        return None, None
    return (DistributedSampler(train_set, comm.world_size, comm.rank, seed=seed),
            DistributedSampler(test_set, comm.world_size, comm.rank, shuffle=False, drop_last=False))

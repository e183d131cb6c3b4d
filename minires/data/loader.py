"""``DataLoader``: mini-batches as NumPy arrays, shuffled and augmented reproducibly."""
from __future__ import annotations

import math

import numpy as np

from ..checks import positive_int


class DataLoader:
    """Iterate over ``dataset`` in batches ``(x, y)``: float32 ``(B, C, H, W)`` and int64 ``(B,)``.

    Reproducibility: epoch ``e`` draws its order and its augmentation from generators seeded with
    ``(seed, e)``, so the batches of an epoch depend only on the seed and the epoch number — not on
    what ran before. Each ``iter(loader)`` runs the next epoch; ``state_dict()`` records the seed and
    that epoch counter so a checkpoint can resume the exact sequence. ``seed=None`` draws a seed
    from the operating system (still recorded in the state).

    ``transform(x, rng)`` is applied to each whole batch (see :mod:`minires.data.transforms`).
    ``sampler`` (e.g. :class:`minires.distributed.DistributedSampler`) replaces the built-in order:
    the loader calls its ``set_epoch(e)`` and batches the indices it yields.
    """

    def __init__(self, dataset, batch_size: int = 1, shuffle: bool = False, seed: int | None = None,
                 drop_last: bool = False, transform=None, sampler=None):
        if not positive_int.holds(batch_size):
            raise ValueError(f"DataLoader: batch_size must be a positive integer (a number of examples), "
                             f"got {batch_size!r}")
        if sampler is not None and shuffle:
            raise ValueError("DataLoader: pass either shuffle=True or a sampler (which does its own shuffling), not both")
        self.dataset, self.batch_size, self.shuffle = dataset, int(batch_size), shuffle
        self.drop_last, self.transform, self.sampler = drop_last, transform, sampler
        if drop_last and self.examples() < batch_size:
            raise ValueError(f"DataLoader: drop_last with batch_size {batch_size} but only {self.examples()} "
                             "examples leaves no batch; lower the batch size")
        self.seed = int(np.random.SeedSequence().entropy % 2**63) if seed is None else int(seed)
        self.epoch = 0

    def examples(self) -> int:
        """How many examples an epoch draws from: the dataset's, or the sampler's share of it."""
        return len(self.dataset) if self.sampler is None else len(self.sampler)

    def __len__(self) -> int:
        n = self.examples()
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self):
        epoch, self.epoch = self.epoch, self.epoch + 1
        return self._batches(epoch)

    def _batches(self, epoch):
        order = self._order(epoch)
        transform_rng = np.random.default_rng([self.seed, epoch, 1])
        for b in range(len(self)):
            x, y = self._fetch(order[b * self.batch_size:(b + 1) * self.batch_size])
            if self.transform is not None:
                x = self.transform(x, transform_rng).astype(np.float32, copy=False)
            yield x, y

    def _order(self, epoch) -> np.ndarray:
        """The dataset indices of epoch ``epoch``, in the order they are batched."""
        if self.sampler is not None:
            self.sampler.set_epoch(epoch)
            return np.fromiter(self.sampler, dtype=np.int64)
        n = len(self.dataset)
        return np.random.default_rng([self.seed, epoch]).permutation(n) if self.shuffle else np.arange(n)

    def _fetch(self, indices):
        if hasattr(self.dataset, "batch"):
            return self.dataset.batch(indices)
        images, labels = zip(*(self.dataset[int(i)] for i in indices))
        return np.stack(images).astype(np.float32, copy=False), np.asarray(labels, dtype=np.int64)

    # -- checkpointing
    def state_dict(self) -> dict:
        return {"seed": self.seed, "epoch": self.epoch}

    def load_state_dict(self, state: dict) -> None:
        self.seed, self.epoch = int(state["seed"]), int(state["epoch"])

    def set_epoch(self, epoch: int) -> None:
        """Make the next ``iter()`` run epoch ``epoch``."""
        self.epoch = int(epoch)

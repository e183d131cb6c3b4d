"""Image transforms on NumPy arrays: the paper's augmentation and input normalisation.

Every transform is called as ``transform(x, rng=None)`` where ``x`` is one image ``(C, H, W)`` or a
batch ``(N, C, H, W)`` of float32; random transforms draw from the NumPy ``Generator`` ``rng`` (a
fresh, unseeded one when None), each image of a batch independently. The
:class:`~minires.data.DataLoader` passes its own seeded generator, which makes augmentation
reproducible.

The paper's CIFAR recipe (sec. 4.2): subtract the per-pixel mean of the training set, then pad by 4
and take a random 32x32 crop, and flip horizontally with probability 1/2::

    Compose([SubtractPixelMean(pixel_mean(train_set)), RandomCrop(32, padding=4), RandomHorizontalFlip()])

Normalising before padding makes the padded border equal to the mean image, as zero padding of
mean-subtracted inputs does in the paper.
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def _as_batch(transform):
    """Let a batch transform accept a single (C, H, W) image too."""
    def call(self, x, rng=None):
        if x.ndim == 3:
            return transform(self, x[None], rng)[0]
        if x.ndim != 4:
            raise ValueError(f"{type(self).__name__}: expected an image (C, H, W) or a batch (N, C, H, W), "
                             f"got shape {x.shape}")
        return transform(self, x, rng)
    call.__doc__ = transform.__doc__
    return call


def _generator(rng):
    return np.random.default_rng() if rng is None else rng


class Compose:
    """Apply transforms in order, all drawing from the same generator."""

    def __init__(self, transforms):
        self.transforms = list(transforms)

    def __call__(self, x, rng=None):
        rng = _generator(rng)
        for t in self.transforms:
            x = t(x, rng)
        return x

    def __repr__(self):
        return "Compose([" + ", ".join(map(repr, self.transforms)) + "])"


class RandomCrop:
    """Pad each side by ``padding`` pixels of ``fill``, then cut a ``size`` x ``size`` window at a random place."""

    def __init__(self, size: int, padding: int = 0, fill: float = 0.0):
        self.size, self.padding, self.fill = int(size), int(padding), fill

    @_as_batch
    def __call__(self, x, rng=None):
        p = self.padding
        padded = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)), constant_values=self.fill)
        room_h, room_w = padded.shape[2] - self.size, padded.shape[3] - self.size
        if room_h < 0 or room_w < 0:
            raise ValueError(f"RandomCrop: crop {self.size} is larger than the padded image {padded.shape[2:]}")
        rng = _generator(rng)
        top = rng.integers(0, room_h + 1, len(x))
        left = rng.integers(0, room_w + 1, len(x))
        windows = sliding_window_view(padded, (self.size, self.size), axis=(2, 3))  # (N, C, h, w, size, size)
        return np.ascontiguousarray(windows[np.arange(len(x)), :, top, left])

    def __repr__(self):
        return f"RandomCrop({self.size}, padding={self.padding})"


class RandomHorizontalFlip:
    """Mirror each image left-right with probability ``p``."""

    def __init__(self, p: float = 0.5):
        self.p = p

    @_as_batch
    def __call__(self, x, rng=None):
        flip = _generator(rng).random(len(x)) < self.p
        out = x.copy()
        out[flip] = x[flip, :, :, ::-1]
        return out

    def __repr__(self):
        return f"RandomHorizontalFlip(p={self.p})"


class SubtractPixelMean:
    """Subtract a mean image ``(C, H, W)`` — the paper's "per-pixel mean subtracted" input."""

    def __init__(self, mean: np.ndarray):
        self.mean = np.asarray(mean, dtype=np.float32)

    @_as_batch
    def __call__(self, x, rng=None):
        if x.shape[1:] != self.mean.shape:
            raise ValueError(f"SubtractPixelMean: images of shape {x.shape[1:]} but the mean image is "
                             f"{self.mean.shape}; compute it with pixel_mean() on the same dataset")
        return x - self.mean

    def __repr__(self):
        return f"SubtractPixelMean(mean of shape {self.mean.shape})"


class Normalize:
    """Per-channel ``(x - mean[c]) / std[c]`` (torchvision's ``Normalize``)."""

    def __init__(self, mean, std):
        self.mean = np.asarray(mean, dtype=np.float32).reshape(-1, 1, 1)
        self.std = np.asarray(std, dtype=np.float32).reshape(-1, 1, 1)
        if np.any(self.std <= 0):
            raise ValueError(f"Normalize: std must be positive, got {self.std.ravel()}")

    @_as_batch
    def __call__(self, x, rng=None):
        if x.shape[1] != len(self.mean):
            raise ValueError(f"Normalize: {x.shape[1]} channels but {len(self.mean)} means/stds")
        return (x - self.mean) / self.std

    def __repr__(self):
        return f"Normalize(mean={self.mean.ravel().tolist()}, std={self.std.ravel().tolist()})"


# ----------------------------------------------------------------------------- statistics
def _float_images(dataset):
    """Images of a dataset as float in [0, 1] (uint8 ``data`` scaled lazily by the callers)."""
    if hasattr(dataset, "data") and dataset.data.dtype == np.uint8:
        return dataset.data, 1 / 255
    return np.stack([dataset[i][0] for i in range(len(dataset))]), 1.0


def pixel_mean(dataset) -> np.ndarray:
    """The mean image ``(C, H, W)`` of a dataset, as float32 in the units the loader yields."""
    images, scale = _float_images(dataset)
    return (images.mean(axis=0, dtype=np.float64) * scale).astype(np.float32)


def channel_stats(dataset) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and standard deviation of a dataset (for :class:`Normalize`)."""
    images, scale = _float_images(dataset)
    mean = images.mean(axis=(0, 2, 3), dtype=np.float64)
    std = images.std(axis=(0, 2, 3), dtype=np.float64)
    return (mean * scale).astype(np.float32), (std * scale).astype(np.float32)

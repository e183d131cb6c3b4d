"""The dataset type every loader returns: images and labels held in two NumPy arrays."""
from __future__ import annotations

import numpy as np


class ArrayDataset:
    """A dataset of ``(image, label)`` pairs backed by arrays, torchvision-style.

    ``data`` holds the images as uint8 ``(N, C, H, W)`` (a quarter of float32's memory: CIFAR-10's
    50k training images take 150 MB), ``targets`` the int64 labels. Indexing converts one image to
    float32 in [0, 1], like torchvision's ``ToTensor``; :class:`~minires.data.DataLoader` converts
    whole batches at once with :meth:`batch`.
    """

    classes: tuple = ()

    def __init__(self, data: np.ndarray, targets: np.ndarray):
        if data.ndim != 4 or data.dtype != np.uint8:
            raise ValueError(f"{type(self).__name__}: images must be uint8 (N, C, H, W), got {data.dtype} {data.shape}")
        if len(data) != len(targets):
            raise ValueError(f"{type(self).__name__}: {len(data)} images but {len(targets)} labels")
        self.data = data
        self.targets = np.asarray(targets, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index):
        return to_float(self.data[index]), int(self.targets[index])

    def batch(self, indices) -> tuple[np.ndarray, np.ndarray]:
        """Images (float32, NCHW, in [0, 1]) and labels (int64) at ``indices``."""
        return to_float(self.data[indices]), self.targets[indices]

    @property
    def image_shape(self) -> tuple:
        return tuple(self.data.shape[1:])

    def subset(self, n: int) -> "ArrayDataset":
        """The first ``n`` examples (all of them if ``n`` is None or larger), sharing memory."""
        if n is None or n >= len(self):
            return self
        part = ArrayDataset(self.data[:n], self.targets[:n])
        part.classes = self.classes
        return part

    def __repr__(self):
        return f"{type(self).__name__}({len(self)} images of {self.image_shape}, {len(self.classes) or '?'} classes)"


def to_float(images: np.ndarray) -> np.ndarray:
    """uint8 pixels -> float32 in [0, 1]."""
    return images.astype(np.float32) * np.float32(1 / 255)

"""Datasets, transforms and the ``DataLoader`` (torchvision's names).

* :class:`Synthetic` — the embedded default: procedural shapes and textures, no download.
* :class:`MNIST` — handwritten digits from the standard IDX files (gzipped or not).
* :class:`CIFAR10` — the official binary archive, optionally downloaded and checksum-verified.

Each is a dataset of ``(image, label)`` with images as float32 ``(C, H, W)`` in [0, 1].
"""
from .cifar import CIFAR10
from .datasets import ArrayDataset
from .files import DatasetFileError
from .loader import DataLoader
from .mnist import MNIST
from .synthetic import Synthetic
from .transforms import (Compose, Normalize, RandomCrop, RandomHorizontalFlip, SubtractPixelMean,
                         channel_stats, pixel_mean)

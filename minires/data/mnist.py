"""MNIST from the standard IDX files (http://yann.lecun.com/exdb/mnist/), gzipped or not.

IDX layout: two zero bytes, a type code (0x08 = unsigned byte), the number of dimensions ``d``,
then ``d`` big-endian uint32 sizes, then the values in row-major order. The image files are
``d = 3`` (count, 28, 28), the label files ``d = 1`` (count).

Images are 1x28x28. The CIFAR ResNets take them as they are (``in_channels=1``; global average
pooling makes the net indifferent to the 28x28 size: the maps are 28, 14, 7).
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .datasets import ArrayDataset
from .files import DatasetFileError, read_bounded

FILES = {True: ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
         False: ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


class MNIST(ArrayDataset):
    """The MNIST digits from IDX files in ``root`` (also found in ``root/MNIST/raw``, torchvision's layout)."""

    classes = tuple(str(d) for d in range(10))

    def __init__(self, root, train: bool = True):
        image_file, label_file = (find_file(root, name) for name in FILES[bool(train)])
        images, labels = read_idx(image_file, ndim=3, item_shape=(28, 28)), read_idx(label_file, ndim=1)
        if len(images) != len(labels):
            raise DatasetFileError(f"{image_file} has {len(images)} images but {label_file} has {len(labels)} labels")
        if labels.size and labels.max() > 9:
            raise DatasetFileError(f"{label_file}: label {labels.max()} is not a digit 0..9")
        super().__init__(images[:, None], labels)
        self.train = bool(train)


def find_file(root, name: str) -> Path:
    """``root/name`` or ``root/name.gz`` (or under ``root/MNIST/raw``)."""
    root = Path(root)
    candidates = [folder / (name + ext) for folder in (root, root / "MNIST" / "raw") for ext in ("", ".gz")]
    for path in candidates:
        if path.is_file():
            return path
    raise FileNotFoundError(f"MNIST: {name}[.gz] not found in {root} (looked for {', '.join(map(str, candidates))}). "
                            "Put the four IDX files from the MNIST site there.")


def read_idx(path, ndim: int, item_shape: tuple | None = None) -> np.ndarray:
    """An IDX file of unsigned bytes with ``ndim`` dimensions as a uint8 array.

    The header is checked before the values are read (see :func:`~minires.data.files.read_bounded`);
    ``item_shape`` is the shape every item must have (MNIST: 28x28).
    """
    shape = []

    def body_size(header: bytes) -> int:
        zeros, type_code, dims = header[:2], header[2], header[3]
        if zeros != b"\0\0" or type_code != 0x08 or dims != ndim:
            raise DatasetFileError(f"{path}: not an IDX file of unsigned bytes with {ndim} dimension(s) "
                                   f"(magic {header[:4].hex()}, expected 000008{ndim:02x})")
        shape.extend(int.from_bytes(header[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
        if item_shape is not None and tuple(shape[1:]) != tuple(item_shape):
            raise DatasetFileError(f"{path}: items of shape {tuple(shape[1:])}, not {tuple(item_shape)}; this is not "
                                   "an MNIST file — is the dataset name (--data) right?")
        return math.prod(shape)  # a Python integer: no overflow, however large the header's dims

    _, body = read_bounded(path, 4 + 4 * ndim, body_size)
    return np.frombuffer(body, np.uint8).reshape(shape).copy()

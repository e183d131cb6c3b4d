"""MNIST from the standard IDX files (http://yann.lecun.com/exdb/mnist/), gzipped or not.

IDX layout: two zero bytes, a type code (0x08 = unsigned byte), the number of dimensions ``d``,
then ``d`` big-endian uint32 sizes, then the values in row-major order. The image files are
``d = 3`` (count, 28, 28), the label files ``d = 1`` (count).

Images are 1x28x28. The CIFAR ResNets take them as they are (``in_channels=1``; global average
pooling makes the net indifferent to the 28x28 size: the maps are 28, 14, 7).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .datasets import ArrayDataset
from .files import DatasetFileError, read_bytes

FILES = {True: ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
         False: ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


class MNIST(ArrayDataset):
    """The MNIST digits from IDX files in ``root`` (also found in ``root/MNIST/raw``, torchvision's layout)."""

    classes = tuple(str(d) for d in range(10))

    def __init__(self, root, train: bool = True):
        image_file, label_file = (find_file(root, name) for name in FILES[bool(train)])
        images, labels = read_idx(image_file, ndim=3), read_idx(label_file, ndim=1)
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


def read_idx(path, ndim: int) -> np.ndarray:
    """An IDX file of unsigned bytes with ``ndim`` dimensions as a uint8 array."""
    raw = read_bytes(path)
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DatasetFileError(f"{path}: {len(raw)} bytes is too short for an IDX header of {header} bytes")
    zeros, type_code, dims = raw[:2], raw[2], raw[3]
    if zeros != b"\0\0" or type_code != 0x08 or dims != ndim:
        raise DatasetFileError(f"{path}: not an IDX file of unsigned bytes with {ndim} dimension(s) "
                               f"(magic {raw[:4].hex()}, expected 000008{ndim:02x})")
    shape = tuple(int(s) for s in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    expected = header + int(np.prod(shape))
    if len(raw) != expected:
        raise DatasetFileError(f"{path}: header says shape {shape} ({expected} bytes) but the file has "
                               f"{len(raw)} bytes; it is truncated or corrupt")
    return np.frombuffer(raw, np.uint8, offset=header).reshape(shape).copy()

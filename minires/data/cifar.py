"""CIFAR-10 from the official binary archive (https://www.cs.toronto.edu/~kriz/cifar.html).

``cifar-10-binary.tar.gz`` unpacks to ``cifar-10-batches-bin/`` with ``data_batch_1.bin`` ..
``data_batch_5.bin`` (training, 10,000 images each) and ``test_batch.bin``. Each file is a plain
sequence of 3,073-byte records: one label byte (0..9), then the 32x32 red, green and blue planes
(1,024 bytes each, row-major). That is read by byte slicing alone — no pickle is ever loaded, so a
tampered download cannot run code.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .datasets import ArrayDataset
from .files import DatasetFileError, download as fetch, read_bounded, safe_extract_tar

RECORD = 1 + 3 * 32 * 32
BATCH_RECORDS = 10_000  # each official batch file holds 10,000 images


class CIFAR10(ArrayDataset):
    """CIFAR-10 from ``root``: the unpacked ``cifar-10-batches-bin`` folder, or the archive (unpacked
    on first use), or — with ``download=True`` — fetched from the official site and MD5-checked.
    """

    url = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
    md5 = "c32a1d4ab5d03f1284b67883e8d87530"  # published on the CIFAR page
    archive = "cifar-10-binary.tar.gz"
    folder = "cifar-10-batches-bin"
    train_files = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
    test_files = ("test_batch.bin",)
    classes = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")

    def __init__(self, root, train: bool = True, download: bool = False, progress: bool = True):
        folder = self._locate(Path(root), download, progress)
        parts = [read_batch(folder / name) for name in (self.train_files if train else self.test_files)]
        super().__init__(np.concatenate([images for images, _ in parts]),
                         np.concatenate([labels for _, labels in parts]))
        self.train = bool(train)

    def _locate(self, root: Path, download: bool, progress: bool) -> Path:
        folder, archive = root / self.folder, root / self.archive
        if self._missing(folder):
            if not archive.is_file():
                if not download:
                    found = (f"{folder} lacks {', '.join(self._missing(folder))} and {archive} does not exist"
                             if folder.is_dir() else f"neither {folder} nor {archive} exists")
                    raise FileNotFoundError(
                        f"CIFAR10: {found}. Pass download=True (minires train --download) to fetch it, or put "
                        f"{self.archive} from {self.url} in {root}.")
                fetch(self.url, archive, self.md5, progress=progress)
            safe_extract_tar(archive, root, max_file_size=BATCH_RECORDS * RECORD)
        missing = self._missing(folder)
        if missing:
            raise DatasetFileError(f"CIFAR10: {folder} lacks {', '.join(missing)}; the archive {archive} is "
                                   "incomplete — delete both and download again")
        return folder

    def _missing(self, folder: Path) -> list[str]:
        """The batch files that are not in ``folder``."""
        return [name for name in self.train_files + self.test_files if not (folder / name).is_file()]


def read_batch(path) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 3, 32, 32) uint8 and labels (N,) of one CIFAR-10 binary batch file.

    The file has no header: its size (checked before reading) must be a whole number of records, at
    most :data:`BATCH_RECORDS` of them.
    """
    size = Path(path).stat().st_size if Path(path).is_file() else 0
    if not size or size % RECORD or size > BATCH_RECORDS * RECORD:
        raise DatasetFileError(f"{path}: {size} bytes is not a whole number of {RECORD}-byte records "
                               f"(1 label byte + 3072 pixel bytes), 1 to {BATCH_RECORDS:,} of them; the file is "
                               "truncated or corrupt")
    _, raw = read_bounded(path, 0, lambda header: size)
    records = np.frombuffer(raw, np.uint8).reshape(-1, RECORD)
    labels = records[:, 0].astype(np.int64)
    if labels.max() > 9:
        bad = int(np.argmax(labels > 9))
        raise DatasetFileError(f"{path}: record {bad} has label {labels[bad]}, expected 0..9; the file is corrupt")
    return records[:, 1:].reshape(-1, 3, 32, 32).copy(), labels

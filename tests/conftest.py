"""Shared test helpers: the optional PyTorch oracle, a headless browser, a scale-aware closeness check,
the benchmark scripts as modules, pages of text as one line, and for the CPU kernels every pass split
over the threads and arrays in other memory layouts."""
import importlib.util
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import settings

# CI draws the same examples on every run, so a red build can be reproduced; local runs explore.
settings.register_profile("ci", derandomize=True, deadline=None)
if os.environ.get("CI"):
    settings.load_profile("ci")


@pytest.fixture(scope="session")
def torch_oracle():
    """The ``torch`` module; the test skips when PyTorch (an optional oracle) is not installed."""
    return pytest.importorskip("torch")


@pytest.fixture(scope="session")
def browser():
    """A headless Chromium driven by Playwright, for tests of the HTML pages minires writes.

    Uses the system's ``chromium`` (Debian's package; ``.ci/run`` installs it); the test skips when
    either the browser or the ``playwright`` package is absent.
    """
    sync_api = pytest.importorskip("playwright.sync_api", reason="no Playwright: pip install -e '.[browser]'")
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        pytest.skip("no chromium on PATH (apt-get install chromium)")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield chromium
        chromium.close()


def assert_close(actual, expected, rtol, scale=None):
    """Every element within ``rtol`` of the largest expected magnitude (or of ``scale`` if larger).

    Scaling by the largest entry (not elementwise) keeps entries that should be near zero, such as
    gradients that cancel, from demanding digits that float64 cannot give. Where a whole result is
    a cancellation (BN's input gradient at m = 2 is exactly zero in exact arithmetic), pass the
    magnitude of the terms that cancel as ``scale``.
    """
    actual = np.asarray(actual.detach().numpy() if hasattr(actual, "detach") else actual, dtype=np.float64)
    expected = np.asarray(expected.detach().numpy() if hasattr(expected, "detach") else expected, dtype=np.float64)
    assert actual.shape == expected.shape, f"shapes differ: {actual.shape} vs {expected.shape}"
    scale = max(float(np.abs(expected).max(initial=0.0)), scale or 0.0)
    np.testing.assert_allclose(actual, expected, rtol=0, atol=rtol * max(scale, np.finfo(np.float64).tiny))


def idx_bytes(array) -> bytes:
    """``array`` as an IDX file of unsigned bytes (MNIST's format), written independently of minires:
    two zero bytes, type code 0x08, the number of dimensions, big-endian uint32 sizes, the values."""
    array = np.asarray(array)
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def load_benchmark(name: str):
    """``benchmarks/<name>.py`` as a module (the scripts are not a package)."""
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_keeping_threads(torch, main, argv) -> int:
    """``main(argv)`` of a benchmark that sets minires' and PyTorch's thread counts, both put back after."""
    from minires.bench.cpu import set_threads
    from minires.cpu import get_num_threads
    theirs, ours = torch.get_num_threads(), get_num_threads()
    try:
        return main(argv)
    finally:
        torch.set_num_threads(theirs)
        set_threads(ours)


REPO = Path(__file__).resolve().parents[1]


def one_line(page) -> str:
    """A text file (a path, or one relative to the repository) with its whitespace collapsed, so that a
    quoted sentence matches wherever its lines break."""
    return " ".join((REPO / page).read_text().split())


@pytest.fixture(params=[1, 3], ids=["1-thread", "3-threads"])
def split(request, monkeypatch):
    """Every pass and conv split over the batch (no size threshold), over one thread or three (an odd
    share of 7 images)."""
    from minires.cpu import threads
    monkeypatch.setattr(threads, "MIN_PARALLEL_SIZE", 0)
    monkeypatch.setattr(threads, "MIN_PARALLEL_PASS", 0)
    before = threads.get_num_threads()
    threads.set_num_threads(request.param)
    yield request.param
    threads.set_num_threads(before)


def channels_last(a):
    """``a`` copied into channels-last memory (axis 1 last), still indexed NCHW (what the CPU conv returns)."""
    return np.ascontiguousarray(np.moveaxis(a, 1, -1)).transpose(0, a.ndim - 1, *range(1, a.ndim - 1))


def every_other_column(a):
    """``a``'s values in a strided view (every other column of a twice-as-wide array)."""
    return np.repeat(a, 2, axis=-1)[..., ::2]

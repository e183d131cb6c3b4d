"""Devices and the implementation registry."""
import numpy as np
import pytest

import minires as mr
from minires import backend


def test_array_module_and_device_of_numpy_data():
    assert backend.get_array_module(np.zeros(2)) is np
    assert backend.device_of(np.zeros(2)) == "cpu"
    assert mr.tensor([1.0]).device == "cpu"


@pytest.mark.parametrize("spec, message", [("tpu", "unknown device"), ("cuda:x", "integer")])
def test_bad_device_strings(spec, message):
    with pytest.raises(ValueError, match=message):
        backend.parse_device(spec)


@pytest.mark.skipif(backend.cuda_available(), reason="this machine has a GPU")
def test_cuda_without_gpu_is_a_clear_error_and_cpu_keeps_working():
    with pytest.raises(RuntimeError, match="device='cpu'"):
        mr.tensor([1.0], device="cuda")
    assert (mr.tensor([1.0], device="cpu") * 2).item() == 2.0


def test_registry_defaults_use_and_per_call_choice(monkeypatch):
    monkeypatch.setattr(backend, "_REGISTRY", dict(backend._REGISTRY))   # the test op leaves with the test
    op = "test_op_registry"

    @backend.register(op, "slow")
    def slow(x):
        return "slow"

    @backend.register(op, "fast")
    def fast(x):
        return "fast"

    assert backend.available(op) == ["slow", "fast"]
    assert backend.lookup(op, np.zeros(1))[0] == "slow"          # first registered is the default
    assert backend.lookup(op, np.zeros(1), impl="fast")[1](None) == "fast"
    with backend.using(op, "fast"):
        assert backend.lookup(op, np.zeros(1))[0] == "fast"
    assert backend.lookup(op, np.zeros(1))[0] == "slow"
    with pytest.raises(ValueError, match="no implementation 'nope'"):
        backend.use(op, "nope")
    with pytest.raises(KeyError, match="no op"):
        backend.available("no_such_op")

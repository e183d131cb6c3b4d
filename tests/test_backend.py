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
    with pytest.raises(RuntimeError, match=r"device='cpu'; --device cpu on the command line"):   # for both audiences
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


def test_an_unknown_op_is_named_as_such_by_every_registry_call():
    """Not a bare KeyError('conv3d') from lookup, nor 'no implementation ...; registered: []' from use."""
    for call in (lambda: backend.lookup("conv3d", np.zeros(1)), lambda: backend.use("conv3d", "numpy"),
                 lambda: backend.using("conv3d", "numpy").__enter__()):
        with pytest.raises(KeyError, match=r"no op 'conv3d' in the registry; known ops: \[.*'conv2d'"):
            call()


@pytest.mark.parametrize("device", ["gpu", "cuda:0", "CPU"])
def test_a_device_that_is_not_a_kind_is_refused_not_answered_with_nothing(device):
    """available/defaults are per device kind: anything else used to list no implementation at all."""
    with pytest.raises(ValueError, match=rf"device {device!r} is not a device kind; use 'cpu' or 'cuda'"):
        backend.available("conv2d", device=device)
    with pytest.raises(ValueError, match="is not a device kind"):
        backend.defaults(device)


def test_a_cuda_implementation_on_cpu_data_suggests_only_the_cpu_ones(monkeypatch):
    monkeypatch.setattr(backend, "cuda_available", lambda: True)   # as on a GPU machine: cuda ones listed too
    with pytest.raises(ValueError, match="runs on cuda but the data is on cpu") as error:
        backend.lookup("conv2d", np.zeros(1), "cupy")
    suggested = str(error.value).split("choose one of ")[1]
    assert "'numpy'" in suggested and "cupy" not in suggested


@pytest.mark.parametrize("spec", ["cuda:1", "cuda:-1"])
def test_a_gpu_index_the_machine_lacks_is_refused_with_its_count(monkeypatch, spec):
    """On a one-GPU machine 'cuda:1' (or 'cuda:-1') was accepted, to fail later inside CuPy."""
    from types import SimpleNamespace
    one_gpu = SimpleNamespace(cuda=SimpleNamespace(runtime=SimpleNamespace(getDeviceCount=lambda: 1)))
    monkeypatch.setattr(backend, "_cupy", one_gpu)
    assert backend.parse_device("cuda") == backend.parse_device("cuda:0") == "cuda:0"
    with pytest.raises(ValueError, match=rf"device {spec!r}: this machine has 1 GPU \(cuda:0\)"):
        backend.parse_device(spec)


@pytest.mark.parametrize("name, module, extra", [("numba", "numba", "numba"), ("numba-cuda", "numba_cuda", "gpu")])
def test_an_implementation_whose_package_is_missing_names_the_extra(monkeypatch, name, module, extra):
    """conv2d(..., impl='numba-cuda') without numba-cuda said only 'no implementation'; it now says what to install.
    Where the package is there, the name is simply not an implementation of that op (sgd has no Numba or
    GPU kernel): no install hint."""
    import importlib.util
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda m, *a: None if m == module else real_find_spec(m, *a))
    for call in (lambda: backend.use("sgd", name), lambda: backend.lookup("sgd", np.zeros(1), impl=name)):
        with pytest.raises(ValueError, match=rf"sgd: no implementation '{name}'.*needs {module} "
                                             rf"\(pip install 'minires\[{extra}\]'\)"):
            call()
    monkeypatch.setattr(importlib.util, "find_spec", real_find_spec)
    if real_find_spec(module) is not None:
        with pytest.raises(ValueError) as refusal:
            backend.use("sgd", name)
        assert "pip install" not in str(refusal.value)

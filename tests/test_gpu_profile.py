"""benchmarks/gpu_profile.py without a GPU: the profiler's device events summed per step (host-side
events left out), and the issue time of a step measured apart from the wait for the device."""
import time

import pytest

from conftest import load_benchmark


class Average:
    """One row of ``torch.profiler``'s key_averages(): what the script reads of it."""

    def __init__(self, key, device_us, count, device_type):
        self.key, self.self_device_time_total, self.count, self.device_type = key, device_us, count, device_type


def test_device_events_are_summed_per_step_most_time_first():
    module = load_benchmark("gpu_profile")
    averages = [Average("im2col", 2000.0, 10, "DeviceType.CUDA"), Average("gemm", 4000.0, 20, "DeviceType.CUDA"),
                Average("aten::add", 900.0, 3, "DeviceType.CPU"), Average("idle", 0.0, 4, "DeviceType.CUDA")]
    kernel_ms, launches, kernels = module.summarise_device_events(averages, steps=2)
    assert (kernel_ms, launches) == (3.0, 15.0)
    assert kernels == [("gemm", 2.0, 10.0), ("im2col", 1.0, 5.0)]
    row = module.row("resnet20", "cupy", 0.004, 0.006, (kernel_ms, launches, kernels))
    assert row[2:7] == [6.0, 4.0, 3.0, 15.0, 0.5] and row[7] == "gemm 2.00; im2col 1.00"


def test_issue_time_excludes_the_wait_for_the_device():
    module = load_benchmark("gpu_profile")
    issue, total = module.issue_and_step_seconds(lambda: time.sleep(0.002), lambda: time.sleep(0.01), repeat=3)
    assert 0.002 <= issue < 0.008 and total >= issue + 0.01


def test_a_model_that_is_not_a_cifar_resnet_is_refused(capsys):
    """``--models resnet18`` would time minires' ImageNet ResNet-18 against PyTorch's CIFAR ResNet-14
    (the reference builds 6n+2 from the name's number): refused before anything runs."""
    module = load_benchmark("gpu_profile")
    with pytest.raises(SystemExit) as exit_:
        module.main(["--models", "resnet20", "resnet18"])
    assert exit_.value.code == 2 and "'resnet18' is not a CIFAR ResNet" in capsys.readouterr().err


def test_counts_that_cannot_be_timed_are_refused(capsys):
    """``--repeat 0`` would end, on a GPU, in a StatisticsError after the first model's warm-up."""
    module = load_benchmark("gpu_profile")
    for argv in (["--repeat", "0"], ["--batch", "0"]):
        with pytest.raises(SystemExit) as exit_:
            module.main(argv)
        assert exit_.value.code == 2 and "is not a positive integer" in capsys.readouterr().err

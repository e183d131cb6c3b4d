"""Where a minires training step's time goes on a GPU: kernels, or the host issuing them.

For each model and conv implementation, one training step (``minires.bench.measure.training_step``:
forward, cross-entropy, backward, SGD) is timed three ways, each the median of ``--repeat`` steps:

* ``step ms``: host wall clock from the call to the device's end (what ``minires bench gpu`` shows);
* ``issue ms``: the host time of the call alone, without waiting for the device: Python, autograd
  and the launches. CuPy launches are asynchronous, so when ``issue`` is close to ``step`` the GPU
  waits for the host (launch-bound), and when it is far below, the host waits for the GPU;
* ``kernel ms``: the summed duration of every kernel (and memset/memcpy) the step ran on the GPU,
  recorded by CUPTI through ``torch.profiler`` (it sees CuPy's and Numba's kernels as well as
  PyTorch's, since all share the device's primary context); ``kernels`` is how many ran per step.
  ``busy`` = kernel / step: the fraction of the step the GPU computes.

Rows name the conv implementation; one more row per other ``sgd`` implementation (``cupy-ops``: the
seven array operations of the readable update, against the default fused kernel) shows what the
optimizer's launches cost. A cProfile of the host's time per step (default implementations) ends
the output.

The same for PyTorch's eager step (``benchmarks/torch_reference.py``) gives the comparison. Both
sides compute in full fp32 (TF32 off in cuBLAS and cuDNN), as in the headline of ``minires bench gpu``.

    python benchmarks/gpu_profile.py [--models resnet20 resnet56] [--batch 128] [--repeat 20]

Needs a CUDA GPU with CuPy; the kernel columns need PyTorch (otherwise "n/a").
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from minires import backend  # noqa: E402
from minires.bench import measure, reference  # noqa: E402
from minires.bench.gpu import set_tf32  # noqa: E402
from minires.bench.suite import cifar_resnet_name  # noqa: E402
from minires.bench.table import format_table  # noqa: E402
from minires.checks import positive_int  # noqa: E402

HEADERS = ["model", "impl", "step ms", "issue ms", "kernel ms", "kernels", "busy", "top kernels (ms per step)"]


def issue_and_step_seconds(step, synchronize, repeat: int) -> tuple[float, float]:
    """Medians of (host time to issue one step, host time until the device has finished it)."""
    issue, total = [], []
    for _ in range(repeat):
        synchronize()
        start = time.perf_counter()
        step()
        issued = time.perf_counter()
        synchronize()
        issue.append(issued - start)
        total.append(time.perf_counter() - start)
    return statistics.median(issue), statistics.median(total)


def device_time_per_step(step, synchronize, steps: int, with_torch: bool):
    """``(ms of device work per step, kernels per step, [(kernel, ms, launches) per step, most time
    first])`` from CUPTI, or None without PyTorch (``with_torch`` False)."""
    if not with_torch:
        return None
    from torch.profiler import ProfilerActivity, profile
    synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(steps):
            step()
        synchronize()
    return summarise_device_events(prof.key_averages(), steps)


def summarise_device_events(averages, steps: int):
    """Sum the device-side events of a ``torch.profiler`` key average table, per step."""
    rows = [(a.key, a.self_device_time_total / 1e3 / steps, a.count / steps) for a in averages
            if str(a.device_type).endswith("CUDA") and a.self_device_time_total > 0]
    rows.sort(key=lambda r: -r[1])
    return sum(ms for _, ms, _ in rows), sum(n for _, _, n in rows), rows


def row(model, impl, issue_s, step_s, device):
    if device is None:
        return [model, impl, 1e3 * step_s, 1e3 * issue_s, None, None, None, "n/a (no PyTorch)"]
    kernel_ms, kernels, per_kernel = device
    return [model, impl, 1e3 * step_s, 1e3 * issue_s, kernel_ms, kernels, kernel_ms / (1e3 * step_s),
            "; ".join(f"{name[:40]} {ms:.2f}" for name, ms, _ in per_kernel[:3])]


def print_kernels(title, device) -> None:
    """Every kernel of one profiled configuration: ms and launches per step."""
    if device is not None:
        print(f"\n{title}: every kernel, per step")
        print(format_table(["kernel", "ms", "launches"], [[name[:90], ms, n] for name, ms, n in device[2]]))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", type=cifar_resnet_name, default=["resnet20", "resnet56"])
    parser.add_argument("--batch", type=positive_int, default=128)
    parser.add_argument("--repeat", type=positive_int, default=20)
    parser.add_argument("--impls", nargs="+", default=None, help="conv implementations (default: every CUDA one)")
    args = parser.parse_args(argv)
    if not backend.cuda_available():
        print("gpu_profile: no usable GPU (CuPy and a CUDA device needed)", file=sys.stderr)
        return 1
    torch_ref, _ = reference.load()
    with_torch = torch_ref is not None
    set_tf32(False, torch_ref)  # full fp32 on both sides, as in the headline of minires bench gpu
    sync = measure.synchronizer("cuda")
    conv_default, sgd_default = backend.defaults("cuda")["conv2d"], backend.defaults("cuda")["sgd"]
    cases = [(impl, sgd_default) for impl in args.impls or backend.available("conv2d", device="cuda")]
    cases += [(conv_default, sgd) for sgd in backend.available("sgd", device="cuda") if sgd != sgd_default]
    rows = []
    for model in args.models:
        for conv, sgd in cases:
            step = measure.training_step(model, args.batch, "cuda")
            with backend.using("conv2d", conv), backend.using("sgd", sgd):
                for _ in range(3):
                    step()
                issue_s, step_s = issue_and_step_seconds(step, sync, args.repeat)
                label = conv if sgd == sgd_default else f"{conv}, sgd {sgd}"
                device = device_time_per_step(step, sync, 5, with_torch)
                rows.append(row(model, label, issue_s, step_s, device))
            print(format_table(HEADERS, rows[-1:]), flush=True)
            if model == args.models[0] and (conv, sgd) == (conv_default, sgd_default):
                print_kernels(f"{model}, minires ({conv}, sgd {sgd})", device)
        if with_torch:
            n = (int(model.removeprefix("resnet")) - 2) // 6
            torch_step, torch_sync = torch_ref.training_step(n, args.batch, "cuda"), torch_ref.synchronizer("cuda")
            for _ in range(3):
                torch_step()
            issue_s, step_s = issue_and_step_seconds(torch_step, torch_sync, args.repeat)
            device = device_time_per_step(torch_step, torch_sync, 5, with_torch)
            rows.append(row(model, "torch", issue_s, step_s, device))
            if model == args.models[0]:
                print_kernels(f"{model}, PyTorch", device)
    print(f"\nbatch {args.batch}, median of {args.repeat} steps; kernel columns over 5 profiled steps")
    print(format_table(HEADERS, rows))
    print_host_profile(measure.training_step(args.models[0], args.batch, "cuda"), sync, args.models[0])
    return 0


def print_host_profile(step, synchronize, model, steps=10, top=25):
    """Where the host's time per step goes (cProfile, default implementations), most first."""
    import cProfile
    import pstats
    for _ in range(3):
        step()
    synchronize()
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(steps):
        step()
    synchronize()
    profiler.disable()
    print(f"\nhost profile of {steps} {model} steps (cProfile adds its own overhead), by own time:")
    pstats.Stats(profiler, stream=sys.stdout).sort_stats("tottime").print_stats(top)


if __name__ == "__main__":
    sys.exit(main())

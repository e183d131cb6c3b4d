"""Training-mode batch norm alone, minires against PyTorch, on ResNet-20's three activation shapes:

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE PYTHONPATH=. python benchmarks/batchnorm_layers.py \\
        --batch 32 --threads 1 2

minires' default CPU batch norm (``backend.lookup("batch_norm", ...)``) on channels-last data, as
the conv returns it in a step, against PyTorch's ``native_batch_norm`` and
``native_batch_norm_backward`` on NCHW data, as the reference net of ``benchmarks/torch_reference.py``
runs them; the same values, weight 1 and bias 0. Each call runs ``--repeat`` times after five
unmeasured ones, on the same arrays (so the data sits in the caches: a step's passes meet colder
memory), minires' calls before PyTorch's (whose OpenMP threads spin on the cores for a while after
each call), and the report gives the median in microseconds and minires / PyTorch.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from minires import backend
from minires.bench.cpu import set_threads
from minires.bench.timing import median_seconds
from minires.checks import positive_int

RESNET20_ACTIVATIONS = ((16, 32), (32, 16), (64, 8))   # (channels, height = width) of each stage


def median_us(call, repeat: int) -> float:
    """Microseconds per call: :func:`~minires.bench.timing.median_seconds` after five unmeasured calls."""
    return 1e6 * median_seconds(call, lambda: None, repeat=repeat, warmup=5)


def layer_times(batch: int, channels: int, size: int, repeat: int) -> dict[str, float]:
    """``{"minires forward": us, "PyTorch forward": us, "minires backward": us, "PyTorch backward": us}``."""
    rng = np.random.default_rng(0)
    x, gy = (np.ascontiguousarray(rng.standard_normal((batch, size, size, channels), dtype=np.float32))
             .transpose(0, 3, 1, 2) for _ in range(2))                       # channels last, NCHW-indexed
    weight, bias = np.ones(channels, np.float32), np.zeros(channels, np.float32)
    ours = backend.lookup("batch_norm", x)[1]
    _, mean, _, invstd = ours.forward_train(x, weight, bias, 1e-5)
    times = {   # minires' first: PyTorch's OpenMP threads keep spinning on the cores for a while after its calls
        "minires forward": median_us(lambda: ours.forward_train(x, weight, bias, 1e-5), repeat),
        "minires backward": median_us(lambda: ours.backward(gy, x, weight, mean, invstd), repeat),
    }
    tx, tgy = (torch.from_numpy(np.ascontiguousarray(a)) for a in (x, gy))
    tw, tb = torch.ones(channels), torch.zeros(channels)
    running_mean, running_var = torch.zeros(channels), torch.ones(channels)
    _, saved_mean, saved_invstd = torch.native_batch_norm(tx, tw, tb, running_mean, running_var, True, 0.1, 1e-5)
    times["PyTorch forward"] = median_us(lambda: torch.native_batch_norm(tx, tw, tb, running_mean, running_var,
                                                                          True, 0.1, 1e-5), repeat)
    times["PyTorch backward"] = median_us(lambda: torch.ops.aten.native_batch_norm_backward(
        tgy, tx, tw, running_mean, running_var, saved_mean, saved_invstd, True, 1e-5, [True, True, True]), repeat)
    time.sleep(0.05)   # and let them stop before the next shape's minires calls
    return times


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=positive_int, default=32)
    parser.add_argument("--threads", type=positive_int, nargs="+", default=[1, 2])
    parser.add_argument("--repeat", type=positive_int, default=50)
    args = parser.parse_args(argv)
    for threads in args.threads:
        set_threads(threads)
        torch.set_num_threads(threads)
        print(f"batch {args.batch}, {threads} thread(s), minires {backend.lookup('batch_norm', np.zeros(1))[0]}, "
              f"median of {args.repeat} calls, us:")
        for channels, size in RESNET20_ACTIVATIONS:
            t = layer_times(args.batch, channels, size, args.repeat)
            print(f"  {channels} channels {size}x{size}: forward {t['minires forward']:.0f} vs {t['PyTorch forward']:.0f} "
                  f"({t['minires forward'] / t['PyTorch forward']:.2f}), backward {t['minires backward']:.0f} vs "
                  f"{t['PyTorch backward']:.0f} ({t['minires backward'] / t['PyTorch backward']:.2f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

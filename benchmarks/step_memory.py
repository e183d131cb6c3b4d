"""The peak memory of a training step, minires against PyTorch, for each net, batch and thread count:

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE PYTHONPATH=. python benchmarks/step_memory.py \\
        --models resnet20 resnet56 --batches 32 128 --threads 1 2

``minires bench cpu`` measures one of these cases (its first model at ``--batch``); this runs the
grid, each case as the bench does (:func:`minires.bench.cpu.memory_rows`): each framework's step in
a fresh process, its peak resident set during the third step above the level before it. Memory
is in MiB (2^20 bytes).
"""
from __future__ import annotations

import argparse

from minires.bench import reference
from minires.bench.cpu import memory_rows
from minires.bench.suite import cifar_resnet_name
from minires.checks import positive_int


def grid(models, batches, threads, with_torch: bool) -> list[tuple]:
    """``[(model, batch, threads, minires MiB, PyTorch MiB or None, ratio or None)]``."""
    rows = []
    for model in models:
        for batch in batches:
            for count in threads:
                [[_, _, ours, theirs, ratio]] = memory_rows(model, batch, count, with_torch)
                rows.append((model, batch, count, ours, theirs, ratio))
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", type=cifar_resnet_name, default=["resnet20", "resnet56"])
    parser.add_argument("--batches", nargs="+", type=positive_int, default=[32, 128])
    parser.add_argument("--threads", nargs="+", type=positive_int, default=[1, 2])
    args = parser.parse_args(argv)
    with_torch = reference.load()[0] is not None
    print("model, batch, threads | minires MiB | PyTorch MiB | minires / PyTorch")
    for model, batch, count, ours, theirs, ratio in grid(args.models, args.batches, args.threads, with_torch):
        cells = [f"{v:.1f}" if v is not None else "-" for v in (ours, theirs)]
        print(f"{model}, batch {batch}, {count} thread(s) | {cells[0]} | {cells[1]} | "
              f"{'-' if ratio is None else f'{ratio:.2f}'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Measure data-parallel training throughput: ``mpirun -n K python -m minires.distributed.scaling``.

Times full training steps (forward, backward, gradient all-reduce, SGD update) of a model on one fixed
random batch per rank, so that neither data loading nor evaluation is in the numbers. Rank 0 prints
images per second of wall-clock time, images per second on K busy cores (the images over the ranks'
CPU seconds added up, times K, MPI's busy-waiting included: what K dedicated cores would give on a
machine shared with other work) and the time of the gradient all-reduce (waiting for the slowest rank
included). ``--batch-size`` is the global batch, as in ``minires train``.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from .. import functional as F
from ..autograd import Tensor
from ..models import get_model
from ..optim import SGD
from ..random import manual_seed
from .comm import init
from .data_parallel import allreduce_gradients, broadcast_state, per_rank_batch
from .sync_batchnorm import convert_sync_batchnorm


def measure(model_name: str, batch_size: int, steps: int, sync_bn: bool, comm) -> dict:
    manual_seed(0)
    model = get_model(model_name)
    if sync_bn:
        model = convert_sync_batchnorm(model, comm)
    broadcast_state(model, comm)
    optimizer = SGD(model.parameters(), lr=0.01, momentum=0.9)
    rng, b = np.random.default_rng(comm.rank), per_rank_batch(batch_size, comm)
    x, y = Tensor(rng.normal(size=(b,) + model.default_input_shape).astype(np.float32)), rng.integers(0, 10, b)

    def step() -> float:
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        start = time.perf_counter()
        allreduce_gradients(model.parameters(), comm)
        elapsed = time.perf_counter() - start
        optimizer.step()
        return elapsed

    step()  # warm-up: first-call compilation and allocation
    comm.barrier()
    wall, cpu = time.perf_counter(), time.process_time()
    communication = sum(step() for _ in range(steps))
    comm.barrier()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    cpu_all_ranks = float(comm.allreduce_sum(np.array([cpu]))[0])
    images = batch_size * steps
    return {"ranks": comm.world_size, "images_per_second": images / wall,
            "images_per_second_on_busy_cores": images / cpu_all_ranks * comm.world_size,
            "allreduce_ms": 1e3 * communication / steps}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m minires.distributed.scaling", description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="resnet20")
    parser.add_argument("--batch-size", type=int, default=64, help="global batch (each of K ranks takes 1/K)")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--sync-bn", action="store_true")
    args = parser.parse_args(argv)
    comm = init()
    result = measure(args.model, args.batch_size, args.steps, args.sync_bn, comm)
    if comm.is_root:
        print(f"{args.model}, global batch {args.batch_size}, {result['ranks']} rank(s)"
              f"{', sync BN' if args.sync_bn else ''}: {result['images_per_second']:.1f} img/s wall-clock, "
              f"{result['images_per_second_on_busy_cores']:.1f} img/s per {result['ranks']} busy core(s), "
              f"gradient all-reduce {result['allreduce_ms']:.1f} ms/step")


if __name__ == "__main__":
    main()

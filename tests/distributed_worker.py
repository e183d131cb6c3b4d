"""Run by tests/test_distributed.py, under ``mpirun -n K`` or as a single process.

Checks the collectives, records this rank's sampler shard, and trains a tiny float64 net for a few
steps of SGD (momentum, weight decay) with per-rank batch ``--batch``, once with synchronized
BatchNorm and once without. Writes
``rank<R>.json`` (collectives, shard) and ``rank<R>-<variant>.npz`` (final state dict) to ``--out``.
"""
import argparse
import json
from pathlib import Path

import numpy as np

import minires as mr
import minires.functional as F
from minires import distributed as dist
from minires import nn
from minires.optim import SGD

DATA_SIZE, STEPS, LR = 33, 3, 0.2


def tiny_net():
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)).double()


def train(comm, batch, sync_bn):
    rng = np.random.default_rng(0)
    images, labels = rng.normal(size=(DATA_SIZE, 3, 5, 5)), rng.integers(0, 3, DATA_SIZE)
    mr.manual_seed(100 + comm.rank)  # different on every rank: the broadcast must make them equal
    model = tiny_net()
    if sync_bn:
        model = dist.convert_sync_batchnorm(model, comm)
    dist.broadcast_state(model, comm)
    optimizer = SGD(model.parameters(), lr=LR, momentum=0.9, weight_decay=1e-4)
    shard = list(dist.DistributedSampler(range(DATA_SIZE), comm.world_size, comm.rank, seed=7))
    for step in range(STEPS):
        index = shard[step * batch:(step + 1) * batch]
        optimizer.zero_grad()
        F.cross_entropy(model(mr.tensor(images[index])), mr.tensor(labels[index])).backward()
        dist.allreduce_gradients(model.parameters(), comm)
        optimizer.step()
    return model.state_dict(), shard


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--batch", type=int, required=True)
    args = parser.parse_args()
    comm = dist.init()
    summed = comm.allreduce_sum(np.array([comm.rank + 1.0, 10.0 * comm.rank]))
    broadcast = comm.broadcast(np.array([comm.rank + 5], dtype=np.int64), root=comm.world_size - 1)
    record = {"world_size": comm.world_size, "summed": summed.tolist(), "broadcast": broadcast.tolist()}
    for variant, sync_bn in (("sync", True), ("local", False)):
        state, record["shard"] = train(comm, args.batch, sync_bn)
        np.savez(args.out / f"rank{comm.rank}-{variant}.npz", **state)
    (args.out / f"rank{comm.rank}.json").write_text(json.dumps(record))


if __name__ == "__main__":
    main()

"""Synchronous data-parallel training: K processes, one model replica each, one shared update.

Every rank holds the same weights, reads its own share of each batch, computes its gradients, and
then all ranks average their gradients (one all-reduce) and apply the same SGD step, so the replicas
never drift apart. With synchronized BatchNorm the K ranks with batch B compute exactly what one
process with batch K*B computes.

The engines are not home-made: MPI (``mpi4py`` over Open MPI) for CPU ranks, NCCL (through CuPy)
for GPUs. Launch with the MPI launcher; ``minires train`` notices it and runs data-parallel::

    mpirun -n 2 minires train --sync-bn ...              # 2 CPU ranks on this machine (MPI)
    mpirun -n 8 --hostfile hosts minires train ...       # 8 ranks over the machines listed in hosts
    mpirun -n 4 minires train --device cuda ...          # 4 GPUs, one per rank (NCCL)

By hand::

    from minires import distributed as dist
    comm = dist.init()                                   # MPI under mpirun, else a single process
    model = dist.convert_sync_batchnorm(model, comm)     # optional: global BN statistics
    dist.broadcast_state(model, comm)                    # every replica starts from rank 0's weights
    sampler = dist.DistributedSampler(dataset, comm.world_size, comm.rank, seed=0)
    ...
    loss.backward()
    dist.allreduce_gradients(model.parameters(), comm)   # average, one flat buffer
    optimizer.step()
"""
from .comm import (Communicator, MPICommunicator, NCCLCommunicator, SingleProcess, init,
                   launched_by_mpirun, rank_device)
from .data_parallel import (DistributedSampler, allreduce_gradients, average_buffers, broadcast_state,
                            data_shards, per_rank_batch)
from .sync_batchnorm import SyncBatchNorm, SyncBatchNormTrain, convert_sync_batchnorm, sync_batch_norm

"""Communicators: who am I (``rank``), how many are we (``world_size``), and the two collectives that
synchronous data-parallel training needs, both *in place* on one contiguous array:

* ``allreduce_sum(a)``: every rank ends with the elementwise sum of everyone's ``a``;
* ``broadcast(a, root=0)``: every rank ends with rank ``root``'s ``a``.

Three implementations behind that interface:

* :class:`SingleProcess`: world size 1, every collective is a no-op (plain ``minires train``).
* :class:`MPICommunicator`: ``mpi4py`` over the system's MPI (Open MPI, MPICH) for CPU ranks,
  launched with ``mpirun -n K``. CuPy arrays are staged through host memory, so it also works, slowly,
  on GPUs without a CUDA-aware MPI.
* :class:`NCCLCommunicator`: NVIDIA's NCCL through ``cupy.cuda.nccl`` for CuPy arrays, one GPU per
  rank. It is still launched with ``mpirun``: MPI starts the processes and carries NCCL's unique id
  from rank 0 to the others, then NCCL moves the data GPU to GPU (NVLink, PCIe, InfiniBand).

:func:`init` picks one from how the process was started.
"""
from __future__ import annotations

import os

import numpy as np

from .. import backend

# The world size that MPI launchers put in the environment of every process they start (Open MPI; MPICH).
_LAUNCHER_SIZE_VARIABLES = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE")


def launched_by_mpirun() -> bool:
    """True when this process was started by ``mpirun``/``mpiexec`` with more than one rank."""
    return any(int(os.environ.get(name, "1")) > 1 for name in _LAUNCHER_SIZE_VARIABLES)


def _check_contiguous(array, op: str) -> None:
    if not array.flags["C_CONTIGUOUS"]:
        raise ValueError(f"{op}: the array of shape {tuple(array.shape)} is not C-contiguous; collectives "
                         "work on one contiguous buffer, so pass xp.ascontiguousarray(a) and copy the result back")


class Communicator:
    """The interface. ``rank`` is in ``range(world_size)``; rank 0 is the *root* (logs, checkpoints)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0  # rank among the processes on this machine: which GPU this rank drives

    @property
    def is_root(self) -> bool:
        return self.rank == 0

    def allreduce_sum(self, array):
        """Replace ``array`` on every rank by the elementwise sum over all ranks; returns it."""
        raise NotImplementedError

    def broadcast(self, array, root: int = 0):
        """Replace ``array`` on every rank by rank ``root``'s; returns it."""
        raise NotImplementedError

    def barrier(self) -> None:
        """Wait until every rank has reached this point."""
        raise NotImplementedError

    def __repr__(self):
        return f"{type(self).__name__}(rank={self.rank}, world_size={self.world_size})"


class SingleProcess(Communicator):
    """World size 1: the sum over one rank is the array itself, so every collective does nothing."""

    def allreduce_sum(self, array):
        return array

    def broadcast(self, array, root: int = 0):
        return array

    def barrier(self) -> None:
        pass


def _import_mpi():
    try:
        from mpi4py import MPI
    except ImportError as error:
        raise RuntimeError(
            "distributed training over MPI needs mpi4py and an MPI library: apt-get install openmpi-bin "
            "libopenmpi-dev, then pip install 'minires[mpi]'") from error
    return MPI


class MPICommunicator(Communicator):
    """Collectives over ``mpi4py`` (default: ``MPI.COMM_WORLD``)."""

    def __init__(self, mpi_comm=None):
        self.MPI = _import_mpi()
        self.comm = self.MPI.COMM_WORLD if mpi_comm is None else mpi_comm
        self.rank, self.world_size = self.comm.Get_rank(), self.comm.Get_size()
        node = self.comm.Split_type(self.MPI.COMM_TYPE_SHARED)  # the ranks that share this machine
        self.local_rank = node.Get_rank()
        node.Free()

    def allreduce_sum(self, array):
        _check_contiguous(array, "allreduce_sum")
        host = backend.to_device(array, "cpu")
        self.comm.Allreduce(self.MPI.IN_PLACE, host, op=self.MPI.SUM)
        return _copy_back(host, array)

    def broadcast(self, array, root: int = 0):
        _check_contiguous(array, "broadcast")
        host = backend.to_device(array, "cpu")
        self.comm.Bcast(host, root=root)
        return _copy_back(host, array)

    def barrier(self) -> None:
        self.comm.Barrier()


def _copy_back(host: np.ndarray, array):
    """Write the host buffer's result into ``array`` (a no-op when ``array`` is that host buffer)."""
    if host is not array:
        array[...] = backend.get_array_module(array).asarray(host)
    return array


_NCCL_TYPE_NAMES = {np.dtype(np.float16): "NCCL_FLOAT16", np.dtype(np.float32): "NCCL_FLOAT32",
                    np.dtype(np.float64): "NCCL_FLOAT64", np.dtype(np.int32): "NCCL_INT32",
                    np.dtype(np.int64): "NCCL_INT64"}


def _import_nccl():
    try:
        from cupy.cuda import nccl
    except Exception:  # noqa: BLE001 - no CuPy, or CuPy without NCCL
        nccl = None
    if nccl is None or not nccl.available:
        raise RuntimeError("the NCCL communicator needs CuPy built with NCCL on a machine with NVIDIA GPUs: "
                           "pip install 'minires[gpu]'; on CPU ranks use the MPI communicator instead")
    return nccl


class NCCLCommunicator(Communicator):
    """Collectives over NCCL (``cupy.cuda.nccl``) on CuPy arrays; one GPU per rank.

    Launch one process per GPU with ``mpirun -n K`` (on a cluster, ``-npernode G`` with G the GPUs of a
    machine). Each rank makes GPU ``local_rank`` its current CuPy device, rank 0 draws NCCL's unique id
    and MPI broadcasts it, and every rank joins the NCCL communicator with it. Collectives are queued on
    the current CuPy stream, so the kernels that follow on that stream see their result.
    """

    def __init__(self, mpi: MPICommunicator | None = None):
        self.cupy, self.nccl = backend.cupy_or_none(), _import_nccl()
        mpi = MPICommunicator() if mpi is None else mpi
        self.rank, self.world_size, self.local_rank = mpi.rank, mpi.world_size, mpi.local_rank
        self.mpi = mpi
        self.cupy.cuda.Device(self.local_rank % self.cupy.cuda.runtime.getDeviceCount()).use()
        unique_id = self.nccl.get_unique_id() if self.rank == 0 else None
        unique_id = mpi.comm.bcast(unique_id, root=0)
        self.comm = self.nccl.NcclCommunicator(self.world_size, unique_id, self.rank)

    def _nccl_dtype(self, array):
        if not isinstance(array, self.cupy.ndarray):
            raise TypeError(f"NCCL collectives take CuPy arrays, got {type(array).__name__}; move the model and "
                            "data to the GPU (device='cuda') or use the MPI communicator on the CPU")
        if array.dtype not in _NCCL_TYPE_NAMES:
            raise TypeError(f"NCCL collectives: dtype {array.dtype} is not supported; use float16/32/64 or int32/64")
        return getattr(self.nccl, _NCCL_TYPE_NAMES[array.dtype])

    def allreduce_sum(self, array):
        nccl_type = self._nccl_dtype(array)  # first: it refuses a host array before .data.ptr is read
        _check_contiguous(array, "allreduce_sum")
        stream = self.cupy.cuda.get_current_stream().ptr
        self.comm.allReduce(array.data.ptr, array.data.ptr, array.size, nccl_type, self.nccl.NCCL_SUM, stream)
        return array

    def broadcast(self, array, root: int = 0):
        nccl_type = self._nccl_dtype(array)
        _check_contiguous(array, "broadcast")
        stream = self.cupy.cuda.get_current_stream().ptr
        self.comm.bcast(array.data.ptr, array.size, nccl_type, root, stream)
        return array

    def barrier(self) -> None:
        self.cupy.cuda.get_current_stream().synchronize()
        self.mpi.barrier()


def init(backend_name: str = "auto", device: str = "cpu") -> Communicator:
    """The communicator for this process.

    ``"auto"``: under ``mpirun`` with several ranks, NCCL when ``device`` is a GPU and MPI otherwise;
    else :class:`SingleProcess`. ``"mpi"``, ``"nccl"`` or ``"none"`` choose explicitly.
    """
    if backend_name == "auto":
        on_gpu = str(device).startswith("cuda")
        backend_name = ("nccl" if on_gpu else "mpi") if launched_by_mpirun() else "none"
    if backend_name == "none":
        return SingleProcess()
    if backend_name == "mpi":
        return MPICommunicator()
    if backend_name == "nccl":
        return NCCLCommunicator()
    raise ValueError(f"distributed.init: unknown backend {backend_name!r}; use 'auto', 'mpi', 'nccl' or 'none'")


def rank_device(device: str, comm: Communicator) -> str:
    """The device this rank computes on: with several ranks, ``"cuda"`` means this rank's own GPU
    (``local_rank`` modulo the GPUs of its machine); any other device string is kept as given."""
    if comm.world_size == 1 or str(device).strip().lower() != "cuda":
        return backend.parse_device(device)
    backend.parse_device(device)  # raises a clear error when there is no GPU
    return f"cuda:{comm.local_rank % backend.cupy_or_none().cuda.runtime.getDeviceCount()}"

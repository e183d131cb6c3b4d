"""Data-parallel training: synchronized BatchNorm, the sampler, the gradient all-reduce, and the whole
thing under a real ``mpirun -n 2`` (skipped when mpirun or mpi4py is missing).

In-process tests simulate K ranks with threads (:class:`ThreadRanks`), so the math is checked on
random shapes in milliseconds; the mpirun test checks the real MPI path end to end.
"""
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import threading
import types
from pathlib import Path

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import minires as mr
import minires.functional as F
from minires import backend, nn
from minires import distributed as dist
from minires.checkpoint import load_checkpoint
from minires.data import ArrayDataset, DataLoader
from minires.gradcheck import gradcheck

from conftest import assert_close, one_line

# --------------------------------------------------------------------------- K ranks as threads


class ThreadComm(dist.Communicator):
    """Rank ``rank`` of a group of threads; collectives meet in shared slots between two barriers."""

    def __init__(self, group, rank):
        self.group, self.rank, self.world_size = group, rank, group.size

    def _exchange(self, array):
        self.group.slots[self.rank] = array.copy()
        self.group.barrier.wait()
        values = list(self.group.slots)
        self.group.barrier.wait()  # nobody overwrites a slot before everyone has read them all
        return values

    def allreduce_sum(self, array):
        array[...] = sum(self._exchange(array))
        return array

    def broadcast(self, array, root=0):
        array[...] = self._exchange(array)[root]
        return array

    def barrier(self):
        self.group.barrier.wait()


class ThreadRanks:
    """Run ``fn(comm)`` on ``size`` threads, one per rank; return the results in rank order."""

    def __init__(self, size):
        self.size, self.slots = size, [None] * size
        self.barrier = threading.Barrier(size, timeout=30)

    def run(self, fn):
        results, errors = [None] * self.size, []

        def target(rank):
            try:
                results[rank] = fn(ThreadComm(self, rank))
            except BaseException as error:  # noqa: BLE001 - re-raised below, on the test's thread
                errors.append(error)
                self.barrier.abort()

        threads = [threading.Thread(target=target, args=(rank,)) for rank in range(self.size)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
        return results


# --------------------------------------------------------------------------- synchronized BatchNorm

def _batch_norm_case(rng, shape, track):
    channels = shape[1]
    x = rng.normal(1.5, 2.0, shape)
    weight, bias = rng.normal(1, 0.5, channels), rng.normal(0, 0.5, channels)
    running = (rng.normal(0, 1, channels), rng.uniform(0.5, 2, channels)) if track else (None, None)
    return x, weight, bias, running, rng.normal(size=shape)


def _run_batch_norm(norm, x, weight, bias, running, gy, **options):
    """Forward and backward of ``norm``; returns y, the three gradients and the running statistics."""
    xt = mr.tensor(x, requires_grad=True)
    wt, bt = mr.tensor(weight, requires_grad=True), mr.tensor(bias, requires_grad=True)
    rm, rv = (None, None) if running[0] is None else (running[0].copy(), running[1].copy())
    y = norm(xt, rm, rv, wt, bt, True, 0.1, 1e-5, **options)
    y.backward(mr.tensor(gy))
    return y.numpy(), xt.grad.numpy(), wt.grad.numpy(), bt.grad.numpy(), rm, rv


@settings(max_examples=20, deadline=None)
@given(ranks=st.integers(2, 3), per_rank=st.integers(1, 3), channels=st.integers(1, 3),
       spatial=st.sampled_from([(), (3,), (2, 3)]), track=st.booleans(), seed=st.integers(0, 2**16))
def test_sync_batch_norm_over_ranks_equals_batch_norm_over_the_whole_batch(ranks, per_rank, channels, spatial,
                                                                            track, seed):
    assume(per_rank * int(np.prod(spatial)) >= 2)  # training BN needs two values per channel on each rank
    shape = (per_rank * ranks, channels) + spatial
    x, weight, bias, running, gy = _batch_norm_case(np.random.default_rng(seed), shape, track)
    whole = _run_batch_norm(F.batch_norm, x, weight, bias, running, gy)

    def rank_part(comm):
        part = slice(comm.rank * per_rank, (comm.rank + 1) * per_rank)
        return _run_batch_norm(dist.sync_batch_norm, x[part], weight, bias, running, gy[part], comm=comm)

    parts = ThreadRanks(ranks).run(rank_part)
    # Each rank's loss is its share of the whole batch's sum(gy * y): outputs and input gradients are
    # the whole batch's slices, parameter gradients are local shares that add up, running stats agree.
    assert_close(np.concatenate([p[0] for p in parts]), whole[0], 1e-12)
    assert_close(np.concatenate([p[1] for p in parts]), whole[1], 1e-10)
    assert_close(sum(p[2] for p in parts), whole[2], 1e-12)
    assert_close(sum(p[3] for p in parts), whole[3], 1e-12)
    for p in parts:
        if track:
            assert_close(p[4], whole[4], 1e-12)
            assert_close(p[5], whole[5], 1e-12)


def test_sync_batch_norm_gradcheck_on_one_rank():
    rng = np.random.default_rng(0)
    x = mr.tensor(rng.normal(2, 3, (3, 2, 2, 2)), requires_grad=True)
    weight = mr.tensor(rng.normal(1, 0.5, 2), requires_grad=True)
    bias = mr.tensor(rng.normal(0, 0.5, 2), requires_grad=True)
    one_rank = dist.SingleProcess()
    assert gradcheck(lambda a, w, b: dist.sync_batch_norm(a, None, None, w, b, training=True, comm=one_rank),
                     [x, weight, bias])


def test_sync_batch_norm_keeps_float32():
    x = mr.tensor(np.random.default_rng(1).normal(size=(4, 3, 2, 2)).astype(np.float32), requires_grad=True)
    rm, rv = np.zeros(3, np.float32), np.ones(3, np.float32)
    y = dist.sync_batch_norm(x, rm, rv, training=True, comm=dist.SingleProcess())
    y.sum().backward()
    assert y.dtype == np.float32 and x.grad.dtype == np.float32
    assert rm.dtype == np.float32 and rv.dtype == np.float32


def test_convert_sync_batchnorm_keeps_the_same_tensors_and_names():
    model = nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.BatchNorm2d(4), nn.ReLU(),
                          nn.Sequential(nn.Flatten(), nn.Linear(4, 2), nn.BatchNorm1d(2)))
    model.eval()
    before = dict(model.named_parameters()), dict(model.named_buffers())
    keys = list(model.state_dict())
    converted = dist.convert_sync_batchnorm(model, dist.SingleProcess())
    assert converted is model and list(model.state_dict()) == keys
    assert isinstance(model[1], dist.SyncBatchNorm) and isinstance(model[3][2], dist.SyncBatchNorm)
    assert not model[1].training
    for name, tensor in list(model.named_parameters()) + list(model.named_buffers()):
        assert tensor is {**before[0], **before[1]}[name]


def test_sync_batchnorm_layer_matches_batchnorm_layer_on_one_rank():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(4, 3, 2, 2))
    plain, synced = nn.BatchNorm2d(3).double(), nn.BatchNorm2d(3).double()
    synced = dist.convert_sync_batchnorm(synced, dist.SingleProcess())
    for _ in range(2):
        outputs = [layer(mr.tensor(x)).numpy() for layer in (plain, synced)]
        assert_close(outputs[1], outputs[0], 1e-12)
    for a, b in zip(plain.state_dict().values(), synced.state_dict().values()):
        assert_close(b, a, 1e-12)


# --------------------------------------------------------------------------- sampler


@pytest.mark.parametrize("size,ranks,batch", [(20, 2, 3), (23, 3, 2), (7, 1, 4)])
def test_sampler_shards_each_global_batch(size, ranks, batch):
    data = range(size)
    shards = [list(dist.DistributedSampler(data, ranks, r, seed=5)) for r in range(ranks)]
    assert all(len(s) == size // ranks for s in shards)
    everything = [i for s in shards for i in s]
    assert len(set(everything)) == len(everything)                    # disjoint
    assert len(set(everything)) == size - size % ranks                 # covers all but the remainder
    single = list(dist.DistributedSampler(data, 1, 0, seed=5))
    per_rank = size // ranks
    for step in range(0, per_rank, batch):                            # at every step the ranks' batches of B
        union = sorted(i for s in shards for i in s[step:step + batch])  # form one process's batch of KB
        assert union == sorted(single[step * ranks:min(step + batch, per_rank) * ranks])


@pytest.mark.parametrize("epoch", [0, 3])
def test_ranks_loaders_together_give_the_single_process_loaders_batches(epoch):
    size, ranks, batch = 26, 2, 4
    dataset = ArrayDataset(np.zeros((size, 1, 1, 1), np.uint8), np.arange(size))  # labels = indices
    single = DataLoader(dataset, ranks * batch, shuffle=True, seed=9)
    shards = [DataLoader(dataset, batch, seed=9, sampler=dist.DistributedSampler(dataset, ranks, r, seed=9))
              for r in range(ranks)]
    for loader in [single] + shards:
        loader.set_epoch(epoch)
    for whole, *parts in zip(single, *shards):
        assert sorted(np.concatenate([y for _, y in parts])) == sorted(whole[1])


def test_sampler_is_seeded_per_epoch():
    sampler = dist.DistributedSampler(range(50), 2, 1, seed=3)
    first = list(sampler)
    assert list(sampler) == first
    sampler.set_epoch(1)
    assert list(sampler) != first
    assert list(dist.DistributedSampler(range(50), 2, 1, seed=4)) != first
    assert list(dist.DistributedSampler(range(6), 2, 1, shuffle=False)) == [1, 3, 5]


def test_sampler_without_drop_last_covers_everything_for_evaluation():
    shards = [list(dist.DistributedSampler(range(11), 3, r, shuffle=False, drop_last=False)) for r in range(3)]
    assert shards == [[0, 3, 6, 9], [1, 4, 7, 10], [2, 5, 8]]
    assert [len(dist.DistributedSampler(range(11), 3, r, drop_last=False)) for r in range(3)] == [4, 4, 3]


def test_sampler_rejects_bad_ranks():
    with pytest.raises(ValueError, match="rank 2"):
        dist.DistributedSampler(range(10), 2, 2)
    with pytest.raises(ValueError, match="3 examples"):
        dist.DistributedSampler(range(3), 4, 0)



def test_per_rank_batch_divides_the_global_batch_and_suggests_batches_that_divide():
    four_ranks = types.SimpleNamespace(world_size=4)
    assert dist.per_rank_batch(8, four_ranks) == 2
    with pytest.raises(ValueError, match="use 8 or 12"):
        dist.per_rank_batch(10, four_ranks)
    with pytest.raises(ValueError) as error:                 # smaller than the number of ranks
        dist.per_rank_batch(2, four_ranks)
    assert "use 4" in str(error.value) and "use 0" not in str(error.value)

# --------------------------------------------------------------------------- gradients and state


def test_allreduce_gradients_averages_in_one_buffer():
    rng = np.random.default_rng(3)
    grads = [[rng.normal(size=(2, 3)), rng.normal(size=4)] for _ in range(3)]

    def rank_part(comm):
        params = [mr.tensor(np.zeros_like(g), requires_grad=True) for g in grads[comm.rank]]
        for p, g in zip(params, grads[comm.rank]):
            p.grad = mr.tensor(g)
        calls = []
        original = comm.allreduce_sum
        comm.allreduce_sum = lambda a: calls.append(a.size) or original(a)
        dist.allreduce_gradients(params, comm)
        return [p.grad.numpy() for p in params], calls

    for averaged, calls in ThreadRanks(3).run(rank_part):
        assert calls == [10]
        for got, index in zip(averaged, range(2)):
            assert_close(got, np.mean([g[index] for g in grads], axis=0), 1e-15)


def test_allreduce_gradients_treats_a_missing_gradient_as_zero():
    def rank_part(comm):
        p = mr.tensor(np.zeros(3), requires_grad=True)
        p.grad = mr.tensor(np.full(3, 4.0)) if comm.rank == 0 else None
        dist.allreduce_gradients([p], comm)
        return p.grad.numpy()

    for got in ThreadRanks(2).run(rank_part):
        assert_close(got, np.full(3, 2.0), 1e-15)


def test_allreduce_gradients_refuses_a_model_with_nothing_to_train_as_ddp_does():
    def rank_part(comm):
        frozen = nn.Linear(3, 2)
        for p in frozen.parameters():
            p.requires_grad = False
        dist.allreduce_gradients(frozen.parameters(), comm)

    with pytest.raises(RuntimeError, match=r"allreduce_gradients: none of the parameters requires a gradient, so "
                                           r"there is nothing to average over the 2 ranks"):
        ThreadRanks(2).run(rank_part)


def _seeded_net(seed):
    mr.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3))


def test_broadcast_state_copies_rank_0():
    models = [_seeded_net(rank) for rank in range(2)]  # built here: the default generator is process-wide
    for rank, model in enumerate(models):
        model[1].running_mean.data[...] = rank + 1.0
    expected = models[0].state_dict()
    ThreadRanks(2).run(lambda comm: dist.broadcast_state(models[comm.rank], comm))
    assert any(np.any(a != b) for a, b in zip(_seeded_net(1).state_dict().values(), expected.values()))
    for model in models:
        for key, value in model.state_dict().items():
            np.testing.assert_array_equal(value, expected[key])


def test_average_buffers_averages_running_statistics_only():
    models = [nn.BatchNorm2d(2) for _ in range(2)]
    for rank, model in enumerate(models):
        model.running_mean.data[...] = [rank, 2.0 * rank]
        model.num_batches_tracked.data[...] = 5
    ThreadRanks(2).run(lambda comm: dist.average_buffers(models[comm.rank], comm))
    for model in models:
        np.testing.assert_array_equal(model.running_mean.numpy(), [0.5, 1.0])
        np.testing.assert_array_equal(model.running_var.numpy(), [1.0, 1.0])
        assert int(model.num_batches_tracked.item()) == 5


def test_init_single_process_outside_mpirun(monkeypatch):
    for name in ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE"):
        monkeypatch.delenv(name, raising=False)
    comm = dist.init(device="cuda")
    assert isinstance(comm, dist.SingleProcess) and comm.world_size == 1 and comm.is_root
    assert dist.rank_device("cpu", comm) == "cpu"
    with pytest.raises(ValueError, match="unknown backend"):
        dist.init("gloo")


# --------------------------------------------------------------------------- a real mpirun -n 2

WORKER = Path(__file__).with_name("distributed_worker.py")
needs_mpi = pytest.mark.skipif(shutil.which("mpirun") is None or importlib.util.find_spec("mpi4py") is None,
                               reason="needs mpirun (apt-get install openmpi-bin) and mpi4py (pip install -e '.[mpi]')")


def _launch(arguments, ranks, cwd=None):
    """Run ``python ARGUMENTS`` as one process, or under ``mpirun -n RANKS``; return its stdout."""
    env = dict(os.environ, PYTHONPATH=str(WORKER.parent.parent), OMPI_ALLOW_RUN_AS_ROOT="1",
               OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OMP_NUM_THREADS="1", NUMBA_NUM_THREADS="1")
    command = [sys.executable] + arguments
    if ranks > 1:
        command = ["mpirun", "-n", str(ranks), "--oversubscribe"] + command
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, f"{' '.join(command)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _run_worker(out, batch, ranks):
    _launch([str(WORKER), "--out", str(out), "--batch", str(batch)], ranks)


@pytest.fixture(scope="module")
def worker_runs(tmp_path_factory):
    """One mpirun -n 2 with per-rank batch 4, and one single process with batch 8."""
    two, one = tmp_path_factory.mktemp("two_ranks"), tmp_path_factory.mktemp("one_rank")
    _run_worker(two, batch=4, ranks=2)
    _run_worker(one, batch=8, ranks=1)
    return two, one


def _state(directory, rank, variant):
    with np.load(directory / f"rank{rank}-{variant}.npz") as state:
        return dict(state)


@needs_mpi
def test_two_ranks_with_sync_bn_train_like_one_rank_with_twice_the_batch(worker_runs):
    two, one = worker_runs
    single = _state(one, 0, "sync")
    for rank in (0, 1):
        state = _state(two, rank, "sync")
        for key, value in single.items():
            assert_close(state[key], value, 1e-10)
    # Without synchronization each rank normalizes with its own 4 examples: the weights differ, which
    # shows the comparison above can fail.
    local = _state(two, 0, "local")
    assert max(np.abs(local[k] - single[k]).max() for k in single if k.endswith("weight")) > 1e-6
    other = _state(two, 1, "local")
    for key in ("0.weight", "1.weight", "1.bias", "5.weight", "5.bias"):  # ... but the replicas agree
        np.testing.assert_array_equal(other[key], local[key])            # (running statistics are per rank)


@needs_mpi
def test_collectives_and_sharding_under_mpirun(worker_runs):
    two, one = worker_runs
    records = [json.loads((two / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    whole = json.loads((one / "rank0.json").read_text())
    for record in records:
        assert record["world_size"] == 2
        assert record["summed"] == [1.0 + 2.0, 0.0 + 10.0]
        assert record["broadcast"] == [1 + 5]
    shards = [set(r["shard"]) for r in records]
    assert not shards[0] & shards[1]
    assert shards[0] | shards[1] == set(whole["shard"][:32])  # 33 examples: one left out to even the shares


# float64: in float32 the two runs round differently, and one ReLU input that lands on the other side
# of 0 changes a gradient by a percent (seen here); float64 leaves rounding far from every kink
TINY_RUN = ["--model", "resnet8", "--width", "4", "--train-size", "64", "--test-size", "30", "--batch-size", "16",
            "--epochs", "2", "--no-augment", "--sync-bn", "--no-progress", "--dtype", "float64"]


def _minires_train(cwd, ranks):
    stdout = _launch(["-m", "minires", "train", "--out", "run"] + TINY_RUN, ranks, cwd=cwd)
    with np.load(next((cwd / "run").glob("checkpoint-*.npz"))) as checkpoint:
        return stdout, dict(checkpoint)


@needs_mpi
def test_minires_train_under_mpirun_matches_one_process(tmp_path):
    (tmp_path / "one").mkdir(), (tmp_path / "two").mkdir()
    _, single = _minires_train(tmp_path / "one", ranks=1)
    stdout, parallel = _minires_train(tmp_path / "two", ranks=2)
    assert stdout.count("minires train:") == 1 and "2 rank(s)" in stdout  # rank 0 alone reports
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == ["run"]
    metrics = [json.loads(line) for line in (tmp_path / "two" / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in metrics if m["kind"] == "epoch"] == [1, 2]  # one writer: no duplicate lines
    ranks_saved = [load_checkpoint(tmp_path / run / "run")["world_size"] for run in ("one", "two")]
    assert ranks_saved == [1, 2]            # what a resume on another count checks (tests/test_train.py)
    model_keys = [k for k in single if k.startswith("model/")]
    assert model_keys
    for key in model_keys:  # summed in a different order: the README says they agree to about 12 digits
        assert parallel[key].dtype.kind != "f" or parallel[key].dtype == np.float64
        assert_close(parallel[key], single[key], 1e-12)


# --------------------------------------------------------------------------- NCCL (GPU machines only)

NO_NCCL = not backend.cuda_available() or importlib.util.find_spec("mpi4py") is None


@pytest.mark.parametrize("collective", ["allreduce_sum", "broadcast"])
def test_nccl_collectives_refuse_a_host_array_before_touching_it(collective):
    """A NumPy array gets the TypeError naming CuPy, not an AttributeError from reading its device
    pointer (found on the first GPU run). No GPU needed: the communicator is never connected."""
    comm = object.__new__(dist.NCCLCommunicator)
    comm.cupy = type("NoCupy", (), {"ndarray": type("DeviceArray", (), {})})
    with pytest.raises(TypeError, match="CuPy arrays"):
        getattr(comm, collective)(np.zeros(3))


@pytest.mark.gpu
@pytest.mark.skipif(NO_NCCL, reason="needs CuPy with NCCL, a CUDA GPU and mpi4py")
def test_nccl_communicator_on_one_gpu():
    cupy = backend.cupy_or_none()
    comm = dist.NCCLCommunicator()  # one rank (MPI's singleton world): sums and broadcasts change nothing
    for dtype in ("float32", "float64", "int64"):
        a = cupy.arange(5, dtype=dtype)
        np.testing.assert_array_equal(cupy.asnumpy(comm.allreduce_sum(a)), np.arange(5))
        np.testing.assert_array_equal(cupy.asnumpy(comm.broadcast(a)), np.arange(5))
    rng = np.random.default_rng(0)
    x = mr.tensor(rng.normal(size=(4, 3, 2, 2)), requires_grad=True)
    gy = rng.normal(size=(4, 3, 2, 2))  # not constant: BN's input gradient of a constant is 0 up to rounding
    expected = F.batch_norm(x, None, None, training=True)
    expected.backward(mr.tensor(gy))
    xg = mr.tensor(x.numpy(), device="cuda", requires_grad=True)
    y = dist.sync_batch_norm(xg, None, None, training=True, comm=comm)
    y.backward(mr.tensor(gy, device="cuda"))
    assert_close(y.numpy(), expected.numpy(), 1e-12)
    assert_close(xg.grad.numpy(), x.grad.numpy(), 1e-10)
    with pytest.raises(TypeError, match="CuPy arrays"):
        comm.allreduce_sum(np.zeros(3))


def test_scaling_measure_runs_on_one_process():
    from minires.distributed.scaling import measure

    result = measure("resnet20", batch_size=2, steps=1, sync_bn=True, comm=dist.SingleProcess())
    assert result["ranks"] == 1
    assert all(np.isfinite(v) and v >= 0 for v in result.values())


def test_scaling_names_the_busy_core_throughput_for_what_it_is(monkeypatch, capsys):
    from minires.distributed import scaling

    cpu_clock = iter([10.0, 10.5])                       # the timed steps take 0.5 CPU seconds
    monkeypatch.setattr(scaling.time, "process_time", lambda: next(cpu_clock))
    result = scaling.measure("resnet20", batch_size=2, steps=1, sync_bn=False, comm=dist.SingleProcess())
    assert set(result) == {"ranks", "images_per_second", "images_per_second_on_busy_cores", "allreduce_ms"}
    assert result["images_per_second_on_busy_cores"] == 2 / 0.5  # 2 images in 0.5 s of 1 rank's core
    monkeypatch.undo()
    scaling.main(["--batch-size", "2", "--steps", "1"])
    assert " img/s per 1 busy core(s), " in capsys.readouterr().out


def test_the_readmes_measured_speed_ups_are_the_ratios_of_its_busy_core_columns():
    """The README's "vs 1 rank" column (and "Two ranks do 1.84x the work of one in the same
    core-seconds") is each configuration's mean images/s per busy core over one rank's."""
    readme = one_line("README.md")
    table = readme.split("| configuration | images/s, wall-clock | images/s per busy core(s) | vs 1 rank |", 1)[1]
    cells = [c.strip() for c in table.split("```")[0].split("|") if c.strip() and set(c.strip()) != {"-"}]
    rows = [cells[i:i + 4] for i in range(0, len(cells) - len(cells) % 4, 4)]
    assert [r[0] for r in rows][:4] == ["1 rank, 1 thread", "2 ranks, 1 thread each", "2 ranks, `--sync-bn`",
                                        "1 rank, 2 threads (`OMP_NUM_THREADS=NUMBA_NUM_THREADS=2`)"]
    per_core = {r[0]: np.mean([float(v) for v in r[2].split(", ")]) for r in rows[:4]}
    one = per_core["1 rank, 1 thread"]
    for name, row in zip(per_core, rows[:4]):
        ratio = per_core[name] / one
        assert row[3] == (f"{ratio:.2f}×" if name != "1 rank, 1 thread" else "1"), (name, ratio)
    assert f"Two ranks do {per_core['2 ranks, 1 thread each'] / one:.2f}× the work of one in the same core-seconds" \
        in readme


@pytest.mark.parametrize("sync_bn", [False, True], ids=["per-rank-bn", "sync-bn"])
def test_a_step_all_reduces_once_for_the_gradients_and_twice_per_bn_layer_with_sync_bn(sync_bn):
    """The README: the ranks average their gradients "in one flat all-reduce per step", and "`--sync-bn`
    adds 38 small all-reduces per step (two per BN layer)" to ResNet-20's (one forward, one backward)."""
    class Counting(dist.SingleProcess):     # counts as if two ranks took part (each sum is one rank's)
        calls, world_size = 0, 2

        def allreduce_sum(self, array):
            Counting.calls += 1
            return array

    comm = Counting()
    mr.manual_seed(0)
    model = mr.models.get_model("resnet20")
    layers = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    if sync_bn:
        dist.convert_sync_batchnorm(model, comm)
    x = mr.tensor(np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32))
    F.cross_entropy(model(x), np.array([1, 2])).backward()
    dist.allreduce_gradients(model.parameters(), comm)
    assert Counting.calls == 1 + (2 * layers if sync_bn else 0)
    assert f"`--sync-bn` adds {2 * layers} small all-reduces per step (two per BN layer)" in one_line("README.md")

"""The trainer on tiny runs: outputs, exact resume, atomic checkpoints, MNIST files, the CLI."""
import argparse
import json
import os
import re
import stat
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from conftest import idx_bytes, one_line

from minires import backend, checkpoint as ckpt
from minires.cli import main
from minires.cpu import threads
from minires.data.synthetic import DEFAULT_SIZES
from minires.train import (RESUMABLE, Config, Trainer, _resolve_defaults, add_arguments, build_model, default_out, fit,
                           read_metrics)

TINY = dict(model="resnet8", width=4, train_size=24, test_size=10, batch_size=8, epochs=3,
            eval_batch_size=10, log_every=2, progress=False, seed=5)


@pytest.fixture(autouse=True)
def reference_conv():
    """The NumPy reference convolution: on these tiny shapes it is the fastest (no JIT, no threads),
    and the trainer does not depend on which implementation runs."""
    with backend.using("conv2d", "numpy"):
        yield


def _states_equal(a: dict, b: dict):
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_tiny_run_writes_metrics_curves_and_checkpoint(tmp_path):
    out = tmp_path / "run"
    final = fit(out=str(out), **TINY)
    records = read_metrics(out / "metrics.jsonl")
    epochs = [r for r in records if r["kind"] == "epoch"]
    assert [r["epoch"] for r in epochs] == [1, 2, 3] and [r["iteration"] for r in epochs] == [3, 6, 9]
    assert [r["iteration"] for r in records if r["kind"] == "train"] == [2, 4, 6, 8]
    assert final == epochs[-1] and 0 <= final["test_error"] <= 1 and np.isfinite(final["test_loss"])
    # the default schedule divides the rate by 10 at 50% and 75% of the iterations (4.5 -> 4, 6.75 -> 7)
    assert [r["lr"] for r in epochs] == pytest.approx([0.1, 0.01, 0.001])
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    state = ckpt.load_checkpoint(out)
    assert state["epoch"] == 3 and state["iteration"] == 9
    assert "layer1.0.bn1.running_var" in state["model"] and state["config"]["model"] == "resnet8"
    assert state["optimizer"]["state"]  # momentum buffers
    with pytest.raises(FileExistsError, match="--resume"):
        fit(out=str(out), **TINY)


def test_resume_reproduces_the_uninterrupted_run_bit_for_bit(tmp_path, monkeypatch):
    straight = Trainer(Config(out=str(tmp_path / "straight"), **TINY))
    straight.fit()

    interrupted = Trainer(Config(out=str(tmp_path / "stopped"), **TINY))
    original_save = Trainer.save_checkpoint

    def save_then_die(self):
        path = original_save(self)
        if self.epoch == 1:
            raise KeyboardInterrupt("simulated kill right after the epoch-1 checkpoint")
        return path

    monkeypatch.setattr(Trainer, "save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        interrupted.fit()
    monkeypatch.undo()

    resumed = Trainer.resume(tmp_path / "stopped", progress=False)
    assert (resumed.epoch, resumed.iteration) == (1, 3)
    resumed.fit()
    _states_equal(resumed.model.state_dict(), straight.model.state_dict())
    a, b = resumed.optimizer.state_dict(), straight.optimizer.state_dict()
    for i in b["state"]:
        np.testing.assert_array_equal(a["state"][i]["momentum_buffer"], b["state"][i]["momentum_buffer"])
    assert resumed.scheduler.get_last_lr() == straight.scheduler.get_last_lr()

    def losses(run):
        return [r["test_loss"] for r in read_metrics(tmp_path / run / "metrics.jsonl") if r["kind"] == "epoch"]
    assert losses("stopped") == losses("straight")


def test_resume_can_train_longer_on_the_same_schedule(tmp_path):
    out = tmp_path / "run"
    fit(out=str(out), **{**TINY, "epochs": 2})
    final = fit(out=str(out), resume=True, epochs=3, progress=False)
    assert final["epoch"] == 3
    assert ckpt.load_checkpoint(out)["config"]["milestones"] == [1.0, 1.5]  # fixed when the run began


def _saved_with(out, **changes):
    """Rewrite the checkpoint in ``out`` with some of its entries changed (None: removed)."""
    state = ckpt.load_checkpoint(out)
    state.update(changes)
    ckpt.save_checkpoint(out, {k: v for k, v in state.items() if v is not None})


@pytest.mark.parametrize("sync_bn", [False, True])
def test_a_resume_on_another_rank_count_is_refused_unless_batch_norm_is_synchronised(tmp_path, sync_bn):
    """Without --sync-bn each rank's BatchNorm statistics cover its share of the batch: a run saved by
    2 ranks would go on as another run in one process. With --sync-bn every count computes the same."""
    out = tmp_path / "run"
    fit(out=str(out), **{**TINY, "epochs": 1, "sync_bn": sync_bn})
    assert ckpt.load_checkpoint(out)["world_size"] == 1
    _saved_with(out, world_size=2)
    if sync_bn:
        assert fit(out=str(out), resume=True, epochs=2, progress=False)["epoch"] == 2
        return
    with pytest.raises(ValueError, match=r"trained on 2 rank\(s\) without --sync-bn.*1/2 of the batch of 8; on 1 "
                                         r"rank\(s\) it would be 1/1.*`mpirun -n 2 minires train --resume"):
        fit(out=str(out), resume=True, epochs=2, progress=False)


def test_a_checkpoint_without_a_rank_count_resumes_and_a_bad_one_is_refused(tmp_path):
    out = tmp_path / "run"
    fit(out=str(out), **{**TINY, "epochs": 1})
    _saved_with(out, world_size=0)
    with pytest.raises(ckpt.CheckpointError, match="'world_size' = 0 is not a number of ranks"):
        Trainer.resume(out, epochs=2, progress=False)
    _saved_with(out, world_size=None)       # written before the rank count was saved
    assert fit(out=str(out), resume=True, epochs=2, progress=False)["epoch"] == 2


def test_float64_runs_keep_their_dtype_through_a_resume(tmp_path):
    out = tmp_path / "run"
    fit(out=str(out), **{**TINY, "epochs": 1, "dtype": "float64"})
    trainer = Trainer.resume(out, epochs=2, progress=False)
    assert {p.data.dtype for p in trainer.model.parameters()} == {np.dtype("float64")}
    assert trainer._input(np.zeros((1, 3, 32, 32), np.float32)).dtype == np.float64
    assert trainer.fit()["epoch"] == 2



def test_float64_runs_on_one_and_two_threads_agree_to_about_12_digits(tmp_path):
    """The README: with ``--dtype float64`` runs on other thread counts agree to about 12 digits (two
    threads split each conv's images, so its weight gradient is summed in another order)."""
    weights, before = [], threads.get_num_threads()
    try:
        for n in (1, 2):
            threads.set_num_threads(n)
            trainer = Trainer(Config(**{**TINY, "train_size": 64, "batch_size": 16, "epochs": 2, "dtype": "float64",
                                        "out": str(tmp_path / f"threads{n}")}))
            trainer.fit()
            weights.append(np.concatenate([p.numpy().ravel() for p in trainer.model.parameters()]))
    finally:
        threads.set_num_threads(before)
    assert np.abs(weights[0] - weights[1]).max() <= 1e-12 * np.abs(weights[0]).max()
    readme = one_line("README.md")
    assert "where runs on other thread counts or numbers of ranks agree to about 12 digits" in readme


# ----------------------------------------------------------------------------- atomic checkpoints
def _state(value):
    return {"model": {"w": np.full((3, 2), value, np.float32)}, "epoch": int(value), "nested": [{"k": 1}, None]}


def test_checkpoint_round_trip(tmp_path):
    state = {**_state(1.5), "optimizer": {"state": {0: {"momentum_buffer": np.arange(3.0)}}}}
    ckpt.save_checkpoint(tmp_path, state)
    loaded = ckpt.load_checkpoint(tmp_path)
    np.testing.assert_array_equal(loaded["model"]["w"], state["model"]["w"])
    np.testing.assert_array_equal(loaded["optimizer"]["state"]["0"]["momentum_buffer"], np.arange(3.0))
    assert loaded["epoch"] == 1 and loaded["nested"] == [{"k": 1}, None]
    assert not list(tmp_path.glob("*.pkl"))
    with pytest.raises(TypeError, match="cannot store"):
        ckpt.save_checkpoint(tmp_path, {"bad": object()})


def test_a_save_deletes_only_its_own_old_files_not_those_of_a_name_it_prefixes(tmp_path):
    """Saving "model" deleted "model-best-<id>.npz" (a glob model-*.npz), and with it the other checkpoint."""
    ckpt.save_checkpoint(tmp_path, _state(1), name="model-best")
    (tmp_path / ".model-best.json.x1y2.tmp").write_bytes(b"another save's, still being written")
    ckpt.save_checkpoint(tmp_path, _state(2), name="model")
    ckpt.save_checkpoint(tmp_path, _state(3), name="model")
    assert ckpt.load_checkpoint(tmp_path, name="model-best")["epoch"] == 1
    assert ckpt.load_checkpoint(tmp_path, name="model")["epoch"] == 3
    assert len(list(tmp_path.iterdir())) == 5


@pytest.mark.parametrize("name", ["my run", "../elsewhere", "", "-x"])
def test_a_checkpoint_name_that_load_would_refuse_is_refused_before_saving(tmp_path, name):
    """"my run" was saved, and its load then refused the array file's name: a checkpoint no one could read."""
    with pytest.raises(ValueError, match=f"checkpoint name {name!r}"):
        ckpt.save_checkpoint(tmp_path, _state(1), name=name)
    assert not list(tmp_path.iterdir())


def test_exception_while_writing_arrays_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    ckpt.save_checkpoint(tmp_path, _state(1))

    def half_written(file, **arrays):
        file.write(b"PK\x03\x04 partial zip")
        raise OSError("disk full")

    monkeypatch.setattr(ckpt.np, "savez", half_written)
    with pytest.raises(OSError, match="disk full"):
        ckpt.save_checkpoint(tmp_path, _state(2))
    monkeypatch.undo()
    assert ckpt.load_checkpoint(tmp_path)["epoch"] == 1
    ckpt.save_checkpoint(tmp_path, _state(3))  # and the next save cleans up
    assert ckpt.load_checkpoint(tmp_path)["epoch"] == 3
    assert len(list(tmp_path.iterdir())) == 2


def test_exception_before_the_json_rename_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    ckpt.save_checkpoint(tmp_path, _state(1))
    real_replace = os.replace

    def fail_on_json(src, dst):
        if str(dst).endswith(".json"):
            raise KeyboardInterrupt("killed between the two renames")
        real_replace(src, dst)

    monkeypatch.setattr(ckpt.os, "replace", fail_on_json)
    with pytest.raises(KeyboardInterrupt):
        ckpt.save_checkpoint(tmp_path, _state(2))
    monkeypatch.undo()
    assert ckpt.load_checkpoint(tmp_path)["epoch"] == 1


def test_atomic_writes_get_the_mode_an_ordinary_write_gets(tmp_path):
    """The umask decides, as for open(): a run folder shared with a group stays readable to it."""
    old_umask = os.umask(0o022)
    try:
        (tmp_path / "plain").write_bytes(b"x")
        ckpt.save_checkpoint(tmp_path, _state(1))
        ckpt.save_checkpoint(tmp_path, _state(2))  # replacing the JSON keeps the mode too
    finally:
        os.umask(old_umask)
    modes = {path.name: path.stat().st_mode & 0o777 for path in tmp_path.iterdir()}
    assert set(modes.values()) == {0o644}, modes


def test_a_rename_is_flushed_to_disk_before_the_previous_arrays_are_deleted(tmp_path, monkeypatch):
    """Until its folder is flushed, a rename can be lost in a power cut while the deletion that followed
    it survives: the old JSON would point to a deleted .npz."""
    events = []
    real_fsync, real_replace, real_unlink = os.fsync, os.replace, type(tmp_path).unlink
    monkeypatch.setattr(ckpt.os, "fsync", lambda fd: events.append(
        "fsync folder" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync file") or real_fsync(fd))
    monkeypatch.setattr(ckpt.os, "replace", lambda src, dst: events.append(f"replace {dst.suffix}") or real_replace(src, dst))
    monkeypatch.setattr(type(tmp_path), "unlink", lambda path, **kw: events.append("unlink") or real_unlink(path, **kw))
    ckpt.save_checkpoint(tmp_path, _state(1))
    events.clear()
    ckpt.save_checkpoint(tmp_path, _state(2))
    assert events == ["fsync file", "replace .npz", "fsync folder", "fsync file", "replace .json", "fsync folder",
                      "unlink"]


def test_hard_kill_during_save_keeps_the_previous_checkpoint(tmp_path):
    """A child process dies (os._exit: no cleanup, no finally) halfway through writing the arrays."""
    script = textwrap.dedent(f"""
        import os, numpy as np
        from minires import backend, checkpoint as ckpt
        ckpt.save_checkpoint({str(tmp_path)!r}, {{"epoch": 1, "w": np.ones(1000)}})
        def die_midway(file, **arrays):
            file.write(b"PK" + bytes(4000))
            file.flush()
            os._exit(9)
        ckpt.np.savez = die_midway
        ckpt.save_checkpoint({str(tmp_path)!r}, {{"epoch": 2, "w": np.zeros(1000)}})
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 9, result.stderr
    assert list(tmp_path.glob(".*.tmp"))  # the half-written file is still there...
    loaded = ckpt.load_checkpoint(tmp_path)  # ...and ignored
    assert loaded["epoch"] == 1 and loaded["w"].sum() == 1000


def test_damaged_checkpoint_is_reported(tmp_path):
    ckpt.save_checkpoint(tmp_path, _state(1))
    array_file = next(tmp_path.glob("checkpoint-*.npz"))
    array_file.write_bytes(array_file.read_bytes()[:-1] + b"x")
    with pytest.raises(ckpt.CheckpointError, match="SHA-256"):
        ckpt.load_checkpoint(tmp_path)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        ckpt.load_checkpoint(tmp_path / "elsewhere")


# ----------------------------------------------------------------------------- MNIST and the CLI
def test_cli_trains_a_few_steps_on_mnist_files(tmp_path, capsys):
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 16), ("t10k", 8)):
        (tmp_path / f"{prefix}-images-idx3-ubyte").write_bytes(idx_bytes(rng.integers(0, 256, (n, 28, 28))))
        (tmp_path / f"{prefix}-labels-idx1-ubyte").write_bytes(idx_bytes(rng.integers(0, 10, n)))
    out = tmp_path / "run"
    code = main(["train", "--model", "resnet8", "--width", "4", "--data", "mnist", "--data-dir", str(tmp_path),
                 "--epochs", "1", "--batch-size", "8", "--seed", "1", "--out", str(out), "--no-progress"])
    assert code == 0
    assert "held-out accuracy" in capsys.readouterr().out
    state = ckpt.load_checkpoint(out)
    assert state["model"]["conv1.weight"].shape == (4, 1, 3, 3)  # built for one input channel
    assert state["iteration"] == 2 and state["config"]["data"] == "mnist"
    code = main(["train", "--resume", "--out", str(out), "--epochs", "2", "--no-progress"])
    assert code == 0 and ckpt.load_checkpoint(out)["iteration"] == 4


def test_build_model_accepts_any_cifar_depth():
    assert build_model("resnet8", width=4).conv1.weight.shape == (4, 3, 3, 3)
    assert sum(p.size for p in build_model("resnet20").parameters()) == 269_722  # the paper's ResNet-20
    with pytest.raises(ValueError, match="6n"):
        build_model("resnet9")
    with pytest.raises(ValueError, match="unknown model"):
        build_model("alexnet")


def test_metrics_lines_after_the_checkpoint_are_dropped_on_resume(tmp_path):
    out = tmp_path / "run"
    fit(out=str(out), **{**TINY, "epochs": 1})
    with open(out / "metrics.jsonl", "a") as f:  # written by a run killed before its next checkpoint
        f.write(json.dumps({"kind": "train", "epoch": 1.5, "iteration": 5, "loss": 9.0, "error": 1.0}) + "\n")
    fit(out=str(out), resume=True, epochs=2, progress=False)
    iterations = [r["iteration"] for r in read_metrics(out / "metrics.jsonl")]
    assert iterations == sorted(iterations) and 9.0 not in [r.get("loss") for r in read_metrics(out / "metrics.jsonl")]


@pytest.mark.parametrize("progress", [False, True])
def test_each_epoch_draws_the_next_epoch_of_the_loader(tmp_path, progress):
    """Epoch k trains on the loader's epoch k - 1 (its order and augmentation), progress bar or not:
    a bar that iterated the loader itself when made would skip every other epoch."""
    trainer = Trainer(Config(out=str(tmp_path / "run"), **{**TINY, "progress": progress}))
    drawn = []
    batches = trainer.train_loader._batches
    trainer.train_loader._batches = lambda epoch: (drawn.append(epoch), batches(epoch))[1]
    trainer.fit()
    assert drawn == [0, 1, 2] and trainer.train_loader.epoch == 3


def test_readme_names_the_settings_a_resume_may_change():
    """The README's "may change" list is every resumable setting that has a flag (``epochs`` aside, said
    before it), so no flag it leaves out is quietly accepted, and none it names is refused."""
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    flag_of = {action.dest: action.option_strings[0] for action in parser._actions if action.option_strings}
    readme = one_line("README.md")
    named = re.search(r"A larger `--epochs` extends the run; (.*?) may change", readme).group(1)
    assert set(re.findall(r"`(--[a-z-]+)`", named)) == {flag_of[s] for s in RESUMABLE - {"epochs"} if s in flag_of}


def test_readme_states_the_training_defaults():
    """What the README says ``minires train --model resnet20`` does by default is the Config's defaults,
    resolved as a run resolves them."""
    cfg = _resolve_defaults(Config())
    readme = one_line("README.md")
    assert f"minires train --model {cfg.model} # embedded data, {cfg.epochs} epochs, batch {cfg.batch_size}" in readme
    assert f"on the {DEFAULT_SIZES[True]:,} embedded training images" in readme and cfg.data == "synthetic"
    assert (f"(SGD, momentum {cfg.momentum}, weight decay {cfg.weight_decay:.0e}, learning rate {cfg.lr} divided by 10 "
            f"at {cfg.milestones[0] / cfg.epochs:.0%} and {cfg.milestones[1] / cfg.epochs:.0%} of the run, crop + flip "
            "augmentation").replace("e-04", "e-4") in readme and cfg.augment and cfg.warmup == 0
    assert f"on the {DEFAULT_SIZES[False]:,} embedded test images" in readme
    assert default_out(cfg).startswith("runs/resnet20-synthetic-") and "(`runs/resnet20-synthetic-DATE-TIME` unless `--out`)" in readme

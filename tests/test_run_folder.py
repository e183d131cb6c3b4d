"""One run per folder: an OS lock held by real processes, fresh metrics for a fresh run, no stale temp files;
a bad --out (a file, unwritable, someone else's non-empty folder) refused in one line before anything loads."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from minires import backend, train
from minires.checkpoint import RunFolderBusy, load_checkpoint, run_lock
from minires.cli import main
from minires.train import fit, read_metrics

TINY = ["--model", "resnet8", "--width", "2", "--train-size", "16", "--test-size", "4", "--batch-size", "8",
        "--epochs", "2", "--no-progress"]
ENV = {**os.environ, "PYTHONPATH": os.getcwd() + os.pathsep + os.environ.get("PYTHONPATH", "")}


@pytest.fixture(autouse=True)
def reference_conv():
    with backend.using("conv2d", "numpy"):
        yield


def _train_cli(out, *extra):
    return subprocess.Popen([sys.executable, "-m", "minires", "train", *TINY, "--out", str(out), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)


def _hold_lock(folder):
    """A real process that takes the folder's lock and sleeps; returns it once the lock is held."""
    script = textwrap.dedent(f"""
        import time
        from minires.checkpoint import run_lock
        with run_lock({str(folder)!r}):
            print("held", flush=True)
            time.sleep(120)
    """)
    holder = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=ENV)
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_a_second_run_in_a_locked_folder_stops_naming_the_holders_pid(tmp_path):
    holder = _hold_lock(tmp_path)
    try:
        second = _train_cli(tmp_path)
        _, err = second.communicate(timeout=300)
        assert second.returncode == 1
        assert err.strip().splitlines() == [
            f"minires: error: RunFolderBusy: {tmp_path} is in use by another minires run (PID {holder.pid}); wait "
            "for it to end, or give this run another --out folder (--debug shows the traceback)"]
        assert not (tmp_path / "metrics.jsonl").exists()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with run_lock(tmp_path):      # the kernel released the killed holder's lock
        with pytest.raises(RunFolderBusy, match=f"PID {os.getpid()}"):
            with run_lock(tmp_path):
                pass


def test_two_runs_started_together_one_wins_and_the_metrics_are_one_runs(tmp_path):
    runs = [_train_cli(tmp_path), _train_cli(tmp_path)]
    results = [(run.wait(timeout=300), run.stderr.read()) for run in runs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 1], results
    loser = next(err for code, err in results if code == 1)
    assert any(reason in loser for reason in ("is in use by another minires run (PID", "already holds a run",
                                              "another run saved a checkpoint here"))
    epochs = [r["epoch"] for r in read_metrics(tmp_path / "metrics.jsonl") if r["kind"] == "epoch"]
    assert epochs == [1, 2]


TINY_SETTINGS = dict(model="resnet8", width=2, train_size=16, test_size=4, batch_size=8, epochs=1,
                     eval_batch_size=4, log_every=1, progress=False)


@pytest.mark.parametrize("first_epochs", [0, 1])  # the later run starts fresh, or resumes epoch 1
def test_a_run_that_another_run_overtook_before_it_took_the_lock_changes_nothing(tmp_path, first_epochs):
    """Between building a trainer (reading the folder) and taking the lock, another run saved a checkpoint:
    the later run dropped that run's metrics and overwrote its checkpoint with an older state's."""
    if first_epochs:
        fit(out=str(tmp_path), **TINY_SETTINGS)
        later = train.Trainer.resume(str(tmp_path), epochs=3, progress=False)
    else:
        later = train.Trainer(train.Config(out=str(tmp_path), **TINY_SETTINGS))
    other = dict(resume=True, progress=False) if first_epochs else TINY_SETTINGS
    fit(**{**other, "out": str(tmp_path), "epochs": 2})   # the other run, to iteration 4
    with pytest.raises(FileExistsError, match=f"{tmp_path}: another run saved a checkpoint.*iteration 4"):
        later.fit()
    assert load_checkpoint(tmp_path)["iteration"] == 4
    assert [r["epoch"] for r in read_metrics(tmp_path / "metrics.jsonl") if r["kind"] == "epoch"] == [1, 2]


def test_a_fresh_run_starts_a_fresh_metrics_file(tmp_path):
    stale = {"kind": "train", "epoch": 0.5, "iteration": 1, "lr": 0.1, "loss": 9.0, "error": 1.0}
    (tmp_path / "metrics.jsonl").write_text(json.dumps(stale) + "\n" + '{"kind": "train", "epo')  # killed mid-line
    fit(out=str(tmp_path), **TINY_SETTINGS)
    records = read_metrics(tmp_path / "metrics.jsonl")
    assert [r["iteration"] for r in records] == [1, 2, 2] and 9.0 not in [r.get("loss") for r in records]


def test_temp_files_of_killed_writes_are_removed_at_the_next_start(tmp_path):
    leftovers = [tmp_path / ".curves.png.k2j4x.tmp", tmp_path / ".checkpoint.json.a1b2.tmp",
                 tmp_path / ".metrics.jsonl.zz.tmp"]
    for path in leftovers:
        path.write_bytes(b"")
    keep = tmp_path / "notes.tmp"     # not a temporary file of minires's writer
    keep.write_text("mine")
    started = time.time()
    fit(out=str(tmp_path), **TINY_SETTINGS)
    assert not any(path.exists() for path in leftovers)
    assert keep.read_text() == "mine"
    assert (tmp_path / "curves.png").stat().st_mtime >= started - 1


# ----------------------------------------------------------------------------- a bad --out, told at once
def _main_without_data(monkeypatch, argv):
    """``minires train ARGV`` in-process, where loading any data fails the test: the check must come first."""
    def no_data(cfg):
        raise AssertionError("the data was loaded before --out was checked")

    monkeypatch.setattr(train, "load_datasets", no_data)
    return main(["train", *TINY, *argv])


@pytest.mark.parametrize("where, message", [
    ("afile", "--out {out} is a file, not a folder; give the path of a folder"),
    ("afile/run", "--out {out} cannot be created: {parent} is a file; give the path of a folder"),
])
def test_an_out_that_is_or_under_a_file_is_refused_before_loading_data(tmp_path, monkeypatch, capsys, where, message):
    (tmp_path / "afile").write_text("data")
    out = tmp_path / where
    assert _main_without_data(monkeypatch, ["--out", str(out)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""   # no header announcing a run folder
    expected = message.format(out=out, parent=tmp_path / "afile")
    assert captured.err.startswith(f"minires: error: NotADirectoryError: {expected}")
    assert len(captured.err.strip().splitlines()) == 1 and (tmp_path / "afile").read_text() == "data"


def test_an_out_that_cannot_be_written_is_refused_before_loading_data(tmp_path, monkeypatch, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    access = os.access
    # root may write anywhere, so the permission is planted: this process may not write in ``locked``
    monkeypatch.setattr(train.os, "access", lambda path, mode: access(path, mode) and Path(path) != locked)
    assert _main_without_data(monkeypatch, ["--out", str(locked / "run")]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.startswith(
        f"minires: error: PermissionError: --out {locked / 'run'}: no permission to write in {locked}; choose a folder")
    assert not (locked / "run").exists()


def test_a_non_empty_folder_that_holds_no_run_is_refused_and_left_alone(tmp_path, monkeypatch, capsys):
    mine = {"notes.txt": "mine", "metrics.jsonl.bak": "{}", ".draft.tmp": "x"}
    for name, text in mine.items():
        (tmp_path / name).write_text(text)
    assert _main_without_data(monkeypatch, ["--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"minires: error: FileExistsError: --out {tmp_path} is a non-empty folder that holds no "
                          "minires run (.draft.tmp, metrics.jsonl.bak, notes.txt); choose a new or empty folder")
    assert {p.name: p.read_text() for p in tmp_path.iterdir()} == mine


def test_a_run_folder_keeps_files_that_are_not_its_own(tmp_path):
    (tmp_path / "metrics.jsonl").write_text("")      # a run killed before its first checkpoint
    (tmp_path / ".notes.tmp").write_text("mine")       # a temporary-looking file that is not minires's
    fit(out=str(tmp_path), **TINY_SETTINGS)
    assert (tmp_path / ".notes.tmp").read_text() == "mine"

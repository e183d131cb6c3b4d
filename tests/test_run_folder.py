"""One run per folder: an OS lock held by real processes, fresh metrics for a fresh run, no stale temp files."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from minires import backend
from minires.checkpoint import RunFolderBusy, run_lock
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
    assert "is in use by another minires run (PID" in loser or "already holds a run" in loser
    epochs = [r["epoch"] for r in read_metrics(tmp_path / "metrics.jsonl") if r["kind"] == "epoch"]
    assert epochs == [1, 2]


TINY_SETTINGS = dict(model="resnet8", width=2, train_size=16, test_size=4, batch_size=8, epochs=1,
                     eval_batch_size=4, log_every=1, progress=False)


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

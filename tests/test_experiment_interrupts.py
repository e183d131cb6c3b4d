"""minires experiment when a run is cut short or asked to do the impossible: Ctrl-C (to the parent or the
whole process group), a failing net and a closed stdout keep every finished net and end promptly; the same
command again trains only the rest; an earlier run, bad depths and an ignored --data-dir are refused
before any net trains.

The subprocess tests plant a ``degradation.train_net`` (``PLANTED`` below) that trains the depth-8 nets
as usual and makes the depth-14 ones hang, fail or wait, so that what is running when the signal comes
does not depend on the machine's speed.
"""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import pytest

import minires as mr
from minires.cli import main
from minires.experiments import common, lesion, run_experiment

REPO = Path(__file__).resolve().parents[1]
TINY = ["--quick", "--width", "2", "--iterations", "2", "--batch-size", "16", "--n-train", "32", "--n-test", "16"]
DEGRADATION = ["experiment", "degradation", *TINY, "--depths", "8,14", "--eval-every", "1", "--workers", "4"]

PLANTED = '''
import os, sys, time
from pathlib import Path
from minires.experiments import degradation
real, plant, out = degradation.train_net, os.environ["PLANT"], Path(os.environ["OUT"])

def finished_nets():
    try:
        import json
        return len(json.loads((out / "partial.json").read_text())["nets"])
    except (OSError, ValueError):
        return 0

def train_net(data, job, progress=True):
    if job["depth"] == 14 and plant != "none":
        pid_file = out.parent / f"worker-{job['residual']}.pid"
        pid_file.with_suffix(".tmp").write_text(str(os.getpid()))
        pid_file.with_suffix(".tmp").replace(pid_file)     # whole at once: the test may read it the moment it appears
        if plant == "hang":                        # a net that would train for hours
            time.sleep(3600)
        while plant == "fail" and finished_nets() < 2:
            time.sleep(0.05)
        if plant == "fail":
            raise RuntimeError("planted failure of a deep net")
        while plant == "gate" and not (out.parent / "go").exists():
            time.sleep(0.05)
    return real(data, job, progress)

degradation.train_net = train_net
from minires.cli import main
sys.exit(main(sys.argv[1:]))
'''

posix_only = pytest.mark.skipif(os.name != "posix" or sys.platform == "darwin", reason="sends signals; forks workers")


def start(tmp_path, plant: str, *args, progress=False, **popen):
    script = tmp_path / "planted.py"
    script.write_text(PLANTED)
    out = tmp_path / "run"
    env = dict(os.environ, PYTHONPATH=str(REPO), PLANT=plant, OUT=str(out))
    command = [sys.executable, str(script), *DEGRADATION, "--out", str(out), *args]
    if not progress:
        command.append("--no-progress")
    return subprocess.Popen(command, cwd=tmp_path, env=env, stdout=popen.pop("stdout", subprocess.DEVNULL),
                            stderr=subprocess.PIPE, text=True, start_new_session=True, **popen), out


def wait_for(condition, timeout=60.0, what="the condition"):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.05)


def finished(out) -> list:
    try:
        return [net["name"] for net in json.loads((out / "partial.json").read_text())["nets"]]
    except (OSError, ValueError):
        return []


def gone(pid: int) -> bool:
    """The process has ended (a zombie waiting for its parent counts as ended)."""
    try:
        return Path(f"/proc/{pid}/status").read_text().split("State:")[1].split()[0] in ("Z", "X")
    except (OSError, IndexError):
        return True


def ignores_sigint(pid: int) -> bool:
    mask = Path(f"/proc/{pid}/status").read_text().split("SigIgn:")[1].split()[0]
    return bool(int(mask, 16) & (1 << (signal.SIGINT - 1)))


def stop(process):
    """End whatever of the run is left: the parent, and any worker of its process group."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


STOPS = {  # signal: (exit status, how the last line says it)
    signal.SIGINT: (130, "minires: interrupted (Ctrl-C)"), signal.SIGTERM: (143, "minires: terminated (SIGTERM)")}


@posix_only
@pytest.mark.parametrize("sent, to", [(signal.SIGINT, "parent"), (signal.SIGINT, "process group"),
                                      (signal.SIGTERM, "parent"), (signal.SIGTERM, "process group")])
def test_ctrl_c_or_sigterm_ends_at_once_keeping_the_finished_nets(tmp_path, sent, to):
    """SIGINT (Ctrl-C) or SIGTERM (kill, timeout, a scheduler) while the deep nets train (and would for
    an hour): exit 130 or 143 within seconds, one line naming the nets kept, no traceback, every worker
    ended; the workers themselves ignore SIGINT."""
    process, out = start(tmp_path, "hang")
    try:
        wait_for(lambda: len(finished(out)) == 2 and len(list(tmp_path.glob("worker-*.pid"))) == 2,
                 what="the depth-8 nets to finish and the depth-14 ones to start")
        workers = [int(p.read_text()) for p in tmp_path.glob("worker-*.pid")]
        if Path("/proc").is_dir():
            assert all(ignores_sigint(pid) for pid in workers)     # the parent decides, and stops them
        interrupted = time.monotonic()
        if to == "parent":
            os.kill(process.pid, sent)
        else:
            os.killpg(process.pid, sent)          # what Ctrl-C in a terminal does
        _, err = process.communicate(timeout=30)
        assert time.monotonic() - interrupted < 15
    finally:
        stop(process)
    status, how = STOPS[sent]
    assert process.returncode == status, err
    assert "Traceback" not in err and "Exception" not in err, err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"{how}; kept the 2 of 4 nets that finished (")
    assert sorted(last.split("(")[2].split(")")[0].split(", ")) == ["plain8", "resnet8"]
    assert last.endswith(f"in {out / 'partial.json'}: the same command (same --out and settings) trains only the "
                         f"rest; remove {out / 'partial.json'} to start over")
    assert sorted(finished(out)) == ["plain8", "resnet8"] and not (out / "results.json").exists()
    if Path("/proc").is_dir():
        assert all(gone(pid) for pid in workers)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_workers_end_when_their_parent_is_killed(tmp_path):
    """A worker ignores Ctrl-C, so it must not outlive a parent killed outright (SIGKILL, the OOM killer)."""
    process, out = start(tmp_path, "hang")
    try:
        wait_for(lambda: len(list(tmp_path.glob("worker-*.pid"))) == 2, what="the depth-14 nets to start")
        workers = [int(p.read_text()) for p in tmp_path.glob("worker-*.pid")]
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
        wait_for(lambda: all(gone(pid) for pid in workers), timeout=15, what="the orphaned workers to end")
    finally:
        stop(process)


@posix_only
def test_the_same_command_again_trains_only_the_rest(tmp_path):
    """After a Ctrl-C, the same command reuses the two finished nets (the very records kept) and
    trains the two others; the run is complete and its partial file gone."""
    process, out = start(tmp_path, "hang")
    try:
        wait_for(lambda: len(finished(out)) == 2, what="the depth-8 nets to finish")
        os.killpg(process.pid, signal.SIGINT)
        process.communicate(timeout=30)
    finally:
        stop(process)
    kept = {net["name"]: net["result"][1] for net in json.loads((out / "partial.json").read_text())["nets"]}
    again, _ = start(tmp_path, "none")
    _, err = again.communicate(timeout=120)
    assert again.returncode == 0, err
    results = json.loads((out / "results.json").read_text())
    assert sorted(results["runs"]) == ["plain14", "plain8", "resnet14", "resnet8"] and results["reused_nets"] == 2
    assert all(results["runs"][name] == record for name, record in kept.items())
    assert not (out / "partial.json").exists() and (out / "degradation.png").exists()


@posix_only
def test_a_failing_net_stops_the_others_and_keeps_the_finished(tmp_path):
    process, out = start(tmp_path, "fail")
    try:
        _, err = process.communicate(timeout=60)
    finally:
        stop(process)
    assert process.returncode == 1 and "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert lines[-2].startswith("minires: kept the 2 of 4 nets that finished (")
    assert lines[-1].startswith("minires: error: RuntimeError: planted failure of a deep net")
    assert sorted(finished(out)) == ["plain8", "resnet8"]


@posix_only
def test_a_closed_stdout_does_not_throw_the_run_away(tmp_path):
    """``minires experiment ... | head -2``: the reader leaves after two lines; the workers' and the
    parent's later lines go nowhere, the run goes on and writes everything, and stderr says so."""
    process, out = start(tmp_path, "gate", progress=True, stdout=subprocess.PIPE)
    try:
        head = [process.stdout.readline() for _ in range(2)]
        process.stdout.close()                              # head -2 exits
        (tmp_path / "go").touch()                           # the deep nets may now train, then print
        _, err = process.communicate(timeout=120)
    finally:
        stop(process)
    assert head[0].startswith("experiment degradation (quick settings) on synthetic")
    assert process.returncode == 0 and "Traceback" not in err, err
    assert f"the run went on and wrote everything to {out}" in err
    results = json.loads((out / "results.json").read_text())
    assert sorted(results["runs"]) == ["plain14", "plain8", "resnet14", "resnet8"]
    assert (out / "summary.md").exists() and (out / "degradation.png").exists()


# ----------------------------------------------------------------------------- in this process
LESION = ["experiment", "lesion", *TINY, "--depth", "8", "--no-progress", "--workers", "1"]


@pytest.fixture
def numpy_conv():
    with mr.backend.using("conv2d", "numpy"):
        yield


def test_a_run_folder_holding_an_earlier_run_is_refused_not_overwritten(tmp_path, capsys, monkeypatch, numpy_conv):
    """Another experiment, or the same one again, into a folder that holds a run: exit 1 naming the
    folder, what it holds and the ways out; nothing in it changes. The default folder, runs/NAME, too."""
    folder = tmp_path / "x2"
    assert main([*LESION, "--out", str(folder)]) == 0
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    capsys.readouterr()
    gradnorms = ["experiment", "gradnorms", *TINY, "--depths", "8", "--no-progress", "--out", str(folder)]
    for again in (gradnorms, [*LESION, "--out", str(folder)]):
        assert main(again) == 1
        assert capsys.readouterr().err == (
            f"minires: error: FileExistsError: {folder} already holds a finished run of lesion (quick settings, seed 0, "
            f"synthetic data) (results.json, summary.md, lesion.png): choose another --out, or remove {folder} to run "
            "again (--debug shows the traceback)\n")
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    stale = tmp_path / "stale"
    stale.mkdir()
    (stale / "degradation.png").write_bytes(b"\x89PNG")         # a figure left without its results.json
    with pytest.raises(FileExistsError, match=r"stale already holds files of an earlier run \(degradation.png\)"):
        run_experiment("lesion", out=stale, progress=False, depth=8, width=2, iterations=2, batch_size=16)
    monkeypatch.chdir(tmp_path)
    assert main(LESION) == 0 and Path("runs/lesion/results.json").exists()
    assert main(LESION) == 1
    assert "runs/lesion already holds a finished run of lesion" in capsys.readouterr().err


def test_a_partial_run_of_other_settings_is_refused_naming_the_setting(tmp_path):
    """A partial.json left by an interrupted run of 3 iterations, and a run of 2 into its folder."""
    settings = dict(lesion.QUICK, depth=8, width=2, iterations=3, batch_size=16)
    identity = {"experiment": "lesion", "mode": "quick", "data": "synthetic", "seed": 0, "settings": settings,
                "environment": common.environment()}
    common.NetLedger(tmp_path / "partial.json", identity).add({"job": 1}, ("resnet8", {"planted": True}))
    with pytest.raises(FileExistsError) as refused:
        run_experiment("lesion", out=tmp_path, progress=False, depth=8, width=2, iterations=2, batch_size=16)
    assert str(refused.value) == (f"{tmp_path / 'partial.json'} holds the finished nets of another run "
                                  "(settings.iterations 3 instead of 2): remove it to start over, or choose another --out")


def test_map_nets_saves_each_net_as_it_finishes_and_reuses_the_saved(tmp_path):
    """With a ledger, a job it holds is not run again; each new result is on disk before the next job
    starts; results come back in the order of the jobs."""
    identity = {"experiment": "planted"}
    ledger = common.NetLedger(tmp_path / "partial.json", identity)
    ledger.add({"n": 1}, ("one", {"value": 1}))
    ran = []

    def train_one(data, job, progress):
        ran.append(job["n"])
        on_disk = [net["name"] for net in json.loads((tmp_path / "partial.json").read_text())["nets"]]
        assert on_disk == ["one"] + [f"n{n}" for n in ran[:-1]]
        return f"n{job['n']}", {"value": job["n"]}

    again = common.NetLedger(tmp_path / "partial.json", identity)
    results = common.map_nets(train_one, None, [{"n": 0}, {"n": 1}, {"n": 2}], workers=1, ledger=again)
    assert ran == [0, 2] and again.reused == 1
    assert [tuple(r) for r in results] == [("n0", {"value": 0}), ("one", {"value": 1}), ("n2", {"value": 2})]


@pytest.mark.parametrize("args, message", [
    (["degradation", "--depths", "8,9"], "argument --depths: 9 in '8,9' is not a depth 6n + 2 (8, 14, 20, 32, 44"),
    (["degradation", "--depths", "14,8,14"], "argument --depths: '14,8,14' repeats a depth: give each depth once"),
    (["lesion", "--depth", "21"], "argument --depth: '21' is not a depth 6n + 2"),
    (["shortcuts", "--depth", "2"], "argument --depth: '2' is not a depth 6n + 2"),
])
def test_impossible_depths_are_refused_before_anything_runs(tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) as exit_:
        main(["experiment", *args, *TINY, "--out", str(tmp_path / "run")])
    assert exit_.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_impossible_settings_from_python_are_refused_before_any_net_trains(tmp_path):
    for overrides, message in ((dict(depths=(8, 9)), "depth must be 6n \\+ 2 with n >= 1 .*got 9"),
                               (dict(depths=(8, 8)), "depths repeat a depth \\(8, 8\\)"),
                               (dict(depths=(8,), width=0), "width must be a positive integer, got 0")):
        with pytest.raises(ValueError, match=message):
            run_experiment("degradation", out=tmp_path / "run", progress=False, **overrides)
    assert not (tmp_path / "run").exists()


def test_data_dir_with_the_synthetic_data_is_refused(tmp_path, capsys):
    with pytest.raises(ValueError, match="^--data-dir has no effect on the embedded synthetic data; pass --data mnist "
                                         "or --data cifar10 to read files from it, or leave it out$"):
        run_experiment("lesion", data_dir=tmp_path, out=tmp_path / "run", progress=False)
    assert main([*LESION, "--data-dir", str(tmp_path), "--out", str(tmp_path / "run")]) == 1
    assert "--data-dir has no effect on the embedded synthetic data" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("damage", ["cut short", "a net without its job", "no wall time"])
def test_a_damaged_partial_json_is_named_with_what_to_do(tmp_path, damage):
    """A partial.json cut short or missing a field is refused naming the file and the fix (not a bare KeyError)."""
    identity = {"experiment": "planted"}
    common.NetLedger(tmp_path / "partial.json", identity).add({"n": 1}, ("one", {"value": 1}))
    record = json.loads((tmp_path / "partial.json").read_text())
    text = {"cut short": (tmp_path / "partial.json").read_text()[:50],
            "a net without its job": json.dumps(dict(record, nets=[{"name": "one", "result": 1}])),
            "no wall time": json.dumps(dict(record, seconds={"cpu": 1.0}))}[damage]
    (tmp_path / "partial.json").write_text(text)
    with pytest.raises(ValueError, match=f"^{tmp_path / 'partial.json'} is not a record of finished nets .*: remove it "
                                         "to start the run over$"):
        common.NetLedger(tmp_path / "partial.json", identity)

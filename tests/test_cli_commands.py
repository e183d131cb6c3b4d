"""The commands' edges: Ctrl-C and a missing command (one line on stderr, the conventional exit status,
never a traceback), and the arguments of ``bench cpu``, ``summary`` and ``gradcheck`` refused before
any work starts."""
import os
import signal
import subprocess
import sys
import time
import types

import pytest

from minires import checkpoint as ckpt, cli

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def interrupted_command(monkeypatch):
    """A command ``stub`` whose run is interrupted by Ctrl-C; its module says what it kept when asked."""
    module = types.ModuleType("minires_test_stub")
    module.add_arguments = lambda parser: parser.add_argument("--out", default="here")

    def run(args):
        raise KeyboardInterrupt
    module.run = run
    monkeypatch.setitem(sys.modules, module.__name__, module)
    monkeypatch.setitem(cli.COMMANDS, "stub", (module.__name__, "a command that is interrupted"))
    return module


def test_ctrl_c_ends_with_one_line_and_status_130(interrupted_command, capsys):
    assert cli.main(["stub"]) == 130
    assert capsys.readouterr().err == "minires: interrupted (Ctrl-C)\n"


def test_the_command_says_what_it_kept(interrupted_command, capsys):
    interrupted_command.interrupted = lambda args: f"what finished is in {args.out}"
    assert cli.main(["stub", "--out", "runs/x"]) == 130
    assert capsys.readouterr().err == "minires: interrupted (Ctrl-C); what finished is in runs/x\n"


@pytest.mark.parametrize("stop, status, how", [(KeyboardInterrupt, 130, "interrupted (Ctrl-C)"),
                                               (cli.Terminated, 143, "terminated (SIGTERM)")])
def test_an_interrupt_inside_an_import_is_still_an_interrupt(interrupted_command, capsys, stop, status, how):
    """A Ctrl-C that lands while a C extension initialises (matplotlib's, at a run's first plot) reaches the
    command as pybind11's ImportError("initialization failed") raised from it: still the interrupt."""
    def run(args):
        try:
            raise stop
        except KeyboardInterrupt as error:
            raise ImportError("initialization failed") from error
    interrupted_command.run = run
    interrupted_command.interrupted = lambda args: f"what finished is in {args.out}"
    assert cli.main(["stub", "--out", "runs/x"]) == status
    assert capsys.readouterr().err == f"minires: {how}; what finished is in runs/x\n"


def test_training_imports_its_plotting_before_the_first_step(tmp_path):
    """So that no Ctrl-C between epochs can land inside matplotlib's first import: by the first training
    step, matplotlib's figure and PNG writer are loaded (in a fresh process, which has not imported them)."""
    script = f"""
import sys
from minires import train
def first_epoch(self):
    print(sorted({{"matplotlib.figure", "matplotlib.backends.backend_agg"}} & set(sys.modules)))
    raise SystemExit(0)
train.Trainer.train_epoch = first_epoch
assert "matplotlib" not in sys.modules
train.Trainer(train.Config(model="resnet8", width=2, train_size=16, test_size=8, batch_size=8, epochs=1,
                           progress=False, out={str(tmp_path / "run")!r})).fit()
"""
    done = subprocess.run([sys.executable, "-c", script], env=dict(os.environ, PYTHONPATH=REPO), cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['matplotlib.backends.backend_agg', 'matplotlib.figure']"


def test_no_command_lists_the_commands_on_stderr_with_status_2(capsys):
    assert cli.main([]) == 2
    out, err = capsys.readouterr()
    assert out == "" and all(name in err for name in cli.COMMANDS)


@pytest.mark.skipif(os.name != "posix", reason="sends signals")
@pytest.mark.parametrize("sent, status, how", [(signal.SIGINT, 130, "interrupted (Ctrl-C)"),
                                               (signal.SIGTERM, 143, "terminated (SIGTERM)")])
def test_a_real_sigint_or_sigterm_during_training(tmp_path, sent, status, how):
    """SIGINT or SIGTERM to a training run that has written a checkpoint: status 130 or 143, one line
    naming it, no traceback. (The child gets SIGINT's default disposition: a test run in the
    background inherits it ignored.)"""
    env = dict(os.environ, PYTHONPATH=REPO)
    process = subprocess.Popen([sys.executable, "-m", "minires", "train", "--model", "resnet20", "--width", "2",
                                "--train-size", "64", "--test-size", "16", "--batch-size", "16", "--epochs", "500",
                                "--no-progress", "--out", str(tmp_path / "run")],
                               cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert process.stdout.readline().startswith("minires train: ")    # its header: it has started
    deadline = time.monotonic() + 120
    while not ckpt.has_checkpoint(tmp_path / "run") and time.monotonic() < deadline:
        time.sleep(0.1)                                                # until epoch 1's checkpoint is there
    process.send_signal(sent)
    _, err = process.communicate(timeout=60)
    assert process.returncode == status, err
    last = err.strip().splitlines()[-1]
    assert "Traceback" not in err and last.startswith(f"minires: {how}; the checkpoint of epoch ")
    epoch = ckpt.load_checkpoint(tmp_path / "run")["epoch"]
    assert last.endswith(f"epoch {epoch} is kept in {tmp_path / 'run'}: `minires train --resume --out "
                         f"{tmp_path / 'run'}` continues from it")


BAD_ARGUMENTS = [
    (["bench", "cpu", "--impls", "foo"], "argument --impls: 'foo' is not a CPU conv2d implementation here"),
    (["bench", "cpu", "--models", "foo"], "argument --models: 'foo' is not a CIFAR ResNet"),
    (["bench", "cpu", "--models", "resnet50"], "argument --models: 'resnet50' is not a CIFAR ResNet"),   # ImageNet's
    (["bench", "cpu", "--depths", "9"], "argument --depths: '9' is not the depth of a CIFAR ResNet"),
    (["bench", "cpu", "--depths", "0"], "argument --depths: '0' is not the depth of a CIFAR ResNet"),
    (["summary", "resnet20", "--input-shape", "3", "32"], "argument --input-shape: expected 3 arguments"),
    (["summary", "foo"], "argument MODEL: unknown model 'foo'"),
    (["train", "--model", "foo"], "argument --model: unknown model 'foo'"),        # by summary's rule, before anything
    (["train", "--model", "resnet9"], "argument --model: unknown model 'resnet9'"),
    (["gradcheck", "--impl", "foo"], "argument --impl: 'foo' is not a CPU conv2d implementation"),
    (["gradcheck", "--impl", ""], "argument --impl: '' is not a CPU conv2d implementation"),
]


@pytest.mark.parametrize("argv, message", BAD_ARGUMENTS)
def test_bad_arguments_are_refused_before_anything_runs(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and len(err.strip().splitlines()) == 1 and message in err, err


def test_bench_tiny_refuses_the_sizes_it_would_replace(tmp_path, capsys):
    assert cli.main(["bench", "cpu", "--tiny", "--batch", "8", "--depths", "20", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "--tiny sets --batch, --depths itself; drop them or drop --tiny" in err
    assert list(tmp_path.iterdir()) == []                       # nothing measured, nothing written



def test_bench_tiny_refuses_a_size_given_at_its_default(tmp_path, capsys):
    """``--tiny --repeat 10``: 10 is --repeat's default, but it was asked for, so it is refused, not run as 1."""
    assert cli.main(["bench", "cpu", "--tiny", "--repeat", "10", "--models", "resnet20", "resnet56",
                     "--out", str(tmp_path)]) == 1
    assert "--tiny sets --repeat, --models itself; drop them or drop --tiny" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_bench_report_folder_that_is_a_file_fails_at_once(tmp_path, capsys):
    (tmp_path / "afile").write_text("")
    start = time.perf_counter()
    assert cli.main(["bench", "cpu", "--tiny", "--out", str(tmp_path / "afile")]) == 1
    assert "--out " + str(tmp_path / "afile") + ": exists and is not a folder" in capsys.readouterr().err
    assert time.perf_counter() - start < 5                      # before the measurements, not after


def test_summary_builds_what_train_builds(capsys):
    """``summary resnet8`` (any CIFAR depth 6n+2, as ``train --model`` takes it) counts that net's parameters."""
    from minires.train import build_model
    assert cli.main(["summary", "resnet8", "--totals"]) == 0
    parameters = sum(p.numpy().size for p in build_model("resnet8").parameters())
    title, counted = capsys.readouterr().out.splitlines()[:2]
    assert title == "resnet8, input (1, 3, 32, 32)" and counted.startswith(f"parameters: {parameters:,} ")


def test_the_sigterm_handler_is_the_callers_again_after_a_command(capsys):
    """main() turns SIGTERM into an interrupt only while a command runs (Python code calling main keeps
    its own handler)."""
    before = signal.getsignal(signal.SIGTERM)
    assert cli.main(["summary", "resnet20"]) == 0
    assert signal.getsignal(signal.SIGTERM) is before
    capsys.readouterr()


def test_summary_builds_the_model_for_the_input_shapes_channels(capsys):
    """``--input-shape 1 28 28`` (MNIST, as ``minires train --data mnist`` builds the net) summarises a net
    whose first conv takes one channel, instead of failing on the 3-channel net."""
    from minires.train import build_model
    assert cli.main(["summary", "resnet8", "--input-shape", "1", "28", "28", "--totals"]) == 0
    parameters = sum(p.numpy().size for p in build_model("resnet8", in_channels=1).parameters())
    title, counted = capsys.readouterr().out.splitlines()[:2]
    assert title == "resnet8, input (1, 1, 28, 28)" and counted.startswith(f"parameters: {parameters:,} ")


def test_bench_gpu_report_folder_that_is_a_file_fails_at_once(tmp_path, monkeypatch, capsys):
    """``bench gpu --out`` is checked as ``bench cpu``'s is, by the same rule, before the tests and timings."""
    from minires.bench import gpu
    monkeypatch.setattr(gpu.backend, "cuda_available", lambda: True)
    monkeypatch.setattr(gpu, "run_gpu_tests", lambda log: pytest.fail("ran the tests before checking --out"))
    (tmp_path / "afile").write_text("")
    assert cli.main(["bench", "gpu", "--out", str(tmp_path / "afile")]) == 1
    assert "--out " + str(tmp_path / "afile") + ": exists and is not a folder" in capsys.readouterr().err

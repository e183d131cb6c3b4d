"""``minires train`` says out loud what it will not do: options that would have no effect (--data-dir and
--download without a dataset that reads them, --width on an ImageNet net, --milestones past the end,
--epochs or --milestones with --paper) are refused in one line before any data loads, and a --resume of
a run that has finished says there is nothing to train instead of printing a result."""
import argparse
import json
import re
from pathlib import Path

import pytest

from minires import backend, train
from minires.checkpoint import load_checkpoint
from minires.cli import main
from minires.random import manual_seed
from minires.train import build_model, check_settings, fit

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--model", "resnet8", "--width", "2", "--train-size", "16", "--test-size", "4", "--batch-size", "8",
        "--no-progress"]


@pytest.fixture(autouse=True)
def reference_conv():
    with backend.using("conv2d", "numpy"):
        yield


def _refused(monkeypatch, capsys, argv, message):
    """``minires train ARGV`` fails in one line starting with ``message``, without loading any data."""
    def no_data(cfg):
        raise AssertionError("data loaded before the settings were checked")

    monkeypatch.setattr(train, "load_datasets", no_data)
    assert main(["train", *argv]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and len(captured.err.strip().splitlines()) == 1
    assert captured.err.startswith(f"minires: error: {message}"), captured.err


@pytest.mark.parametrize("extra, message", [
    (["--data-dir", "/nonexistent"], "ValueError: --data-dir has no effect on the embedded synthetic data; pass "
                                     "--data mnist or --data cifar10"),
    (["--download"], "ValueError: --download fetches only CIFAR-10 (--data cifar10), not the synthetic data"),
    (["--data", "mnist", "--download"], "ValueError: --download fetches only CIFAR-10 (--data cifar10), not the mnist"),
])
def test_data_options_without_a_dataset_that_reads_them_are_refused(tmp_path, monkeypatch, capsys, extra, message):
    _refused(monkeypatch, capsys, [*TINY, "--out", str(tmp_path / "run"), *extra], message)
    with pytest.raises(ValueError, match="--data-dir has no effect"):
        fit(out=str(tmp_path / "api"), data_dir="/nonexistent", progress=False)


def test_width_on_an_imagenet_net_is_refused_by_name(tmp_path, monkeypatch, capsys):
    _refused(monkeypatch, capsys, ["--model", "resnet18", "--width", "2", "--out", str(tmp_path / "run")],
             "ValueError: --width applies only to the CIFAR nets (resnet20, ")
    for name in ("resnet18", "plain34", "resnet50", "vgg19"):
        with pytest.raises(ValueError, match=f"; {name} is an ImageNet net with the paper's widths: leave out --width"):
            build_model(name, width=2)
    assert build_model("resnet14", width=2).conv1.weight.shape == (2, 3, 3, 3)   # any CIFAR depth still takes one


@pytest.mark.parametrize("extra, message", [
    (["--epochs", "1", "--milestones", "100"], "--milestones 100: at or after the end of the run (--epochs 1), so "
                                               "the rate would never drop there"),
    (["--epochs", "2", "--milestones", "1", "2"], "--milestones 2: at or after the end of the run (--epochs 2)"),
    (["--milestones", "5"], "--milestones 5: at or after the end of the run (--epochs 4)"),   # the default epochs
    (["--paper", "--epochs", "3"], "--epochs has no effect with --paper (its schedule is fixed: 64000 iterations"),
    (["--paper", "--milestones", "3"], "--milestones has no effect with --paper"),
])
def test_schedule_settings_without_effect_are_refused(tmp_path, monkeypatch, capsys, extra, message):
    _refused(monkeypatch, capsys, [*TINY, "--out", str(tmp_path), *extra], f"ValueError: {message}")


def test_schedule_settings_with_effect_pass():
    check_settings({"epochs": 4, "milestones": [2, 3.5]})
    check_settings({"paper": True, "warmup": 400})


def test_resume_of_a_finished_run_says_there_is_nothing_to_train(tmp_path, capsys):
    assert main(["train", *TINY, "--epochs", "1", "--out", str(tmp_path)]) == 0
    before = load_checkpoint(tmp_path)
    capsys.readouterr()
    assert main(["train", "--resume", "--out", str(tmp_path), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert out == (f"minires train: nothing to train: {tmp_path} already finished its 1 epoch (2 iterations); to "
                   "train further, pass --resume --epochs N with N larger than 1\n")
    assert load_checkpoint(tmp_path)["iteration"] == before["iteration"]


def test_nothing_to_train_reads_only_the_metrics_the_checkpoint_covers(tmp_path, capsys):
    """A kill in epoch 3 of 3 left its lines (an epoch with a NaN loss, a line cut short) after the epoch-2
    checkpoint; --resume --epochs 2 raised JSONDecodeError, or called the run broken after epoch 3."""
    assert main(["train", *TINY, "--epochs", "2", "--out", str(tmp_path)]) == 0
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"kind": "epoch", "epoch": 3, "iteration": 6, "train_loss": null, "train_error": 0.9, '
                '"test_loss": null, "test_error": 0.9, "test_accuracy": 0.1}\n{"kind": "epo')
    capsys.readouterr()
    assert main(["train", "--resume", "--out", str(tmp_path), "--epochs", "2", "--no-progress"]) == 0
    assert "nothing to train" in capsys.readouterr().out


def test_a_batch_size_of_zero_is_refused_not_replaced_by_the_default(tmp_path):
    """``batch_size or 64`` trained fit(batch_size=0) with 64, and its checkpoint recorded 64."""
    with pytest.raises(ValueError, match="batch_size must be a positive integer.*got 0"):
        fit(model="resnet8", width=2, train_size=16, test_size=4, batch_size=0, epochs=1, progress=False,
            out=str(tmp_path))


def test_committed_metrics_files_are_strict_json():
    """jq and other strict readers take every committed metrics.jsonl (a NaN would be written as null)."""
    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")

    files = sorted(ROOT.glob("results/**/metrics.jsonl"))
    assert files
    for path in files:
        assert [json.loads(line, parse_constant=refuse) for line in path.read_text().splitlines() if line.strip()]


def test_the_resume_help_names_every_option_a_resumed_run_may_change():
    """``--resume``'s help says which given settings may differ from the saved run's: each option of a
    setting the resume accepts (train.RESUMABLE) is named there."""
    parser = argparse.ArgumentParser()
    train.add_arguments(parser)
    resume = " ".join(next(a.help for a in parser._actions if a.dest == "resume").split())
    options = {a.dest: a.option_strings[0] for a in parser._actions if a.option_strings}
    missing = [options[s] for s in sorted(train.RESUMABLE - {"progress"}) if s in options
               and not re.search(f"{options[s]}\\b(?!-)", resume[resume.index("except"):])]
    assert not missing


@pytest.mark.parametrize("loss, error, said", [
    (0.3, 0.10, "done: held-out accuracy 80.00% after 1 epoch; metrics"),
    (1.5, 0.60, "done: held-out accuracy 80.00% after 1 epoch, but the net is UNDER-TRAINED: final training error "
                "60.0% > 50%, so this is not a trained net's result; metrics"),
    (2.25, 0.85, "done: held-out accuracy 80.00% after 1 epoch, but the net is DEAD: final training loss 2.250 is not "
                 "below chance, ln 10 = 2.303 minus 0.1, so this is not a trained net's result; metrics"),
])
def test_the_last_line_flags_a_net_that_has_not_learned(tmp_path, monkeypatch, capsys, loss, error, said):
    """The rules of the experiments' health flags (a final training loss not below chance, a final training
    error above 50%) are said in the "done" line of ``minires train`` too, not printed as a normal result."""
    final = {"kind": "epoch", "epoch": 1, "iteration": 2, "train_loss": loss, "train_error": error,
             "test_loss": 0.5, "test_error": 0.2, "test_accuracy": 0.8}
    monkeypatch.setattr(train.Trainer, "fit", lambda self: final)
    assert main(["train", "--model", "resnet8", "--width", "2", "--train-size", "16", "--test-size", "8",
                 "--epochs", "1", "--no-progress", "--out", str(tmp_path / "run")]) == 0
    assert said in capsys.readouterr().out


def test_the_start_line_says_1_epoch(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(train.Trainer, "fit", lambda self: None)
    assert main(["train", *TINY, "--epochs", "1", "--out", str(tmp_path / "run")]) == 0
    assert f"on synthetic, 1 epoch (2 iterations), 1 rank(s), run folder {tmp_path / 'run'}" in capsys.readouterr().out


def test_a_real_run_that_learned_nothing_says_so(tmp_path, capsys):
    with backend.using("conv2d", "numpy"):
        assert main(["train", "--model", "resnet8", "--width", "2", "--train-size", "64", "--test-size", "16",
                     "--batch-size", "32", "--epochs", "1", "--lr", "1e-6", "--no-progress",
                     "--out", str(tmp_path / "run")]) == 0
    assert "but the net is DEAD: final training loss" in capsys.readouterr().out


def test_the_readme_states_the_last_lines_rules_as_coded():
    readme = " ".join((Path(__file__).parents[1] / "README.md").read_text().split())
    assert (f"DEAD when the final training loss is not below chance (ln C minus {train.CHANCE_MARGIN:g}), UNDER-TRAINED "
            f"when the final training error is above {100 * train.UNDER_TRAINED:g}%") in readme


@pytest.mark.parametrize("seed, error", [(-1, ValueError), (None, TypeError), (1.5, TypeError), ("3", TypeError),
                                         (True, TypeError)])
def test_a_seed_that_is_not_a_non_negative_int_is_refused(seed, error):
    """None would draw fresh entropy: a run that can never be repeated, whose checkpoint cannot be resumed."""
    with pytest.raises(error, match="a seed must be a non-negative int"):
        manual_seed(seed)
    with pytest.raises(error, match="a seed must be a non-negative int"):
        train.Config(seed=seed)


def test_a_huge_seed_is_a_seed():
    assert manual_seed(2**70).random() == manual_seed(2**70).random() != manual_seed(2**70 + 1).random()


PYTHON_TINY = dict(model="resnet8", width=2, train_size=16, test_size=4, batch_size=8, progress=False)


@pytest.mark.parametrize("setting, message", [
    (dict(epochs=0), "epochs must be a positive integer, got 0"),            # wrote nothing, returned None
    (dict(log_every=0), "log_every must be a positive integer, got 0"),      # a ZeroDivisionError mid-epoch
    (dict(epochs=1.5), "epochs must be a positive integer, got 1.5"),
    (dict(warmup=-1), "warmup must be a non-negative integer, got -1"),
    (dict(momentum=1.5), r"momentum must be a number in \[0, 1\), got 1.5"),
    (dict(lr=float("nan")), "lr must be a positive number, got nan"),
    (dict(milestones=[-1]), r"milestones must be positive numbers \(epochs\), got \[-1\]"),
    (dict(width=True), "width must be a positive integer, got True"),
    (dict(dtype="int8"), "dtype must be 'float32' or 'float64', got 'int8'"),  # failed later, in batch norm
])
def test_settings_given_from_python_are_checked_as_the_command_line_checks_them(tmp_path, setting, message):
    """fit() and Config take settings from Python, past argparse: the same rules refuse them, by name."""
    with pytest.raises(ValueError, match=f"train: {message}"):
        train.fit(**{**PYTHON_TINY, **setting}, out=str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()


def test_numpy_numbers_and_the_defaults_none_are_accepted():
    import numpy as np
    cfg = train.Config(batch_size=np.int64(32), lr=np.float32(0.1), width=None, train_size=None)
    assert cfg.batch_size == 32

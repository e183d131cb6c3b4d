"""The command line: bad values refused by argparse in one line (exit 2), run-time errors in one line
(exit 1, the traceback with --debug), and ``--resume`` never silently ignoring a changed setting."""
import argparse
import importlib
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from minires import backend, checkpoint as ckpt, cli
from minires.cli import main

BAD_TRAIN_VALUES = [
    ("--epochs", "-1", "not a positive integer"), ("--epochs", "0", "not a positive integer"),
    ("--batch-size", "0", "not a positive integer"), ("--width", "0", "not a positive integer"),
    ("--lr", "0", "not a positive number"), ("--lr", "-0.1", "not a positive number"), ("--lr", "inf", "not a positive"),
    ("--lr", "nan", "not a positive number"), ("--momentum", "1", r"not a number in \[0, 1\)"),
    ("--momentum", "-0.5", r"not a number in \[0, 1\)"), ("--weight-decay", "-1e-4", "not a non-negative number"),
    ("--milestones", "0", "not a positive number"), ("--warmup", "-1", "not a non-negative integer"),
    ("--seed", "-3", "not a non-negative integer"), ("--train-size", "0", "not a positive integer"),
    ("--test-size", "-2", "not a positive integer"), ("--epochs", "2.5", "'2.5' is not an int"),
    ("--nan-policy", "ignore", "invalid choice"), ("--data", "imagenet", "invalid choice"),
]


@pytest.mark.parametrize("option, value, message", BAD_TRAIN_VALUES)
def test_bad_values_are_one_line_and_exit_2(option, value, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["train", f"{option}={value}"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert err.startswith(f"minires: error: minires train: argument {option}")
    assert re.search(message, err), err


def test_run_time_errors_are_one_line_and_exit_1_and_debug_shows_the_traceback(tmp_path, capsys):
    assert main(["train", "--resume", "--out", str(tmp_path / "nowhere")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("minires: error: FileNotFoundError: no checkpoint") and len(err.strip().splitlines()) == 1
    for argv in (["--debug", "train"], ["train", "--debug"]):
        assert main([*argv, "--resume", "--out", str(tmp_path / "nowhere")]) == 1
        err = capsys.readouterr().err
        assert err.startswith("Traceback") and "FileNotFoundError: no checkpoint" in err


TINY = ["--model", "resnet8", "--width", "2", "--train-size", "16", "--test-size", "4", "--batch-size", "8",
        "--no-progress"]


@pytest.fixture
def saved_run(tmp_path):
    with backend.using("conv2d", "numpy"):
        assert main(["train", *TINY, "--epochs", "1", "--lr", "0.05", "--out", str(tmp_path)]) == 0
        yield tmp_path


def test_resume_refuses_changed_settings_listing_them(saved_run, capsys):
    capsys.readouterr()
    code = main(["train", "--resume", "--out", str(saved_run), "--lr", "0.2", "--batch-size", "4", "--seed", "9"])
    err = capsys.readouterr().err
    assert code == 1 and len(err.strip().splitlines()) == 1
    for difference in ("lr=0.2 (the run used 0.05)", "batch_size=4 (the run used 8)", "seed=9 (the run used 0)"):
        assert difference in err
    assert ckpt.load_checkpoint(saved_run)["iteration"] == 2           # nothing ran


def test_resume_accepts_the_saved_values_and_a_longer_run(saved_run, capsys):
    with pytest.warns(RuntimeWarning, match="--data-dir has no effect on the embedded synthetic data"):
        assert main(["train", "--resume", "--out", str(saved_run), *TINY, "--lr", "0.05", "--epochs", "2",
                     "--nan-policy", "skip", "--data-dir", "elsewhere"]) == 0
    state = ckpt.load_checkpoint(saved_run)
    assert (state["epoch"], state["iteration"], state["config"]["epochs"]) == (2, 4, 2)
    assert state["config"]["milestones"] == [0.5, 0.75]       # the 1-epoch run's, as --epochs' help says
    epochs_help = next(a.help for a in _command_parser("train")._actions if a.dest == "epochs")
    assert "a larger total extends the run, its milestones kept where they were" in " ".join(epochs_help.split())
    assert (state["config"]["nan_policy"], state["config"]["data_dir"]) == ("skip", "elsewhere")
    capsys.readouterr()
    assert main(["train", "--resume", "--out", str(saved_run), "--epochs", "1"]) == 1
    assert "epochs=1 (the run already finished 2 epochs)" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [
    ["summary", "resnet20", "--num-classes", "0"], ["summary", "resnet20", "--input-shape", "3", "0", "32"],
    ["gradcheck", "--seed", "-1"], ["bench", "cpu", "--repeat", "0"], ["bench", "cpu", "--batch", "0"],
    ["bench", "cpu", "--warmup", "-1"], ["bench", "cpu", "--threads", "0"], ["bench", "cpu", "--batches", "16", "0"],
    ["bench", "cpu", "--scaling-repeat", "0"], ["bench", "gpu", "--batch", "0"],
    ["bench", "gpu", "--repeat", "0"], ["bench", "gpu", "--warmup", "-2"],
    ["experiment", "degradation", "--iterations", "-1"], ["experiment", "degradation", "--width", "0"],
    ["experiment", "gradnorms", "--batch-size", "0"], ["experiment", "responses", "--warmup", "-1"],
    ["experiment", "lesion", "--seed", "-1"], ["experiment", "shortcuts", "--n-test", "0"],
    ["experiment", "degradation", "--eval-every", "0"], ["experiment", "degradation", "--workers", "0"],
    ["gradcheck", "--seed", "-1" + "0" * 400], ["train", "--epochs", "-1" + "0" * 400],   # past a float's range
])
def test_other_commands_check_their_numbers_too(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and len(err.strip().splitlines()) == 1
    assert err.startswith("minires: error: ") and re.search("is not a (positive|non-negative) integer", err), err


def test_integers_past_a_floats_range_are_integers():
    """A huge integer is checked as an integer, not turned into a float (OverflowError, a traceback)."""
    from minires.checks import non_negative_int, positive_int
    huge = "1" + "0" * 400
    assert positive_int(huge) == int(huge) and non_negative_int(huge) == int(huge)
    assert positive_int.holds(int(huge)) and not positive_int.holds(-int(huge))


@pytest.mark.parametrize("argv, message", [
    (["experiment", "degradation", "--lr", "0"], "is not a positive number"),
    (["bench", "gpu", "--models", "resnet18"], "'resnet18' is not a CIFAR ResNet"),   # not PyTorch's CIFAR ResNet-14
    (["bench", "cpu", "--models", "resnet18"], "'resnet18' is not a CIFAR ResNet"),
    (["course", "book", "--out", "book", "--timeout", "0"], "is not a positive integer"),
    (["course", "book", "--out", "book", "--source", " "], "argument --source: an empty folder name"),  # as build's
    (["experiment", "degradation", "--depths", "20,-56"], "expected comma-separated positive integers"),
])
def test_experiment_settings_are_checked(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and len(err.strip().splitlines()) == 1 and message in err, err


@pytest.mark.parametrize("argv", [["experiment", "responses", "--help"], ["summary", "resnet20"]],
                         ids=["while parsing", "while running"])
def test_output_into_a_reader_that_has_gone_ends_quietly(argv):
    """``minires experiment responses --help | head -1``: once the reader has closed the pipe, the
    command stops with exit status 1 and nothing on stderr, whether it was parsing its arguments or
    running (here the pipe closes before it writes)."""
    child = subprocess.Popen([sys.executable, "-m", "minires", *argv],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=Path(__file__).parents[1])
    child.stdout.close()
    assert child.stderr.read() == b"" and child.wait(timeout=120) == 1


def _option_strings(parser) -> set:
    """Every option of ``parser`` and of its sub-commands (``course build``, ``bench cpu``)."""
    found = set()
    for action in parser._actions:
        found.update(action.option_strings)
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found |= _option_strings(sub)
    return found


def _command_parser(command: str):
    parser = cli._Parser(prog=f"minires {command}", conflict_handler="resolve")
    importlib.import_module(cli.COMMANDS[command][0]).add_arguments(parser)
    return parser


@pytest.mark.parametrize("name", ["degradation", "gradnorms", "responses", "lesion", "shortcuts"])
def test_every_option_an_experiments_help_names_exists(name):
    """``minires experiment NAME --help`` prints the experiment's docstring: each ``--option`` it tells the
    reader to use (``--full``, ``--depths 20,32,44,56``) must be one the command takes."""
    from minires.experiments import describe
    named = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", describe(name)))
    assert named and not named - _option_strings(_command_parser("experiment"))


def test_full_is_the_default_mode(capsys):
    parser = _command_parser("experiment")
    assert parser.parse_args(["degradation"]).mode == parser.parse_args(["degradation", "--full"]).mode == "full"
    with pytest.raises(SystemExit):
        parser.parse_args(["degradation", "--full", "--quick"])
    assert "not allowed with argument" in capsys.readouterr().err


def test_combine_refuses_the_options_it_would_ignore(tmp_path, capsys):
    """``--combine`` trains nothing: a mode, dataset, worker count or setting given with it is refused, not
    silently dropped (the combined runs keep their own), and nothing is written."""
    runs = [str(Path(__file__).parents[1] / "results" / "degradation" / f"quick-seed{seed}") for seed in (0, 1)]
    argv = ["experiment", "degradation", "--combine", *runs, "--out", str(tmp_path / "combined")]
    assert main([*argv, "--quick", "--data", "mnist", "--depths", "20,32", "--workers", "2"]) == 1
    err = capsys.readouterr().err
    assert "--quick, --data, --workers, --depths would have no effect; leave them out" in err
    assert not (tmp_path / "combined").exists()


def test_shortcuts_refuses_more_workers_than_it_uses(tmp_path, capsys):
    """shortcuts times its nets, so it trains them one at a time: ``--workers 2`` is refused before anything
    trains, not silently run as 1; ``--workers 1`` is what it does anyway."""
    out = tmp_path / "run"
    assert main(["experiment", "shortcuts", "--quick", "--workers", "2", "--out", str(out)]) == 1
    assert "--workers 2: shortcuts trains at most 1 net(s) at once" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("argv", [["bench", "cpu", "--debug"], ["bench", "--debug", "cpu"],
                                  ["--debug", "bench", "cpu"]])
def test_debug_may_follow_a_commands_action(argv, tmp_path, capsys):
    """``--debug`` (before or after the command, as ``minires --help`` and each command's help list it) also
    after an action such as ``bench cpu`` or ``course build``, whose help lists it too. (``bench cpu`` with an
    ``--out`` that is a file fails before it measures anything or needs an optional package.)"""
    not_a_folder = tmp_path / "a-file"
    not_a_folder.write_text("")
    assert main([*argv, "--out", str(not_a_folder)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("Traceback") and "is not a folder" in err
    with pytest.raises(SystemExit):
        main(["course", "build", "--help"])
    assert "--debug" in capsys.readouterr().out


@pytest.mark.parametrize("action", ["build", "grade", "book"])
def test_each_course_actions_help_says_what_it_does(action, capsys):
    """``minires course build --help`` starts with what ``minires course --help`` says of it, as ``bench cpu``'s."""
    with pytest.raises(SystemExit):
        main(["course", "--help"])
    line = next(line.split(None, 1)[1] for line in capsys.readouterr().out.splitlines()
                if line.strip().startswith(action + " "))
    with pytest.raises(SystemExit):
        main(["course", action, "--help"])
    assert " ".join(capsys.readouterr().out.split("\n\n")[1].split()).startswith(line.strip())


def test_resume_without_out_continues_the_newest_dated_run_of_model_and_data(tmp_path, monkeypatch, capsys):
    """``--resume`` without ``--out`` (its help: the newest runs/MODEL-DATA-DATE-TIME of --model and --data):
    a folder named by hand is not taken for the newest because its name sorts last."""
    monkeypatch.chdir(tmp_path)
    with backend.using("conv2d", "numpy"):
        assert main(["train", *TINY, "--epochs", "1"]) == 0
        (run,) = (tmp_path / "runs").iterdir()
        (tmp_path / "runs" / "resnet8-synthetic-mine").mkdir()
        capsys.readouterr()
        assert main(["train", "--resume", "--epochs", "2", "--no-progress"]) == 1        # not --model resnet8's
        assert "no runs/resnet20-synthetic-DATE-TIME folder here" in capsys.readouterr().err
        assert main(["train", "--resume", "--model", "resnet8", "--epochs", "2", "--no-progress"]) == 0
    assert ckpt.load_checkpoint(run)["epoch"] == 2


def _options(parser, prog):
    """``(prog, action)`` for every option of ``parser`` and of its actions' parsers."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _options(sub, f"{prog} {name}")
        else:
            yield prog, action


@pytest.mark.parametrize("command", sorted(cli.COMMANDS))
def test_every_help_states_each_default_that_applies(command):
    """An option whose value is used when it is left out says so in its help, with that value (each item of a
    list): ``bench cpu --repeat`` timed 10 runs without a word of it."""
    for prog, action in _options(_command_parser(command), f"minires {command}"):
        default = action.default
        if (default is None or default is argparse.SUPPRESS or isinstance(default, bool) or action.nargs == 0
                or action.help is None):
            continue                                 # flags, and options whose absence is described in words
        text = " ".join((action.help % {**vars(action), "prog": prog}).split())
        values = default if isinstance(default, list) else [default]
        assert "default" in text and all(str(v) in text for v in values), f"{prog} {action.option_strings}: {text}"


def test_each_settings_help_names_the_experiments_that_have_it(tmp_path, capsys):
    """``--weight-decay`` is a setting of responses alone: its help says so (from the experiments' settings),
    and given to another experiment it is refused naming the option, before anything runs."""
    from minires.experiments import EXPERIMENTS, OVERRIDES, get
    parser = _command_parser("experiment")
    for key in OVERRIDES:
        text = " ".join(next(a.help for a in parser._actions if a.dest == key).split())
        takers = [name for name in EXPERIMENTS if key in get(name).QUICK]
        assert text.endswith(f"; only {', '.join(takers)}") if len(takers) < len(EXPERIMENTS) else "only" not in text
    out = tmp_path / "run"
    assert main(["experiment", "degradation", "--quick", "--weight-decay", "1e-3", "--out", str(out)]) == 1
    assert "degradation has no setting --weight-decay (only responses): leave it out" in capsys.readouterr().err
    assert not out.exists()


def test_train_help_states_each_default_that_applies():
    """``minires train``'s options default to None (so that ``--resume`` sees what was given): the defaults that
    apply are :class:`Config`'s, and each option's help states its own (``--warmup`` said nothing of its 0)."""
    import dataclasses
    from minires.train import Config
    defaults = {f.name: f.default for f in dataclasses.fields(Config)}
    for prog, action in _options(_command_parser("train"), "minires train"):
        if action.dest not in defaults or isinstance(defaults[action.dest], bool):
            continue
        text = " ".join(action.help.replace("%%", "%").split())
        value = defaults[action.dest]
        assert "default" in text and (value is None or str(value) in text), f"{action.option_strings}: {text}"


def test_resume_help_names_the_settings_a_resume_may_change():
    """The options ``--resume``'s help says may differ from the saved run are those of ``RESUMABLE`` (``--no-progress``
    may change too, though the list left it out)."""
    from minires.train import RESUMABLE
    parser = _command_parser("train")
    text = " ".join(next(a.help for a in parser._actions if a.dest == "resume").split())
    listed = re.search(r"except (.*); a finished run", text)[1].replace(" (a larger total)", "").split(", ")
    assert sorted(listed) == sorted(a.option_strings[-1] for a in parser._actions if a.dest in RESUMABLE)


def test_experiment_on_files_without_data_dir_is_refused_before_the_run_folder_is_made(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["experiment", "lesion", "--quick", "--data", "mnist", "--out", str(out)]) == 1
    assert "--data mnist needs --data-dir" in capsys.readouterr().err
    assert not out.exists()                   # it left an empty run folder behind


def test_a_warmup_that_covers_the_whole_run_is_refused(tmp_path, capsys):
    """``--warmup`` at or past the run's last iteration would train it all at a tenth of --lr: refused before any
    step (TINY is 2 iterations an epoch)."""
    assert main(["train", *TINY, "--epochs", "1", "--warmup", "2", "--out", str(tmp_path / "run")]) == 1
    assert "--warmup 2 covers the whole run (2 iterations)" in capsys.readouterr().err
    assert not ckpt.has_checkpoint(tmp_path / "run")


def test_experiment_warmup_is_a_whole_number_of_iterations_from_python_too():
    """The command line takes ``--warmup`` as an integer; :func:`choose_settings` holds Python values to the same rule."""
    from minires.experiments import common, degradation
    with pytest.raises(ValueError, match="warmup must be a non-negative integer, got 2.5"):
        common.choose_settings({"quick": degradation.QUICK}, "quick", {"warmup": 2.5})


def test_more_images_than_the_files_hold_is_refused(tmp_path, capsys):
    """``--train-size N`` on files means their first N images: more than they hold is refused, not run on fewer."""
    from conftest import idx_bytes
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 16), ("t10k", 8)):
        (tmp_path / f"{prefix}-images-idx3-ubyte").write_bytes(idx_bytes(rng.integers(0, 256, (n, 28, 28))))
        (tmp_path / f"{prefix}-labels-idx1-ubyte").write_bytes(idx_bytes(rng.integers(0, 10, n)))
    mnist = ["--data", "mnist", "--data-dir", str(tmp_path), "--out", str(tmp_path / "run")]
    assert main(["train", *TINY[:4], "--batch-size", "8", "--epochs", "1", "--train-size", "17", *mnist]) == 1
    assert f"--train-size 17: mnist in {tmp_path} has only 16 training images" in capsys.readouterr().err
    assert main(["train", *TINY[:4], "--batch-size", "8", "--epochs", "1", "--test-size", "9", *mnist]) == 1
    assert "--test-size 9: mnist in" in capsys.readouterr().err
    assert not ckpt.has_checkpoint(tmp_path / "run")


@pytest.mark.parametrize("command", sorted(cli.COMMANDS))
def test_each_choice_an_option_offers_is_described_in_its_help(command):
    """``--dist-backend {auto,mpi,nccl,none}`` said what three of its four choices do, not ``none``. An option
    whose help speaks of its choices speaks of each (a help that names none of them, such as --data's, leaves
    them to the usage line)."""
    for prog, action in _options(_command_parser(command), f"minires {command}"):
        if not action.choices or not action.option_strings or not action.help:
            continue
        words = set(re.findall(r"[\w-]+", action.help))
        named = [choice for choice in action.choices if choice in words]
        assert len(named) in (0, 1, len(action.choices)), f"{prog} {action.option_strings}: {action.help}"


def test_combine_needs_two_runs_or_more(tmp_path, capsys):
    """``--combine`` judges claims on the spread between seeds, which one run cannot give (``--seeds`` asks for two
    too): one run folder is refused, not written up as seeds.md."""
    run = str(Path(__file__).parents[1] / "results" / "degradation" / "quick-seed0")
    assert main(["experiment", "degradation", "--combine", run, "--out", str(tmp_path / "combined")]) == 1
    assert "a spread between seeds needs 2 or more runs of distinct seeds, got 1" in capsys.readouterr().err
    assert not (tmp_path / "combined").exists()


def readme_commands():
    """Every ``minires ...`` command of the README's shell blocks, as the words after ``minires``."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", (Path(__file__).resolve().parents[1] / "README.md").read_text(), re.S):
        for line in block.splitlines():
            for part in line.split(" # ")[0].split("&&"):
                words = shlex.split(part.strip(), comments=True)
                if "minires" in words:
                    commands.append(words[words.index("minires") + 1:])
    return commands


@pytest.mark.parametrize("words", readme_commands(), ids=" ".join)
def test_every_minires_command_the_readme_shows_parses(words, capsys):
    """A flag renamed or removed fails here, not in a reader's shell: the parser the command line would
    meet accepts each command of the README as written (nothing runs)."""
    _, parser = cli.command_parser(words[0])
    try:
        parser.parse_args(words[1:])
    except SystemExit:
        pytest.fail(f"the README's `minires {' '.join(words)}` does not parse: {capsys.readouterr().err.strip()}")


@pytest.mark.parametrize("sync_bn", [[], ["--sync-bn"]], ids=["without", "with --sync-bn"])
def test_sync_bn_in_one_process_says_it_changes_nothing(tmp_path, capsys, sync_bn):
    with backend.using("conv2d", "numpy"):
        assert main(["train", *TINY, "--epochs", "1", "--out", str(tmp_path / "run"), *sync_bn]) == 0
    noted = "note: --sync-bn with one rank changes nothing" in capsys.readouterr().out
    assert noted == bool(sync_bn)

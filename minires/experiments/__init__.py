"""The experiments, one module each, and the ``minires experiment NAME`` command: the paper's four, and
Veit et al.'s lesion study run on the paper's nets.

=============  ===================================================================================
degradation    Fig. 6: plain vs ResNet at depths 20-56, training and test error against iterations
gradnorms      sec. 4.1: per-layer gradient norms at initialisation and in training, plain vs
               residual, with and without BN, across depths
responses      Fig. 7: std of each 3x3 conv's output (after BN, before ReLU/add), in layer order and sorted
lesion         Veit et al.: delete one block at test time, error per deleted block, ResNet vs plain
shortcuts      options A/B/C at one depth: error, parameters, time
=============  ===================================================================================

Each module has ``QUICK`` and ``FULL`` settings (and ``STANDARD``, where the quick ones cannot show
the paper's effect but a longer run can), ``run(data, settings, seed, progress, workers, ledger) -> dict``
(plain data, written as ``results.json``), ``plot(results) -> {file name: figure}`` (PNGs) and
``report(results) -> str`` (``summary.md``, also printed). Every result carries ``health`` (each
net: ok, under-trained, dead or diverged; :func:`~minires.experiments.common.assess_health`) and
``claims`` (each of the paper's claims the experiment tests, with its verdict — holds, does not
hold, or cannot tell at this setting — the numbers and the noise estimate behind it;
:func:`~minires.experiments.common.judge`). Flagged nets are marked in the table and the figures,
and a claim that rests on a dead or diverged net is never judged. From Python::

    from minires.experiments import degradation, load_data
    results = degradation.run(load_data("synthetic", n_train=10_000, n_test=1_000), degradation.QUICK)
    degradation.plot(results)["degradation.png"].savefig("fig6.png")

The embedded Synthetic data is the default; ``--data mnist|cifar10 --data-dir D`` uses real data.
"""
from __future__ import annotations

import argparse
import importlib
import inspect
import json
import os
import sys
from pathlib import Path

from ..checks import non_negative_float, non_negative_int, positive_float, positive_int
from ..models import is_cifar_depth
from ..train import data_option_problem
from . import common
from .common import (PARTIAL, NetLedger, RunFolder, check_depth, choose_settings, differences, environment,
                     load_data, modes_of, say)

EXPERIMENTS = ("degradation", "gradnorms", "responses", "lesion", "shortcuts")


def get(name: str):
    """The module of experiment ``name``."""
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; choose one of {', '.join(EXPERIMENTS)}")
    return importlib.import_module(f"{__name__}.{name}")


def _depth(text: str) -> int:
    """One depth 6n + 2, checked when the command line is read (before any net trains)."""
    try:
        return check_depth(positive_int(text))
    except (ValueError, argparse.ArgumentTypeError):
        raise argparse.ArgumentTypeError(f"{text!r} is not a depth 6n + 2 (8, 14, 20, 32, 44, 56, 110, ...)") from None


_depth.__name__ = "a depth 6n + 2"


def _ints(text: str) -> tuple:
    """Comma-separated distinct depths 6n + 2 (``--depths 20,56``), checked before any net trains."""
    try:
        values = tuple(positive_int(v) for v in text.split(","))
    except (ValueError, argparse.ArgumentTypeError):
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers such as 20,56, got {text!r}") from None
    bad = [v for v in values if not is_cifar_depth(v)]
    if bad:
        raise argparse.ArgumentTypeError(f"{', '.join(map(str, bad))} in {text!r} is not a depth 6n + 2 "
                                         "(8, 14, 20, 32, 44, 56, 110, ...)")
    if len(set(values)) != len(values):
        raise argparse.ArgumentTypeError(f"{text!r} repeats a depth: give each depth once")
    return values


def _seed_list(text: str) -> tuple:
    from .seeds import MIN_RUNS
    try:
        values = tuple(non_negative_int(v) for v in text.split(","))
    except (ValueError, argparse.ArgumentTypeError):
        values = ()
    if len(values) < MIN_RUNS or len(set(values)) != len(values):
        raise argparse.ArgumentTypeError(f"expected {MIN_RUNS} or more distinct seeds such as 0,1,2, got {text!r}")
    return values


def describe(name: str) -> str:
    """What ``minires experiment NAME --help`` prints first: the experiment's docstring and its settings."""
    module = get(name)
    modes = modes_of(module)
    width = max(map(len, module.QUICK))
    header = "".join(f"  {'--' + mode:>16}" for mode in modes)
    flags = [f"--{mode}" + (" (the default)" if mode == "full" else "") for mode in modes]
    rows = [f"  {key:<{width}}" + "".join(f"  {_setting(settings[key]):>16}" for settings in modes.values())
            for key in module.QUICK]
    return "\n".join([f"minires experiment {name}", "", inspect.cleandoc(module.__doc__), "",
                      f"Settings ({', '.join(flags[:-1])} or {flags[-1]}; "
                      "each can be overridden below):", f"  {'setting':<{width}}{header}", *rows, ""])


def _setting(value) -> str:
    if value is None:
        return "all"
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    return f"{value:,}" if isinstance(value, int) else str(value)


class _ExperimentHelp(argparse.Action):
    """``-h``: after NAME, that experiment's description and settings, then the options."""

    def __call__(self, parser, namespace, values, option_string=None):
        if getattr(namespace, "name", None) in EXPERIMENTS:
            print(describe(namespace.name))
        parser.print_help()
        parser.exit()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-h", "--help", action=_ExperimentHelp, nargs=0,
                        help="show this help; after NAME, what that experiment reproduces and its settings")
    parser.add_argument("name", choices=EXPERIMENTS, help="which experiment")
    modes = parser.add_mutually_exclusive_group()
    modes.add_argument("--quick", dest="mode", action="store_const", const="quick", default="full",
                       help="the quick settings (minutes on a 2-core CPU; see each experiment's docstring)")
    modes.add_argument("--standard", dest="mode", action="store_const", const="standard",
                       help="the standard settings, where an experiment has them (responses: 8-11 minutes on an idle "
                            "2-core CPU)")
    modes.add_argument("--full", dest="mode", action="store_const", const="full",
                       help="the full settings (the default; the paper's widths and lengths where it gives them: "
                            "hours to days on a CPU)")
    parser.add_argument("--data", default="synthetic", choices=("synthetic", "mnist", "cifar10"),
                        help="dataset (default: the embedded synthetic one, no download)")
    parser.add_argument("--data-dir", help="folder with the MNIST / CIFAR-10 files (needed with --data mnist or "
                                           "cifar10, and only then)")
    parser.add_argument("--out", help="run folder for results.json, summary.md and the PNGs (default: runs/NAME)")
    seeds = parser.add_mutually_exclusive_group()
    seeds.add_argument("--seed", type=non_negative_int, default=0, help="seed for weights and data order (default 0)")
    seeds.add_argument("--seeds", type=_seed_list,
                       help="run each of these seeds (e.g. 0,1,2) into OUT/seedK, then judge the claims on the "
                            "spread between seeds (OUT/seeds.md); a seed whose folder holds its finished run is "
                            "reused, so an interrupted run resumes")
    seeds.add_argument("--combine", nargs="+", metavar="RUN",
                       help="run nothing: judge the claims over these run folders of NAME (distinct seeds, same "
                            "settings) and write OUT/seeds.md and seeds.json; it takes no mode, --data, --workers or "
                            "setting (the runs' own are used)")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    parser.add_argument("--workers", type=positive_int, default=None,
                        help="nets trained at once, one process and one BLAS thread each (default: the number of "
                             "cores; shortcuts: one at a time, as its time per iteration is a result, and more is refused)")
    overrides = parser.add_argument_group("override a setting of the chosen mode")
    overrides.add_argument("--depths", type=_ints, help="comma-separated depths 6n+2, e.g. 20,32,44,56")
    overrides.add_argument("--depth", type=_depth, help="the one depth 6n+2")
    overrides.add_argument("--width", type=positive_int, help="channels of the first stage (the paper: 16)")
    overrides.add_argument("--iterations", type=positive_int, help="SGD iterations per network")
    overrides.add_argument("--batch-size", type=positive_int, help="images per SGD step")
    overrides.add_argument("--lr", type=positive_float, help="initial learning rate (divided by 10 at 50%% and 75%%)")
    overrides.add_argument("--lr-no-bn", type=positive_float, help="--lr of the nets without BN")
    overrides.add_argument("--warmup", type=non_negative_int, help="first iterations at a tenth of --lr (the paper's ResNet-110: 400)")
    overrides.add_argument("--weight-decay", type=non_negative_float, help="L2 weight decay (the paper: 1e-4)")
    overrides.add_argument("--n-train", type=positive_int, help="training images to use (synthetic: to generate)")
    overrides.add_argument("--n-test", type=positive_int, help="test images to use")
    overrides.add_argument("--eval-every", type=positive_int, help="iterations between test evaluations")
    for action in overrides._group_actions:        # which experiments take each, from their settings
        takers = experiments_with(action.dest)
        if len(takers) < len(EXPERIMENTS):
            action.help += f"; only {', '.join(takers)}"


def experiments_with(setting: str) -> list[str]:
    """The experiments that have ``setting`` (a key of their settings, such as ``eval_every``)."""
    return [name for name in EXPERIMENTS if setting in get(name).QUICK]


def check_overrides(name: str, overrides: dict) -> None:
    """Refuse, naming the options, settings given on the command line that experiment ``name`` does not have."""
    unknown = [key for key, value in overrides.items() if value is not None and key not in get(name).QUICK]
    if unknown:
        flags = [f"--{key.replace('_', '-')} (only {', '.join(experiments_with(key))})" for key in unknown]
        raise ValueError(f"{name} has no setting {', '.join(flags)}: leave {'them' if len(unknown) > 1 else 'it'} "
                         f"out (minires experiment {name} --help lists its settings)")


OVERRIDES = ("depths", "depth", "width", "iterations", "batch_size", "lr", "lr_no_bn", "warmup", "weight_decay",
             "n_train", "n_test", "eval_every")


RUN_FILES = ("results.json", "summary.md", "seeds.json", "seeds.md")


def run_experiment(name: str, mode: str = "quick", data: str = "synthetic", data_dir=None, out=None, seed: int = 0,
                   progress: bool = True, workers: int | None = None, **overrides) -> tuple[dict, RunFolder]:
    """Run experiment ``name`` and write its results into the run folder; return (results, folder).

    Everything is checked before any net trains: the settings (:func:`~.common.choose_settings`), the
    data options, and the run folder, which must not hold an earlier run (it is refused, not
    overwritten). Each net is saved as it finishes (``partial.json``, :class:`~.common.NetLedger`), so
    an interrupted run keeps what finished and the same call again trains only the rest.
    """
    module = get(name)
    settings = choose_settings(modes_of(module), mode, overrides)
    most = getattr(module, "MAX_WORKERS", None)
    if workers is not None and most is not None and workers > most:
        raise ValueError(f"--workers {workers}: {name} trains at most {most} net(s) at once (it times them, and "
                         "nets sharing the cores would skew the times); leave out --workers")
    check_data_options(data, data_dir)
    path = Path(out or f"runs/{name}")
    check_run_folder(path)
    dataset = load_data(data, data_dir, settings.get("n_train"), settings.get("n_test"))
    check_sizes_given(dataset, overrides)
    env = environment()
    ledger = NetLedger(path / PARTIAL, {"experiment": name, "mode": mode, "data": data, "seed": seed,
                                        "settings": settings, "environment": env})
    folder = RunFolder(path)
    if progress:
        say(f"experiment {name} ({mode} settings) on {dataset.describe()}")
        if ledger.nets:
            say(f"reusing the {len(ledger.nets)} nets an interrupted run of these settings finished ({ledger.path})")
    if settings.get("warmup") and settings["warmup"] >= settings["iterations"]:
        say(f"minires experiment {name}: note: the warm-up ({settings['warmup']} iterations at a tenth of the rate) "
            f"covers all {settings['iterations']} iterations, so every net trains at a tenth of its rate throughout")
    try:
        results = module.run(dataset, settings, seed=seed, progress=progress, workers=workers, ledger=ledger)
    except BaseException as error:
        _cut_short(error, ledger.kept())
        raise
    wall, cpu = ledger.elapsed()
    results.update(mode=mode, seed=seed, wall_seconds=wall, cpu_seconds=cpu, cores=os.cpu_count(),
                   load_average=os.getloadavg()[0], environment=env)
    if ledger.reused:
        results["reused_nets"] = ledger.reused     # trained by an earlier, interrupted attempt
    try:
        folder.save_json(results)
        ledger.discard()
        folder.save_text(module.report(results), "summary.md")
        for file_name, figure in module.plot(results).items():
            folder.save_figure(figure, file_name)
    except BaseException as error:
        _cut_short(error, f"every net had finished; written: {', '.join(map(str, folder.files))}, the rest of the "
                          "summary and figures not" if folder.files else
                          f"every net had finished, but nothing was written; {ledger.kept()}")
        raise
    return results, folder


def _cut_short(error: BaseException, kept: str) -> None:
    """Remember what a run cut short by ``error`` kept; say it now unless it is Ctrl-C (then the command
    line's ``interrupted`` says it, after "interrupted")."""
    global _kept
    _kept = kept
    if not isinstance(error, KeyboardInterrupt):
        print(f"minires: {kept}", file=sys.stderr)


def check_data_options(data: str, data_dir) -> None:
    """Refuse a data option that would be ignored (``data_dir`` with the embedded synthetic data) or that is
    missing (no ``data_dir`` for files), before the run folder is made."""
    common.check_dataset(data, data_dir)
    problem = data_option_problem(data, {} if data_dir is None else {"data_dir": data_dir})
    if problem:
        raise ValueError(problem)


def check_run_folder(path: Path) -> None:
    """Refuse a run folder that holds an earlier run (its results.json, summary or figures, or a seeds
    combination): a new run would replace some of its files and leave others stale. A ``partial.json``
    is for :class:`~.common.NetLedger` to judge (the same run resumes)."""
    if not path.exists():
        return
    if not path.is_dir():
        raise FileExistsError(f"{path} is a file, not a run folder: choose another --out")
    found = [path / name for name in RUN_FILES if (path / name).exists()]
    found += sorted(figure for experiment in EXPERIMENTS for figure in path.glob(f"{experiment}*.png"))
    if not found:
        return
    what = "files of an earlier run"
    try:
        earlier = json.loads((path / "results.json").read_text())
        what = (f"a finished run of {earlier.get('experiment')} ({earlier.get('mode')} settings, seed "
                f"{earlier.get('seed')}, {common.dataset_of(earlier)} data)")
    except (OSError, ValueError, AttributeError):
        pass
    shown = ", ".join(p.name for p in found[:4]) + (", ..." if len(found) > 4 else "")
    raise FileExistsError(f"{path} already holds {what} ({shown}): choose another --out, or remove {path} "
                          "to run again")


_kept: str | None = None   # what the last interrupted run_experiment kept (for interrupted())


def interrupted(args) -> str | None:
    """What ``minires experiment`` says on Ctrl-C, after ``minires: interrupted (Ctrl-C);``."""
    if _kept is None:
        return None
    if getattr(args, "seeds", None):
        return _kept + "; finished seeds are reused too"
    return _kept


def run(args) -> int:
    global _kept
    _kept = None
    if args.combine:
        check_combine_options(args)
    else:
        check_overrides(args.name, {key: getattr(args, key) for key in OVERRIDES})
    if args.combine or args.seeds:
        code = run_seeds(args)
    else:
        results, folder = run_one(args, args.seed, args.out)
        written = ", ".join(str(f) for f in folder.files)
        say(f"wall time {results['wall_seconds']:.0f} s (CPU time {results['cpu_seconds']:.0f} s); wrote {written}")
        code = 0
    if common.stdout_closed:
        print(f"minires: stdout was closed before the end (a reader such as head stopped early); the run went on "
              f"and wrote everything to {args.out or f'runs/{args.name}'}", file=sys.stderr)
    return code


def check_sizes_given(dataset, overrides: dict) -> None:
    """Refuse an ``n_train``/``n_test`` given explicitly (``--n-train``) above what the dataset's files hold: it
    would quietly use fewer images. A mode's own sizes mean "at most" (the quick 10,000 on a smaller file)."""
    for key, split in (("n_train", dataset.train), ("n_test", dataset.test)):
        asked = overrides.get(key)
        if asked is not None and asked > len(split):
            raise ValueError(f"--{key.replace('_', '-')} {asked}: {dataset.describe()}; ask for at most "
                             f"{len(split):,}, or leave --{key.replace('_', '-')} out")


def check_combine_options(args) -> None:
    """Refuse the options ``--combine`` would ignore: it trains nothing, and judges the runs with the mode,
    data and settings they were made with."""
    given = [f"--{args.mode}"] if args.mode != "full" else []
    given += ["--data"] * (args.data != "synthetic") + ["--data-dir"] * (args.data_dir is not None)
    given += ["--workers"] * (args.workers is not None)
    given += [f"--{key.replace('_', '-')}" for key in OVERRIDES if getattr(args, key) is not None]
    if given:
        raise ValueError(f"--combine trains nothing: it judges the runs with the mode, data and settings they "
                         f"were made with, so {', '.join(given)} would have no effect; leave "
                         f"{'them' if len(given) > 1 else 'it'} out")


def run_one(args, seed: int, out) -> tuple[dict, RunFolder]:
    overrides = {key: getattr(args, key) for key in OVERRIDES}
    results, folder = run_experiment(args.name, args.mode, args.data, args.data_dir, out, seed,
                                     args.progress, args.workers, **overrides)
    say(get(args.name).report(results))
    return results, folder


def finished_seed(folder: Path, args, seed: int) -> bool:
    """Whether ``folder`` holds a finished run of what ``--seeds`` would run there: the same experiment,
    mode, data, settings and seed (so an interrupted ``--seeds`` run, started again, resumes at the first
    unfinished seed). A run folder holding a different run is refused, not overwritten."""
    path = folder / "results.json"
    if not path.is_file():
        return False
    found = common.read_results(path)
    settings = choose_settings(modes_of(get(args.name)), args.mode, {k: getattr(args, k) for k in OVERRIDES})
    wanted = {"experiment": args.name, "mode": args.mode, "data": args.data, "seed": seed, "settings": settings}
    have = {"experiment": found.get("experiment"), "mode": found.get("mode"), "data": common.dataset_of(found),
            "seed": found.get("seed"), "settings": found.get("settings")}
    differ = differences(have, wanted)
    if differ:
        raise FileExistsError(f"{folder} holds another run ({'; '.join(differ)}): remove it or choose another --out")
    return True


def run_seeds(args) -> int:
    """``--seeds``: run each seed, then judge over them; ``--combine``: judge over finished runs."""
    from . import seeds
    out = Path(args.out or f"runs/{args.name}")
    folders = args.combine
    if args.seeds:
        folders = [out / f"seed{seed}" for seed in args.seeds]
        for seed, folder in zip(args.seeds, folders):
            if finished_seed(folder, args, seed):
                say(f"seed {seed}: reusing the finished run in {folder} (same experiment, mode, data and settings; "
                    "remove the folder to run that seed again)")
            else:
                run_one(args, seed, folder)
    runs = seeds.load_runs(folders)
    if runs[0]["experiment"] != args.name:
        raise ValueError(f"the runs are of experiment {runs[0]['experiment']}, not {args.name}")
    combined = seeds.combine(runs)
    folder = RunFolder(out)
    folder.save_json(combined, "seeds.json")
    folder.save_text(seeds.report(combined), "seeds.md")
    say(seeds.report(combined))
    say(f"wrote {', '.join(str(f) for f in folder.files)}")
    return 0

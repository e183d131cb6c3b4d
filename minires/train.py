"""The training loop and the ``minires train`` command.

One command trains a model with the paper's protocol and leaves everything in its run folder::

    minires train --model resnet20                         # embedded data, a few minutes on a CPU
    minires train --model resnet56 --data cifar10 --download --paper --out runs/r56
    minires train --out runs/r56 --resume                  # continue exactly where it stopped

The run folder holds ``metrics.jsonl`` (one JSON object per line: ``"kind": "train"`` every few
iterations, ``"kind": "epoch"`` with held-out loss and error after each epoch; a NaN or infinite number
is written as ``null``, since JSON has none, and :func:`read_metrics` gives it back as NaN),
``curves.png`` (loss and error against iterations) and the checkpoint (``checkpoint.json`` +
``checkpoint-<id>.npz``, see :mod:`minires.checkpoint`), rewritten atomically after every epoch. A new
run takes a folder that is missing, empty or a minires run's (see :func:`check_run_folder`).

A run never ends as a result when it is broken: ``nan_policy`` (stop, skip or continue) handles a NaN or
infinite loss, gradient, weight or BatchNorm running statistic at each step, ``stop`` also a
non-finite held-out loss (before that epoch's checkpoint, so the one kept is good), and ``minires
train`` exits with an error, not a result, when the run ends with one.

Reproducibility: ``seed`` fixes the initial weights (:func:`minires.manual_seed`), the shuffling and
the augmentation (the DataLoader seeds each epoch from ``(seed, epoch)``). A checkpoint holds the
weights and BN statistics, the momentum buffers, the schedule, the epoch and iteration, the loader's
state and the random generator, so a run stopped after epoch k and resumed ends with the same
weights, bit for bit, as one that never stopped.

Data: ``synthetic`` (the embedded default, :class:`minires.data.Synthetic`), ``mnist`` (the IDX files
in ``--data-dir``; 1x28x28, so the model is built with ``in_channels=1`` and the maps are 28/14/7 —
global average pooling makes that fine; no flips, digits are not mirror-symmetric) and ``cifar10``.
Inputs are per-pixel mean subtracted (the paper); with ``--augment`` (default) training images get a
4-pixel pad + random crop and, except for MNIST, a random horizontal flip.

Data-parallel: ``mpirun -n K minires train ...`` runs synchronous data-parallel SGD
(:mod:`minires.distributed`). ``--batch-size`` stays the global batch, each rank reads its share of
it, gradients are averaged over the ranks every step, held-out metrics are summed over the ranks'
shares of the test set, and rank 0 alone writes the run folder. ``--sync-bn`` takes BatchNorm
statistics over the global batch, which makes K ranks compute what one process would; without it a
run resumes only on the rank count that saved it (:func:`check_rank_count`).
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import re
import sys
import time
import typing
import warnings
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from . import backend, distributed, models, optim
from .autograd import Tensor, no_grad
from .checkpoint import CheckpointError, atomic_write, has_checkpoint, load_checkpoint, run_lock, save_checkpoint
from .checks import non_negative_float, non_negative_int, positive_float, positive_int, unit_interval
from .data import (CIFAR10, MNIST, Compose, DataLoader, RandomCrop, RandomHorizontalFlip, Synthetic,
                   SubtractPixelMean, pixel_mean)
from .data.synthetic import DEFAULT_SIZES as SYNTHETIC_SIZES
from .functional import cross_entropy
from .models.resnet import IMAGENET_CONFIGS
from .random import check_seed, default_generator, manual_seed

FLIPPABLE = {"synthetic": True, "cifar10": True, "mnist": False}


@dataclasses.dataclass
class Config:
    """Everything that defines a run (saved in its checkpoint). Defaults: the embedded-data recipe."""

    model: str = "resnet20"
    width: int | None = None         # CIFAR nets: channels of the first stage (None: the paper's 16)
    data: str = "synthetic"
    data_dir: str = "data"
    download: bool = False
    epochs: int = 4
    batch_size: int | None = None    # None: 64 (the quick default), or the paper's 128 with paper=True
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    milestones: list | None = None   # in epochs; None: 50% and 75% of the run, as in the paper
    warmup: int = 0                  # iterations at lr/10 first (the paper's ResNet-110: 400)
    paper: bool = False              # the paper's iteration schedule: 64k iterations, /10 at 32k and 48k
    seed: int = 0
    out: str | None = None
    augment: bool = True
    device: str = "cpu"
    dtype: str = "float32"           # float64: slower, but rounding no longer flips ReLUs between runs
    dist_backend: str = "auto"       # under mpirun: "mpi" (CPU ranks) or "nccl" (GPUs); auto: by device
    sync_bn: bool = False            # data-parallel: BatchNorm statistics over the global batch
    train_size: int | None = None    # synthetic: images to generate; others: use the first N
    test_size: int | None = None
    eval_batch_size: int = 500
    log_every: int = 10              # iterations between "train" metric lines
    progress: bool = True
    nan_policy: str = "stop"         # NaN/Inf loss, gradient, weight or BN statistic: stop, skip the update, or continue

    def __post_init__(self):
        if self.nan_policy not in NAN_POLICIES:
            raise ValueError(f"train: nan_policy {self.nan_policy!r}; choose one of {', '.join(NAN_POLICIES)}")
        check_seed(self.seed)
        problem = _number_problem(self)
        if problem:
            raise ValueError(f"train: {problem}")


# What each numeric setting must be: the command line's types (minires.checks) also check values given from Python
# (fit(), Config). The settings that may be None (their default) are checked only when given.
_NUMBER_RULES = {"width": positive_int, "epochs": positive_int, "batch_size": positive_int, "lr": positive_float,
                 "momentum": unit_interval, "weight_decay": non_negative_float, "warmup": non_negative_int,
                 "train_size": positive_int, "test_size": positive_int, "eval_batch_size": positive_int,
                 "log_every": positive_int}
_MAY_BE_NONE = {"width", "batch_size", "train_size", "test_size"}


def _number_problem(cfg: Config) -> str | None:
    """What is wrong with ``cfg``'s numeric settings and dtype, in words, or None."""
    for name, rule in _NUMBER_RULES.items():
        value = getattr(cfg, name)
        if not (value is None and name in _MAY_BE_NONE or rule.holds(value)):
            return f"{name} must be {rule.__name__}, got {value!r}"
    if cfg.milestones is not None and not all(positive_float.holds(m) for m in cfg.milestones):
        return f"milestones must be positive numbers (epochs), got {cfg.milestones!r}"
    if cfg.dtype not in ("float32", "float64"):
        return f"dtype must be 'float32' or 'float64', got {cfg.dtype!r}"
    return None


NAN_POLICIES = ("stop", "skip", "continue")
# Settings a resumed run may change: they do not alter what is computed, or (epochs) extend it.
RESUMABLE = {"epochs", "device", "progress", "nan_policy", "data_dir", "download", "dist_backend",
             "eval_batch_size", "log_every"}


class NonFiniteError(FloatingPointError):
    """The loss, a gradient, a weight, a BatchNorm running statistic or the held-out loss became NaN or
    infinite (``nan_policy="stop"``), or a run ended so (any policy)."""


# What a minires run writes in its folder (a folder holding one of these is a run folder), and the
# temporary files of its atomic writes (see :func:`minires.checkpoint.atomic_write`).
RUN_FILES = ("checkpoint.json", "checkpoint-*.npz", "metrics.jsonl", "curves.png", ".lock")
TEMPORARY_FILES = (".checkpoint*.tmp", ".metrics.jsonl.*.tmp", ".curves.png.*.tmp")


# ----------------------------------------------------------------------------- has the net learned?
UNDER_TRAINED = 0.5   # a final training error above this: the net has not fit the training data
CHANCE_MARGIN = 0.1   # nats: a final training loss at or above ln(classes) minus this is "not below chance"


def learning_flag(loss: float, error: float, num_classes: int, under_trained_above: float | None = UNDER_TRAINED,
                  chance_margin: float | None = CHANCE_MARGIN) -> tuple[str, str] | None:
    r"""``("dead", why)`` when the final training ``loss`` is not below chance, :math:`\ln C -`
    ``chance_margin`` (a net that ignores its input cannot do better than :math:`\ln C`), else
    ``("under-trained", why)`` when the final training ``error`` is above ``under_trained_above``, else None.
    A None threshold leaves its test out."""
    chance = math.log(num_classes)
    if chance_margin is not None and loss >= chance - chance_margin:
        return "dead", (f"final training loss {loss:.3f} is not below chance, ln {num_classes} = {chance:.3f} "
                        f"minus {chance_margin:g}")
    if under_trained_above is not None and error > under_trained_above:
        return "under-trained", f"final training error {100 * error:.1f}% > {100 * under_trained_above:g}%"
    return None


# ----------------------------------------------------------------------------- checks before a run
def check_settings(given: dict) -> None:
    """Refuse settings given for a new run that would have no effect (ValueError naming them and the fix).

    ``given`` holds only the settings the user gave (the command line's flags, or :func:`fit`'s arguments).
    """
    problem = data_option_problem(given.get("data", Config.data), given) or _schedule_problem(given)
    if problem:
        raise ValueError(problem)


def data_option_problem(data: str, given: dict) -> str | None:
    """Why ``--data-dir`` / ``--download`` would be ignored with ``data``, or None."""
    if "data_dir" in given and data == "synthetic":
        return ("--data-dir has no effect on the embedded synthetic data; pass --data mnist or --data cifar10 "
                "to read files from it, or leave it out")
    if given.get("download") and data != "cifar10":
        return (f"--download fetches only CIFAR-10 (--data cifar10), not the {data} data; leave it out"
                + (" (MNIST is read from the IDX files in --data-dir)" if data == "mnist" else ""))
    return None


def _schedule_problem(given: dict) -> str | None:
    """Why ``--epochs`` / ``--milestones`` would be without effect, or None."""
    if given.get("paper"):
        extra = [f"--{name}" for name in ("epochs", "milestones") if name in given]
        if extra:
            drops = " and ".join(map(str, optim.PAPER_MILESTONES))
            return (f"{' and '.join(extra)} has no effect with --paper (its schedule is fixed: "
                    f"{optim.PAPER_ITERATIONS} iterations, the rate /10 at {drops}); leave out one or the other")
        return None
    epochs = given.get("epochs", Config.epochs)
    late = [m for m in given.get("milestones") or () if m >= epochs]
    if late:
        return (f"--milestones {' '.join(f'{m:g}' for m in late)}: at or after the end of the run (--epochs "
                f"{epochs}), so the rate would never drop there; give milestones below {epochs}, or more --epochs")
    return None


def check_run_folder(out, new_run: bool = True) -> None:
    """Raise, naming the path and what to do, unless ``out`` can be this run's folder: a folder this process
    can write (or create), and for a new run one that is missing, empty or holds a minires run's files.

    Checked before anything is loaded, so a bad ``--out`` costs nothing.
    """
    out = Path(out)
    existing = next(p for p in (out, *out.parents) if p.exists() or p.is_symlink())
    if not existing.is_dir():
        where = "is a file, not a folder" if existing == out else f"cannot be created: {existing} is a file"
        raise NotADirectoryError(f"--out {out} {where}; give the path of a folder (a missing one is created)")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PermissionError(f"--out {out}: no permission to write in {existing}; choose a folder you can write")
    if new_run and existing == out:
        entries = sorted(p.name for p in out.iterdir())
        if entries and not any(_is_run_file(out / name) for name in entries):
            shown = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
            raise FileExistsError(f"--out {out} is a non-empty folder that holds no minires run ({shown}); "
                                  "choose a new or empty folder")


def _is_run_file(path: Path) -> bool:
    return any(path.match(pattern) for pattern in RUN_FILES + TEMPORARY_FILES)


# ----------------------------------------------------------------------------- data
def load_datasets(cfg: Config):
    """The training and held-out datasets named by ``cfg.data``."""
    if cfg.data == "synthetic":
        return Synthetic(train=True, n=cfg.train_size), Synthetic(train=False, n=cfg.test_size)
    if cfg.data == "mnist":
        train, test = MNIST(cfg.data_dir, train=True), MNIST(cfg.data_dir, train=False)
    elif cfg.data == "cifar10":
        train = CIFAR10(cfg.data_dir, train=True, download=cfg.download, progress=cfg.progress)
        test = CIFAR10(cfg.data_dir, train=False)
    else:
        raise ValueError(f"train: unknown data {cfg.data!r}; choose one of {', '.join(FLIPPABLE)}")
    return train.subset(cfg.train_size), test.subset(cfg.test_size)


def make_loaders(cfg: Config, train_set, test_set, comm=None):
    """Training loader (shuffled, augmented) and held-out loader, both mean-subtracted.

    With a communicator of several ranks each loader reads only this rank's share (see
    :func:`minires.distributed.data_shards`), and the training batch is ``batch_size / K``.
    """
    comm = comm or distributed.SingleProcess()
    train_shard, test_shard = distributed.data_shards(comm, train_set, test_set, seed=cfg.seed)
    normalise = SubtractPixelMean(pixel_mean(train_set))
    steps = [normalise]
    if cfg.augment:
        steps.append(RandomCrop(train_set.image_shape[-1], padding=4))
        if FLIPPABLE[cfg.data]:
            steps.append(RandomHorizontalFlip())
    train = DataLoader(train_set, distributed.per_rank_batch(cfg.batch_size, comm), shuffle=train_shard is None,
                       seed=cfg.seed, transform=Compose(steps), sampler=train_shard)
    test = DataLoader(test_set, cfg.eval_batch_size, transform=normalise, sampler=test_shard)
    return train, test


# ----------------------------------------------------------------------------- the model
def build_model(name: str, width: int | None = None, **kwargs):
    """``models.get_model(name)``, plus any CIFAR depth 6n+2 by name (``resnet8``, ``plain14``).

    ``width`` (the CIFAR nets' first-stage channels) is passed on only when given; ValueError for an
    unknown name, or a width given to a net that has none.
    """
    check_model(name, width)
    if width is not None:
        kwargs["width"] = width
    parsed = _depth_name(name)
    if parsed and name not in models.list_models():
        return models.cifar_resnet(parsed[1], residual=parsed[0], **kwargs)
    return models.get_model(name, **kwargs)


def check_model(name: str, width: int | None = None) -> None:
    """ValueError (one line, with the fix) unless :func:`build_model` can build ``name`` with ``width``."""
    parsed = _depth_name(name)
    if name not in models.list_models() and not (parsed and models.is_cifar_depth(parsed[1])):
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(models.list_models())}, "
                         "or any CIFAR depth 6n+2 as resnetN / plainN")
    if width is not None and not _is_cifar_net(name):
        cifar = [n for n in models.list_models() if _is_cifar_net(n)]
        raise ValueError(f"--width applies only to the CIFAR nets ({', '.join(cifar)}, or any resnetN / plainN "
                         f"of depth 6n+2); {name} is an ImageNet net with the paper's widths: leave out --width")


def model_name(text: str) -> str:
    """An argparse type: a model :func:`build_model` can build (``train --model``, ``summary MODEL``)."""
    try:
        check_model(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


def models_in_words() -> str:
    """The models :func:`build_model` builds, for a ``--help``."""
    return f"one of: {', '.join(models.list_models())}, or any CIFAR depth 6n+2 as resnetN / plainN"


def _depth_name(name: str) -> tuple[bool, int] | None:
    """``(residual, depth)`` of a name ``resnetN`` or ``plainN``, else None."""
    match = re.fullmatch(r"(resnet|plain)(\d+)", name)
    return (match[1] == "resnet", int(match[2])) if match else None


def _is_cifar_net(name: str) -> bool:
    parsed = _depth_name(name)
    return bool(parsed) and not (name in models.list_models() and parsed[1] in IMAGENET_CONFIGS)


# ----------------------------------------------------------------------------- the trainer
class Trainer:
    """Builds model, data, optimizer and schedule from a :class:`Config`; :meth:`fit` trains.

    ``Trainer.resume(out)`` rebuilds a run from its checkpoint (its saved settings; only the
    :data:`RESUMABLE` ones, such as ``epochs`` to train longer, may change) and continues after its last epoch.
    """

    def __init__(self, cfg: Config, checkpoint: dict | None = None):
        self.out = Path(cfg.out or default_out(cfg))
        if checkpoint is None and has_checkpoint(self.out):
            raise FileExistsError(f"{self.out} already holds a run; pass --resume to continue it or choose "
                                  "another --out")
        check_run_folder(self.out, new_run=checkpoint is None)   # before anything is loaded or built
        check_model(cfg.model, cfg.width)
        self.comm = distributed.init(cfg.dist_backend, cfg.device)
        if checkpoint is not None:
            check_rank_count(checkpoint, cfg, self.comm.world_size, self.out)
        if not self.comm.is_root:  # rank 0 alone reports and writes the run folder
            cfg = dataclasses.replace(cfg, progress=False)
        self.device = distributed.rank_device(cfg.device, self.comm)
        self.cfg = cfg = _resolve_defaults(cfg)
        train_set, test_set = load_datasets(cfg)
        for flag, asked, dataset, split in (("--train-size", cfg.train_size, train_set, "training"),
                                            ("--test-size", cfg.test_size, test_set, "held-out")):
            if asked is not None and asked > len(dataset):     # subset() would quietly give all of them
                raise ValueError(f"{flag} {asked}: {cfg.data} in {cfg.data_dir} has only {len(dataset):,} {split} "
                                 f"images; ask for at most that many, or leave {flag} out to use them all")
        self.train_loader, self.test_loader = make_loaders(cfg, train_set, test_set, self.comm)
        manual_seed(cfg.seed)
        self.num_classes = len(train_set.classes) or 10
        self.model = build_model(cfg.model, width=cfg.width, num_classes=self.num_classes,
                                 in_channels=train_set.image_shape[0]).to(self.device, cfg.dtype)
        if cfg.sync_bn:
            self.model = distributed.convert_sync_batchnorm(self.model, self.comm)
        self.optimizer = optim.SGD(self.model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                                   weight_decay=cfg.weight_decay)
        self.total_iterations, milestones = self._schedule_in_iterations()
        if checkpoint is None and cfg.warmup >= self.total_iterations > 0:
            raise ValueError(f"--warmup {cfg.warmup} covers the whole run ({self.total_iterations} iterations), so "
                             f"the rate never reaches --lr; give a warm-up below {self.total_iterations}, or a longer run")
        self.scheduler = optim.MultiStepLR(self.optimizer, milestones, warmup=cfg.warmup)
        self.epoch = self.iteration = self.skipped = self.went_on = 0
        self.metrics_path = self.out / "metrics.jsonl"
        self.restored = checkpoint is not None
        self.saved_at = None  # (epoch, iteration) of the run folder's checkpoint
        self._went_on_at = None  # the iteration last counted in went_on
        if checkpoint is not None:
            try:
                self._restore(checkpoint)
            except (KeyError, IndexError, TypeError, ValueError) as error:
                raise CheckpointError(f"{self.out}: the checkpoint does not fit the run it describes "
                                      f"({type(error).__name__}: {error})") from error
            self._check_restored()
        distributed.broadcast_state(self.model, self.comm)  # every replica starts from rank 0's weights

    @classmethod
    def resume(cls, out, epochs: int | None = None, device: str | None = None, progress: bool = True,
               **settings):
        """The run saved in ``out``, ready to continue.

        ``epochs`` (a new, larger total), ``device``, ``progress`` and the other :data:`RESUMABLE`
        settings apply to the rest of the run; any other setting must equal the saved one, or
        ``ValueError`` lists the differences (they would change what the run computes).
        """
        checkpoint = load_training_checkpoint(out)
        try:
            saved = Config(**checkpoint["config"])
        except (TypeError, ValueError) as error:
            raise CheckpointError(f"{out}: malformed training checkpoint: its config is not a valid run "
                                  f"({error})") from error
        given = {k: v for k, v in dict(settings, epochs=epochs, device=device).items() if v is not None}
        ignored = data_option_problem(saved.data, given)
        if ignored:   # a resumable setting: warned, not refused, so a run's --data-dir can always be given
            warnings.warn(f"minires train: --resume of {out}: {ignored}", RuntimeWarning, stacklevel=2)
        cfg = dataclasses.replace(saved, out=str(out), progress=progress,
                                  **_resume_changes(saved, given, checkpoint["epoch"], out))
        return cls(cfg, checkpoint)

    def _schedule_in_iterations(self):
        """(total iterations, learning-rate milestones in iterations) for this run."""
        cfg, per_epoch = self.cfg, len(self.train_loader)
        if cfg.paper:
            return optim.PAPER_ITERATIONS, list(optim.PAPER_MILESTONES)
        return cfg.epochs * per_epoch, [round(m * per_epoch) for m in cfg.milestones]

    @property
    def epochs(self) -> int:
        return math.ceil(self.total_iterations / len(self.train_loader))

    # -- the loop
    def fit(self) -> dict:
        """Train until the last epoch (or iteration); return the final metrics.

        Rank 0 holds the run folder's lock (:func:`~minires.checkpoint.run_lock`) throughout: a second
        run in the same folder stops at once, naming this one's PID.
        """
        with run_lock(self.out) if self.comm.is_root else contextlib.nullcontext():
            if self.comm.is_root:
                self._prepare_folder()
                load_plotting()
            return self._fit()

    def _prepare_folder(self) -> None:
        """Remove temporary files of writes a kill interrupted; keep only the metrics the checkpoint covers
        (all of them dropped if there is no checkpoint: a fresh run starts a fresh file)."""
        self._check_not_overtaken()
        for pattern in TEMPORARY_FILES:
            for stale in self.out.glob(pattern):
                stale.unlink(missing_ok=True)
        _truncate_metrics(self.metrics_path, self.iteration if self.restored else -1)

    def _check_not_overtaken(self) -> None:
        """FileExistsError, before anything changes, unless the folder's checkpoint is still the one this run
        started from (none, for a new run): another run may have saved one before this one took the lock."""
        saved = load_checkpoint(self.out)["iteration"] if has_checkpoint(self.out) else None
        started = self.iteration if self.restored else None
        if saved != started:
            raise FileExistsError(f"{self.out}: another run saved a checkpoint here ({_iteration(saved)}) after this "
                                  f"run read the folder ({_iteration(started)}); nothing was changed. `minires train "
                                  f"--resume --out {self.out}` continues from it")

    def _fit(self) -> dict:
        last = self._last_epoch_metrics()
        while self.iteration < self.total_iterations:
            self.skipped = self.went_on = 0
            train_loss, train_error, rate = self.train_epoch()
            test_loss, test_error = self.evaluate()
            self.epoch += 1
            last = {"kind": "epoch", "epoch": self.epoch, "iteration": self.iteration, "lr": self._lr(),
                    "train_loss": train_loss, "train_error": train_error, "test_loss": test_loss,
                    "test_error": test_error, "test_accuracy": 1 - test_error, "images_per_second": rate,
                    "skipped_steps": self.skipped, "non_finite_steps": self.went_on}
            self._log(last)
            if not math.isfinite(test_loss):
                self._held_out_not_finite(test_loss)
            if self.went_on > 1 and self.comm.is_root:
                warnings.warn(f"minires train: epoch {self.epoch}: {self.went_on} of its steps had NaN/Inf values and "
                              f"went on (--nan-policy {self.cfg.nan_policy}); only the first was shown",
                              RuntimeWarning, stacklevel=2)
            if self.skipped and self.comm.is_root:
                warnings.warn(f"minires train: epoch {self.epoch}: {self.skipped} of its updates skipped, their loss or "
                              "gradients NaN/Inf (--nan-policy skip); its training loss and error leave them out",
                              RuntimeWarning, stacklevel=2)
            if self.comm.is_root:
                self.save_checkpoint()
            self.saved_at = (self.epoch, self.iteration)
            if self.comm.is_root:
                plot_curves(self.metrics_path, self.out / "curves.png", title=f"{self.cfg.model} on {self.cfg.data}")
            if self.cfg.progress:
                tqdm.write(f"epoch {self.epoch}: test error {100 * test_error:.2f}% (loss {test_loss:.4f}), "
                           f"train error {100 * train_error:.2f}%, {rate:.0f} img/s")
        return last

    def train_epoch(self):
        """One pass over the training data (stopping early at the last iteration)."""
        self.model.train()
        total_loss = total_wrong = seen = 0
        window = [0.0, 0, 0]  # loss sum, wrong, images since the last "train" line
        start = time.perf_counter()
        # iter() first: tqdm calls iter() on what it is given when the bar is made and again when the
        # loop starts, and each iter() of a DataLoader is a new epoch of its order and augmentation.
        bar = tqdm(iter(self.train_loader), total=len(self.train_loader), desc=f"epoch {self.epoch + 1}/{self.epochs}",
                   leave=False, disable=not self.cfg.progress, file=sys.stderr)
        for x, y in bar:
            step = self.train_step(x, y)
            if step is not None:  # a skipped update (--nan-policy skip) keeps its NaN loss out of the means
                loss, wrong = step
                total_loss, total_wrong, seen = total_loss + loss * len(y), total_wrong + wrong, seen + len(y)
                window = [window[0] + loss * len(y), window[1] + wrong, window[2] + len(y)]
            if self.iteration % self.cfg.log_every == 0 and window[2]:
                window, seen_by_all = self._sum_over_ranks(*window), seen * self.comm.world_size
                self._log({"kind": "train", "epoch": self.epoch + seen_by_all / len(self.train_loader.dataset),
                           "iteration": self.iteration, "lr": self._lr(), "loss": window[0] / window[2],
                           "error": window[1] / window[2]})
                window = [0.0, 0, 0]
            if seen:
                bar.set_postfix(loss=f"{total_loss / seen:.3f}", acc=f"{1 - total_wrong / seen:.3f}",
                                img_s=f"{seen / (time.perf_counter() - start):.0f}", lr=f"{self._lr():.3g}")
            if self.iteration >= self.total_iterations:
                break
        total_loss, total_wrong, seen = self._sum_over_ranks(total_loss, total_wrong, seen)
        if not seen:  # every update of the epoch was skipped: no loss to report (skipped_steps says why)
            return math.nan, math.nan, 0.0
        return total_loss / seen, total_wrong / seen, seen / (time.perf_counter() - start)

    def train_step(self, x, y):
        """Forward, backward, SGD update, schedule step; returns (mean loss, number wrong), or None if the
        update was skipped.

        A non-finite loss, gradient or BatchNorm running statistic (checked before the update) or weight
        (after it) is handled by ``nan_policy``: ``stop`` raises :class:`NonFiniteError`, ``skip`` leaves the
        weights and the running statistics (which the forward pass has updated) as they were before this
        batch (counted in ``skipped``), ``continue`` goes on (counted in ``went_on``; the first such step of
        an epoch warns, the epoch's end says how many there were).
        """
        buffers = [(b, b.data.copy()) for b in self.model.buffers()] if self.cfg.nan_policy == "skip" else []
        logits = self.model(self._input(x))
        loss = cross_entropy(logits, backend.to_device(y, self.device))
        self.optimizer.zero_grad()
        loss.backward()
        distributed.allreduce_gradients(self.model.parameters(), self.comm)
        problem = self._non_finite(loss, gradients=True)
        skipped = bool(problem) and self._handle_non_finite(problem, can_skip=True)
        if skipped:
            self.skipped += 1
            for buffer, before in buffers:
                buffer.data = before
        else:
            self.optimizer.step()
            problem = self._non_finite(None, gradients=False)
            if problem:
                self._handle_non_finite(problem, can_skip=False)
        self.scheduler.step()
        self.iteration += 1
        return None if skipped else (float(loss.item()), _wrong(logits, y))

    def _non_finite(self, loss, gradients: bool) -> str | None:
        """What is NaN or infinite, or None: before the update (``gradients=True``) the loss on any rank, a
        gradient, or a BatchNorm running statistic (the forward pass updates them); after it, a weight."""
        if loss is not None and self._sum_over_ranks(0.0 if math.isfinite(loss.item()) else 1.0)[0]:
            return f"the loss is {loss.item()}"
        if not gradients:
            problem = self._non_finite_state()
            return problem and f"after the update, {problem}"
        name = _first_non_finite([(name, p.grad.data) for name, p in self.model.named_parameters()
                                  if p.grad is not None])
        if name:
            return f"the gradient of {name} has NaN or Inf values"
        name = self._non_finite_buffer()
        return name and f"the running statistic {name} has NaN or Inf values"

    def _non_finite_state(self) -> str | None:
        """Which weight or BatchNorm running statistic has NaN or Inf values (``"NAME has ..."``), or None."""
        name = _first_non_finite([(name, p.data) for name, p in self.model.named_parameters()])
        name = name or self._non_finite_buffer()
        return name and f"{name} has NaN or Inf values"

    def _non_finite_buffer(self) -> str | None:
        """The first buffer with a NaN or Inf on any rank (each rank has its own BN statistics), or None."""
        name = _first_non_finite([(name, b.data) for name, b in self.model.named_buffers()])
        if self.comm.world_size > 1 and self._sum_over_ranks(float(name is not None))[0]:
            return name or "a running statistic of another rank"
        return name

    def _handle_non_finite(self, problem: str, can_skip: bool) -> bool:
        """Apply ``nan_policy``; True if this batch's update is to be skipped."""
        where = f"iteration {self.iteration + 1} (epoch {self.epoch + 1}): {problem}"
        policy = self.cfg.nan_policy
        if policy == "continue" or (policy == "skip" and not can_skip):
            if self._went_on_at != self.iteration:    # a step counts once, even if its weights are checked too
                self.went_on, self._went_on_at = self.went_on + 1, self.iteration
                if self.went_on == 1:
                    warnings.warn(f"minires train: {where}; continuing (--nan-policy {policy}): later such steps of "
                                  "this epoch are counted, not shown", RuntimeWarning, stacklevel=3)
            return False
        if policy == "skip":
            return True
        raise NonFiniteError(f"training stopped at {where}; {self._last_good()}")

    def _last_good(self) -> str:
        """Where a stopped run can be taken up again: its last checkpoint (each is checked), or none."""
        if self.saved_at:
            return (f"the last good checkpoint is {self.out / 'checkpoint.json'} (epoch {self.saved_at[0]}, iteration "
                    f"{self.saved_at[1]}): resume it with --resume --nan-policy skip (skip such updates), or start a "
                    "new run in another --out with a lower --lr")
        return ("there is no checkpoint yet (one is written at the end of each epoch whose weights, statistics and "
                "held-out loss are finite): start again with a lower --lr, or pass --nan-policy skip (skip such "
                "updates) or continue")

    def _held_out_not_finite(self, test_loss: float) -> None:
        """A NaN/Inf held-out loss: ``stop`` stops before this epoch's checkpoint; the others warn."""
        where = f"epoch {self.epoch} (iteration {self.iteration}): the held-out loss is {test_loss}"
        if self.cfg.nan_policy == "stop":
            raise NonFiniteError(f"training stopped after {where}; {self._last_good()}")
        if self.comm.is_root:
            warnings.warn(f"minires train: {where}; the model is broken, and this epoch's checkpoint holds it "
                          f"(--nan-policy {self.cfg.nan_policy} goes on)", RuntimeWarning, stacklevel=3)

    def _check_restored(self) -> None:
        """A checkpoint with NaN/Inf weights or statistics: ``stop`` refuses to resume it; the others warn."""
        problem = self._non_finite_state()
        if not problem:
            return
        where = f"{self.out / 'checkpoint.json'} (epoch {self.epoch}) is broken: {problem}"
        if self.cfg.nan_policy == "stop":
            raise NonFiniteError(f"{where}; it cannot be resumed as a result: start a new run in another --out "
                                 "with a lower --lr (or resume with --nan-policy continue to go on anyway)")
        if self.comm.is_root:
            warnings.warn(f"minires train: {where}; resuming it (--nan-policy {self.cfg.nan_policy})",
                          RuntimeWarning, stacklevel=3)

    def broken(self, final: dict | None) -> str | None:
        """Why the run, ending with the epoch metrics ``final``, is no result (a NaN/Inf held-out loss,
        weight or running statistic), or None. Every rank must call it (it compares the ranks' statistics)."""
        problem = self._non_finite_state()
        if problem is None and final is not None and not math.isfinite(final["test_loss"]):
            problem = f"its held-out loss is {final['test_loss']}"
        return problem

    def _input(self, x) -> Tensor:
        """A batch of images as a Tensor on the run's device, in its dtype."""
        return Tensor(backend.to_device(x.astype(self.cfg.dtype, copy=False), self.device))

    def evaluate(self):
        """(mean loss, error rate) on the held-out split, in eval mode (BN running statistics)."""
        distributed.average_buffers(self.model, self.comm)  # per-rank BN: one set of running statistics
        self.model.eval()
        loss_sum = wrong = n = 0.0
        with no_grad():
            for x, y in self.test_loader:
                logits = self.model(self._input(x))
                loss_sum += float(cross_entropy(logits, backend.to_device(y, self.device)).item()) * len(y)
                wrong, n = wrong + _wrong(logits, y), n + len(y)
        self.model.train()
        loss_sum, wrong, n = self._sum_over_ranks(loss_sum, wrong, n)
        return loss_sum / n, wrong / n

    def _lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def _sum_over_ranks(self, *values) -> list:
        """The sums over all data-parallel ranks of these per-rank counts (themselves, on one process)."""
        return self.comm.allreduce_sum(np.array(values, dtype=np.float64)).tolist()

    # -- metrics
    def _log(self, record: dict) -> None:
        if not self.comm.is_root:
            return
        with open(self.metrics_path, "a") as f:
            f.write(_json_line(record))

    def _last_epoch_metrics(self):
        """The metrics of the last epoch the checkpoint covers (a kill can leave lines after it, one cut short)."""
        if not self.metrics_path.exists():
            return None
        epochs = [r for r in _complete_records(self.metrics_path)
                  if r.get("kind") == "epoch" and r["iteration"] <= self.iteration]
        return _nan_for_null(epochs[-1]) if epochs else None

    # -- checkpoints
    def state_dict(self) -> dict:
        return {"config": dataclasses.asdict(self.cfg), "epoch": self.epoch, "iteration": self.iteration,
                "model": dict(self.model.state_dict()), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "train_loader": self.train_loader.state_dict(),
                "rng": {"minires": default_generator().bit_generator.state}, "world_size": self.comm.world_size}

    def save_checkpoint(self) -> Path:
        return save_checkpoint(self.out, self.state_dict())

    def _restore(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.train_loader.load_state_dict(state["train_loader"])
        default_generator().bit_generator.state = state["rng"]["minires"]
        self.epoch, self.iteration = int(state["epoch"]), int(state["iteration"])
        self.saved_at = (self.epoch, self.iteration)


# ----------------------------------------------------------------------------- checkpoint schema
STATE_KEYS = {"config": dict, "epoch": int, "iteration": int, "model": dict, "optimizer": dict,
              "scheduler": dict, "train_loader": dict, "rng": dict, "world_size": int}
LATER_STATE_KEYS = {"world_size"}  # added after checkpoints were first written: absent from the older ones


def load_training_checkpoint(out) -> dict:
    """The trainer's state saved in ``out``, its schema checked: :class:`CheckpointError` if malformed."""
    state = load_checkpoint(out)
    problems = [f"{key!r} should be a {kind.__name__}" for key, kind in STATE_KEYS.items()
                if not _fits(state.get(key), kind) and not (key in LATER_STATE_KEYS and key not in state)]
    problems += [f"unknown key {key!r}" for key in sorted(set(state) - set(STATE_KEYS))]
    if not problems:
        problems = _config_problems(state["config"]) + [
            f"{key!r} is negative" for key in ("epoch", "iteration") if state[key] < 0] + [
            f"model entry {key!r} is not an array" for key, value in state["model"].items()
            if not isinstance(value, np.ndarray)]
        if state.get("world_size", 1) < 1:
            problems.append(f"'world_size' = {state['world_size']} is not a number of ranks")
    if problems:
        raise CheckpointError(f"{out}: malformed training checkpoint: " + "; ".join(problems))
    return state


def check_rank_count(checkpoint: dict, cfg: Config, world_size: int, out) -> None:
    """ValueError if the checkpoint's run trained on another number of ranks without ``--sync-bn``: each
    rank's BatchNorm takes its statistics over its own share of the batch, so another count would go on
    as a different run. With ``--sync-bn`` (or a checkpoint older than the saved count) any count goes on."""
    saved = checkpoint.get("world_size")
    if saved is None or saved == world_size or cfg.sync_bn:
        return
    how = "one process (no mpirun)" if saved == 1 else f"`mpirun -n {saved} minires train --resume ...`"
    raise ValueError(f"--resume of {out}: the run trained on {saved} rank(s) without --sync-bn, so each rank's "
                     f"BatchNorm took its statistics over 1/{saved} of the batch of {cfg.batch_size}; on "
                     f"{world_size} rank(s) it would be 1/{world_size}, a different run. Resume it with {how}, "
                     "or start a new run in another --out folder.")


LATER_SETTINGS = {"nan_policy"}  # added after checkpoints were first written: their defaults apply


def _config_problems(config: dict) -> list:
    hints = typing.get_type_hints(Config)
    problems = [f"config has unknown setting {key!r}" for key in config if key not in hints]
    problems += [f"config lacks {key!r}" for key in hints if key not in config and key not in LATER_SETTINGS]
    problems += [f"config {key!r} = {value!r} is not {hints[key]}" for key, value in config.items()
                 if key in hints and not _fits(value, hints[key])]
    milestones = config.get("milestones")
    if isinstance(milestones, list) and not all(_fits(m, float) for m in milestones):
        problems.append(f"config 'milestones' = {milestones!r} is not a list of numbers")
    return problems


def _fits(value, hint) -> bool:
    """``isinstance`` for a JSON value and a type hint: bools are not ints, ints are fine as floats."""
    kinds = typing.get_args(hint) or (hint,)
    if isinstance(value, bool):
        return bool in kinds
    if isinstance(value, int) and float in kinds:
        return True
    return isinstance(value, kinds)


def _resume_changes(saved: Config, given: dict, epochs_done: int, out) -> dict:
    """The settings in ``given`` that a resumed run applies; ValueError listing any it cannot."""
    unknown = sorted(set(given) - {f.name for f in dataclasses.fields(Config)})
    if unknown:
        raise ValueError(f"resume: unknown setting(s) {', '.join(unknown)}")
    differ = {k: v for k, v in given.items() if k != "out" and v != getattr(saved, k)}
    refused = [f"{k}={v!r} (the run used {getattr(saved, k)!r})" for k, v in differ.items() if k not in RESUMABLE]
    if "epochs" in differ and saved.paper:
        refused.append(f"epochs={differ['epochs']} (a --paper run has a fixed 64k-iteration schedule)")
    elif differ.get("epochs", epochs_done) < epochs_done:
        refused.append(f"epochs={differ['epochs']} (the run already finished {epochs_done} epochs)")
    if refused:
        raise ValueError(f"--resume of {out}: these settings differ from the saved run and cannot change "
                         f"mid-run: {'; '.join(refused)}. Leave them out to continue the run as it was, or "
                         "start a new run in another --out folder.")
    return {k: v for k, v in differ.items() if k in RESUMABLE}


def _resolve_defaults(cfg: Config) -> Config:
    """Fill the settings whose defaults depend on others, so the checkpoint records what ran (and a
    resumed run that trains longer keeps its milestones)."""
    batch_size = (128 if cfg.paper else 64) if cfg.batch_size is None else cfg.batch_size
    milestones = cfg.milestones if cfg.milestones is not None else [cfg.epochs * 0.5, cfg.epochs * 0.75]
    return dataclasses.replace(cfg, batch_size=batch_size, milestones=milestones)


def _first_non_finite(named: list) -> str | None:
    """The name of the first ``(name, array)`` whose array has a NaN or Inf, or None.

    One test over all the floating-point values at once (integer arrays are always finite): less Python
    per check than one test per array, and on a GPU a few launches instead of two per array. The arrays
    are searched one by one only when something is not finite."""
    floats = [(name, array) for name, array in named if array.dtype.kind == "f"]
    if not floats:
        return None
    xp = backend.get_array_module(floats[0][1])
    if bool(xp.isfinite(xp.concatenate([array.ravel() for _, array in floats])).all()):
        return None
    return next(name for name, array in floats if not bool(xp.isfinite(array).all()))


def _wrong(logits, y) -> int:
    return int((backend.to_device(logits.data.argmax(axis=1), "cpu") != y).sum())


DATE_TIME = "%Y%m%d-%H%M%S"   # the end of a default run folder's name: its names sort as their times do


def default_out(cfg: Config) -> str:
    """``runs/MODEL-DATA-DATE-TIME``."""
    return f"runs/{cfg.model}-{cfg.data}-{time.strftime(DATE_TIME)}"


def latest_run(model: str, data: str) -> str:
    """The newest ``runs/MODEL-DATA-DATE-TIME`` folder, as :func:`default_out` names them (what ``--resume``
    without ``--out`` continues); a folder named otherwise (``--out runs/MODEL-DATA-mine``) is not in the
    running, as its name says nothing of its time."""
    def dated(path: Path) -> bool:
        try:
            time.strptime(path.name[len(f"{model}-{data}-"):], DATE_TIME)
        except ValueError:
            return False
        return path.is_dir()
    runs = sorted(filter(dated, Path("runs").glob(f"{model}-{data}-*")))
    if not runs:
        raise FileNotFoundError(f"--resume: no runs/{model}-{data}-DATE-TIME folder here (the newest one is "
                                "continued without --out, by --model and --data); pass --out RUN_FOLDER")
    return str(runs[-1])


def fit(resume: bool = False, **settings) -> dict:
    """Train with the given :class:`Config` settings and return the final metrics.

    ``resume=True`` continues the run in ``out`` instead (see :meth:`Trainer.resume` for what may change).
    Settings that would have no effect are refused (:func:`check_settings`). A run that ``nan_policy`` skip
    or continue carried into NaN/Inf still returns its metrics (their ``test_loss`` says so); ``minires
    train`` raises :class:`NonFiniteError` instead (see :meth:`Trainer.broken`).
    """
    if resume:
        trainer = Trainer.resume(**settings)
    else:
        check_settings(settings)
        trainer = Trainer(Config(**settings))
    return trainer.fit()


# ----------------------------------------------------------------------------- metrics files
def read_metrics(path) -> list[dict]:
    """The records of a ``metrics.jsonl``; a number written as ``null`` (NaN or infinite) comes back as NaN."""
    with open(path) as f:
        return [_nan_for_null(json.loads(line)) for line in f if line.strip()]


def _nan_for_null(record: dict) -> dict:
    return {key: math.nan if value is None else value for key, value in record.items()}


def _json_line(record: dict) -> str:
    """``record`` as one line of strict JSON: NaN and infinities (which JSON lacks) become ``null``."""
    return json.dumps({key: None if isinstance(value, float) and not math.isfinite(value) else value
                       for key, value in record.items()}, allow_nan=False) + "\n"


def _complete_records(path: Path) -> list[dict]:
    records = []
    with open(path) as f:
        for line in f:
            try:
                records.append(json.loads(line))
            except ValueError:
                continue
    return [r for r in records if isinstance(r, dict) and isinstance(r.get("iteration"), int)]


def _truncate_metrics(path: Path, iteration: int) -> None:
    """Drop lines written after the checkpoint at ``iteration`` (by a run killed before its next one),
    and a last line a kill cut short."""
    if path.exists():
        kept = [r for r in _complete_records(path) if r["iteration"] <= iteration]
        atomic_write(path, lambda f: f.write("".join(_json_line(r) for r in kept).encode()))


def load_plotting() -> None:
    """Import what :func:`plot_curves` needs now, before training, not at the first epoch's end: a Ctrl-C
    that lands while one of matplotlib's C extensions initialises becomes an ``ImportError`` and can crash
    Python as it exits (\"Fatal Python error\", status -6 instead of 130)."""
    import matplotlib.backends.backend_agg  # noqa: F401
    import matplotlib.figure  # noqa: F401


def plot_curves(metrics_path, png_path, title: str = "training") -> None:
    """Loss and error (%) against iterations: training (every few iterations) and held-out (each epoch)."""
    from matplotlib.figure import Figure  # no pyplot: no global state, no display needed

    records = read_metrics(metrics_path)
    train = [r for r in records if r["kind"] == "train"]
    epochs = [r for r in records if r["kind"] == "epoch"]
    figure = Figure(figsize=(10, 4), layout="constrained")
    loss_axes, error_axes = figure.subplots(1, 2)
    for axes, key, train_key, label in ((loss_axes, "test_loss", "loss", "cross-entropy loss"),
                                        (error_axes, "test_error", "error", "error (%)")):
        scale = 100 if key == "test_error" else 1
        axes.plot([r["iteration"] for r in train], [scale * r[train_key] for r in train], lw=1, alpha=0.7,
                  label="training (augmented, running)")
        axes.plot([r["iteration"] for r in epochs], [scale * r[key] for r in epochs], "o-", label="held-out")
        axes.set(xlabel="iteration", ylabel=label, title=label.split(" (")[0].capitalize())
        axes.grid(alpha=0.3)
        axes.legend()
        if epochs:
            per_epoch = epochs[0]["iteration"] / epochs[0]["epoch"]
            axes.secondary_xaxis("top", functions=(lambda i: i / per_epoch, lambda e: e * per_epoch)).set_xlabel("epoch")
    if epochs:
        best = min(epochs, key=lambda r: r["test_error"])
        error_axes.set_title(f"Error (best held-out {100 * best['test_error']:.2f}% at epoch {best['epoch']})")
    figure.suptitle(title)
    atomic_write(png_path, lambda f: figure.savefig(f, format="png", dpi=100))


# ----------------------------------------------------------------------------- the command
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``minires train``. Every default is None (the :class:`Config` default applies), so
    that a ``--resume`` can tell which settings were given and compare them with the saved run's."""
    d = Config()
    parser.add_argument("--model", type=model_name, help=f"{models_in_words()} (default {d.model})")
    parser.add_argument("--width", type=positive_int,
                        help="CIFAR nets: channels of the first stage (default 16, the paper's); smaller is faster")
    parser.add_argument("--data", choices=list(FLIPPABLE), help="dataset (default: the embedded synthetic set)")
    parser.add_argument("--data-dir", help="folder with the MNIST IDX files or the CIFAR-10 archive (only with --data "
                                           f"mnist or cifar10; default {d.data_dir})")
    parser.add_argument("--download", action="store_true", default=None,
                        help="fetch CIFAR-10 if it is not in --data-dir (only with --data cifar10)")
    parser.add_argument("--epochs", type=positive_int,
                        help=f"passes over the training set (default {d.epochs}; with --resume: a larger total "
                             "extends the run, its milestones kept where they were)")
    parser.add_argument("--batch-size", type=positive_int, help="images per step (default 64; with --paper the paper's 128)")
    parser.add_argument("--lr", type=positive_float, help=f"initial learning rate (default {d.lr})")
    parser.add_argument("--momentum", type=unit_interval, help=f"in [0, 1) (default {d.momentum})")
    parser.add_argument("--weight-decay", type=non_negative_float, help=f"(default {d.weight_decay})")
    parser.add_argument("--milestones", type=positive_float, nargs="+",
                        help="epochs at which the rate is divided by 10, each below --epochs (default: 50%% and 75%% "
                             "of --epochs)")
    parser.add_argument("--warmup", type=non_negative_int,
                        help=f"first iterations at a tenth of --lr, fewer than the run's (default {d.warmup}; the paper's "
                             "ResNet-110: 400)")
    parser.add_argument("--paper", action="store_true", default=None,
                        help="the paper's protocol: batch 128, 64k iterations, rate /10 at 32k and 48k (so it takes "
                             "no --epochs or --milestones); the paper's ResNet-110 adds --warmup 400")
    parser.add_argument("--seed", type=non_negative_int, help=f"seeds weights, shuffling and augmentation (default {d.seed})")
    parser.add_argument("--out", default=None,
                        help="run folder (default runs/MODEL-DATA-DATE-TIME): a new run needs one that is missing, "
                             "empty or a minires run's")
    resume = parser.add_argument("--resume", action="store_true")
    parser.add_argument("--augment", action=argparse.BooleanOptionalAction, default=None,
                        help="pad-and-crop (and flip) training images (default: on)")
    parser.add_argument("--device", default=None, help=f"cpu, cuda or cuda:N (default {d.device})")
    parser.add_argument("--dtype", choices=["float32", "float64"],
                        help=f"floating-point type of weights and activations (default {d.dtype}; float64 is "
                             "slower but its rounding rarely flips a ReLU, so runs compare to many digits)")
    parser.add_argument("--dist-backend", choices=["auto", "mpi", "nccl", "none"],
                        help="under mpirun: mpi (CPU ranks) or nccl (one GPU per rank); none: one process, even under "
                             "mpirun; auto (default): nccl with --device cuda and mpi otherwise under mpirun, else none")
    parser.add_argument("--sync-bn", action="store_true", default=None,
                        help="under mpirun: BatchNorm statistics over the global batch, not each rank's share")
    sizes = SYNTHETIC_SIZES
    parser.add_argument("--train-size", type=positive_int,
                        help=f"synthetic: images to generate (default {sizes[True]:,}); else use the first N, at most all (the default)")
    parser.add_argument("--test-size", type=positive_int,
                        help=f"as --train-size, for the held-out split (default {sizes[False]:,} synthetic, else all)")
    parser.add_argument("--nan-policy", choices=NAN_POLICIES,
                        help="when the loss, a gradient, a weight or a BatchNorm statistic is NaN/Inf: stop "
                             "(default; names the iteration and the last good checkpoint; a NaN held-out loss stops "
                             "too), skip that batch's update and statistics (counted in the metrics as "
                             "skipped_steps), or continue (a warning at the first such step of each epoch; "
                             "counted as non_finite_steps); a run that ends with NaN/Inf exits with an error")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    may_change = [a.option_strings[-1] for a in parser._actions if a.dest in RESUMABLE and a.dest != "epochs"]
    resume.help = ("continue the run in --out (default: the newest runs/MODEL-DATA-DATE-TIME of --model and --data, "
                   "or their defaults); settings given must match the saved run's, except --epochs (a larger "
                   f"total), {', '.join(may_change)}; a finished run trains only with a larger --epochs")


def run(args) -> int:
    """``minires train``: 0 with the held-out accuracy, or NonFiniteError (exit 1) if the run ends broken."""
    settings = {f.name: getattr(args, f.name) for f in dataclasses.fields(Config)
                if getattr(args, f.name, None) is not None}
    if args.resume:
        out = settings.pop("out", None) or latest_run(args.model or Config.model, args.data or Config.data)
        trainer = Trainer.resume(out, **settings)
    else:
        check_settings(settings)
        trainer = Trainer(Config(**settings))
    if trainer.iteration >= trainer.total_iterations:
        return _already_finished(trainer)
    if trainer.comm.is_root:
        print(f"minires train: {trainer.cfg.model} on {trainer.cfg.data}, {_epochs(trainer.epochs)} "
              f"({trainer.total_iterations} iterations), {trainer.comm.world_size} rank(s), run folder {trainer.out}")
        if trainer.cfg.sync_bn and trainer.comm.world_size == 1:
            print("note: --sync-bn with one rank changes nothing (each batch's statistics are already the whole "
                  "batch's); it matters under mpirun")
    final = trainer.fit()
    _raise_if_broken(trainer, final)
    if final is not None and trainer.comm.is_root:
        flag = learning_flag(final["train_loss"], final["train_error"], trainer.num_classes)
        flagged = f", but the net is {flag[0].upper()}: {flag[1]}, so this is not a trained net's result" if flag else ""
        print(f"done: held-out accuracy {100 * final['test_accuracy']:.2f}% after {_epochs(final['epoch'])}{flagged}; "
              f"metrics, curves.png and checkpoint in {trainer.out}")
    return 0


def interrupted(args) -> str:
    """What ``minires train`` adds to the Ctrl-C line (:mod:`minires.cli`): the checkpoint that was
    kept, if any, and the command that continues from it."""
    out = args.out
    if out is None:
        try:
            out = latest_run(args.model or Config.model, args.data or Config.data)
        except (FileNotFoundError, ValueError):
            return "no checkpoint was written"
    if not has_checkpoint(out):
        return f"no checkpoint was written in {out} yet"
    try:
        epoch = load_checkpoint(out)["epoch"]
    except (CheckpointError, OSError, ValueError) as error:
        return f"the checkpoint in {out} cannot be read ({error})"
    return f"the checkpoint of epoch {epoch} is kept in {out}: `minires train --resume --out {out}` continues from it"


def _already_finished(trainer: Trainer) -> int:
    """A ``--resume`` of a run that has nothing left to train: say so (exit 0), and how to train further."""
    _raise_if_broken(trainer, trainer._last_epoch_metrics())
    if trainer.comm.is_root:
        further = ("a --paper run ends there" if trainer.cfg.paper else
                   f"to train further, pass --resume --epochs N with N larger than {trainer.epoch}")
        print(f"minires train: nothing to train: {trainer.out} already finished its {_epochs(trainer.epoch)} "
              f"({trainer.iteration} iterations); {further}")
    return 0


def _iteration(iteration: int | None) -> str:
    return "no checkpoint" if iteration is None else f"iteration {iteration}"


def _epochs(n: int) -> str:
    return f"{n} epoch{'' if n == 1 else 's'}"


def _raise_if_broken(trainer: Trainer, final: dict | None) -> None:
    """NonFiniteError if the run's end is no result (``continue`` or ``skip`` went on into NaN/Inf)."""
    problem = trainer.broken(final)
    if problem:
        epoch = final["epoch"] if final else trainer.epoch
        raise NonFiniteError(f"the run is broken, not a result: after epoch {epoch} {problem} (--nan-policy "
                             f"{trainer.cfg.nan_policy}); its metrics and checkpoint in {trainer.out} record that "
                             "state. Start a new run in another --out with a lower --lr")

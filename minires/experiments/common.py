"""What every experiment shares: settings, data, the training protocol, evaluation and the run folder.

The protocol is the paper's CIFAR recipe (sec. 4.2) at any length: SGD with momentum 0.9 and weight
decay 1e-4, batch 128, learning rate 0.1 divided by 10 at 50% and 75% of the iterations
(:func:`minires.optim.paper_schedule`), 4-pixel pad + random crop + horizontal flip, per-pixel mean
subtraction, He initialisation and BN. Every network in an experiment is trained with exactly the
same data order (one seed) so that only the architecture differs.
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import json
import math
import multiprocessing
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import autograd
from .. import functional as F
from ..checkpoint import atomic_write
from ..cpu import threads as cpu_threads
from ..models import cifar_resnet
from ..nn import BatchNorm2d, Identity
from ..random import manual_seed
from ..optim import SGD, paper_schedule
from ..train import Config, load_datasets, make_loaders

DATASETS = ("synthetic", "mnist", "cifar10")


# ----------------------------------------------------------------------------- settings
def choose_settings(quick: dict, full: dict, use_quick: bool, overrides: dict) -> dict:
    """``quick`` or ``full`` settings with the given overrides (None values ignored) applied.

    Only keys the experiment knows can be overridden; anything else is an error naming the keys.
    """
    settings = dict(quick if use_quick else full)
    given = {k: v for k, v in overrides.items() if v is not None}
    unknown = sorted(set(given) - set(settings))
    if unknown:
        raise ValueError(f"this experiment has no setting {', '.join(unknown)}; it has {', '.join(sorted(settings))}")
    settings.update(given)
    return settings


# ----------------------------------------------------------------------------- data
@dataclass
class ExperimentData:
    """The datasets of an experiment, loaded once, and the loaders of ``minires train`` over them."""

    config: Config
    train: object
    test: object

    @property
    def name(self) -> str:
        return self.config.data

    @property
    def in_channels(self) -> int:
        return self.train.image_shape[0]

    @property
    def num_classes(self) -> int:
        return len(self.train.classes) or 10

    def loaders(self, batch_size: int, seed: int):
        """(training loader, held-out loader) exactly as ``minires train`` makes them (augmentation, mean)."""
        cfg = dataclasses.replace(self.config, batch_size=batch_size, seed=seed)
        return make_loaders(cfg, self.train, self.test)

    def describe(self) -> str:
        return f"{self.name}: {len(self.train)} training / {len(self.test)} test images of {self.train.image_shape}"


def load_data(name: str = "synthetic", data_dir=None, n_train: int | None = None,
              n_test: int | None = None) -> ExperimentData:
    """The embedded Synthetic data (default), or MNIST / CIFAR-10 from ``data_dir`` (first ``n`` of each split)."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    if name != "synthetic" and data_dir is None:
        raise ValueError(f"--data {name} needs --data-dir, the folder holding the dataset's files")
    cfg = Config(data=name, data_dir=str(data_dir), train_size=n_train, test_size=n_test, progress=False)
    train_set, test_set = load_datasets(cfg)
    return ExperimentData(cfg, train_set, test_set)


# ----------------------------------------------------------------------------- models
def build_model(depth: int, data: ExperimentData, residual: bool = True, width: int = 16, seed: int = 0, **options):
    """A CIFAR-style net (6n+2 layers) for ``data``'s channels and classes, initialised from ``seed``."""
    manual_seed(seed)
    return cifar_resnet(depth, residual=residual, width=width, in_channels=data.in_channels,
                        num_classes=data.num_classes, **options)


def model_name(depth: int, residual: bool) -> str:
    """The key of a net in results: ``resnet56``, ``plain20`` (as ``minires train --model``)."""
    return f"{'resnet' if residual else 'plain'}{depth}"


def display_name(depth: int, residual: bool) -> str:
    """The paper's spelling, for figures: ``ResNet-56``, ``plain-20``."""
    return f"{'ResNet' if residual else 'plain'}-{depth}"


def parameter_count(model) -> int:
    return int(sum(p.size for p in model.parameters()))


def without_batch_norm(model):
    """Replace every BatchNorm2d in ``model`` by the identity (in place); return the model."""
    for _, module in list(model.named_modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, BatchNorm2d):
                setattr(module, name, Identity())
    return model


# ----------------------------------------------------------------------------- training
def error_rate(logits, labels) -> float:
    """Fraction of rows whose arg-max is not the label."""
    return float((logits.numpy().argmax(axis=1) != labels).mean())


def evaluate(model, loader) -> float:
    """Error of ``model`` on ``loader``'s data (eval mode: BN running statistics, no graph); back to train mode."""
    model.eval()
    wrong = 0
    with autograd.no_grad():
        for x, y in loader:
            wrong += int((model(autograd.Tensor(x)).numpy().argmax(axis=1) != y).sum())
    model.train()
    return wrong / len(loader.dataset)


def batches(loader, iterations: int):
    """``iterations`` batches from ``loader``, starting new epochs as needed."""
    done = 0
    while done < iterations:
        for batch in loader:
            yield batch
            done += 1
            if done == iterations:
                return


def train(model, data: ExperimentData, iterations: int, batch_size: int = 128, lr: float = 0.1,
          eval_every: int | None = None, seed: int = 0, warmup: int = 0, step_context=None,
          label: str = "", progress: bool = True) -> dict:
    """Train ``model`` with the paper's protocol for ``iterations`` SGD steps.

    Returns plain data: ``train_error`` (each mini-batch's error, in train mode, as the paper's thin
    curves), ``test_iterations`` / ``test_error`` (every ``eval_every`` steps and at the end),
    ``final_train_error`` (mean over the last 10% of iterations), ``final_test_error``, ``seconds``
    and ``diverged`` (the loss became NaN/Inf; training stops there). ``step_context(it)``, if given,
    wraps each iteration (e.g. :meth:`minires.inspect.LayerRecorder.step`).
    """
    from tqdm.auto import tqdm
    optimizer = SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=1e-4)
    schedule = paper_schedule(optimizer, iterations, warmup=warmup)
    train_loader, test_loader = data.loaders(batch_size, seed)
    eval_every = eval_every or iterations
    result = {"train_error": [], "test_iterations": [], "test_error": [], "diverged": False}
    start = time.perf_counter()
    bar = tqdm(batches(train_loader, iterations), total=iterations, desc=label, leave=False, disable=not progress,
               position=_worker_slot)
    for it, (x, y) in enumerate(bar, start=1):
        with step_context(it - 1) if step_context else contextlib.nullcontext():
            logits = model(autograd.Tensor(x))
            loss = F.cross_entropy(logits, y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        schedule.step()
        result["train_error"].append(error_rate(logits, y))
        if not math.isfinite(loss.item()):
            result["diverged"] = True
            break
        if it % eval_every == 0 or it == iterations:
            result["test_iterations"].append(it)
            result["test_error"].append(evaluate(model, test_loader))
            bar.set_postfix(test_err=f"{result['test_error'][-1]:.3f}")
    bar.close()
    window = result["train_error"][-max(1, len(result["train_error"]) // 10):]
    result["final_train_error"] = float(np.mean(window))
    result["final_test_error"] = result["test_error"][-1] if result["test_error"] else float("nan")
    result["seconds"] = time.perf_counter() - start
    return result


# ----------------------------------------------------------------------------- several nets at once
_worker_slot = 0      # in a worker process of :func:`map_nets`: its number (its progress bar's row)
_worker_data = None   # in a worker process: the experiment's data, inherited from the parent


def map_nets(train_one, data: ExperimentData, jobs: list, workers: int | None = None, progress: bool = True,
             cost=None) -> list:
    """``[train_one(data, job, progress) for job in jobs]``, with up to ``workers`` jobs at once.

    The nets of an experiment are independent. At the narrow widths of the quick settings one net's
    arrays are too small for a second thread to help, so ``workers`` processes (forked, sharing the
    data) with one thread each (:func:`minires.cpu.set_num_threads`) finish up to ``workers`` times
    sooner than one process with ``workers`` threads. Each job seeds its own net and data order, so
    a worker computes exactly what this process computes with one thread (with more, float sums
    are added in another order: the same up to rounding). With ``cost(job)`` (e.g. the depth) the
    costliest jobs start first, so that no long one starts last; results always come back in the
    order of ``jobs``. ``workers`` defaults to the
    number of cores; 1 (or a platform without ``fork``) runs everything in this process.
    """
    workers = min(len(jobs), workers or os.cpu_count() or 1)
    if workers <= 1 or "fork" not in multiprocessing.get_all_start_methods():
        return [train_one(data, job, progress) for job in jobs]
    order = sorted(range(len(jobs)), key=lambda i: -cost(jobs[i])) if cost else list(range(len(jobs)))
    context = multiprocessing.get_context("fork")
    started = context.Value("i", 0)
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker,
                                                initargs=(started, data)) as pool:
        done = dict(zip(order, pool.map(_run_job, [(train_one, jobs[i], progress) for i in order])))
    return [done[i] for i in range(len(jobs))]


def _start_worker(started, data) -> None:
    """In a fresh worker: one thread for BLAS and the CPU conv, a progress-bar row of its own, the data."""
    global _worker_slot, _worker_data
    with started.get_lock():
        _worker_slot, started.value = started.value, started.value + 1
    _worker_data = data
    import threadpoolctl
    threadpoolctl.threadpool_limits(1, user_api="blas")
    cpu_threads.set_num_threads(1)


def _run_job(task):
    train_one, job, progress = task
    return train_one(_worker_data, job, progress)


# ----------------------------------------------------------------------------- run folder
class RunFolder:
    """Where an experiment writes: ``results.json`` and its PNG figures."""

    def __init__(self, path):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.files: list[Path] = []

    def save_json(self, data: dict, name: str = "results.json") -> Path:
        return self._save(name, lambda f: f.write(json.dumps(data, indent=1, default=_plain).encode()))

    def save_figure(self, figure, name: str) -> Path:
        import matplotlib.pyplot as plt
        try:
            return self._save(name, lambda f: figure.savefig(f, format="png", dpi=120, bbox_inches="tight"))
        finally:
            plt.close(figure)

    def save_text(self, text: str, name: str) -> Path:
        return self._save(name, lambda f: f.write(text.encode()))

    def _save(self, name: str, write) -> Path:
        """``write(file)`` into ``name`` atomically (a crash leaves the old file or none, never half)."""
        path = self.path / name
        atomic_write(path, write)
        self.files.append(path)
        return path


def _plain(value):
    """JSON for NumPy scalars and arrays."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def smooth(values, window: int) -> np.ndarray:
    """Moving average of ``values`` over ``window`` points (shorter at the start)."""
    values = np.asarray(values, dtype=float)
    if window <= 1 or len(values) == 0:
        return values
    cumulative = np.cumsum(np.insert(values, 0, 0.0))
    counts = np.minimum(np.arange(1, len(values) + 1), window)
    ends = np.arange(1, len(values) + 1)
    return (cumulative[ends] - cumulative[ends - counts]) / counts


def plot_error_curves(ax, run: dict, label: str, colour=None) -> None:
    """One run's training error (dashed, smoothed over 1/25 of the run) and test error (bold), in %."""
    its = np.arange(1, len(run["train_error"]) + 1)
    line, = ax.plot(its, 100 * smooth(run["train_error"], max(1, len(its) // 25)), color=colour, linewidth=0.8,
                    linestyle="--")
    ax.plot(run["test_iterations"], 100 * np.asarray(run["test_error"]), color=line.get_color(), linewidth=2.2,
            label=label)
    ax.set_xlabel("iterations")
    ax.set_ylabel("error (%)")
    ax.grid(True, alpha=0.3)


def markdown_table(rows: list[dict], columns: list[tuple[str, str, str]]) -> str:
    """A Markdown table of ``rows``; ``columns`` are ``(key, header, format)``."""
    head = "| " + " | ".join(h for _, h, _ in columns) + " |"
    rule = "|" + "|".join("---" for _ in columns) + "|"
    body = ["| " + " | ".join(format(r[k], f) for k, _, f in columns) + " |" for r in rows]
    return "\n".join([head, rule] + body)

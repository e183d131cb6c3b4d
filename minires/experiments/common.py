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
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import autograd
from .. import functional as F
from ..checkpoint import atomic_write
from ..checks import non_negative_float, non_negative_int, positive_float, positive_int
from ..cpu import threads as cpu_threads
from ..models import cifar_resnet, is_cifar_depth
from ..nn import BatchNorm2d, Identity
from ..random import manual_seed
from ..optim import SGD, paper_schedule
from ..train import CHANCE_MARGIN, UNDER_TRAINED, Config, learning_flag, load_datasets, make_loaders

DATASETS = ("synthetic", "mnist", "cifar10")


# ----------------------------------------------------------------------------- settings
def choose_settings(modes: dict, mode: str, overrides: dict) -> dict:
    """The settings of ``mode`` (a key of ``modes``: quick, standard, full) with the given overrides
    (None values ignored) applied.

    Only keys the experiment knows can be overridden; anything else is an error naming the keys.
    """
    if mode not in modes:
        raise ValueError(f"this experiment has no {mode} settings; it has {', '.join(modes)}")
    settings = dict(modes[mode])
    given = {k: v for k, v in overrides.items() if v is not None}
    unknown = sorted(set(given) - set(settings))
    if unknown:
        raise ValueError(f"this experiment has no setting {', '.join(unknown)}; it has {', '.join(sorted(settings))}")
    settings.update(given)
    check_settings(settings)
    return settings


def check_depth(depth) -> int:
    """``depth`` if a CIFAR net can have it (6n + 2 with n >= 1: 8, 14, 20, ...), else ValueError."""
    if not is_cifar_depth(depth):
        raise ValueError(f"depth must be 6n + 2 with n >= 1 (8, 14, 20, 32, 44, 56, 110, ...), got {depth!r}")
    return int(depth)


def check_settings(settings: dict) -> None:
    """Refuse, before any net trains, settings no net could be built or trained with (ValueError naming
    the setting): a depth that is not 6n + 2, a repeated depth, a size or count below 1, a negative rate."""
    depths = settings.get("depths")
    if depths is not None:
        if isinstance(depths, (str, bytes)) or not hasattr(depths, "__len__") or not len(depths):
            raise ValueError(f"depths must be one or more depths 6n + 2 such as (20, 56), got {depths!r}")
        for depth in depths:
            check_depth(depth)
        if len(set(depths)) != len(depths):
            raise ValueError(f"depths repeat a depth ({', '.join(map(str, depths))}): give each depth once")
    if settings.get("depth") is not None:
        check_depth(settings["depth"])
    for key, rule in SETTING_RULES.items():
        value = settings.get(key)
        if value is not None and not rule.holds(value):
            raise ValueError(f"{key} must be {rule.__name__}, got {value!r}")


# the rule of each numeric setting: the command line's argparse types, which also check Python values
SETTING_RULES = {**dict.fromkeys(("width", "iterations", "batch_size", "n_train", "n_test", "eval_every"), positive_int),
                 "lr": positive_float, "lr_no_bn": positive_float, "warmup": non_negative_int,
                 "weight_decay": non_negative_float}


class _Absent:
    def __repr__(self):
        return "absent"


ABSENT = _Absent()


def flatten(record: dict, prefix: str = "") -> dict:
    """``{"settings": {"width": 4}}`` as ``{"settings.width": 4}``, lists and tuples alike (as in JSON)."""
    flat = {}
    for key, value in record.items():
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = json.loads(json.dumps(value, default=_plain))
    return flat


def differences(have: dict, wanted: dict) -> list[str]:
    """Where the run described by ``have`` differs from ``wanted``, one field at a time (settings key by
    key): ``["settings.iterations 2 instead of 3"]``; empty when they agree."""
    have, wanted = flatten(have), flatten(wanted)
    return [f"{key} {have.get(key, ABSENT)!r} instead of {wanted.get(key, ABSENT)!r}"
            for key in dict.fromkeys([*wanted, *have]) if have.get(key, ABSENT) != wanted.get(key, ABSENT)]


def dataset_of(results: dict) -> str:
    """The dataset a run's ``results.json`` was computed on: ``synthetic``, ``mnist`` or ``cifar10``."""
    return str(results.get("data", "")).split(":")[0]


def read_results(path) -> dict:
    """The ``results.json`` at ``path``; ValueError naming it when it is not JSON, or lacks what every run
    records (its experiment, seed and claims)."""
    try:
        results = json.loads(Path(path).read_text())
    except ValueError as error:
        raise ValueError(f"{path} is not valid JSON ({error}): not the results.json of a finished run") from None
    missing = [key for key in ("experiment", "seed", "claims") if not isinstance(results, dict) or key not in results]
    if missing:
        raise ValueError(f"{path} lacks {', '.join(missing)}: not the results.json of a finished minires experiment")
    return results


def modes_of(module) -> dict:
    """An experiment module's settings by mode: ``quick``, ``standard`` (where it has one) and ``full``."""
    names = (("quick", "QUICK"), ("standard", "STANDARD"), ("full", "FULL"))
    return {mode: getattr(module, name) for mode, name in names if hasattr(module, name)}


# ----------------------------------------------------------------------------- run health
HEALTH_FLAGS = {      # status -> what it means, in words (summary.md and the figures' notes)
    "diverged": "its loss or weights became NaN/Inf and training stopped: its numbers describe a broken run, "
                "not the architecture",
    "dead": "every weight gradient was zero at the last step{or_chance}: it learned nothing, so its numbers say "
            "nothing about the architecture",
    "under-trained": "its final training error is above {level}: it has not fit the training data at this "
                     "setting, so what it shows may change with longer training",
}


def assess_health(run: dict, num_classes: int, under_trained_above: float | None = UNDER_TRAINED,
                  chance_margin: float | None = CHANCE_MARGIN) -> dict:
    r"""How a training run ended: ``{"status": ..., "reason": ...}``, the first that applies of

    * ``diverged``: ``run["diverged"]`` (a NaN/Inf loss), non-finite weights or final loss;
    * ``dead``: ``weight_grad_max == 0`` (no weight got any gradient), or ``final_train_loss`` not
      below chance, :math:`\ln C -` ``chance_margin`` for ``C`` classes (a net that ignores its
      input cannot do better than :math:`\ln C`);
    * ``under-trained``: ``final_train_error > under_trained_above``;
    * ``ok``.

    The tests of the loss and the error are :func:`minires.train.learning_flag`'s (``minires train`` says them too).

    ``None`` for ``chance_margin`` or ``under_trained_above`` leaves that test out: a run of a few
    dozen steps (gradnorms) is not expected to have learned yet.
    """
    loss, error = run["final_train_loss"], run["final_train_error"]
    if run["diverged"] or not run["weights_finite"] or not math.isfinite(loss):
        status, reason = "diverged", "its loss or weights are NaN/Inf"
    elif run["weight_grad_max"] == 0:
        status, reason = "dead", "every weight gradient is exactly zero"
    else:
        flag = learning_flag(loss, error, num_classes, under_trained_above, chance_margin)
        status, reason = flag or ("ok", "trained")
    return {"status": status, "reason": reason, "chance_loss": math.log(num_classes),
            "chance_margin": chance_margin, "under_trained_above": under_trained_above}


def flagged(label: str, health: dict) -> str:
    """A legend label or printed line with the net's health flag appended (``"ResNet-56 [DEAD]"``);
    unchanged when ok."""
    return label if health["status"] == "ok" else f"{label} [{health['status'].upper()}]"


def health_notes(health: dict) -> str:
    """What the flags in this run mean, in words: one line per flag that occurs (``health``: name -> health)."""
    levels = {h["under_trained_above"] for h in health.values() if h["under_trained_above"] is not None}
    level = " / ".join(f"{100 * v:g}%" for v in sorted(levels)) or "the stated level"
    margins = sorted({h["chance_margin"] for h in health.values() if h["chance_margin"] is not None})
    or_chance = (", or its final training loss was not below chance (ln of the number of classes, minus "
                 + " / ".join(f"{v:g}" for v in margins) + " nats)") if margins else ""
    bad = {}
    for name, h in health.items():
        if h["status"] != "ok":
            bad.setdefault(h["status"], []).append(f"{name} ({h['reason']})")
    if not bad:
        judged = ["finite", "nonzero weight gradients"]
        judged += ["final loss below chance"] if margins else []
        judged += [f"final training error at most {level}"] if levels else []
        return f"Run health: no net flagged ({', '.join(judged)})."
    lines = [f"Run health: {sum(map(len, bad.values()))} of {len(health)} nets flagged:"]
    for status in HEALTH_FLAGS:
        if status in bad:
            meaning = HEALTH_FLAGS[status].format(or_chance=or_chance, level=level)
            lines.append(f"- **{status.upper()}**: {', '.join(bad[status])}. Meaning: {meaning}.")
    return "\n".join(lines)


def note_health(figure, health: dict) -> None:
    """Write the flags of unhealthy nets under ``figure`` (their legend labels carry them too)."""
    bad = [f"{name}: {h['status'].upper()} ({h['reason']})" for name, h in health.items() if h["status"] != "ok"]
    if bad:
        figure.text(0.01, -0.01, "Flagged runs (summary.md says what each flag means):\n" + "\n".join(bad),
                    ha="left", va="top", fontsize=8, color="firebrick")


# ----------------------------------------------------------------------------- claims and verdicts
HOLDS, FAILS, UNCLEAR = "holds", "does not hold", "cannot tell at this setting"


def compare(smaller: tuple[str, float], larger: tuple[str, float], tolerance: float, unit: str = "") -> dict:
    """One measured inequality ``smaller < larger``, judged against the noise ``tolerance``.

    ``holds`` when ``larger - smaller > tolerance``, ``does not hold`` when ``smaller - larger > tolerance``,
    otherwise (or when a value is not finite) ``cannot tell at this setting``: the gap is within noise.
    """
    (a_name, a), (b_name, b) = smaller, larger
    gap = b - a
    if not (math.isfinite(a) and math.isfinite(b)):
        verdict = UNCLEAR
    elif gap > tolerance:
        verdict = HOLDS
    elif gap < -tolerance:
        verdict = FAILS
    else:
        verdict = UNCLEAR
    return {"expected": f"{a_name} < {b_name}", "smaller": a, "larger": b, "gap": gap, "verdict": verdict,
            "evidence": f"{a_name} {a:.3g}{unit} vs {b_name} {b:.3g}{unit} (gap {gap:+.3g}{unit}: {verdict})"}


def test_error_noise(n_test: int) -> tuple[float, str]:
    r"""(tolerance in points, its description): two standard deviations of a test error measured on
    ``n_test`` images, at its largest (error 50%): :math:`2 \sqrt{0.25 / n} = 1/\sqrt{n}`."""
    points = 100 / math.sqrt(n_test)
    return points, (f"one seed; {points:.1f} points of test error: two binomial standard deviations on "
                    f"{n_test:,} test images (at most 100/sqrt(n))")


def judge(claim: str, comparisons: list[dict], noise: str, health: dict, nets, allow=("ok",)) -> dict:
    """The verdict on one of the paper's claims from its ``comparisons`` (:func:`compare`).

    ``cannot tell at this setting`` when any of ``nets`` has a health status outside ``allow`` (its
    numbers are not those of a trained net) or there is nothing to compare; else ``does not hold`` if
    any comparison fails, ``holds`` only if every one holds, ``cannot tell`` otherwise (within noise).
    """
    blocked = [f"{name} is {health[name]['status']}" for name in nets if health[name]["status"] not in allow]
    verdicts = [c["verdict"] for c in comparisons]
    if blocked:
        verdict, why = UNCLEAR, f"{', '.join(blocked)}, so the claim cannot be read from this run"
    elif not comparisons:
        verdict, why = UNCLEAR, "nothing to compare at this setting"
    elif FAILS in verdicts:
        verdict, why = FAILS, "a measured gap has the opposite sign, larger than the noise"
    elif all(v == HOLDS for v in verdicts):
        verdict, why = HOLDS, "every measured gap has the paper's sign and exceeds the noise"
    else:
        verdict, why = UNCLEAR, "a measured gap is within the noise"
    return {"claim": claim, "verdict": verdict, "why": why, "noise": noise, "readable": not blocked,
            "evidence": "; ".join(c["evidence"] for c in comparisons), "comparisons": comparisons}


def claims_table(claims: list[dict]) -> str:
    """The paper's claims and this run's verdicts, as a Markdown table."""
    rows = [{"claim": c["claim"], "verdict": f"**{c['verdict']}**: {c['why']}", "evidence": c["evidence"] or "-",
             "noise": c["noise"]} for c in claims]
    return markdown_table(rows, [("claim", "paper's claim", "s"), ("verdict", "verdict", "s"),
                                 ("evidence", "measured", "s"), ("noise", "noise estimate", "s")])


def environment() -> dict:
    """What computed a run, for its ``results.json``: Python, NumPy and Numba versions (Numba None when
    absent) and the CPU implementation of each op. The implementations add float32 sums in different
    orders, so two environments give the same seed's run up to rounding, and a short training run
    amplifies rounding into visibly different nets."""
    import importlib.metadata
    import platform

    from .. import backend, cpu  # noqa: F401 -- importing minires.cpu registers the fast implementations
    try:
        numba = importlib.metadata.version("numba")
    except importlib.metadata.PackageNotFoundError:
        numba = None
    return dict(python=platform.python_version(), numpy=np.__version__, numba=numba,
                cpu_implementations=backend.defaults("cpu"))


def describe_environment(env: dict) -> str:
    """``environment()`` in one line, for a summary."""
    implementations = ", ".join(f"{op} {name}" for op, name in env["cpu_implementations"].items())
    return (f"Python {env['python']}, NumPy {env['numpy']}, " + (f"Numba {env['numba']}" if env["numba"] else "no Numba")
            + f"; CPU implementations: {implementations}.")


def report_tail(results: dict) -> str:
    """The claims table, what the health flags mean and how long the run took: the end of every summary."""
    parts = ["", "Claims of the paper, judged on this run:", "", claims_table(results["claims"]), "",
             health_notes(results["health"])]
    if "wall_seconds" in results:
        busy = results["load_average"] > results["cores"]
        parts += ["", f"Seed {results['seed']}, {results['mode']} settings; wall time {results['wall_seconds']:.0f} s "
                      f"(CPU time {results['cpu_seconds']:.0f} s) on {results['cores']} cores whose 1-minute load "
                      f"average was {results['load_average']:.1f} at the end"
                      + (": the machine was shared, so the wall time is longer than on an idle one." if busy else ".")]
    if results.get("reused_nets"):
        parts += ["", f"{results['reused_nets']} of the {len(results['health'])} nets were trained by an earlier, "
                      "interrupted attempt of this run: the times include that attempt up to its last finished net, "
                      "but not the CPU time of its worker processes."]
    if "environment" in results:      # runs made before it was recorded do not have it
        parts += ["", f"Computed with {describe_environment(results['environment'])}"]
    return "\n".join(parts) + "\n"


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


def check_dataset(name: str, data_dir) -> None:
    """ValueError unless ``name`` is a dataset and ``data_dir`` names its folder where it needs one."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    if name != "synthetic" and data_dir is None:
        raise ValueError(f"--data {name} needs --data-dir, the folder holding the dataset's files")


def load_data(name: str = "synthetic", data_dir=None, n_train: int | None = None,
              n_test: int | None = None) -> ExperimentData:
    """The embedded Synthetic data (default), or MNIST / CIFAR-10 from ``data_dir`` (first ``n`` of each split)."""
    check_dataset(name, data_dir)
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
          label: str = "", progress: bool = True, under_trained_above: float | None = UNDER_TRAINED,
          chance_margin: float | None = CHANCE_MARGIN, weight_decay: float = 1e-4) -> dict:
    """Train ``model`` with the paper's protocol for ``iterations`` SGD steps (``weight_decay``: the paper's 1e-4).

    Returns plain data: ``train_error`` (each mini-batch's error, in train mode, as the paper's thin
    curves), ``test_iterations`` / ``test_error`` (every ``eval_every`` steps and at the end),
    ``final_train_error`` and ``final_train_loss`` (means over the last 10% of iterations),
    ``final_test_error``, ``seconds``, ``diverged`` (the loss became NaN/Inf; training stops there),
    ``weight_grad_max`` (the largest |gradient| of any weight at the last step), ``weights_finite``
    and ``health`` (:func:`assess_health`, with ``under_trained_above`` and ``chance_margin``). ``step_context(it)``, if
    given, wraps each iteration (e.g. :meth:`minires.inspect.LayerRecorder.step`).
    """
    from tqdm.auto import tqdm
    optimizer = SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=weight_decay)
    schedule = paper_schedule(optimizer, iterations, warmup=warmup)
    train_loader, test_loader = data.loaders(batch_size, seed)
    eval_every = eval_every or iterations
    result = {"train_error": [], "test_iterations": [], "test_error": [], "diverged": False}
    losses = []
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
        losses.append(loss.item())
        if not math.isfinite(losses[-1]):
            result["diverged"] = True
            break
        if it % eval_every == 0 or it == iterations:
            result["test_iterations"].append(it)
            result["test_error"].append(evaluate(model, test_loader))
            bar.set_postfix(test_err=f"{result['test_error'][-1]:.3f}")
    bar.close()
    window = max(1, len(losses) // 10)
    result["final_train_error"] = float(np.mean(result["train_error"][-window:]))
    result["final_train_loss"] = float(np.mean(losses[-window:]))
    result["final_test_error"] = result["test_error"][-1] if result["test_error"] else float("nan")
    result["seconds"] = time.perf_counter() - start
    result.update(weight_state(model))
    result["health"] = assess_health(result, data.num_classes, under_trained_above, chance_margin)
    return result


def weight_state(model) -> dict:
    """``weight_grad_max``: the largest |gradient| of any weight (a parameter with 2+ dimensions: conv
    and fc weights, not BN scales or biases) at the last backward pass, 0 when none got one;
    ``weights_finite``: every parameter is finite."""
    grads = [np.abs(p.grad.numpy()).max() for p in model.parameters() if p.ndim > 1 and p.grad is not None]
    return {"weight_grad_max": float(max(grads, default=0.0)),
            "weights_finite": bool(all(np.isfinite(p.numpy()).all() for p in model.parameters()))}


# ----------------------------------------------------------------------------- several nets at once
_worker_slot = 0      # in a worker process of :func:`map_nets`: its number (its progress bar's row)
_worker_data = None   # in a worker process: the experiment's data, inherited from the parent


def map_nets(train_one, data: ExperimentData, jobs: list, workers: int | None = None, progress: bool = True,
             cost=None, ledger: "NetLedger | None" = None) -> list:
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

    With a ``ledger`` (:class:`NetLedger`) each result is saved as its net finishes, and a job the
    ledger already holds (from an interrupted run) is not trained again. On Ctrl-C, or when a job
    fails, the jobs not yet started are cancelled and the workers stopped at once (they ignore
    SIGINT themselves: this process decides), and the exception goes on; what finished is in the ledger.
    """
    done = {}
    if ledger is not None:
        ledger.expect(jobs)
        done = {i: ledger.get(job) for i, job in enumerate(jobs) if ledger.has(job)}
    todo = [i for i in range(len(jobs)) if i not in done]

    def finished(i, result):
        done[i] = result
        if ledger is not None:
            ledger.add(jobs[i], result)

    workers = min(len(todo), workers or os.cpu_count() or 1)
    if workers <= 1 or "fork" not in multiprocessing.get_all_start_methods():
        for i in todo:
            finished(i, train_one(data, jobs[i], progress))
    else:
        order = sorted(todo, key=lambda i: -cost(jobs[i])) if cost else todo
        _run_in_workers(train_one, data, [(i, jobs[i]) for i in order], workers, progress, finished)
    return [done[i] for i in range(len(jobs))]


def _run_in_workers(train_one, data, jobs: list, workers: int, progress: bool, finished) -> None:
    """Run ``jobs`` (``(index, job)``, in this order) in ``workers`` forked processes; ``finished(index,
    result)`` here as each one ends. Any exception (Ctrl-C included) stops every worker before it goes on."""
    context = multiprocessing.get_context("fork")
    started = context.Value("i", 0)
    pool = concurrent.futures.ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker,
                                                  initargs=(started, data))
    futures = {}
    try:
        with _signals_ignored(signal.SIGINT):  # the workers are forked by the first submit: born ignoring Ctrl-C
            for i, job in jobs:
                futures[pool.submit(_run_job, (train_one, job, progress))] = i
        for future in concurrent.futures.as_completed(futures):
            finished(futures[future], future.result())
    except BaseException:
        # a second Ctrl-C or SIGTERM must not leave workers (which ignore Ctrl-C) running
        with _signals_ignored(signal.SIGINT, signal.SIGTERM):
            _stop_workers(pool)
        raise
    pool.shutdown()


@contextlib.contextmanager
def _signals_ignored(*signals):
    """``signals`` ignored in this block (in the main thread; elsewhere signals cannot be set, nor arrive)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {number: signal.signal(number, signal.SIG_IGN) for number in signals}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def _stop_workers(pool, timeout: float = 10.0) -> None:
    """End the workers now (SIGTERM; they may be mid-net) and wait for them. The pool then finds itself
    broken and fails the jobs not done (it, not this thread, must: a future cancelled here would make
    Python 3.11's pool thread fail when it marks the jobs of a broken pool)."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    for process in processes:
        if process.is_alive():
            process.terminate()
    for process in processes:
        process.join(timeout)
        if process.is_alive():
            process.kill()
    pool.shutdown(wait=True, cancel_futures=True)


def _start_worker(started, data) -> None:
    """In a fresh worker: one thread for BLAS and the CPU conv, a progress-bar row of its own, the data,
    SIGINT ignored (a Ctrl-C reaches the whole process group: the parent decides, and stops us) and
    SIGTERM's default, which ends the worker at once (the parent's handler, inherited by the fork,
    would make it an exception)."""
    global _worker_slot, _worker_data
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _end_with_parent()
    with started.get_lock():
        _worker_slot, started.value = started.value, started.value + 1
    _worker_data = data
    import threadpoolctl
    threadpoolctl.threadpool_limits(1, user_api="blas")
    cpu_threads.set_num_threads(1)


def _end_with_parent() -> None:
    """On Linux, have the kernel end this worker (SIGTERM) when its parent dies, however it dies: a worker
    ignores Ctrl-C, so one whose parent was killed would otherwise train on, unseen, to the end of its net."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)    # 1: PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    parent = multiprocessing.parent_process()
    if parent is not None and os.getppid() != parent.pid:      # it died before prctl took effect
        os._exit(1)


def _run_job(task):
    train_one, job, progress = task
    return train_one(_worker_data, job, progress)


def cpu_seconds() -> float:
    """CPU time of this process and of its finished worker processes."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


# ----------------------------------------------------------------------------- what finished, kept
PARTIAL = "partial.json"


class NetLedger:
    """The nets of one run that have finished, saved to ``path`` (JSON, atomically) as each finishes.

    An interrupted run (Ctrl-C, a crash, a failed net) so keeps every net it finished, and the same run
    started again (same experiment, mode, data, seed, settings and environment: ``identity``) trains
    only the rest: a ledger found at ``path`` is reused when its identity is ``identity`` and refused
    (FileExistsError naming the differing fields) otherwise. Each job's result is stored under the job
    itself (its JSON), and every job seeds its own net and data order, so a reused net is the net the
    run would have trained. The wall and CPU time of earlier attempts, up to their last finished net,
    are counted in :meth:`elapsed` (the CPU time of an interrupted attempt's workers is not: only that of
    workers that ended normally is known to their parent).
    """

    def __init__(self, path, identity: dict):
        self.path = Path(path)
        self.identity = json.loads(json.dumps(identity, default=_plain))
        self.nets: dict[str, dict] = {}      # job key -> {"name": ..., "result": ...}
        self.total: int | None = None
        self.reused = 0
        self.before = {"wall": 0.0, "cpu": 0.0}
        self._start = (time.perf_counter(), cpu_seconds())
        if self.path.is_file():
            self._load()

    def _load(self) -> None:
        try:
            found = json.loads(self.path.read_text())
            run, seconds = found["run"], found["seconds"]
            nets = {net["job"]: {"name": net["name"], "result": net["result"]} for net in found["nets"]}
            before = {"wall": float(seconds["wall"]), "cpu": float(seconds["cpu"])}
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise ValueError(f"{self.path} is not a record of finished nets ({type(error).__name__}: {error}): "
                             "remove it to start the run over") from None
        differ = differences(run, self.identity)
        if differ:
            raise FileExistsError(f"{self.path} holds the finished nets of another run ({'; '.join(differ)}): "
                                  "remove it to start over, or choose another --out")
        self.nets, self.before = nets, before

    @staticmethod
    def key(job) -> str:
        return json.dumps(job, sort_keys=True, default=_plain)

    def expect(self, jobs: list) -> None:
        """The run has these jobs (for :meth:`kept`'s count)."""
        self.total = len(jobs)

    def has(self, job) -> bool:
        return self.key(job) in self.nets

    def get(self, job):
        """The saved result of ``job`` (as JSON gives it back: lists for tuples); counted as reused."""
        self.reused += 1
        return self.nets[self.key(job)]["result"]

    def add(self, job, result) -> None:
        """Save ``result`` of ``job`` now, with the others that finished."""
        name = result[0] if isinstance(result, (tuple, list)) and result and isinstance(result[0], str) else None
        self.nets[self.key(job)] = {"name": name, "result": json.loads(json.dumps(result, default=_plain))}
        wall, cpu = self.elapsed()
        record = {"run": self.identity, "seconds": {"wall": wall, "cpu": cpu},
                  "nets": [{"job": key, **net} for key, net in self.nets.items()]}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(self.path, lambda f: f.write(json.dumps(record, indent=1).encode()))

    def elapsed(self) -> tuple[float, float]:
        """(wall, CPU) seconds of this run: this attempt's so far, plus the earlier attempts'."""
        wall, cpu = self._start
        return (self.before["wall"] + time.perf_counter() - wall, self.before["cpu"] + cpu_seconds() - cpu)

    def discard(self) -> None:
        """The run is complete (its results.json written): the ledger has done its job."""
        self.path.unlink(missing_ok=True)

    def kept(self) -> str:
        """One line: what an interrupted run kept, and how to go on."""
        if not self.nets:
            return "no net had finished, so nothing was kept"
        names = [net["name"] for net in self.nets.values() if net["name"]]
        of = f" of {self.total}" if self.total else ""
        return (f"kept the {len(self.nets)}{of} nets that finished" + (f" ({', '.join(names)})" if names else "")
                + f" in {self.path}: the same command (same --out and settings) trains only the rest; "
                  f"remove {self.path} to start over")


# ----------------------------------------------------------------------------- what the run prints
stdout_closed = False   # this process found its stdout closed (a reader such as ``| head`` that stopped early)


def say(text: str) -> None:
    """Print ``text`` (flushed). A closed stdout does not stop the run: what it computes goes to its
    run folder, not to the screen, so from then on this process's output goes to /dev/null instead."""
    global stdout_closed
    try:
        print(text, flush=True)
    except BrokenPipeError:
        stdout_closed = True
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError, AttributeError):
            pass


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

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
    return settings


def modes_of(module) -> dict:
    """An experiment module's settings by mode: ``quick``, ``standard`` (where it has one) and ``full``."""
    names = (("quick", "QUICK"), ("standard", "STANDARD"), ("full", "FULL"))
    return {mode: getattr(module, name) for mode, name in names if hasattr(module, name)}


# ----------------------------------------------------------------------------- run health
UNDER_TRAINED = 0.5   # a final training error above this: the net has not fit the training data
CHANCE_MARGIN = 0.1   # nats: a final training loss above ln(classes) minus this is "not below chance"
HEALTH_FLAGS = {      # status -> what it means, in words (summary.md and the figures' notes)
    "diverged": "its loss or weights became NaN/Inf and training stopped: its numbers describe a broken run, "
                "not the architecture",
    "dead": "every weight gradient was zero at the last step, or its final training loss was not below chance "
            "(ln of the number of classes, minus {margin} nats): it learned nothing, so its numbers say nothing "
            "about the architecture",
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

    ``None`` for ``chance_margin`` or ``under_trained_above`` leaves that test out: a run of a few
    dozen steps (gradnorms) is not expected to have learned yet.
    """
    chance = math.log(num_classes)
    loss, error = run["final_train_loss"], run["final_train_error"]
    if run["diverged"] or not run["weights_finite"] or not math.isfinite(loss):
        status, reason = "diverged", "its loss or weights are NaN/Inf"
    elif run["weight_grad_max"] == 0:
        status, reason = "dead", "every weight gradient is exactly zero"
    elif chance_margin is not None and loss > chance - chance_margin:
        status, reason = "dead", (f"final training loss {loss:.3f} is not below chance, ln {num_classes} = "
                                  f"{chance:.3f} minus {chance_margin:g}")
    elif under_trained_above is not None and error > under_trained_above:
        status, reason = "under-trained", f"final training error {100 * error:.1f}% > {100 * under_trained_above:g}%"
    else:
        status, reason = "ok", "trained"
    return {"status": status, "reason": reason, "chance_loss": chance, "chance_margin": chance_margin,
            "under_trained_above": under_trained_above}


def flagged(label: str, health: dict) -> str:
    """A legend label with the net's health flag appended (``"ResNet-56 [DEAD]"``); unchanged when ok."""
    return label if health["status"] == "ok" else f"{label} [{health['status'].upper()}]"


def health_notes(health: dict) -> str:
    """What the flags in this run mean, in words: one line per flag that occurs (``health``: name -> health)."""
    levels = {h["under_trained_above"] for h in health.values() if h["under_trained_above"] is not None}
    level = " / ".join(f"{100 * v:g}%" for v in sorted(levels)) or "the stated level"
    bad = {}
    for name, h in health.items():
        if h["status"] != "ok":
            bad.setdefault(h["status"], []).append(f"{name} ({h['reason']})")
    if not bad:
        judged = ["finite", "nonzero weight gradients"]
        judged += ["final loss below chance"] if any(h["chance_margin"] is not None for h in health.values()) else []
        judged += [f"final training error at most {level}"] if levels else []
        return f"Run health: no net flagged ({', '.join(judged)})."
    lines = [f"Run health: {sum(map(len, bad.values()))} of {len(health)} nets flagged:"]
    for status in HEALTH_FLAGS:
        if status in bad:
            meaning = HEALTH_FLAGS[status].format(margin=f"{CHANCE_MARGIN:g}", level=level)
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

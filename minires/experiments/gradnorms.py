"""Sec. 4.1 of the paper: do gradients vanish in deep plain nets? Per-layer gradient norms, plain vs
residual, with and without BN, across depths, at initialisation and during training.

The paper argues that its plain nets' trouble is *not* vanishing gradients: "backward propagated
gradients exhibit healthy norms with BN". Here every conv layer's *backward propagated gradient* —
:math:`\\|\\partial L/\\partial y_\\ell\\|`, the gradient arriving at the conv's output :math:`y_\\ell` —
and its weight gradient :math:`\\|\\partial L/\\partial W_\\ell\\|` are recorded with
:class:`minires.inspect.LayerRecorder` at step 0 (initialisation), halfway and at the end of a short
training run, for every combination of {plain, residual} x {BN, no BN} x depths.

"Without BN" replaces every BatchNorm2d by the identity after construction (He initialisation stays),
and trains at ``lr_no_bn`` (the paper's 0.1 makes BN-free nets diverge at once); a run whose loss
becomes NaN/Inf is marked diverged and stops. The summary gives, per net, the ratio of the gradient
norm at the first conv to that at the last conv: far below 1 means vanishing, far above exploding.

Quick settings: widths 4/8/16, depths 20 and 56, 60 iterations on 2,000 embedded images, gradients
on one batch of 128 per recorded step. Full: width 16, depths 20/32/44/56/110, 2,000 iterations.

What the quick run shows (seed 0, ``results/gradnorms/quick-seed0``). At initialisation, with BN,
the backward gradient *grows* towards the input: plain-56's first conv gets about 4e4 times the last
one's (BN's known gradient explosion at init), and plain-20's first conv gets 76-108 times its last
one's at every recorded step. Training turns plain-56's round: at step 59 its first conv gets
10^-0.62 of the last conv's gradient, within the 0.5-decade tolerance of the one-decade bound, so
the run's verdict on "no vanishing" is *cannot tell*. After step 0 the weight gradients of plain-56 stay within 1.7-1.8
decades of each other, those of ResNet-56 within 0.8-1.1. Without BN, plain-56's backward gradient
decays gently towards the input (the first conv gets about a tenth of the last), while ResNet-56
explodes at init (x5e3) and, even at lr 0.01, has only zero weight gradients by step 30 (flagged
dead): BN (or Fixup-style initialisation) is what makes deep residual nets trainable at this depth.
"""
from __future__ import annotations

import math

import numpy as np

from ..inspect import LayerRecorder
from ..inspect.logplot import plot_log_curve
from ..nn import Conv2d
from .common import (build_model, compare, flagged, judge, map_nets, markdown_table, model_name, note_health,
                     report_tail, train, without_batch_norm)

QUICK = dict(depths=(20, 56), width=4, iterations=60, batch_size=128, lr=0.1, lr_no_bn=0.01, warmup=0,
             n_train=2_000, n_test=500)
FULL = dict(depths=(20, 32, 44, 56, 110), width=16, iterations=2_000, batch_size=128, lr=0.1, lr_no_bn=0.01,
            warmup=400, n_train=None, n_test=None)
VANISHING = -1.0  # decades: the first conv getting under a tenth of the last conv's gradient counts as vanishing
TOLERANCE = 0.5   # decades of noise allowed around that bound


def record_steps(iterations: int) -> list[int]:
    """Initialisation, halfway, and the last step."""
    return sorted({0, iterations // 2, iterations - 1})


def run(data, settings: dict, seed: int = 0, progress: bool = True, workers: int | None = None,
        ledger=None) -> dict:
    """Train each variant briefly, recording per-conv gradient norms at :func:`record_steps`
    (``workers`` nets at a time, :func:`~minires.experiments.common.map_nets`)."""
    steps = record_steps(settings["iterations"])
    jobs = [{"depth": depth, "residual": residual, "batch_norm": batch_norm, "settings": settings, "seed": seed}
            for batch_norm in (True, False) for residual in (False, True) for depth in settings["depths"]]
    nets = dict(map_nets(train_net, data, jobs, workers, progress, cost=lambda job: job["depth"], ledger=ledger))
    return {"experiment": "gradnorms", "data": data.describe(), "settings": settings, "record_steps": steps,
            "nets": nets, "summary": summary(nets), "claims": claims(nets),
            "health": {name: r["health"] for name, r in nets.items()}}


def job_name(job: dict) -> str:
    return model_name(job["depth"], job["residual"]) + ("" if job["batch_norm"] else "-noBN")


def train_net(data, job: dict, progress: bool = True) -> tuple[str, dict]:
    """Train one variant, recording its per-conv gradient norms: ``(name, record)``."""
    settings, depth, residual, batch_norm = job["settings"], job["depth"], job["residual"], job["batch_norm"]
    model = build_model(depth, data, residual=residual, width=settings["width"], seed=job["seed"])
    if not batch_norm:
        without_batch_norm(model)
    recorder = LayerRecorder(model, layers=Conv2d, steps=record_steps(settings["iterations"]))
    lr = settings["lr"] if batch_norm else settings["lr_no_bn"]
    curves = train(model, data, settings["iterations"], settings["batch_size"], lr, seed=job["seed"],
                   warmup=settings.get("warmup", 0), step_context=recorder.step, label=job_name(job),
                   progress=progress, under_trained_above=None, chance_margin=None)
    recorder.close()
    return job_name(job), net_record(recorder, depth, residual, batch_norm, lr, curves)


def net_record(recorder, depth, residual, batch_norm, lr, curves) -> dict:
    recorded, layers, act = recorder.array("act_grad_norm")
    weight = recorder.array("weight_grad_norm")[2]
    return {"depth": depth, "residual": residual, "batch_norm": batch_norm, "lr": lr, "layers": layers,
            "steps": recorded.tolist(), "act_grad_norm": act.tolist(), "weight_grad_norm": weight.tolist(),
            "diverged": curves["diverged"], "final_train_error": curves["final_train_error"],
            "final_train_loss": curves["final_train_loss"], "health": curves["health"]}


def first_to_last(values) -> float:
    """Gradient norm at the first conv divided by that at the last (NaN if the last is zero)."""
    values = np.asarray(values, dtype=float)
    return float(values[0] / values[-1]) if values[-1] > 0 else float("nan")


def summary(nets: dict) -> list[dict]:
    """Per net and recorded step: the backward gradient's first/last conv ratio and the spread of the
    weight gradients over the conv layers (smallest, median, largest norm)."""
    rows = []
    for name, r in nets.items():
        for step, act, weight in zip(r["steps"], r["act_grad_norm"], r["weight_grad_norm"]):
            weight = np.asarray(weight, dtype=float)
            rows.append({"net": name, "step": step, "first_over_last": first_to_last(act),
                         "weight_min": float(np.min(weight)), "weight_median": float(np.median(weight)),
                         "weight_max": float(np.max(weight)), "final_loss": r["final_train_loss"],
                         "health": r["health"]["status"]})
    return rows


def claims(nets: dict) -> list[dict]:
    """Sec. 4.1: with BN, a plain net's backward gradient does not vanish on its way to the input. At
    every recorded step of every plain net with BN, the first conv's gradient norm over the last
    conv's must stay above :data:`VANISHING` (in decades) by more than :data:`TOLERANCE` decades."""
    plain = {name: r for name, r in nets.items() if r["batch_norm"] and not r["residual"]}
    comparisons = [compare(("vanishing bound", VANISHING), (f"{name} step {step}", _decades(first_to_last(act))),
                           TOLERANCE, " decades")
                   for name, r in plain.items() for step, act in zip(r["steps"], r["act_grad_norm"])]
    return [judge("plain nets with BN do not suffer vanishing gradients: log10(||dL/dy|| first conv / last conv) "
                  f"stays above {VANISHING:g} (sec. 4.1)", comparisons,
                  f"a stated tolerance of {TOLERANCE:g} decades (one batch per recorded step, one seed)",
                  {name: r["health"] for name, r in nets.items()}, list(plain))]


def _decades(ratio: float) -> float:
    return math.log10(ratio) if ratio > 0 else float("nan")


def report(results: dict) -> str:
    table = markdown_table(results["summary"], [("net", "net", "s"), ("step", "step", "d"),
                                                ("first_over_last", "dL/dy norm, first conv / last conv", ".3g"),
                                                ("weight_min", "min dL/dW norm", ".2e"),
                                                ("weight_median", "median dL/dW norm", ".2e"),
                                                ("weight_max", "max dL/dW norm", ".2e"),
                                                ("final_loss", "final train loss", ".3f"), ("health", "health", "s")])
    return (f"Gradient norms per conv layer ({results['data']}; width {results['settings']['width']}, "
            f"{results['settings']['iterations']} iterations; y = conv output, W = conv weight)\n\n{table}\n\n"
            "Vanishing gradients would show as a first/last ratio far below 1 and a minimum weight gradient "
            "many decades below the median. A NaN ratio means the last conv got no gradient at all, or a gradient "
            "was NaN/Inf (a diverged net). These runs are a few dozen steps, too short to have learned: only zero "
            "weight gradients (dead) and NaN/Inf (diverged) flag a net, not its loss or training error; the final "
            "training loss is in the table.\n"
            + report_tail(results))


def plot(results: dict) -> dict:
    """Backward gradients at initialisation (every depth) and, for the deepest nets, backward and weight
    gradients at each recorded step."""
    nets = results["nets"]
    deepest = max(r["depth"] for r in nets.values())
    deep = {k: r for k, r in nets.items() if r["depth"] == deepest}

    def per_step(key):
        return lambda r: [(f"step {s}", values) for s, values in zip(r["steps"], r[key])]

    return {
        "gradnorms_init.png": _grid(nets, lambda r: [(f"depth {r['depth']}", r["act_grad_norm"][0])],
                                    "||dL/d conv output|| per conv layer at initialisation (paper sec. 4.1)",
                                    "||dL / d conv output||"),
        "gradnorms_training.png": _grid(deep, per_step("act_grad_norm"),
                                        f"||dL/d conv output|| per conv layer during training, depth {deepest}",
                                        "||dL / d conv output||"),
        "gradnorms_weights.png": _grid(deep, per_step("weight_grad_norm"),
                                       f"||dL/dW|| per conv layer during training, depth {deepest}", "||dL / dW||"),
    }


def _grid(nets: dict, curves_of, title: str, ylabel: str):
    """2x2 panels: rows with / without BN, columns plain / residual; ``curves_of(net) -> [(label, values)]``."""
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(2, 2, figsize=(11, 7), sharex=True)
    for (i, batch_norm), (j, residual) in ((a, b) for a in enumerate((True, False)) for b in enumerate((False, True))):
        ax = axes[i, j]
        for name, r in nets.items():
            if r["batch_norm"] != batch_norm or r["residual"] != residual:
                continue
            for label, values in curves_of(r):
                layers = np.arange(1, len(values) + 1)
                plot_log_curve(ax, layers / len(values), values, flagged(label, r["health"]), "conv layer",
                               names=layers, marker=".", markersize=3)
        ax.set_yscale("log")
        ax.set_title(f"{'ResNet' if residual else 'plain'}, {'with' if batch_norm else 'without'} BN", fontsize=10)
        ax.grid(True, alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
        if i == 1:
            ax.set_xlabel("conv layer position (fraction of depth, input -> output)")
        if j == 0:
            ax.set_ylabel(ylabel)
    fig.suptitle(title)
    fig.tight_layout()
    note_health(fig, {name: r["health"] for name, r in nets.items()})
    return fig

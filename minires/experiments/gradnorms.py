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
"""
from __future__ import annotations

import numpy as np

from ..inspect import LayerRecorder
from ..nn import Conv2d
from .common import build_model, markdown_table, model_name, train, without_batch_norm

QUICK = dict(depths=(20, 56), width=4, iterations=60, batch_size=128, lr=0.1, lr_no_bn=0.01, n_train=2_000,
             n_test=500)
FULL = dict(depths=(20, 32, 44, 56, 110), width=16, iterations=2_000, batch_size=128, lr=0.1, lr_no_bn=0.01,
            n_train=None, n_test=None)


def record_steps(iterations: int) -> list[int]:
    """Initialisation, halfway, and the last step."""
    return sorted({0, iterations // 2, iterations - 1})


def run(data, settings: dict, seed: int = 0, progress: bool = True) -> dict:
    """Train each variant briefly, recording per-conv gradient norms at :func:`record_steps`."""
    nets = {}
    steps = record_steps(settings["iterations"])
    for batch_norm in (True, False):
        for residual in (False, True):
            for depth in settings["depths"]:
                name = model_name(depth, residual) + ("" if batch_norm else "-noBN")
                model = build_model(depth, data, residual=residual, width=settings["width"], seed=seed)
                if not batch_norm:
                    without_batch_norm(model)
                recorder = LayerRecorder(model, layers=Conv2d, steps=steps)
                lr = settings["lr"] if batch_norm else settings["lr_no_bn"]
                curves = train(model, data, settings["iterations"], settings["batch_size"], lr, seed=seed,
                               step_context=recorder.step, label=name, progress=progress)
                recorder.close()
                nets[name] = net_record(recorder, depth, residual, batch_norm, lr, curves)
    return {"experiment": "gradnorms", "data": data.describe(), "settings": settings, "record_steps": steps,
            "nets": nets, "summary": summary(nets)}


def net_record(recorder, depth, residual, batch_norm, lr, curves) -> dict:
    recorded, layers, act = recorder.array("act_grad_norm")
    weight = recorder.array("weight_grad_norm")[2]
    return {"depth": depth, "residual": residual, "batch_norm": batch_norm, "lr": lr, "layers": layers,
            "steps": recorded.tolist(), "act_grad_norm": act.tolist(), "weight_grad_norm": weight.tolist(),
            "diverged": curves["diverged"], "final_train_error": curves["final_train_error"]}


def first_to_last(values) -> float:
    """Gradient norm at the first conv divided by that at the last (NaN if either is missing)."""
    values = np.asarray(values, dtype=float)
    return float(values[0] / values[-1]) if values[-1] > 0 else float("nan")


def summary(nets: dict) -> list[dict]:
    """Per net and recorded step: first/last conv ratio of the backward gradient, and its range in decades."""
    rows = []
    for name, r in nets.items():
        for step, act in zip(r["steps"], r["act_grad_norm"]):
            act = np.asarray(act, dtype=float)
            finite = act[np.isfinite(act) & (act > 0)]
            decades = float(np.log10(finite.max() / finite.min())) if finite.size else float("nan")
            rows.append({"net": name, "step": step, "first_over_last": first_to_last(act),
                         "decades": decades, "diverged": r["diverged"]})
    return rows


def report(results: dict) -> str:
    table = markdown_table(results["summary"], [("net", "net", "s"), ("step", "step", "d"),
                                                ("first_over_last", "|g first conv| / |g last conv|", ".3g"),
                                                ("decades", "spread over layers (decades)", ".2f"),
                                                ("diverged", "diverged", "")])
    init = [r for r in results["summary"] if r["step"] == 0 and "-noBN" not in r["net"] and r["net"].startswith("plain")]
    note = "; ".join(f"{r['net']}: first/last = {r['first_over_last']:.3g}" for r in init)
    return (f"Gradient norms ({results['data']}; width {results['settings']['width']})\n\n{table}\n\n"
            f"Plain nets with BN at initialisation: {note} (1 = no vanishing).\n")


def plot(results: dict) -> dict:
    """``gradnorms_init.png`` (every depth at step 0) and ``gradnorms_training.png`` (deepest, each step)."""
    nets = results["nets"]
    deepest = max(r["depth"] for r in nets.values())
    init = _grid(nets, lambda r: [(f"depth {r['depth']}", r["act_grad_norm"][0])],
                 "Backward gradient per conv layer at initialisation (paper sec. 4.1)")
    during = _grid({k: r for k, r in nets.items() if r["depth"] == deepest},
                   lambda r: [(f"step {s}", row) for s, row in zip(r["steps"], r["act_grad_norm"])],
                   f"Backward gradient per conv layer during training, depth {deepest}")
    return {"gradnorms_init.png": init, "gradnorms_training.png": during}


def _grid(nets: dict, curves_of, title: str):
    """2x2 panels: rows with / without BN, columns plain / residual; ``curves_of(net) -> [(label, values)]``."""
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(2, 2, figsize=(11, 7), sharex=True)
    for (i, batch_norm), (j, residual) in ((a, b) for a in enumerate((True, False)) for b in enumerate((False, True))):
        ax = axes[i, j]
        for name, r in nets.items():
            if r["batch_norm"] != batch_norm or r["residual"] != residual:
                continue
            for label, values in curves_of(r):
                values = np.asarray(values, dtype=float)
                depth_fraction = np.arange(1, len(values) + 1) / len(values)
                ax.plot(depth_fraction, values, marker=".", markersize=3,
                        label=label + (" (diverged)" if r["diverged"] else ""))
        ax.set_yscale("log")
        ax.set_title(f"{'ResNet' if residual else 'plain'}, {'with' if batch_norm else 'without'} BN", fontsize=10)
        ax.grid(True, alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
        if i == 1:
            ax.set_xlabel("conv layer position (fraction of depth, input -> output)")
        if j == 0:
            ax.set_ylabel("||dL / d conv output||")
    fig.suptitle(title)
    fig.tight_layout()
    return fig

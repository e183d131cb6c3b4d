"""Figure 6 of the paper: the degradation problem. Plain nets get *worse* with depth, ResNets do not.

Plain-d and ResNet-d (d = 6n+2: 20, 32, 44, 56) are trained with exactly the same protocol and data
order (:mod:`minires.experiments.common`); the figure shows training error (thin, the running
mini-batch error, as in the paper) and test error (bold) against iterations, plain nets on the left,
ResNets on the right; a table gives the final errors.

Settings. ``--full`` is the paper's: widths 16/32/64, 64k iterations of batch 128 (CIFAR-10 sized
runs; days on a CPU). ``--quick`` must finish in about ten minutes on a 2-core CPU, so it trains
*narrow* nets — widths 4/8/16 instead of 16/32/64 — for 1,000 iterations of batch 64 (6.4 epochs of
the 10,000 embedded images; a smaller batch than the paper's 128 gives more updates for the same
compute), and only the two ends of the depth range, 20 and 56 (``--depths 20,32,44,56`` adds the
middle at about twice the time). Everything else is the paper's protocol.

What quick settings show (measured on the embedded data, seeds 0 and 1): plain-56 ends about 40
points above plain-20 in training error (about 60% against 20%): the degradation problem, and
robust. ResNet-56 ends within a few points of ResNet-20 (4-8% both; which one is lower depends on
the seed), so at this length the ResNets show *no* degradation but not yet the paper's clear gain
from depth, which needs longer training (the paper's 64k iterations; ``--iterations``). With 400
iterations of batch 128 ResNet-56 was still behind ResNet-20 (about 21% against 17%). Hence the
verdict below counts a deeper net as worse only when its training error is more than
``TOLERANCE`` points higher: the seed-to-seed spread at quick settings.
"""
from __future__ import annotations

import numpy as np

from .common import build_model, display_name, markdown_table, model_name, parameter_count, plot_error_curves, train

QUICK = dict(depths=(20, 56), width=4, iterations=1_000, batch_size=64, lr=0.1, n_train=10_000, n_test=1_000,
             eval_every=100)
FULL = dict(depths=(20, 32, 44, 56), width=16, iterations=64_000, batch_size=128, lr=0.1, n_train=None,
            n_test=None, eval_every=1_000)
TOLERANCE = 5.0  # percentage points of training error; differences below are within seed-to-seed noise


def run(data, settings: dict, seed: int = 0, progress: bool = True) -> dict:
    """Train plain and residual nets at every depth; return curves, final errors and the effect."""
    runs = {}
    for residual in (False, True):
        for depth in settings["depths"]:
            model = build_model(depth, data, residual=residual, width=settings["width"], seed=seed)
            name = model_name(depth, residual)
            curves = train(model, data, settings["iterations"], settings["batch_size"], settings["lr"],
                           eval_every=settings["eval_every"], seed=seed, label=name, progress=progress)
            runs[name] = {"depth": depth, "residual": residual, "params": parameter_count(model), **curves}
            if progress:
                print(f"{name:>9s}: train error {100 * curves['final_train_error']:5.1f}%  test error "
                      f"{100 * curves['final_test_error']:5.1f}%  ({curves['seconds']:.0f} s)", flush=True)
    return {"experiment": "degradation", "data": data.describe(), "settings": settings, "runs": runs,
            "summary": summary(runs), "effect": effect(runs)}


def summary(runs: dict) -> list[dict]:
    """One row per net: final training and test error (%), parameters, seconds."""
    return [{"net": name, "depth": r["depth"], "residual": r["residual"], "params": r["params"],
             "train_error": 100 * r["final_train_error"], "test_error": 100 * r["final_test_error"],
             "seconds": r["seconds"]} for name, r in runs.items()]


def effect(runs: dict) -> dict:
    """Does the deepest plain net train worse than the shallowest (by more than ``TOLERANCE`` points),
    and does the deepest ResNet not?"""
    out = {}
    for kind, residual in (("plain", False), ("resnet", True)):
        family = sorted((r["depth"], r["final_train_error"]) for r in runs.values() if r["residual"] == residual)
        (shallow, e_shallow), (deep, e_deep) = family[0], family[-1]
        out[kind] = {"shallowest": shallow, "deepest": deep, "train_error_shallowest": 100 * e_shallow,
                     "train_error_deepest": 100 * e_deep,
                     "deeper_is_worse": bool(100 * (e_deep - e_shallow) > TOLERANCE)}
    out["shows_degradation"] = out["plain"]["deeper_is_worse"] and not out["resnet"]["deeper_is_worse"]
    out["tolerance_points"] = TOLERANCE
    return out


def report(results: dict) -> str:
    """The summary table and one sentence on the effect, as Markdown."""
    table = markdown_table(results["summary"], [("net", "net", "s"), ("params", "params", ",d"),
                                                ("train_error", "train error %", ".1f"),
                                                ("test_error", "test error %", ".1f"), ("seconds", "seconds", ".0f")])
    e = results["effect"]
    verdict = ("shows the degradation problem: the deeper plain net trains worse, the deeper ResNet does not"
               if e["shows_degradation"] else "does NOT show the degradation effect at these settings")
    verdict += (f" (a deeper net counts as worse when its training error is over {e['tolerance_points']:g} "
                "points higher)")
    lines = [f"Degradation ({results['data']}; width {results['settings']['width']}, "
             f"{results['settings']['iterations']} iterations)", "", table, "",
             f"plain-{e['plain']['deepest']} vs plain-{e['plain']['shallowest']}: "
             f"{e['plain']['train_error_deepest']:.1f}% vs {e['plain']['train_error_shallowest']:.1f}% training error; "
             f"ResNet-{e['resnet']['deepest']} vs ResNet-{e['resnet']['shallowest']}: "
             f"{e['resnet']['train_error_deepest']:.1f}% vs {e['resnet']['train_error_shallowest']:.1f}%.",
             f"This run {verdict}."]
    return "\n".join(lines) + "\n"


def plot(results: dict) -> dict:
    """``{"degradation.png": figure}``: Fig. 6's layout, plain nets left, ResNets right."""
    import matplotlib.pyplot as plt
    runs = results["runs"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    depths = sorted({r["depth"] for r in runs.values()})
    colours = dict(zip(depths, plt.cm.viridis(np.linspace(0.0, 0.85, len(depths)))[::-1]))
    for ax, residual, title in ((axes[0], False, "plain networks"), (axes[1], True, "ResNets")):
        for name, r in runs.items():
            if r["residual"] != residual:
                continue
            plot_error_curves(ax, r, display_name(r["depth"], residual), colours[r["depth"]])
        ax.set_title(title)
        ax.legend(title="bold: test, dashed: train", fontsize=8, title_fontsize=8)
    axes[1].set_ylabel("")
    s = results["settings"]
    fig.suptitle(f"Degradation (paper Fig. 6) on {results['data'].split(':')[0]}: width {s['width']}, "
                 f"{s['iterations']} iterations, batch {s['batch_size']}")
    fig.tight_layout()
    return {"degradation.png": fig}

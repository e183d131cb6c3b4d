"""Figure 6 of the paper: the degradation problem. Plain nets get *worse* with depth, ResNets do not.

Plain-d and ResNet-d (d = 6n+2: 20, 32, 44, 56) are trained with exactly the same protocol and data
order (:mod:`minires.experiments.common`); the figure shows training error (thin, the running
mini-batch error, as in the paper) and test error (bold) against iterations, plain nets on the left,
ResNets on the right; a table gives the final errors.

Settings. ``--full`` is the paper's: widths 16/32/64, 64k iterations of batch 128 (CIFAR-10 sized
runs; days on a CPU). ``--quick`` must finish in under ten minutes on a 2-core CPU, so it trains
*narrow* nets — widths 4/8/16 instead of 16/32/64 — for 1,000 iterations of batch 64 (6.4 epochs of
the 10,000 embedded images; a smaller batch than the paper's 128 gives more updates for the same
compute), and only the two ends of the depth range, 20 and 56 (``--depths 20,32,44,56`` adds the
middle at about twice the time). Every net starts with 100 iterations at a tenth of the rate: the
paper's warm-up for ResNet-110, which these narrow nets need already at depth 56 (without it, with
seed 2, ResNet-56 sat at chance for 400 iterations and ended at 39% training error against
ResNet-20's 10%). Everything else is the paper's protocol, the same for every net. The four nets
train two at a time, one process each (``--workers``): about 3 minutes on a 2-core CPU.

What quick settings show (measured 2026-11-27 on the embedded data, seeds 0, 1 and 2; training error
over the last 100 iterations, test error on 1,000 held-out images):

============  ==================  ==================  ==================  ==================
seed          plain-20            plain-56            ResNet-20           ResNet-56
============  ==================  ==================  ==================  ==================
0             16.4% / 11.8%       37.5% / 32.3%        9.6% / 8.0%        13.6% / 12.5%
1             18.4% / 15.7%       74.9% / 72.7%        9.0% / 8.9%         8.8% / 8.6%
2             12.9% / 8.9%        80.0% / 80.1%       11.6% / 10.4%        6.4% / 5.4%
============  ==================  ==================  ==================  ==================

(train / test). Plain-56 ends 21-67 points above plain-20: the degradation problem. ResNet-56 ends
within 4.0 points of ResNet-20, below it with seeds 1 and 2: the shortcut removes the degradation,
the paper's Fig. 6 right. Which of the two ResNets ends lower is within run-to-run noise here: the
same seeds on the two earlier builds of the CPU kernels, which round differently, put ResNet-56
below ResNet-20 with one seed of three and with all three. So the verdict counts a deeper net as
worse only when its training error is more than ``TOLERANCE`` points higher.
"""
from __future__ import annotations

import numpy as np

from .common import (build_model, display_name, map_nets, markdown_table, model_name, parameter_count,
                     plot_error_curves, train)

QUICK = dict(depths=(20, 56), width=4, iterations=1_000, batch_size=64, lr=0.1, warmup=100, n_train=10_000,
             n_test=1_000, eval_every=100)
FULL = dict(depths=(20, 32, 44, 56), width=16, iterations=64_000, batch_size=128, lr=0.1, warmup=0, n_train=None,
            n_test=None, eval_every=1_000)
TOLERANCE = 5.0  # percentage points of training error; differences below are within seed-to-seed noise


def run(data, settings: dict, seed: int = 0, progress: bool = True, workers: int | None = None) -> dict:
    """Train plain and residual nets at every depth; return curves, final errors and the effect.

    The nets train ``workers`` at a time (:func:`~minires.experiments.common.map_nets`), deepest first.
    """
    jobs = [{"depth": depth, "residual": residual, "settings": settings, "seed": seed}
            for residual in (False, True) for depth in sorted(settings["depths"])]
    runs = dict(map_nets(train_net, data, jobs, workers, progress, cost=lambda job: job["depth"]))
    return {"experiment": "degradation", "data": data.describe(), "settings": settings, "runs": runs,
            "summary": summary(runs), "effect": effect(runs)}


def train_net(data, job: dict, progress: bool = True) -> tuple[str, dict]:
    """Train one net of the experiment: ``(name, its curves and final errors)``."""
    settings, depth, residual = job["settings"], job["depth"], job["residual"]
    model = build_model(depth, data, residual=residual, width=settings["width"], seed=job["seed"])
    name = model_name(depth, residual)
    curves = train(model, data, settings["iterations"], settings["batch_size"], settings["lr"],
                   eval_every=settings["eval_every"], seed=job["seed"], warmup=settings["warmup"], label=name,
                   progress=progress)
    if progress:
        print(f"{name:>9s}: train error {100 * curves['final_train_error']:5.1f}%  test error "
              f"{100 * curves['final_test_error']:5.1f}%  ({curves['seconds']:.0f} s)", flush=True)
    return name, {"depth": depth, "residual": residual, "params": parameter_count(model), **curves}


def summary(runs: dict) -> list[dict]:
    """One row per net: final training and test error (%), parameters, seconds."""
    return [{"net": name, "depth": r["depth"], "residual": r["residual"], "params": r["params"],
             "train_error": 100 * r["final_train_error"], "test_error": 100 * r["final_test_error"],
             "seconds": r["seconds"]} for name, r in runs.items()]


def effect(runs: dict) -> dict | None:
    """Does the deepest plain net train worse than the shallowest (by more than ``TOLERANCE`` points),
    and does the deepest ResNet not? ``None`` with fewer than two depths: nothing to compare."""
    if len({r["depth"] for r in runs.values()}) < 2:
        return None
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
    head = [f"Degradation ({results['data']}; width {results['settings']['width']}, "
            f"{results['settings']['iterations']} iterations)", "", table, ""]
    if e is None:
        return "\n".join(head + ["One depth only: the effect needs two (--depths 20,56)."]) + "\n"
    verdict = ("shows the degradation problem: the deeper plain net trains worse, the deeper ResNet does not"
               if e["shows_degradation"] else "does NOT show the degradation effect at these settings")
    verdict += (f" (a deeper net counts as worse when its training error is over {e['tolerance_points']:g} "
                "points higher)")
    plain, res = e["plain"], e["resnet"]
    return "\n".join(head + [
        f"plain-{plain['deepest']} vs plain-{plain['shallowest']}: {plain['train_error_deepest']:.1f}% vs "
        f"{plain['train_error_shallowest']:.1f}% training error; ResNet-{res['deepest']} vs ResNet-{res['shallowest']}: "
        f"{res['train_error_deepest']:.1f}% vs {res['train_error_shallowest']:.1f}%.",
        f"This run {verdict}."]) + "\n"


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
                 f"{s['iterations']} iterations, batch {s['batch_size']}"
                 + (f", warm-up {s['warmup']}" if s.get("warmup") else "") + f", seed {results.get('seed', 0)}")
    fig.tight_layout()
    return {"degradation.png": fig}

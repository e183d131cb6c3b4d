"""Lesion study (Veit, Wilber, Belongie 2016): delete one block at test time and measure the damage.

A ResNet and its plain twin (same depth, same protocol) are trained; then, one block at a time,
``block.lesioned = True`` makes the block pass on only what its shortcut carries — a residual
block becomes :math:`y = \\mathrm{relu}(\\mathrm{shortcut}(x))`, its branch deleted — and the test error
is measured in eval mode. For the plain net a lesioned block becomes the identity, so the same
pair of 3x3 layers disappears; blocks that change the shape (stride 2, more channels) cannot be
removed from a plain net and are reported as not applicable.

Veit et al.'s finding: deleting one block of a ResNet barely hurts (except the downsampling blocks,
whose shortcut is not an identity), as if the net were an ensemble of many paths; deleting a
layer pair of a plain net sends it to near chance.

The verdicts (:func:`claims`) take the mean rise over the deletable non-downsampling blocks: the
ResNet's must stay under ``BARELY`` (5) points and below the plain net's, each by more than the
noise of a test error on the held-out images (two binomial standard deviations, 100/sqrt(n) points:
3.2 on the quick run's 1,000 images).

Quick settings: depth 20 (nine blocks), widths 4/8/16, 800 iterations of batch 64 on the embedded data, 1,000
test images. Full: ResNet-110 / plain-110 widths 16/32/64, 64k iterations.
"""
from __future__ import annotations

import numpy as np

from ..nn import LayerError
from .common import (build_model, compare, display_name, evaluate, flagged, judge, map_nets, markdown_table,
                     model_name, note_health, report_tail, test_error_noise, train)

QUICK = dict(depth=20, width=4, iterations=800, batch_size=64, lr=0.1, warmup=0, n_train=10_000, n_test=1_000)
FULL = dict(depth=110, width=16, iterations=64_000, batch_size=128, lr=0.1, warmup=400, n_train=None, n_test=None)
BARELY = 5.0  # points of test error: a rise below this "barely hurts"


def lesion_errors(model, loader) -> list:
    """Test error with each block deleted in turn (None where the block cannot be deleted)."""
    errors = []
    for block in model.blocks():
        block.lesioned = True
        try:
            errors.append(evaluate(model, loader))
        except LayerError:
            errors.append(None)
        finally:
            block.lesioned = False
    return errors


def run(data, settings: dict, seed: int = 0, progress: bool = True, workers: int | None = None,
        ledger=None) -> dict:
    """Train the ResNet and its plain twin (at once, with ``workers`` > 1), then lesion each."""
    jobs = [{"residual": residual, "settings": settings, "seed": seed} for residual in (True, False)]
    nets = dict(map_nets(train_net, data, jobs, workers, progress, ledger=ledger))
    return {"experiment": "lesion", "data": data.describe(), "settings": settings, "nets": nets,
            "chance_error": 1 - 1 / data.num_classes, "summary": summary(nets),
            "claims": claims(nets, len(data.test)), "health": {name: r["health"] for name, r in nets.items()}}


def train_net(data, job: dict, progress: bool = True) -> tuple[str, dict]:
    """Train one net, then its test error with each block deleted in turn: ``(name, record)``."""
    settings, residual, seed = job["settings"], job["residual"], job["seed"]
    name = model_name(settings["depth"], residual)
    model = build_model(settings["depth"], data, residual=residual, width=settings["width"], seed=seed)
    curves = train(model, data, settings["iterations"], settings["batch_size"], settings["lr"], seed=seed,
                   warmup=settings.get("warmup", 0), label=name, progress=progress)
    test_loader = data.loaders(settings["batch_size"], seed)[1]
    blocks = [f"layer{s + 1}.{b}" for s, stage in enumerate(model.stages) for b in range(len(stage))]
    return name, {"residual": residual, "label": display_name(settings["depth"], residual), "blocks": blocks,
                  "downsampling": [not block.keeps_shape for block in model.blocks()],
                  "baseline_error": evaluate(model, test_loader),
                  "lesioned_error": lesion_errors(model, test_loader),
                  "final_train_error": curves["final_train_error"], "health": curves["health"]}


def summary(nets: dict) -> list[dict]:
    """Per net: baseline error and the mean / worst increase over deletable non-downsampling blocks."""
    rows = []
    for name, r in nets.items():
        rises = [e - r["baseline_error"] for e, down in zip(r["lesioned_error"], r["downsampling"])
                 if e is not None and not down]
        rows.append({"net": name, "baseline_error": 100 * r["baseline_error"],
                     "mean_rise": 100 * float(np.mean(rises)) if rises else float("nan"),
                     "worst_rise": 100 * float(np.max(rises)) if rises else float("nan"),
                     "health": r["health"]["status"]})
    return rows


def claims(nets: dict, n_test: int) -> list[dict]:
    """Veit et al.'s claims on the mean rise in test error when one non-downsampling block is deleted:
    under :data:`BARELY` points for the ResNet (which must be trained), and far below the plain twin's
    (both must be)."""
    tolerance, noise = test_error_noise(n_test)
    rise = {row["net"]: (f"{nets[row['net']]['label']} mean rise", row["mean_rise"]) for row in summary(nets)}
    res, plain = (next(name for name, r in nets.items() if r["residual"] == residual) for residual in (True, False))
    health = {name: r["health"] for name, r in nets.items()}
    return [judge(f"deleting one block barely hurts a ResNet: mean rise under {BARELY:g} points (Veit et al.)",
                  [compare(rise[res], ("the bound", BARELY), tolerance, " pts")], noise,
                  health, [res]),
            judge("deleting one block hurts the plain net much more than the ResNet (Veit et al.)",
                  [compare(rise[res], rise[plain], tolerance, " pts")],
                  noise, health, list(nets))]


def report(results: dict) -> str:
    table = markdown_table(results["summary"], [("net", "net", "s"), ("baseline_error", "test error %", ".1f"),
                                                ("mean_rise", "mean rise when one block is deleted (pts)", ".1f"),
                                                ("worst_rise", "worst rise (pts)", ".1f"), ("health", "health", "s")])
    return (f"Lesion study ({results['data']}; depth {results['settings']['depth']}, width "
            f"{results['settings']['width']}); downsampling blocks excluded from the means\n\n{table}\n"
            + report_tail(results))


def plot(results: dict) -> dict:
    """``lesion.png``: test error after deleting each block, ResNet vs plain, with baselines and chance."""
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(10, 4.5))
    nets = list(results["nets"].items())
    width = 0.8 / len(nets)
    for k, (name, r) in enumerate(nets):
        x = np.arange(len(r["blocks"])) + (k - (len(nets) - 1) / 2) * width
        errors = [100 * e if e is not None else np.nan for e in r["lesioned_error"]]
        bars = ax.bar(x, errors, width, label=flagged(f"{r['label']}: one block deleted", r["health"]),
                      hatch=None if r["health"]["status"] == "ok" else "//")
        ax.axhline(100 * r["baseline_error"], color=bars.patches[0].get_facecolor(), linestyle="--", linewidth=1,
                   label=f"{r['label']}: nothing deleted")
    ax.axhline(100 * results["chance_error"], color="grey", linestyle=":", label="chance")
    blocks, down = nets[0][1]["blocks"], nets[0][1]["downsampling"]
    ax.set_xticks(np.arange(len(blocks)), [b + ("\n(down)" if d else "") for b, d in zip(blocks, down)], fontsize=8)
    ax.set_xlabel("deleted block (plain nets: downsampling blocks cannot be deleted)")
    ax.set_ylabel("test error (%)")
    ax.set_title("Deleting one block at test time (Veit et al. 2016)")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    note_health(fig, results["health"])
    return {"lesion.png": fig}

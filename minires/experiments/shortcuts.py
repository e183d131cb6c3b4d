"""Shortcut options A, B and C (paper sec. 3.3 and Table 3) on one depth: error, parameters, time.

* A: identity shortcuts; where the shape changes, subsample and zero-pad (no parameters).
* B: 1x1 projections (+BN) only where the shape changes.
* C: projections on every shortcut.

The paper (ImageNet, ResNet-34) finds C slightly better than B, B slightly better than A, all far
better than plain, and concludes projections are not essential. Each option is trained with the
same protocol and data order; the table reports final errors, parameter counts and the time per
iteration (projections cost extra convolutions).

The paper's gaps (0.5 and 0.3 points) are far below the noise of one quick run's test error (two
binomial standard deviations on 1,000 images: 3.2 points), so the quick verdict on "C < B < A" can
only be "cannot tell at this setting" unless an option fails outright; it says "does not hold" when
projections are worse by more than the noise.

Quick settings: depth 20, widths 4/8/16, 600 iterations of batch 64 on the embedded data. Full: depth 56,
width 16, 64k iterations.
"""
from __future__ import annotations

from .common import (build_model, compare, flagged, judge, map_nets, markdown_table, note_health, parameter_count,
                     plot_error_curves, report_tail, test_error_noise, train)

QUICK = dict(depth=20, width=4, iterations=600, batch_size=64, lr=0.1, n_train=10_000, n_test=1_000, eval_every=100)
FULL = dict(depth=56, width=16, iterations=64_000, batch_size=128, lr=0.1, n_train=None, n_test=None, eval_every=1_000)
OPTIONS = ("A", "B", "C")
MAX_WORKERS = 1   # nets trained at once: the time per iteration is a result, and nets sharing the cores would skew it


def run(data, settings: dict, seed: int = 0, progress: bool = True, workers: int | None = None,
        ledger=None) -> dict:
    """Train one net per option, one at a time whatever ``workers`` says: the time per iteration is
    one of the results, and nets sharing the cores would skew it."""
    jobs = [{"option": option, "settings": settings, "seed": seed} for option in OPTIONS]
    options = dict(map_nets(train_option, data, jobs, workers=MAX_WORKERS, progress=progress, ledger=ledger))
    return {"experiment": "shortcuts", "data": data.describe(), "settings": settings, "options": options,
            "summary": [{"option": k, "params": r["params"], "train_error": 100 * r["final_train_error"],
                         "test_error": 100 * r["final_test_error"],
                         "ms_per_iteration": 1000 * r["seconds_per_iteration"], "health": r["health"]["status"]}
                        for k, r in options.items()],
            "claims": claims(options, len(data.test)), "health": {k: r["health"] for k, r in options.items()}}


def train_option(data, job: dict, progress: bool = True) -> tuple[str, dict]:
    """Train the net of one shortcut option: ``(option, its curves, parameters and time per iteration)``;
    the time is the whole training run's, its periodic held-out evaluations included (each option's
    run makes the same ones), over its iterations."""
    settings, option, seed = job["settings"], job["option"], job["seed"]
    model = build_model(settings["depth"], data, width=settings["width"], seed=seed, shortcut=option)
    curves = train(model, data, settings["iterations"], settings["batch_size"], settings["lr"],
                   eval_every=settings["eval_every"], seed=seed, label=f"option {option}", progress=progress)
    return option, {"params": parameter_count(model), **curves,
                    "seconds_per_iteration": curves["seconds"] / max(1, len(curves["train_error"]))}


def claims(options: dict, n_test: int) -> list[dict]:
    """Table 3: each step from A to B to C lowers the error (slightly: 0.5 and 0.3 points top-1 on ImageNet)."""
    tolerance, noise = test_error_noise(n_test)
    error = {k: (f"option {k}", 100 * r["final_test_error"]) for k, r in options.items()}
    return [judge("C is slightly better than B, and B slightly better than A (Table 3; projections are not "
                  "essential)", [compare(error["B"], error["A"], tolerance, "%"),
                                 compare(error["C"], error["B"], tolerance, "%")], noise,
                  {k: r["health"] for k, r in options.items()}, list(options))]


def report(results: dict) -> str:
    table = markdown_table(results["summary"], [("option", "shortcut", "s"), ("params", "params", ",d"),
                                                ("train_error", "train error %", ".1f"),
                                                ("test_error", "test error %", ".1f"),
                                                ("ms_per_iteration", "ms / iteration, evaluations included", ".0f"),
                                                ("health", "health", "s")])
    s = results["settings"]
    return (f"Shortcut options ({results['data']}; ResNet-{s['depth']}, width {s['width']}, "
            f"{s['iterations']} iterations)\n\n{table}\n" + report_tail(results))


def plot(results: dict) -> dict:
    """``shortcuts.png``: error curves per option (left) and final test error with parameter counts (right)."""
    import matplotlib.pyplot as plt
    fig, (curves, bars) = plt.subplots(1, 2, figsize=(11, 4.2), gridspec_kw={"width_ratios": [2, 1]})
    for option, r in results["options"].items():
        plot_error_curves(curves, r, flagged(f"option {option}", r["health"]), f"C{OPTIONS.index(option)}")
    curves.set_title("training (dashed) and test (bold) error")
    curves.legend(fontsize=8)
    names = list(results["options"])
    finals = [100 * results["options"][k]["final_test_error"] for k in names]
    drawn = bars.bar(names, finals, color=[f"C{i}" for i in range(len(names))],
                     hatch=["" if results["options"][k]["health"]["status"] == "ok" else "//" for k in names])
    for bar, k in zip(drawn, names):
        top_centre = (bar.get_x() + bar.get_width() / 2, bar.get_height())
        bars.annotate(f"{results['options'][k]['params']:,} params", top_centre,
                      ha="center", va="bottom", fontsize=8)
    bars.set_xlabel("shortcut option")
    bars.set_ylabel("final test error (%)")
    bars.set_title("final test error")
    bars.grid(True, axis="y", alpha=0.3)
    s = results["settings"]
    fig.suptitle(f"Shortcut options A/B/C on ResNet-{s['depth']} (width {s['width']}, {s['iterations']} iterations)")
    fig.tight_layout()
    note_health(fig, results["health"])
    return {"shortcuts.png": fig}

r"""Figure 7 of the paper: standard deviation of layer responses, plain vs ResNet, by depth.

A "response" is the output of a 3x3 conv layer *after BN and before the nonlinearity or the
addition*: the output of every BatchNorm2d that follows a 3x3 conv (the stem's ``bn1`` and each
block's ``bn1`` and ``bn2``; projection shortcuts' BNs are left out). After training, a forward hook on
each of them accumulates the sum and the sum of squares of all its outputs over the test set (eval
mode), giving one standard deviation per layer over every element (images, channels, pixels). The
figure plots them in layer order and sorted in descending order. The paper's finding: ResNets
respond more weakly than plain nets, and deeper ResNets more weakly still — the residual functions
are closer to zero than non-residual ones.

Nets: plain nets and ResNets at ``depths``, plain nets only up to depth 56 (as in the paper;
plain-110 does not train). Every net starts with ``warmup`` iterations at a tenth of the rate, the
paper's ResNet-110 warm-up (0.01 until the training error is below 80%, about 400 iterations),
scaled to these runs.

Settings. Quick: widths 4/8/16, depths 20 and 56, 1,600 iterations of batch 64 (100 of warm-up)
with the paper's weight decay (1e-4) on the embedded data, responses on 500 test images: 504 and
569 s (seeds 2 and 1) on an idle 2-core CPU. Standard: ResNet-110 added, and weight decay 4.4e-3
(``MATCHED_WEIGHT_DECAY``, below): 592-645 s per seed on 2 cores. Full: the paper's widths, 64k
iterations and weight decay 1e-4 (days on a CPU).

What a run needs to show Fig. 7. In train mode a BN layer's output has, per channel, mean
:math:`\beta` and standard deviation :math:`\gamma` exactly; at initialisation :math:`\gamma = 1`,
:math:`\beta = 0`, so every response of every net starts with std 1, and only training separates
them: the loss gradient moves :math:`\gamma` and :math:`\beta`, and weight decay shrinks them
(with momentum 0.9, by about :math:`\exp(-\lambda \sum_t \eta_t / (1 - \mu))`: x0.034 over the
paper's 64k iterations, x0.93 over 1,600 quick ones). At the paper's decay per step, 1,600 (or
4,800) iterations barely shrink a scale the loss does not hold up, so a deeper ResNet, which needs
less from each block, cannot show it. The standard setting keeps :math:`\lambda \sum_t \eta_t`
at the paper's value instead: :math:`\lambda = 10^{-4} \times 3340 / 75.4 \approx 4.4 \times
10^{-3}` (the ``FULL`` schedule's summed rate over the standard one's).

What the runs show (every run, plan and combination: ``results/responses/README.md``). At weight
decay 4.4e-3 Fig. 7's ladder holds over four seeds planned in advance
(``results/responses/decay-seeds``): ResNet-110 < ResNet-56 on every seed, 95% interval of the
mean gap [+0.033, +0.090], and ResNet-56 < ResNet-20, [+0.172, +0.259]. But the plain nets do not
train at that decay (plain-56 is dead or under-trained on 3 of the 4 seeds), so the plain-twin
claim cannot be read there. At 1e-4 it is the other way round: over eight standard seeds the
plain-twin claim holds (the six whose plain-56 trained) and the ladder cannot tell (ResNet-110 <
ResNet-56 in [-0.000, +0.040]; three seeds at 4,800 iterations: [-0.087, +0.176]). At 1.7e-4,
planned between the two (``results/responses/balanced-seeds``, eight seeds), the ladder holds and
the plain-twin claim cannot tell (ResNet-20 < plain-20 in [-0.051, +0.149] over the five seeds
whose plain-56 trained). So on the embedded data at this scale each of Fig. 7's findings shows at
its own weight decay, and no one setting of the three tried shows both; ``--standard --weight-decay
1e-4`` gives the runs of the plain-twin claim. On MNIST the standard setting trains the plain nets
too (plain-56 on 7 of 8 seeds); over eight seeds (``results/responses/decay-mnist-seeds``) the ladder holds on every seed (ResNet-110 < ResNet-56 in
[+0.060, +0.071]) while the plain-twin claim cannot tell (depth 56 holds, depth 20 does not show).

Why plain-20 responds less than ResNet-20 at 4.4e-3 on the embedded data: 18 of its 19 responses are
scale-free (:func:`scale_free_layers`: the next BN divides their scale out, so the loss does not
oppose weight decay shrinking them), against 9 of ResNet-20's, and there the scale-free responses of
both nets end about the same size. The README reads it from the committed runs.
"""
from __future__ import annotations

import copy

import numpy as np

from .. import autograd
from ..nn import BatchNorm2d
from .common import (build_model, compare, display_name, flagged, judge, map_nets, markdown_table, model_name,
                     note_health, report_tail, train)

QUICK = dict(depths=(20, 56), width=4, iterations=1_600, batch_size=64, lr=0.1, warmup=100, weight_decay=1e-4,
             n_train=10_000, n_test=500)
MATCHED_WEIGHT_DECAY = 4.4e-3  # 1e-4 x the FULL schedule's summed rate / the standard one's (module docstring)
STANDARD = dict(QUICK, depths=(20, 56, 110), weight_decay=MATCHED_WEIGHT_DECAY)
FULL = dict(depths=(20, 56, 110), width=16, iterations=64_000, batch_size=128, lr=0.1, warmup=400, weight_decay=1e-4,
            n_train=None, n_test=None)
PLAIN_MAX_DEPTH = 56
TOLERANCE = 0.05  # of mean response std: one seed, and the std starts at 1 (BN scale 1) before training
NOISE = (f"one seed per run, so a stated tolerance of {TOLERANCE:g} in mean std (5% of the post-BN std at "
         "initialisation, 1)")


def response_layers(model) -> list[tuple[str, object]]:
    """The BNs that follow a 3x3 conv, in layer order (projection shortcuts' BNs excluded)."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, BatchNorm2d) and "downsample" not in name]


def response_stds(model, loader) -> list[float]:
    """Standard deviation of each response layer's output over ``loader``'s data, in eval mode."""
    layers = response_layers(model)
    sums = np.zeros((len(layers), 3))  # count, sum, sum of squares

    def hook_for(k):
        def hook(module, inputs, output):
            values = output.numpy().astype(np.float64)
            sums[k] += (values.size, values.sum(), np.square(values).sum())
        return hook

    handles = [m.register_forward_hook(hook_for(k)) for k, (_, m) in enumerate(layers)]
    model.eval()
    with autograd.no_grad():
        for x, _ in loader:
            model(autograd.Tensor(x))
    model.train()
    for handle in handles:
        handle.remove()
    count, total, squares = sums.T
    mean = total / count
    return np.sqrt(np.maximum(squares / count - mean ** 2, 0.0)).tolist()


def scale_free_layers(model, images, rtol: float = 1e-2) -> list[str]:
    r"""The response layers whose scale the net's output does not depend on, found by trying each.

    Scaling a BN's :math:`(\gamma, \beta)` by :math:`c > 0` scales its output by :math:`c`; when that
    output reaches the loss only through ReLU (:math:`\mathrm{relu}(cz) = c\,\mathrm{relu}(z)`) and a
    bias-free conv into another BN, that BN divides :math:`c` out again (up to its :math:`\epsilon`).
    The loss then has no gradient along :math:`(\gamma, \beta)`, and weight decay shrinks them unopposed
    but for the slight growth each gradient step adds. A BN whose output reaches the head, or is added to a
    shortcut, is held up by the loss.

    A layer counts as scale-free when :func:`logit_change_when_scaled` (its scale multiplied by 10) is at
    most ``rtol``, not 0, because :math:`\epsilon` makes the invariance inexact: at initialisation (width 4,
    depths 20 to 110) a scale-free layer moves the logits by under 5e-3 of their largest magnitude, a deep
    plain net's the most, and a held-up layer by over 30%."""
    return [name for name, change in logit_change_when_scaled(model, images).items() if change <= rtol]


def logit_change_when_scaled(model, images, factor: float = 10.0) -> dict[str, float]:
    """For each response layer: how far multiplying its (gamma, beta) by ``factor`` moves the logits of
    ``images`` (training mode, on a float64 copy of the net), over the logits' largest magnitude."""
    model = copy.deepcopy(model).double().train()

    def logits():
        with autograd.no_grad():
            return model(autograd.Tensor(np.asarray(images, dtype=np.float64))).numpy()

    reference = logits()
    change = {}
    for name, bn in response_layers(model):
        saved = bn.weight.data.copy(), bn.bias.data.copy()
        bn.weight.data *= factor
        bn.bias.data *= factor
        change[name] = float(np.abs(logits() - reference).max() / np.abs(reference).max())
        bn.weight.data[...], bn.bias.data[...] = saved
    return change


def run(data, settings: dict, seed: int = 0, progress: bool = True, workers: int | None = None,
        ledger=None) -> dict:
    """Train each net, then measure its responses (``workers`` nets at a time)."""
    jobs = [{"depth": depth, "residual": residual, "settings": settings, "seed": seed}
            for residual in (False, True) for depth in settings["depths"] if residual or depth <= PLAIN_MAX_DEPTH]
    nets = dict(map_nets(train_net, data, jobs, workers, progress, cost=lambda job: job["depth"], ledger=ledger))
    return {"experiment": "responses", "data": data.describe(), "settings": settings, "nets": nets,
            "summary": summary(nets), "claims": claims(nets), "health": {name: r["health"] for name, r in nets.items()}}


def train_net(data, job: dict, progress: bool = True) -> tuple[str, dict]:
    """Train one net and measure the std of each of its responses: ``(name, record)``."""
    settings, depth, residual, seed = job["settings"], job["depth"], job["residual"], job["seed"]
    name = model_name(depth, residual)
    model = build_model(depth, data, residual=residual, width=settings["width"], seed=seed)
    curves = train(model, data, settings["iterations"], settings["batch_size"], settings["lr"], seed=seed,
                   warmup=settings.get("warmup", 0), label=name, progress=progress,
                   weight_decay=settings.get("weight_decay", 1e-4))
    stds = response_stds(model, data.loaders(settings["batch_size"], seed)[1])
    layers = response_layers(model)
    return name, {"depth": depth, "residual": residual, "layers": [n for n, _ in layers], "std": stds,
                  "bn_scale": [float(np.abs(m.weight.numpy()).mean()) for _, m in layers],
                  "final_train_error": curves["final_train_error"], "final_test_error": curves["final_test_error"],
                  "health": curves["health"]}


def summary(nets: dict) -> list[dict]:
    return [{"net": name, "layers": len(r["std"]), "mean_std": float(np.mean(r["std"])),
             "median_std": float(np.median(r["std"])), "first_std": _mean_of(r, ".bn1"),
             "second_std": _mean_of(r, ".bn2"), "bn_scale": float(np.mean(r["bn_scale"])),
             "train_error": 100 * r["final_train_error"], "test_error": 100 * r["final_test_error"],
             "health": r["health"]["status"]} for name, r in nets.items()]


def _mean_of(record: dict, suffix: str) -> float:
    """Mean std of a block's first (``.bn1``) or second (``.bn2``: a ResNet's residual function) response."""
    return float(np.mean([std for name, std in zip(record["layers"], record["std"]) if name.endswith(suffix)]))


def claims(nets: dict) -> list[dict]:
    """Fig. 7's two claims on each net's mean response std: ResNet-d below plain-d at every depth both
    reach, and each deeper ResNet below the shallower. Only trained nets count (an untrained net's
    responses sit near their initial value)."""
    health = {name: r["health"] for name, r in nets.items()}
    mean = {name: (display_name(r["depth"], r["residual"]), float(np.mean(r["std"]))) for name, r in nets.items()}
    resnets = sorted((r["depth"], name) for name, r in nets.items() if r["residual"])
    twins = [(name, model_name(depth, False)) for depth, name in resnets if model_name(depth, False) in nets]
    ladder = list(zip([n for _, n in resnets][1:], [n for _, n in resnets]))
    return [judge("ResNets' responses are smaller than their plain twins' (Fig. 7)",
                  [compare(mean[res], mean[plain], TOLERANCE) for res, plain in twins], NOISE, health,
                  [n for pair in twins for n in pair]),
            judge("the deeper the ResNet, the smaller its responses: "
                  + " < ".join(str(depth) for depth, _ in reversed(resnets)) + " (Fig. 7)",
                  [compare(mean[deep], mean[shallow], TOLERANCE) for deep, shallow in ladder], NOISE, health,
                  [n for _, n in resnets])]


def report(results: dict) -> str:
    table = markdown_table(results["summary"], [("net", "net", "s"), ("layers", "responses", "d"),
                                                ("mean_std", "mean std", ".3f"), ("median_std", "median std", ".3f"),
                                                ("first_std", "blocks' 1st", ".3f"), ("second_std", "blocks' 2nd", ".3f"),
                                                ("bn_scale", "mean BN scale", ".3f"),
                                                ("train_error", "train error %", ".1f"),
                                                ("test_error", "test error %", ".1f"), ("health", "health", "s")])
    s = results["settings"]
    return (f"Layer responses ({results['data']}; width {s['width']}, {s['iterations']} iterations, "
            f"weight decay {s.get('weight_decay', 1e-4):g})\n\n{table}\n\n"
            "Blocks' 1st / 2nd: the mean std of each block's first and second response (a ResNet's second is its "
            "residual function's output, added to the shortcut). A response's std is set by its BN scale (gamma, 1 at initialisation) and shift; only training moves "
            "them. Mean BN scales near 1 mean training has not moved the responses from where they started.\n"
            + report_tail(results))


def plot(results: dict) -> dict:
    """``responses.png``: std per layer in layer order (top) and sorted (bottom), as Fig. 7."""
    import matplotlib.pyplot as plt
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 7))
    depths = sorted({r["depth"] for r in results["nets"].values()})
    for name, r in results["nets"].items():
        std = np.asarray(r["std"])
        style = dict(linestyle="-" if r["residual"] else "--", linewidth=1.4, color=f"C{depths.index(r['depth'])}",
                     label=flagged(display_name(r["depth"], r["residual"]), r["health"]))
        top.plot(np.arange(1, len(std) + 1), std, **style)
        bottom.plot(np.arange(1, len(std) + 1), np.sort(std)[::-1], **style)
    top.set_xlabel("layer index (original order)")
    bottom.set_xlabel("layer index (sorted by magnitude)")
    for ax in (top, bottom):
        ax.set_ylabel("std of response")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8, ncol=2)
    fig.suptitle("Standard deviation of 3x3 conv responses after BN (paper Fig. 7)")
    fig.tight_layout()
    note_health(fig, {name: r["health"] for name, r in results["nets"].items()})
    return {"responses.png": fig}
